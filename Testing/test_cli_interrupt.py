"""Ctrl-C during `spineseg segment` / `spineseg batch`: exit code 130, no partial case folder, a batch summary.

The segment runs use the small example (conftest ``small_example``): what is tested happens after stage 2."""

from __future__ import annotations

import csv

from spineinstanceseg.cli.main import EXIT_INTERRUPTED, main
from spineinstanceseg.outputs import writer
from spineinstanceseg.pipeline import batch
from spineinstanceseg.pipeline.batch import SUMMARY_NAME, CaseOutcome


def _leftovers(out) -> list[str]:
    return sorted(p.name for p in out.rglob("*")) if out.exists() else []


def test_ctrl_c_while_writing_a_case_exits_130_and_leaves_nothing(small_example, tmp_path, monkeypatch, capsys):
    case = small_example
    written_before_the_interrupt: list[str] = []
    real_write_volume = writer.write_volume

    def interrupted_second_write(volume, path, **kwargs):
        if written_before_the_interrupt:
            raise KeyboardInterrupt
        written_before_the_interrupt.append(real_write_volume(volume, path, **kwargs).name)
        return path

    monkeypatch.setattr(writer, "write_volume", interrupted_second_write)
    out = tmp_path / "out"
    code = main(["segment", str(case.image), str(out), "--mask", str(case.semantic), "--device", "cpu"])
    assert code == EXIT_INTERRUPTED == 130
    assert "interrupted (Ctrl-C)" in capsys.readouterr().err
    assert any(name.endswith("_instances.nii.gz") for name in written_before_the_interrupt)  # it was mid-case
    assert _leftovers(out) == []  # no case folder, no .partial folder


def test_ctrl_c_during_a_batch_exits_130_and_writes_the_summary(tmp_path, monkeypatch, capsys):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a", "b", "c"):
        (images / f"{name}.nii.gz").write_bytes(b"not read: the cluster is replaced below")

    def first_case_then_ctrl_c(todo, out, options, outcomes, **kwargs):
        outcomes.append(CaseOutcome("a", str(todo[0]), "done", 1.0, 5))
        raise KeyboardInterrupt

    monkeypatch.setattr(batch, "_run_on_dask", first_case_then_ctrl_c)
    out = tmp_path / "out"
    assert main(["batch", str(images), str(out), "--device", "cpu"]) == 130
    assert "interrupted" in capsys.readouterr().err
    with open(out / SUMMARY_NAME, newline="") as handle:
        rows = {row["case"]: row for row in csv.DictReader(handle)}
    assert {case: row["status"] for case, row in rows.items()} == {"a": "done", "b": "cancelled", "c": "cancelled"}
    assert "run the batch again" in rows["b"]["error"]
    assert not [p for p in out.iterdir() if p.name != SUMMARY_NAME]


def test_writing_a_case_reports_progress_and_a_cancel_there_leaves_nothing(small_example, tmp_path):
    import pytest

    from spineinstanceseg.errors import CancelledError
    from spineinstanceseg.pipeline.options import SegmentOptions
    from spineinstanceseg.pipeline.segment_file import segment_file
    from spineinstanceseg.progress import CancelToken

    case = small_example
    options = SegmentOptions(mask=str(case.semantic), device="cpu")
    token = CancelToken()
    steps: list[str] = []

    def on_progress(step: str, fraction: float, message: str) -> None:
        steps.append(step)
        if step == "writing outputs" and fraction > 0:
            token.cancel()  # the user presses Cancel while the files are written

    with pytest.raises(CancelledError):
        segment_file(case.image, tmp_path / "out", options=options, progress=on_progress, cancel=token)
    assert "writing outputs" in steps
    assert _leftovers(tmp_path / "out") == []
