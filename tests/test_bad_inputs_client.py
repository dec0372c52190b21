"""`videosdgx run` against bad local inputs and a hostile fake ComfyUI server: one table, one row per input.

Each row runs the real command line (`videosdgx.cli.main`) in-process and checks the exit code, that the message
names the cause, that no exception escapes, nothing hangs, and that no file appears outside `--out`.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from bad_inputs import attempt, warm_up, files_under
from fake_comfy import Binary, FakeComfy, Raw, Scenario, Text, messages

from videosdgx.cli import main

PID = "prompt-1"
WORKFLOW = {
    "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat"}, "_meta": {"title": "Prompt"}},
    "3": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 20, "positive": ["2", 0]},
          "_meta": {"title": "Sampler"}},
    "6": {"class_type": "SaveVideo", "inputs": {"video": ["3", 0]}, "_meta": {"title": "Save"}},
}
EDITOR = {"version": 0.4, "links": [], "nodes": [
    {"id": 1, "type": "SaveText", "mode": 0, "inputs": [], "outputs": [], "widgets_values": ["hi"]}]}
OBJECT_INFO = {"SaveText": {"input": {"required": {"text": ["STRING", {}]}}, "output": [], "output_node": True}}
CLIP = b"\x00\x00\x00\x18ftypmp42"

warm_up()


def item(filename: Any, subfolder: Any = "", kind: Any = "output") -> dict:
    return {"filename": filename, "subfolder": subfolder, "type": kind}


def run_steps(*middle: Any) -> list:
    return [Text(messages.execution_start(PID)), *middle, Text(messages.executing(PID, "6")),
            Text(messages.execution_success(PID))]


@dataclass
class Case:
    """One bad input: command-line extras, what the fake server does, and what the user must get."""

    args: tuple[str, ...] = ()
    code: int = 0
    words: tuple[str, ...] = ()
    scenario: Scenario | None = None  # None: no server (an unused port)
    workflow: Any = field(default_factory=lambda: WORKFLOW)
    workflow_bytes: bytes | None = None
    saved: tuple[str, ...] = ()  # files that must be in --out afterwards (finished results kept)
    setup: str = ""  # a name from SETUPS: prepares the folder before the run


def scenario(outputs: Any = None, files: dict | None = None, steps: list | None = None, **extra: Any) -> Scenario:
    outputs = {"6": {"videos": [item("clip.mp4")]}} if outputs is None else outputs
    files = {("output", "", "clip.mp4"): CLIP} if files is None else files
    return Scenario(steps=run_steps() if steps is None else steps, outputs=outputs, files=files, **extra)


CASES = {
    # the workflow file and the command line
    "workflow-missing": Case(args=("--workflow-path", "absent.json"), code=64, words=("Cannot read the workflow",)),
    "workflow-not-json": Case(workflow_bytes=b"{not json", code=64, words=("not valid JSON",)),
    "workflow-binary": Case(workflow_bytes=b"\xff\xfe\x00\x81binary", code=64, words=("not text",)),
    "workflow-directory": Case(args=("--workflow-path", "."), code=64, words=("not a regular file",)),
    "workflow-json-list": Case(workflow=[1, 2], code=64, words=("neither API format",)),
    "workflow-empty-object": Case(workflow={}, code=64, words=("neither API format",)),
    "api-inputs-list": Case(workflow={"1": {"class_type": "X", "inputs": [1]}}, code=64, words=("inputs object",)),
    "api-class-type-number": Case(workflow={"1": {"class_type": 7, "inputs": {}}}, code=64, words=("class_type",)),
    "api-meta-string": Case(workflow={"1": {"class_type": "X", "inputs": {"text": ""}, "_meta": "Prompt"}},
                            args=("--prompt", "a dog"), code=64, words=("--prompt matches nothing",)),
    "editor-node-without-id": Case(workflow={"links": [], "nodes": [{"type": "SaveText"}]},
                                   args=("--object-info", "info.json"), code=64, words=("unexpected shape",)),
    "editor-links-garbage": Case(workflow={**EDITOR, "links": [["x"]]}, args=("--object-info", "info.json"),
                                 code=64, words=("unexpected shape",)),
    "object-info-file-list": Case(workflow=EDITOR, args=("--object-info", "list.json"), code=64,
                                  words=("not a JSON object of node types",)),
    "object-info-file-missing": Case(workflow=EDITOR, args=("--object-info", "absent.json"), code=64,
                                     words=("Cannot read the object_info file",)),
    "server-ftp": Case(args=("--server", "ftp://host"), code=64, words=("not an http(s) URL",)),
    "server-bad-port": Case(args=("--server", "http://127.0.0.1:99999"), code=64, words=("not an http(s) URL",)),
    "server-empty": Case(args=("--server", ""), code=64, words=("not an http(s) URL",)),
    "retry-delay-negative": Case(args=("--retry-delay", "-1"), code=64, words=("positive number of seconds",)),
    "timeout-zero": Case(args=("--timeout", "0"), code=64, words=("positive number of seconds",)),
    "timeout-nan": Case(args=("--timeout", "nan"), code=64, words=("positive number of seconds",)),
    "request-timeout-text": Case(args=("--request-timeout", "soon"), code=64, words=("not a number of seconds",)),
    "retries-zero": Case(args=("--retries", "0"), code=64, words=("must be at least 1",)),
    "seed-not-a-number": Case(args=("--seed", "abc"), code=64, words=("invalid int value",)),
    "unknown-option": Case(args=("--bogus",), code=64, words=("unrecognized arguments",)),
    "set-without-equals": Case(args=("--set", "3.steps"), code=64, words=("--set expects NODE.input=value",)),
    "set-unknown-node": Case(args=("--set", "Nope.x=1"), code=64, words=("no node has id or title 'Nope'",)),
    "set-unknown-input": Case(args=("--set", "3.cfgg=1"), code=64, words=("has no input 'cfgg'",)),
    "prompt-without-node": Case(workflow={"1": {"class_type": "X", "inputs": {}}}, args=("--prompt", "x"), code=64,
                                words=("--prompt matches nothing",)),
    "image-missing": Case(workflow={**WORKFLOW, "1": {"class_type": "LoadImage", "inputs": {"image": "a.png"},
                                                      "_meta": {"title": "Input Image"}}},
                          args=("--image", "absent.png"), code=64, words=("does not exist",)),
    "out-is-a-file": Case(args=("--out", "afile"), setup="afile", code=64, words=("not a folder",)),
    "out-below-a-file": Case(args=("--out", "afile/sub"), setup="afile", code=64, words=("not a folder",)),
    "out-broken-link": Case(args=("--out", "dangling"), setup="dangling", code=64, words=("broken link",)),
    # an unresponsive server
    "object-info-never-answers": Case(workflow=EDITOR, scenario=scenario(hang={"/object_info"}), code=6,
                                      words=("did not answer GET /object_info within 0.3 s", "--request-timeout")),
    "websocket-never-answers": Case(scenario=scenario(hang={"/ws"}), code=6,
                                    words=("did not answer the websocket handshake",)),
    "prompt-never-answers": Case(scenario=scenario(hang={"/prompt"}), code=6, words=("did not answer POST /prompt",)),
    "history-never-answers": Case(scenario=scenario(hang={f"/history/{PID}"}), code=6,
                                  words=(f"GET /history/{PID}",)),
    "view-never-answers": Case(scenario=scenario(hang={"/view"}), code=3,
                               words=("1 output(s) were not saved", "did not answer GET /view")),
    # answers of the wrong shape
    "object-info-answer-list": Case(workflow=EDITOR, scenario=Scenario(object_info=[1]), code=3,
                                    words=("GET /object_info", "answered a list")),
    "prompt-answer-list": Case(scenario=scenario(prompt_reply=(200, [PID])), code=3, words=("without a prompt id",)),
    "prompt-id-object": Case(scenario=scenario(prompt_reply=(200, {"prompt_id": {"a": 1}})), code=3,
                             words=("without a prompt id",)),
    "prompt-500": Case(scenario=scenario(prompt_reply=(500, {"x": 1})), code=3, words=("HTTP 500",)),
    "validation-node-errors-list": Case(scenario=scenario(prompt_reply=(400, {"error": "bad", "node_errors": [1]})),
                                        code=2, words=("rejected the prompt: bad",)),
    "validation-body-string": Case(scenario=scenario(prompt_reply=(400, "nope")), code=2,
                                   words=("rejected the prompt",)),
    "validation-errors-not-objects": Case(scenario=scenario(prompt_reply=(400, {
        "error": {"message": "m"}, "node_errors": {"3": {"errors": ["x", 5]}}})), code=2, words=("node 3",)),
    "history-answer-list": Case(scenario=scenario(history_body=[1, 2]), code=3,
                                words=(f"GET /history/{PID}", "answered a list")),
    "history-entry-string": Case(scenario=scenario(history_body={PID: "done"}), code=3, words=("answered a string",)),
    "history-status-garbage": Case(scenario=scenario(history_body={PID: {"status": [1], "outputs": {}}}), code=0),
    "history-outputs-list": Case(scenario=scenario(outputs=[1, 2]), code=3, words=("outputs", "not an object")),
    "history-node-output-list": Case(scenario=scenario(outputs={"6": ["clip.mp4"]}), code=3,
                                     words=("node 6", "not an object")),
    "output-filename-list": Case(scenario=scenario(outputs={"6": {"images": [item(["a"])]}}), code=3,
                                 words=("not strings",)),
    "event-data-list": Case(scenario=scenario(steps=run_steps(Text({"type": "executing", "data": [1]}))), code=0,
                            saved=("clip.mp4",)),
    "event-json-list": Case(scenario=scenario(steps=run_steps(Raw("[1, 2]"))), code=0, saved=("clip.mp4",)),
    "event-not-json": Case(scenario=scenario(steps=run_steps(Raw("{oops"))), code=0, saved=("clip.mp4",)),
    "event-type-missing": Case(scenario=scenario(steps=run_steps(Raw('{"data": {}}'))), code=0, saved=("clip.mp4",)),
    "progress-strings": Case(scenario=scenario(steps=run_steps(Text(messages.event(
        "progress", value="a", max="b", prompt_id=PID, node="3")))), code=0, saved=("clip.mp4",)),
    "progress-in-bytes": Case(scenario=scenario(steps=run_steps(Text(messages.progress(PID, "3", 2592, 3697964)),
                                                                Text(messages.progress(PID, "3", 3697964, 3697964)))),
                              code=0, words=("loaded 3.7/3.7 MB",)),
    "cached-nodes-string": Case(scenario=scenario(steps=run_steps(Text(messages.event(
        "execution_cached", nodes="all", prompt_id=PID)))), code=0, saved=("clip.mp4",)),
    "error-fields-wrong-types": Case(scenario=scenario(steps=[Text(messages.event(
        "execution_error", prompt_id=PID, node_id=["3"], exception_message=5, traceback="line1\nline2"))]),
        code=3, words=("Execution failed", "5")),
    "interrupted-node-object": Case(scenario=scenario(steps=[Text(messages.event(
        "execution_interrupted", prompt_id=PID, node_id={"x": 1}))]), code=4, words=("interrupted on the server",)),
    "upload-answer-name-list": Case(workflow={**WORKFLOW, "1": {"class_type": "LoadImage", "inputs": {"image": "a"},
                                                                "_meta": {"title": "Input Image"}}},
                                    args=("--image", "cat.png"), setup="image",
                                    scenario=scenario(upload_reply={"name": ["x"]}), code=3, words=("Uploading",)),
    "upload-echo-escaping-name": Case(workflow={**WORKFLOW, "1": {"class_type": "LoadImage", "inputs": {"image": "a"},
                                                                  "_meta": {"title": "Input Image"}}},
                                      args=("--image", "cat.png"), setup="image",
                                      scenario=scenario(upload_reply={"name": "../../escape.png",
                                                                      "subfolder": "../.."}),
                                      code=0, saved=("clip.mp4",)),
    # previews: the server's node id must not steer the file name
    "preview-node-id-escaping": Case(args=("--previews",), scenario=scenario(steps=run_steps(Binary(
        messages.preview_with_metadata(b"\x89PNG", {"node_id": "../../../escape", "prompt_id": PID,
                                                    "image_type": "image/png"})))), code=0, saved=("clip.mp4",)),
    "preview-node-id-absolute": Case(args=("--previews",), scenario=scenario(steps=run_steps(Binary(
        messages.preview_with_metadata(b"x", {"node_id": "/tmp/escape", "prompt_id": PID})))), code=0),
    "preview-metadata-list": Case(args=("--previews",), scenario=scenario(steps=run_steps(Binary(
        messages.preview_with_metadata(b"x", [1, 2])))), code=0, saved=("clip.mp4",)),
    "preview-image-type-list": Case(args=("--previews",), scenario=scenario(steps=run_steps(Binary(
        messages.preview_with_metadata(b"x", {"image_type": [1], "prompt_id": PID, "node_id": 3})))), code=0,
        saved=("previews/preview_00000_node3.bin",)),
    "binary-frame-truncated": Case(args=("--previews",), scenario=scenario(steps=run_steps(Binary(b"\x00\x00\x00"))),
                                   code=0, saved=("clip.mp4",)),
    # outputs the server names: never outside --out, never dropped
    "output-parent-filename": Case(scenario=scenario(outputs={"6": {"images": [item("../escape.png"), item("ok.png")]}},
                                                     files={("output", "", "ok.png"): b"ok"}),
                                   code=3, words=("outside the output folder",), saved=("ok.png",)),
    "output-parent-subfolder": Case(scenario=scenario(outputs={"6": {"images": [item("x.png", "../../..")]}}), code=3,
                                    words=("outside the output folder",)),
    "output-absolute-filename": Case(scenario=scenario(outputs={"6": {"images": [item("/tmp/escape.png")]}}), code=3,
                                     words=("outside the output folder",)),
    "output-absolute-subfolder": Case(scenario=scenario(outputs={"6": {"images": [item("x.png", "/etc")]}}), code=3,
                                      words=("outside the output folder",)),
    "output-backslash": Case(scenario=scenario(outputs={"6": {"images": [item("..\\..\\x.png")]}}), code=3,
                             words=("outside the output folder",)),
    "output-nul": Case(scenario=scenario(outputs={"6": {"images": [item("x\0.png")]}}), code=3,
                       words=("outside the output folder",)),
    "output-empty-name": Case(scenario=scenario(outputs={"6": {"images": [item("")]}}), code=3,
                              words=("outside the output folder",)),
    "output-subfolder-symlink-out": Case(setup="link-out", scenario=scenario(outputs={"6": {"images": [
        item("x.png", "link")]}}), code=3, words=("outside the output folder",)),
    "output-same-name-two-types": Case(scenario=scenario(
        outputs={"6": {"images": [item("a.png"), item("a.png", "", "temp")]}},
        files={("output", "", "a.png"): b"1", ("temp", "", "a.png"): b"2"}), code=0, saved=("a.png", "a_1.png")),
    "output-listed-twice": Case(scenario=scenario(outputs={"6": {"videos": [item("clip.mp4")]},
                                                           "7": {"videos": [item("clip.mp4")]}}), code=0,
                                saved=("clip.mp4",)),
    "output-latents": Case(scenario=scenario(outputs={"9": {"latents": [item("l.latent", "latents")]}},
                                             files={("output", "latents", "l.latent"): b"LATENT"}),
                           code=0, saved=("latents/l.latent",)),
    "output-unknown-key": Case(scenario=scenario(outputs={"9": {"3d": [item("m.glb")]}},
                                                 files={("output", "", "m.glb"): b"glTF"}), code=0, saved=("m.glb",)),
    "output-404-among-good": Case(scenario=scenario(outputs={"6": {"images": [item("gone.png"), item("clip.mp4")]}}),
                                  code=3, words=("gone.png", "404"), saved=("clip.mp4",)),
    "output-name-exists-locally": Case(setup="old-clip", scenario=scenario(), code=0,
                                       saved=("clip.mp4", "clip_1.mp4")),
    "output-subfolder-is-a-file": Case(setup="file-in-out", scenario=scenario(outputs={"6": {"images": [
        item("x.png", "taken"), item("clip.mp4")]}}), code=3, words=("could not be written",), saved=("clip.mp4",)),
}


def prepare(tmp_path: Path, case: Case) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    workflow = work / "workflow.json"
    workflow.write_bytes(case.workflow_bytes if case.workflow_bytes is not None else json.dumps(case.workflow).encode())
    (work / "info.json").write_text(json.dumps(OBJECT_INFO))
    (work / "list.json").write_text("[1, 2]")
    out = tmp_path / "out"
    if case.setup == "afile":
        (work / "afile").write_text("x")
    elif case.setup == "dangling":
        (work / "dangling").symlink_to(work / "nowhere")
    elif case.setup == "image":
        (work / "cat.png").write_bytes(b"\x89PNG")
    elif case.setup == "link-out":
        out.mkdir()
        (tmp_path / "elsewhere").mkdir()
        (out / "link").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    elif case.setup == "old-clip":
        out.mkdir()
        (out / "clip.mp4").write_bytes(b"an earlier run")
    elif case.setup == "file-in-out":
        out.mkdir()
        (out / "taken").write_text("a file where the server wants a folder")
    return work


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def argv_for(case: Case, work: Path, out: Path, url: str) -> list[str]:
    args = list(case.args)
    workflow = str(work / "workflow.json")
    if "--workflow-path" in args:
        at = args.index("--workflow-path")
        workflow = str(work / args[at + 1])
        del args[at:at + 2]
    for flag in ("--object-info", "--image", "--out"):
        if flag in args:
            at = args.index(flag) + 1
            args[at] = str(work / args[at])
    if "--server" not in args:
        args += ["--server", url]
    if "--out" not in args:
        args += ["--out", str(out)]
    patience = [] if os.environ.get("BAD_INPUTS_BEFORE") else ["--request-timeout", "0.3"]  # see INTEGRATION.md
    return ["run", workflow, *args, "--retries", "2", "--retry-delay", "0.01", *patience, "--stall-timeout", "2"]


@pytest.mark.parametrize("name", CASES)
def test_run_bad_input(name, tmp_path, caplog, capsys, monkeypatch):
    case = CASES[name]
    work = prepare(tmp_path, case)
    out = tmp_path / "out"
    monkeypatch.chdir(work)
    if case.scenario is None:
        tried = attempt(lambda: main(argv_for(case, work, out, f"http://127.0.0.1:{unused_port()}")), tmp_path,
                        caplog, capsys)
    else:
        with FakeComfy(case.scenario, lifetime=15) as fake:
            tried = attempt(lambda: main(argv_for(case, work, out, fake.url)), tmp_path, caplog, capsys)
    tried.judge(case.code, case.words, allowed=(out,))
    missing = [name for name in case.saved if not (out / name).is_file()]
    assert not missing, f"LOST: {missing} not saved in --out"
    if case.setup == "old-clip":
        assert (out / "clip.mp4").read_bytes() == b"an earlier run", "LOST: an earlier output was overwritten"


def test_queue_of_the_wrong_shape_after_a_drop(tmp_path, caplog, capsys):
    from fake_comfy import Drop, Pause

    steps = [Text(messages.execution_start(PID)), Drop(), Pause(0.2), Text(messages.execution_success(PID))]
    out = tmp_path / "out"
    work = prepare(tmp_path, Case())
    with FakeComfy(Scenario(steps=steps, queue_body=[["x"]]), lifetime=15) as fake:
        tried = attempt(lambda: main(argv_for(Case(), work, out, fake.url)), tmp_path, caplog, capsys)
    tried.judge(3, ("GET /queue", "answered a list"), allowed=(out,))


def test_hostile_server_cannot_place_a_file_outside_out(tmp_path, caplog, capsys):
    """Every name a server controls at once (outputs, subfolders, previews, upload echoes): only --out grows."""
    escaping = ["../x", "../../x", "/tmp/x", "..\\x", "a/../../x", "./../x", "x/../../../y"]
    outputs = {"6": {"images": [item(name) for name in escaping] + [item("f.png", name) for name in escaping]
                     + [item("ok.png", "sub/deeper")]}}
    previews = [Binary(messages.preview_with_metadata(b"p", {"node_id": name, "prompt_id": PID}))
                for name in escaping]
    workflow = {**WORKFLOW,
                "1": {"class_type": "LoadImage", "inputs": {"image": "a"}, "_meta": {"title": "Input Image"}}}
    case = Case(workflow=workflow, args=("--image", "cat.png", "--previews"), setup="image")
    work = prepare(tmp_path, case)
    out = tmp_path / "out"
    hostile = Scenario(steps=run_steps(*previews), outputs=outputs, files={("output", "sub/deeper", "ok.png"): b"ok"},
                       upload_reply={"name": "../../../x", "subfolder": "/etc"})
    with FakeComfy(hostile, lifetime=15) as fake:
        tried = attempt(lambda: main(argv_for(case, work, out, fake.url)), tmp_path, caplog, capsys)
    tried.judge(3, ("14 output(s) were not saved", "outside the output folder"), allowed=(out,))
    assert (out / "sub" / "deeper" / "ok.png").read_bytes() == b"ok"
    assert len(list((out / "previews").iterdir())) == len(escaping)
    assert all(p.is_relative_to(out) for p in files_under(tmp_path) - files_under(work))
