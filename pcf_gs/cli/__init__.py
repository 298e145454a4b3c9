"""The ``pcf-gs`` command line.

One module per command (``pcf_gs/cli/<command>.py``), each with ``add_parser(sub)``
and ``run(args)``; this module wires them. User mistakes
raise :class:`~pcf_gs.errors.UserError`: one line on stderr, exit code 2, no
traceback unless ``--debug``.
"""

from __future__ import annotations

import argparse
import logging
import sys

from pcf_gs import __version__
from pcf_gs.errors import UserError

log = logging.getLogger("pcf_gs")

COMMANDS = ("synth", "info", "predict", "train", "render", "edit", "segment", "export", "eval", "view", "demo")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="pcf-gs",
        description="Lift noisy 2D panoptic segmentations into a 3D Gaussian-splatting scene "
        "with consistent object identities (PCF-Lift on splats).",
    )
    parser.add_argument("--version", action="version", version=f"pcf-gs {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"pcf_gs.cli.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, format="%(levelname)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        if args.debug:
            raise
        # one line, whatever the message quotes (a --set value or a file name may hold a newline)
        msg = str(e).replace("\r", "\\r").replace("\n", "\\n")
        print(f"pcf-gs {args.command}: error: {msg}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
