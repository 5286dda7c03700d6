"""Entry point of the ``spineseg`` command: builds the parser from the sub-command modules and runs one.

Each sub-command module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``.
Exit codes: 0 success, 2 usage or bad input (an unusable --device included), 1 any other failure, 130 interrupted
with Ctrl-C, 143 terminated (SIGTERM, e.g. Slicer's Cancel). An interrupted or terminated run leaves no partial
case folder: outputs are written to temporary folders that are renamed only when complete.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Iterator, Sequence

from .. import __version__
from ..errors import CancelledError, InputError, SpineSegError
from . import batch, dataset, demo, evaluate, info, phantom, segment, train

# Sub-command modules, in the order --help lists them. Each imports at module level only what building its parser
# needs; the work (pipeline, training, phantoms) loads in its run().
COMMANDS = (demo, segment, batch, evaluate, phantom, dataset, train, info)

# The shell's convention: 128 + the signal's number.
EXIT_INTERRUPTED = 128 + 2  # SIGINT, Ctrl-C
EXIT_TERMINATED = 128 + 15  # SIGTERM

log = logging.getLogger("spineinstanceseg.cli")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``spineseg`` parser.

    Args:
        command: Give only this sub-command its options (the others are listed with their help line), so that a
            run loads only what its own command needs; ``None`` builds every sub-command in full.
    """
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
    for module in COMMANDS:
        cmd = sub.add_parser(module.NAME, help=module.HELP, description=module.__doc__)
        if command is None or command == module.NAME:
            module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def _command_of(argv: Sequence[str]) -> str:
    """The sub-command named in ``argv`` (the first word that is not an option; the global options take no value).

    "" when there is none (``spineseg --help``, ``--version``, a missing command): then no sub-command needs its
    options, and building none of them keeps the top-level help fast.
    """
    return next((word for word in argv if not word.startswith("-")), "")


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
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command_of(argv))
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
