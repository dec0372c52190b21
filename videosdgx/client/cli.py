"""`videosdgx run WORKFLOW.json`: argument definitions and the run itself, returning an exit code."""

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from videosdgx.client.errors import ClientError, ExitCode, UsageError
from videosdgx.client.overrides import Overrides
from videosdgx.client.runner import RunSettings, run_workflow
from videosdgx.client.transport import DEFAULT_REQUEST_TIMEOUT, DEFAULT_SERVER, RetryPolicy

log = logging.getLogger(__name__)


def seconds(text: str) -> float:
    """An argparse type: a positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number of seconds")
    return value


def attempts(text: str) -> int:
    """An argparse type: a count of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of `videosdgx run` to `parser`."""
    parser.add_argument("workflow", type=Path, help="workflow JSON, editor or API format")
    parser.add_argument("--server", default=DEFAULT_SERVER, help=f"ComfyUI address (default {DEFAULT_SERVER})")
    parser.add_argument("--out", type=Path, default=Path("outputs"), help="folder for the downloaded outputs")
    parser.add_argument("--object-info", type=Path, help="/object_info JSON used to convert editor-format files "
                        "(default: ask the server)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="NODE.input=VALUE",
                        help="set an input of the node with this id or title; VALUE is JSON when it parses")
    names = parser.add_argument_group("parameters found through node titles")
    names.add_argument("--prompt", help='text of the node titled "Prompt"')
    names.add_argument("--negative", help='text of the node titled "Negative Prompt"')
    names.add_argument("--seed", type=int, help="every seed / noise_seed input")
    names.add_argument("--steps", type=int, help="every steps input")
    names.add_argument("--width", type=int, help='width of the node titled "Video Size" (else every width)')
    names.add_argument("--height", type=int, help='height of the node titled "Video Size" (else every height)')
    names.add_argument("--frames", type=int, help='length / num_frames / frames of "Video Size" (else every one)')
    names.add_argument("--image", type=Path, help='file uploaded to the node titled "Input Image"')
    names.add_argument("--end-image", type=Path, help='file uploaded to the node titled "Input End Image"')
    names.add_argument("--audio", type=Path, help='file uploaded to the node titled "Input Audio"')
    names.add_argument("--video", type=Path, help='file uploaded to the node titled "Input Video"')
    patience = parser.add_argument_group("patience")
    patience.add_argument("--timeout", type=seconds, help="seconds the whole run may take (default: no limit)")
    patience.add_argument("--stall-timeout", type=seconds, default=900.0,
                          help="seconds without any server event before giving up (default 900)")
    patience.add_argument("--request-timeout", type=seconds, default=DEFAULT_REQUEST_TIMEOUT,
                          help="seconds to wait for the server to answer one request, before giving up with exit "
                          f"code 6 (default {DEFAULT_REQUEST_TIMEOUT:g})")
    patience.add_argument("--retries", type=attempts, default=6, help="connection attempts before giving up")
    patience.add_argument("--retry-delay", type=seconds, default=0.5, help="first backoff delay, doubled each retry")
    parser.add_argument("--previews", action="store_true", help="save live preview frames under OUT/previews")


def run_from_args(args: argparse.Namespace) -> int:
    """Run the workflow described by parsed `args`; return the process exit code."""
    try:
        workflow = load_json(args.workflow, "workflow")
        object_info = load_json(args.object_info, "object_info") if args.object_info else None
        overrides = Overrides(
            sets=args.sets, prompt=args.prompt, negative=args.negative, seed=args.seed, steps=args.steps,
            width=args.width, height=args.height, frames=args.frames, image=args.image, end_image=args.end_image,
            audio=args.audio, video=args.video)
        settings = RunSettings(retry=RetryPolicy(attempts=args.retries, initial_delay=args.retry_delay),
                               stall_timeout=args.stall_timeout, timeout=args.timeout,
                               request_timeout=args.request_timeout, save_previews=args.previews)
        result = run_workflow(workflow, args.server, args.out, overrides, object_info=object_info,
                              settings=settings)
    except ClientError as exc:
        log.error("%s", exc)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        log.error("Interrupted by the user; files already saved in %s are kept", args.out)
        return int(ExitCode.INTERRUPTED)
    log.info("Prompt %s finished: %d output file(s) in %s", result.prompt_id, len(result.outputs), args.out)
    return int(ExitCode.SUCCESS)


def load_json(path: Path, what: str) -> Any:
    """Parse a JSON file, turning a missing or malformed file into a UsageError."""
    if path.exists() and not path.is_file():
        raise UsageError(f"The {what} file {path} is not a regular file: give the path of a .json file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UsageError(f"The {what} file {path} is not text (not UTF-8): give a ComfyUI workflow .json") from None
    except OSError as exc:
        raise UsageError(f"Cannot read the {what} file {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise UsageError(f"The {what} file {path} is not valid JSON: {exc}") from exc
