"""Entry point of the ``spineseg`` command: builds the parser from the sub-command modules and runs one.

Each sub-command module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``.
Exit codes: 0 success, 2 usage or bad input, 1 any other failure.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import CancelledError, InputError, SpineSegError

# Sub-command modules, in the order --help lists them.
COMMAND_MODULES: tuple[str, ...] = ("demo", "segment", "batch", "evaluate", "phantom", "dataset", "train", "info")

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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
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
        print("spineseg: interrupted", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
