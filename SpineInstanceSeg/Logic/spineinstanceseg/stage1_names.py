"""The names of the stage-1 sources and TotalSegmentator tasks, with no imports of their own.

The command-line parser offers them as choices before anything heavy is loaded; :mod:`spineinstanceseg.pipeline.options`
checks options against them and re-exports them.
"""

from __future__ import annotations

__all__ = ["STAGE1_SOURCES", "TOTALSEG_TASKS"]

# "nnunet": the bundled model or a trained nnU-Net folder; "totalsegmentator": the TotalSegmentator package.
STAGE1_SOURCES: tuple[str, ...] = ("nnunet", "totalsegmentator")
# TotalSegmentator's tasks with vertebrae; "auto" = total for a CT, total_mr for an MRI.
TOTALSEG_TASKS: tuple[str, ...] = ("auto", "total", "total_mr")
