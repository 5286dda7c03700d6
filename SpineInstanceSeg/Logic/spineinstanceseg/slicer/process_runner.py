"""Run a long job in a child process without blocking the caller (the Slicer GUI), with progress and Cancel.

:class:`ProcessRunner` starts ``argv`` with stdout and stderr merged into one pipe that a reader thread drains
line by line into a queue. Callbacks are *not* called from that thread: the owner calls :meth:`ProcessRunner.poll`
from its own thread (in Slicer, a ``qt.QTimer`` on the GUI thread, because Qt widgets may only be touched there),
and ``poll`` delivers

* ``on_progress(step, fraction, message)`` for every line made by
  :func:`spineinstanceseg.progress.format_progress_line`,
* ``on_log(line)`` for every other line,
* ``on_finished(returncode)`` once, after the last line (negative or non-zero after a cancel); ``temp_dir`` still
  exists during this call (so results written there can be loaded) and is removed right after it.

:meth:`ProcessRunner.cancel` kills the whole process tree (the child and every process it started, found with
psutil, plus the child's process group on POSIX). The runner owns ``temp_dir`` (if given): it is removed when
the job ends in any way: success, failure, cancel, or a child that could not be started. The reader thread
only touches the queue, so no GUI object is ever used from a second thread.
"""

from __future__ import annotations

import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ..progress import parse_progress_line

__all__ = ["ProcessRunner", "kill_process_tree"]

log = logging.getLogger(__name__)

_EOF = object()
_ORPHAN_GRACE_S = 2.0


def kill_process_tree(pid: int, *, popen: subprocess.Popen | None = None, timeout: float = 5.0) -> list[int]:
    """Terminate process ``pid`` and all its descendants; kill those still alive after ``timeout`` seconds.

    Args:
        popen: The ``Popen`` of ``pid`` when it is our own child: it is then waited for through ``popen`` so that
            its exit code stays available (psutil would reap it and leave ``popen`` with a wrong code).

    Returns:
        The process ids that were signalled.
    """
    import psutil

    try:
        root = psutil.Process(pid)
        # Collect the whole tree before signalling: once the root dies its children are re-parented and can no
        # longer be found through it.
        descendants = root.children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    signalled = []
    for proc in [root, *descendants]:
        try:
            proc.terminate()
            signalled.append(proc.pid)
        except psutil.NoSuchProcess:
            pass
    others = descendants if popen is not None else [root, *descendants]
    if popen is not None:
        try:
            popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(timeout=timeout)
    _, alive = psutil.wait_procs(others, timeout=timeout)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=timeout)
    return signalled


