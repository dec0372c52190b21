"""The `videosdgx` command: generate a video, run a workflow on a ComfyUI server, inspect model files."""

from __future__ import annotations

import argparse
import logging
import sys


def _inspect(args: argparse.Namespace) -> int:
    from .inspect import inspect_files

    return inspect_files(args.files)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="videosdgx", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    inspect = commands.add_parser("inspect", help="tell what model files are, or why they are unusable")
    inspect.add_argument("files", nargs="+", help="model files, folders or .safetensors.index.json shard indexes")
    inspect.set_defaults(func=_inspect)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
