"""The `videosdgx` command: generate a video, run a workflow on a ComfyUI server, install or inspect model files."""

from __future__ import annotations

import argparse
import logging
import sys


def _inspect(args: argparse.Namespace) -> int:
    from videosdgx.inspect import inspect_files

    return inspect_files(args.files)


def _generate(args: argparse.Namespace) -> int:
    from videosdgx.generate import run_generate

    return run_generate(args)


def _run(args: argparse.Namespace) -> int:
    from videosdgx.client.cli import run_from_args

    return run_from_args(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="videosdgx", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    from videosdgx.client.cli import add_run_arguments
    from videosdgx.generate import add_generate_arguments

    generate = commands.add_parser("generate", help="make a video from a prompt (in-process or on a ComfyUI server)")
    add_generate_arguments(generate)
    generate.set_defaults(func=_generate)

    run = commands.add_parser("run", help="run a workflow file on a running ComfyUI server")
    add_run_arguments(run)
    run.set_defaults(func=_run)

    install = commands.add_parser("install", help="download model bundles (the same as `python install.py`)",
                                  add_help=False)
    install.add_argument("options", nargs="*", help="install.py's options (--list, --models ...)")

    inspect = commands.add_parser("inspect", help="tell what model files are, or why they are unusable")
    inspect.add_argument("files", nargs="+", help="model files, folders or .safetensors.index.json shard indexes")
    inspect.set_defaults(func=_inspect)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["install"]:  # its options are install.py's own, parsed there
        from videosdgx.install.cli import main as install_main

        return install_main(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