class ProcessRunner:
    """One child process run in the background (see module docstring).

    Args:
        argv: Program and arguments, e.g. ``[python, "-m", "spineinstanceseg.cli.main", "segment", ...]``.
        env: Environment of the child (default: this process's); ``PYTHONUNBUFFERED=1`` is added so that a
            Python child's lines arrive as they are printed.
        temp_dir: Folder owned by the job; deleted when the job ends, whatever the outcome.
        cwd: Working directory of the child.
        on_progress, on_log, on_finished: Callbacks, delivered by :meth:`poll`.
        cancel_grace_s: How long :meth:`cancel` lets the child unwind after SIGTERM (the CLI removes its
            temporary outputs then) before it is killed.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        temp_dir: str | os.PathLike[str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        on_progress: Callable[[str, float, str], None] | None = None,
        on_log: Callable[[str], None] | None = None,
        on_finished: Callable[[int], None] | None = None,
        cancel_grace_s: float = 5.0,
    ) -> None:
        self.argv = [str(a) for a in argv]
        self.env = dict(os.environ if env is None else env)
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        self.temp_dir = Path(temp_dir) if temp_dir is not None else None
        self.cwd = str(cwd) if cwd is not None else None
        self.on_progress = on_progress
        self.on_log = on_log
        self.on_finished = on_finished
        self.cancel_grace_s = float(cancel_grace_s)
        self.returncode: int | None = None
        self.cancelled = False
        self._process: subprocess.Popen | None = None
        self._lines: queue.Queue = queue.Queue()
        self._reader: threading.Thread | None = None
        self._finished_delivered = False
        self._exit_seen_at: float | None = None

    # ------------------------------------------------------------------ state
    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        """True from :meth:`start` until ``on_finished`` has been delivered."""
        return self._process is not None and not self._finished_delivered

    # ------------------------------------------------------------------ control
    def start(self) -> None:
        """Start the child; returns at once. A child that cannot start raises ``OSError`` (temp dir removed)."""
        if self._process is not None:
            raise RuntimeError("this runner was already started; create a new one for another job")
        kwargs: dict = {}
        if sys.platform == "win32":
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
        else:
            kwargs["start_new_session"] = True  # own process group: cancel can reach re-parented grandchildren
        try:
            self._process = subprocess.Popen(
                self.argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.cwd,
                text=True,
                encoding="utf-8",
                errors="replace",
                bufsize=1,
                **kwargs,
            )
        except OSError:
            self._remove_temp_dir()
            raise
        log.info("started pid %s: %s", self._process.pid, " ".join(self.argv))
        self._reader = threading.Thread(target=self._read, name="spineinstanceseg-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        try:
            for line in self._process.stdout:
                self._lines.put(line.rstrip("\r\n"))
        finally:
            self._lines.put(_EOF)

    def cancel(self) -> None:
        """Kill the child and all its descendants. ``on_finished`` follows on the next :meth:`poll`."""
        if self._process is None or self._finished_delivered:
            return
        if self._process.poll() is None:
            self.cancelled = True
            log.info("cancelling pid %s and its children", self._process.pid)
            kill_process_tree(self._process.pid, popen=self._process, timeout=self.cancel_grace_s)
        self._kill_group()

    def _kill_group(self) -> None:
        """SIGKILL whatever is left in the child's process group (e.g. a grandchild that was re-parented)."""
        if sys.platform == "win32" or self._process is None:
            return
        try:
            os.killpg(self._process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def poll(self) -> bool:
        """Deliver pending callbacks in the caller's thread; returns True while the job is still running."""
        if self._process is None or self._finished_delivered:
            return False
        eof = False
        while True:
            try:
                item = self._lines.get_nowait()
            except queue.Empty:
                break
            if item is _EOF:
                eof = True
                break
            self._deliver_line(item)
        if not eof and self._process.poll() is not None:
            # The child exited but something it started still holds the pipe open: give it a moment, then end
            # the job anyway and stop what is left of the child's process group.
            import time

            self._exit_seen_at = self._exit_seen_at or time.monotonic()
            if time.monotonic() - self._exit_seen_at > _ORPHAN_GRACE_S:
                self._kill_group()
                eof = True
        if eof:
            self.returncode = self._process.wait()
            self._finish()
            return False
        return True

    def wait(self, timeout: float | None = None, *, interval: float = 0.05) -> int | None:
        """Poll until the job ends (or ``timeout`` seconds pass); returns the exit code or ``None``."""
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll():
            if deadline is not None and time.monotonic() > deadline:
                return None
            time.sleep(interval)
        return self.returncode

    # ------------------------------------------------------------------ internals
    def _deliver_line(self, line: str) -> None:
        parsed = parse_progress_line(line)
        try:
            if parsed is not None:
                if self.on_progress is not None:
                    self.on_progress(parsed.step, parsed.fraction, parsed.message)
            elif self.on_log is not None:
                self.on_log(line)
        except Exception:  # a broken display must not leave the child unmanaged
            log.exception("progress/log callback failed")

    def _remove_temp_dir(self) -> None:
        if self.temp_dir is not None and self.temp_dir.exists():
            shutil.rmtree(self.temp_dir, ignore_errors=True)

    def _finish(self) -> None:
        self._finished_delivered = True
        log.info("pid %s finished with code %s%s", self.pid, self.returncode, " (cancelled)" if self.cancelled else "")
        try:
            if self.on_finished is not None:  # before the clean-up, so that it can read outputs in temp_dir
                self.on_finished(int(self.returncode if self.returncode is not None else -1))
        except Exception:
            log.exception("on_finished callback failed")
        finally:
            self._remove_temp_dir()

    def __del__(self) -> None:  # a forgotten runner must not leave a process or temp files behind
        try:
            if self._process is not None and self._process.poll() is None:
                kill_process_tree(self._process.pid, popen=self._process, timeout=1.0)
            self._remove_temp_dir()
        except Exception:
            pass
