"""Entry point of the ``spineseg`` command: builds the parser from the sub-command modules and runs one.

Each sub-command module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``.
Exit codes: 0 success, 2 usage or bad input (an unusable --device included), 1 any other failure, 130 interrupted
with Ctrl-C, 143 terminated (SIGTERM, e.g. Slicer's Cancel). An interrupted or terminated run leaves no partial
case folder: outputs are written to temporary folders that are renamed only when complete.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import signal
import sys
import threading
from collections.abc import Iterator, Sequence

from .. import __version__
from ..errors import CancelledError, InputError, SpineSegError

# Sub-command modules, in the order --help lists them.
COMMAND_MODULES: tuple[str, ...] = ("demo", "segment", "batch", "evaluate", "phantom", "dataset", "train", "info")

# The shell's convention: 128 + the signal's number.
EXIT_INTERRUPTED = 128 + 2  # SIGINT, Ctrl-C
EXIT_TERMINATED = 128 + 15  # SIGTERM

log = logging.getLogger("spineinstanceseg.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spineseg",
        description=(
            "SpineInstanceSeg: segment every vertebra of a spine CT or MRI as its own instance "
            "(nnU-Net v2 semantic stage + windowed multi-scale U-Net with MAFU, Dice-ranked fusion)."
        ),
        epilog="Run 'spineseg COMMAND --help' for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"spineseg {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        module = importlib.import_module(f".{name}", __package__)
        cmd = sub.add_parser(module.NAME, help=module.HELP, description=module.__doc__)
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


class _Terminated(BaseException):
    """SIGTERM (e.g. Slicer's Cancel) turned into an exception, so that temporary outputs are cleaned up."""


@contextlib.contextmanager
def _sigterm_as_exception() -> Iterator[None]:
    """While running a command, SIGTERM unwinds like Ctrl-C does (only possible in the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        raise _Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        with _sigterm_as_exception():
            return int(args._run(args) or 0)
    except CancelledError as err:
        print(f"spineseg: cancelled: {err}", file=sys.stderr)
        return 1
    except InputError as err:
        print(f"spineseg: error: {err}", file=sys.stderr)
        return 2
    except SpineSegError as err:
        print(f"spineseg: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("spineseg: interrupted (Ctrl-C); nothing unfinished was left in the output folder", file=sys.stderr)
        return EXIT_INTERRUPTED
    except _Terminated:
        print("spineseg: terminated; nothing unfinished was left in the output folder", file=sys.stderr)
        return EXIT_TERMINATED


if __name__ == "__main__":
    sys.exit(main())
