"""Headless client against the fake ComfyUI server: every outcome, exit code and recovery path."""

import _thread
import argparse
import io
import json
import logging
import signal
import socket
import time
from pathlib import Path

import pytest
from fake_comfy import Binary, Call, Drop, FakeComfy, Pause, Scenario, Text, messages

from videosdgx.client.cli import add_run_arguments, run_from_args
from videosdgx.client.errors import (
    ExitCode,
    RunInterruptedError,
    RunTimeoutError,
    UnsafeOutputPathError,
    UsageError,
)
from videosdgx.client.frames import ProgressText, decode_binary
from videosdgx.client.overrides import Overrides, apply_assignments, plan_overrides
from videosdgx.client.progress import ProgressLine
from videosdgx.client.runner import RunSettings, run_workflow
from videosdgx.client.transport import RetryPolicy

PID = "prompt-1"
WORKFLOW = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "old.png"}, "_meta": {"title": "Input Image"}},
    "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]},
          "_meta": {"title": "Prompt"}},
    "3": {"class_type": "KSampler", "_meta": {"title": "Sampler"},
          "inputs": {"seed": 1, "steps": 20, "cfg": 6.0, "positive": ["2", 0], "latent_image": ["5", 0]}},
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "model.safetensors"},
          "_meta": {"title": "Load Checkpoint"}},
    "5": {"class_type": "EmptyHunyuanLatentVideo", "_meta": {"title": "Video Size"},
          "inputs": {"width": 832, "height": 480, "length": 81, "batch_size": 1}},
    "6": {"class_type": "SaveVideo", "inputs": {"video": ["3", 0], "filename_prefix": "out"}, "_meta": {"title": "Save"}},
}
OUTPUTS = {"6": {"videos": [{"filename": "clip.mp4", "subfolder": "run1", "type": "output"}],
                 "images": [{"filename": "frame.png", "subfolder": "", "type": "output"}],
                 "animated": [True]}}
FILES = {("output", "run1", "clip.mp4"): b"\x00\x00\x00\x18ftypmp42", ("output", "", "frame.png"): b"\x89PNG-frame"}


def settings(**changes) -> RunSettings:
    fields = dict(retry=RetryPolicy(attempts=3, initial_delay=0.01), stall_timeout=3.0, timeout=10.0,
                  history_wait=1.0, poll_interval=0.02, progress_stream=io.StringIO())
    return RunSettings(**{**fields, **changes})


def sampler_steps(count: int = 3) -> list:
    return [Text(messages.executing(PID, "3")),
            *[Text(messages.progress(PID, "3", value, count)) for value in range(1, count + 1)]]


def happy_steps() -> list:
    return [Text(messages.execution_start(PID)), Text(messages.execution_cached(PID, ["4"])),
            Text(messages.executing(PID, "2")), *sampler_steps(),
            Text(messages.executing(PID, "6")), Text(messages.executed(PID, "6", OUTPUTS["6"])),
            Text(messages.execution_success(PID))]


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    return run_from_args(parser.parse_args(list(argv)))


def write_workflow(tmp_path: Path, workflow: dict = WORKFLOW) -> Path:
    path = tmp_path / "workflow.json"
    path.write_text(json.dumps(workflow))
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_success_tracks_progress_per_node_and_downloads_every_output(tmp_path):
    run = settings()
    with FakeComfy(Scenario(steps=happy_steps(), outputs=OUTPUTS, files=FILES)) as fake:
        result = run_workflow(WORKFLOW, fake.url, tmp_path / "out", settings=run)
    out = (tmp_path / "out").resolve()
    assert result.prompt_id == PID
    assert result.outputs == [out / "frame.png", out / "run1" / "clip.mp4"]
    assert (out / "run1" / "clip.mp4").read_bytes() == FILES[("output", "run1", "clip.mp4")]
    assert (out / "frame.png").read_bytes() == FILES[("output", "", "frame.png")]
    assert result.cached_nodes == ["4"]
    assert fake.events[:2] == [f"ws:{fake.websocket_clients[0]}", "POST /prompt"]
    assert [prompt["client_id"] for prompt in fake.prompts] == fake.websocket_clients
    assert fake.prompts[0]["prompt"] == WORKFLOW
    lines = run.progress_stream.getvalue().splitlines()
    assert lines[0] == "1 node(s) cached"
    assert lines[1] == '[2/6] node 2 Prompt'
    assert lines[2] == "[3/6] node 3 Sampler"
    assert lines[3] == "[3/6] node 3 Sampler: step 1/3 [########----------------]  33%"
    assert lines[5] == "[3/6] node 3 Sampler: step 3/3 [########################] 100%"
    assert lines[6] == "[4/6] node 6 Save"


def test_progress_line_redraws_in_place_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    line = ProgressLine(2, terminal)
    line.node("3", "Sampler")
    line.step(1, 2)
    line.finish()
    assert terminal.getvalue() == ("\r[1/2] node 3 Sampler"
                                   "\r[1/2] node 3 Sampler: step 1/2 [############------------]  50%\n")


def test_cached_prompt_finishing_with_legacy_executing_null(tmp_path):
    steps = [Text(messages.execution_start(PID)), Text(messages.execution_cached(PID, ["2", "3", "4", "5", "6"])),
             Text(messages.executed(PID, "6", OUTPUTS["6"])), Text(messages.executing(PID, None))]
    with FakeComfy(Scenario(steps=steps, outputs=OUTPUTS, files=FILES)) as fake:
        result = run_workflow(WORKFLOW, fake.url, tmp_path, settings=settings())
    assert result.cached_nodes == ["2", "3", "4", "5", "6"]
    assert len(result.outputs) == 2


def test_events_of_other_prompts_are_ignored(tmp_path):
    other = "someone-else"
    steps = [Text(messages.execution_start(other)),
             Text(messages.execution_error(other, "3", "KSampler", "E", "x", [])),
             Text(messages.executing(other, None)), *happy_steps()]
    with FakeComfy(Scenario(steps=steps, outputs=OUTPUTS, files=FILES)) as fake:
        result = run_workflow(WORKFLOW, fake.url, tmp_path, settings=settings())
    assert result.prompt_id == PID and len(result.outputs) == 2


def test_validation_error_lists_each_node_error_and_exits_2(tmp_path, caplog):
    body = {
        "error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
                  "details": "", "extra_info": {}},
        "node_errors": {"3": {"class_type": "KSampler", "dependent_outputs": ["6"], "errors": [
            {"type": "value_bigger_than_max", "message": "Value 150 bigger than max of 100",
             "details": "steps", "extra_info": {}},
            {"type": "required_input_missing", "message": "Required input is missing", "details": "model",
             "extra_info": {}}]}},
    }
    with FakeComfy(Scenario(prompt_reply=(400, body))) as fake:
        code = cli(str(write_workflow(tmp_path)), "--server", fake.url, "--out", str(tmp_path / "out"),
                   "--retries", "2", "--retry-delay", "0.01")
    assert code == ExitCode.VALIDATION == 2
    assert len(fake.prompts) == 1
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.getMessage().splitlines() == [
        "The server rejected the prompt: Prompt outputs failed validation (prompt_outputs_failed_validation)",
        '  node 3 KSampler "Sampler":',
        "    - value_bigger_than_max: Value 150 bigger than max of 100 [steps]",
        "    - required_input_missing: Required input is missing [model]",
    ]
    assert not (tmp_path / "out").exists()


def test_execution_error_reports_node_exception_and_traceback_tail(tmp_path, caplog):
    traceback = [f"  File \"nodes.py\", line {n}, in frame_{n}\n" for n in range(12)] + ["RuntimeError: boom\n"]
    steps = [Text(messages.execution_start(PID)), *sampler_steps(),
             Text(messages.execution_error(PID, "3", "KSampler", "RuntimeError", "CUDA out of memory", traceback))]
    with FakeComfy(Scenario(steps=steps)) as fake:
        code = cli(str(write_workflow(tmp_path)), "--server", fake.url, "--out", str(tmp_path / "out"))
    assert code == ExitCode.EXECUTION == 3
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    lines = record.getMessage().splitlines()
    assert lines[0] == 'Execution failed in node 3 KSampler "Sampler": RuntimeError: CUDA out of memory'
    assert lines[1] == "Traceback (last 8 lines):"
    assert lines[2:] == [f'    File "nodes.py", line {n}, in frame_{n}' for n in range(5, 12)] + ["  RuntimeError: boom"]


def test_interrupted_on_the_server_exits_4(tmp_path, caplog):
    steps = [Text(messages.execution_start(PID)), *sampler_steps(1),
             Text(messages.execution_interrupted(PID, "3", "KSampler"))]
    with FakeComfy(Scenario(steps=steps)) as fake:
        code = cli(str(write_workflow(tmp_path)), "--server", fake.url, "--out", str(tmp_path / "out"))
    assert code == ExitCode.INTERRUPTED == 4
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.getMessage() == 'The prompt prompt-1 was interrupted on the server during node 3 KSampler "Sampler"'
    assert fake.interrupts == []


@pytest.fixture()
def ctrl_c_raises():
    """Python's own Ctrl-C handler, as in a terminal: a test runner started in the background inherits SIGINT
    ignored, and then `_thread.interrupt_main` does nothing."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_posts_interrupt_for_the_prompt(tmp_path, ctrl_c_raises):
    steps = [Text(messages.execution_start(PID)), *sampler_steps(1), Call(_thread.interrupt_main), Pause(5.0)]
    with FakeComfy(Scenario(steps=steps)) as fake:
        with pytest.raises(RunInterruptedError, match="asked the server to stop prompt prompt-1") as caught:
            run_workflow(WORKFLOW, fake.url, tmp_path, settings=settings(stall_timeout=4.0))
    assert caught.value.exit_code == ExitCode.INTERRUPTED
    assert fake.interrupts == [{"prompt_id": PID}]
    assert len(fake.prompts) == 1


def test_dropped_websocket_reconnects_with_same_client_and_never_resubmits(tmp_path):
    steps = [Text(messages.execution_start(PID)), Text(messages.executing(PID, "3")),
             Text(messages.progress(PID, "3", 1, 3)), Drop(), Pause(0.3),
             Text(messages.progress(PID, "3", 2, 3)), Text(messages.progress(PID, "3", 3, 3)),
             Text(messages.execution_success(PID))]
    run = settings()
    with FakeComfy(Scenario(steps=steps, outputs=OUTPUTS, files=FILES)) as fake:
        result = run_workflow(WORKFLOW, fake.url, tmp_path, settings=run)
    assert len(fake.prompts) == 1
    assert len(fake.websocket_clients) == 2
    assert fake.websocket_clients[0] == fake.websocket_clients[1] == fake.prompts[0]["client_id"]
    assert ("GET", "/queue") in fake.requests
    assert len(result.outputs) == 2
    assert "step 3/3" in run.progress_stream.getvalue()


def test_history_lagging_the_success_message_is_retried(tmp_path):
    with FakeComfy(Scenario(steps=happy_steps(), outputs=OUTPUTS, files=FILES, history_lag=3)) as fake:
        result = run_workflow(WORKFLOW, fake.url, tmp_path, settings=settings())
    assert fake.history_calls == 4
    assert len(result.outputs) == 2


def test_history_that_never_arrives_is_an_execution_error(tmp_path):
    with FakeComfy(Scenario(steps=happy_steps(), outputs=OUTPUTS, files=FILES, history_lag=10_000)) as fake:
        with pytest.raises(Exception, match=r"/history/prompt-1 stayed empty for 0.2 s") as caught:
            run_workflow(WORKFLOW, fake.url, tmp_path, settings=settings(history_wait=0.2))
    assert caught.value.exit_code == ExitCode.EXECUTION


@pytest.mark.parametrize(("subfolder", "filename"), [
    ("", "../escape.png"), ("../..", "escape.png"), ("", "/tmp/escape.png"), ("/abs", "escape.png"),
    ("sub", "..\\escape.png"), ("", ""),
])
def test_output_paths_escaping_the_folder_are_refused(tmp_path, subfolder, filename):
    outputs = {"6": {"images": [{"filename": "fine.png", "subfolder": "", "type": "output"},
                                {"filename": filename, "subfolder": subfolder, "type": "output"}]}}
    files = {("output", "", "fine.png"): b"ok", ("output", subfolder, filename): b"evil"}
    out = tmp_path / "deep" / "out"
    with FakeComfy(Scenario(steps=happy_steps(), outputs=outputs, files=files)) as fake:
        with pytest.raises(UnsafeOutputPathError, match="would be written outside the output folder") as caught:
            run_workflow(WORKFLOW, fake.url, out, settings=settings())
    assert caught.value.exit_code == ExitCode.EXECUTION
    assert "1 output(s) were not saved (1 saved in" in str(caught.value)
    assert [path for path in tmp_path.rglob("*") if path.is_file()] == [out / "fine.png"]  # the safe one is kept
    assert [request[1] for request in fake.requests if request[1].startswith("/view")] == [
        "/view?filename=fine.png&subfolder=&type=output"]


def test_output_through_a_symlink_leaving_the_folder_is_refused(tmp_path):
    out, outside = tmp_path / "out", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    (out / "link").symlink_to(outside, target_is_directory=True)
    outputs = {"6": {"gifs": [{"filename": "x.webp", "subfolder": "link", "type": "output"}]}}
    scenario = Scenario(steps=happy_steps(), outputs=outputs, files={("output", "link", "x.webp"): b"x"})
    with FakeComfy(scenario) as fake:
        with pytest.raises(UnsafeOutputPathError):
            run_workflow(WORKFLOW, fake.url, out, settings=settings())
    assert list(outside.iterdir()) == []


def test_binary_previews_saved_and_progress_text_logged(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="videosdgx.client")
    jpeg, png = b"\xff\xd8\xff-jpeg-1", b"\x89PNG-2"
    steps = [Text(messages.execution_start(PID)), Text(messages.executing(PID, "3")),
             Binary(messages.preview_image(jpeg, image_type=1)),
             Binary(messages.progress_text("3", "loading weights 40%")),
             Binary(messages.preview_with_metadata(png, {"node_id": "3", "prompt_id": PID,
                                                         "image_type": "image/png"})),
             Binary(messages.preview_with_metadata(b"x", {"node_id": "9", "prompt_id": "other",
                                                          "image_type": "image/png"})),
             Text(messages.execution_success(PID))]
    with FakeComfy(Scenario(steps=steps, outputs={}, files={})) as fake:
        result = run_workflow(WORKFLOW, fake.url, tmp_path, settings=settings(save_previews=True))
    previews = tmp_path / "previews"
    assert result.previews == [previews / "preview_00000_node3.jpg", previews / "preview_00001_node3.png"]
    assert [path.read_bytes() for path in result.previews] == [jpeg, png]
    assert sorted(previews.iterdir()) == result.previews
    assert fake.client_flags == [{"supports_preview_metadata": True}]
    assert "node 3: loading weights 40%" in [r.getMessage() for r in caplog.records]


def test_binary_frame_decoding():
    assert decode_binary(messages.progress_text("12", "hello")) == ProgressText("12", "hello")
    assert decode_binary(messages.preview_image(b"img", image_type=2)).extension == "png"
    assert decode_binary(b"\x00\x00\x00\x07\x00\x00\x00\x00") is None
    assert decode_binary(b"\x00\x00") is None


def test_unreachable_server_exits_5_after_bounded_retries_with_one_message(tmp_path, caplog):
    started = time.monotonic()
    code = cli(str(write_workflow(tmp_path)), "--server", f"http://127.0.0.1:{free_port()}",
               "--retries", "3", "--retry-delay", "0.01")
    assert code == ExitCode.UNREACHABLE == 5
    assert time.monotonic() - started < 5
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(errors) == 1
    assert errors[0].startswith("Cannot reach the ComfyUI server at http://127.0.0.1:")
    assert "after 3 attempts" in errors[0] and "--server" in errors[0]


def test_retry_policy_backs_off_exponentially_up_to_a_cap():
    assert RetryPolicy(attempts=6, initial_delay=0.5, factor=2.0, max_delay=4.0).delays() == [0.5, 1, 2, 4, 4]
    assert RetryPolicy(attempts=1).delays() == []


def test_stall_timeout_exits_6_and_says_what_was_last_seen(tmp_path, caplog):
    steps = [Text(messages.execution_start(PID)), Text(messages.executing(PID, "3")),
             Text(messages.progress(PID, "3", 7, 20)), Pause(5.0)]
    with FakeComfy(Scenario(steps=steps)) as fake:
        code = cli(str(write_workflow(tmp_path)), "--server", fake.url, "--out", str(tmp_path),
                   "--stall-timeout", "0.3")
    assert code == ExitCode.TIMEOUT == 6
    [message] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert message.startswith("No event from the server for 0.3 s (stall timeout). "
                              'Last seen: step 7/20 of node 3 (KSampler "Sampler"), 0.')
    assert message.endswith("Prompt prompt-1 may still be running on the server.")
    assert len(fake.prompts) == 1


def test_overall_timeout_while_events_keep_coming(tmp_path):
    steps = [Text(messages.execution_start(PID)), Text(messages.executing(PID, "3"))]
    for value in range(1, 60):
        steps += [Text(messages.progress(PID, "3", value, 60)), Pause(0.05)]
    with FakeComfy(Scenario(steps=steps)) as fake:
        with pytest.raises(RunTimeoutError, match=r"The run took longer than 0.4 s\. Last seen: step \d+/60 of node 3"):
            run_workflow(WORKFLOW, fake.url, tmp_path, settings=settings(timeout=0.4, stall_timeout=2.0))


def test_uploads_input_files_and_substitutes_the_returned_names(tmp_path):
    image, audio = tmp_path / "cat.png", tmp_path / "voice.wav"
    image.write_bytes(b"\x89PNG-cat")
    audio.write_bytes(b"RIFF-voice")
    workflow = {**WORKFLOW, "7": {"class_type": "LoadAudio", "inputs": {"audio": "a.wav"},
                                  "_meta": {"title": "Input Audio"}}}
    scenario = Scenario(steps=happy_steps(), outputs={}, upload_names={"cat.png": "cat (1).png"})
    with FakeComfy(scenario) as fake:
        run_workflow(workflow, fake.url, tmp_path / "out", Overrides(image=image, audio=audio), settings=settings())
    assert [(u["filename"], u["data"], u["type"]) for u in fake.uploads] == [
        ("cat.png", b"\x89PNG-cat", "input"), ("voice.wav", b"RIFF-voice", "input")]
    sent = fake.prompts[0]["prompt"]
    assert sent["1"]["inputs"]["image"] == "cat (1).png"
    assert sent["7"]["inputs"]["audio"] == "voice.wav"
    assert fake.events.index("POST /upload/image") < fake.events.index("POST /prompt")


def test_missing_upload_file_is_a_usage_error(tmp_path):
    code = cli(str(write_workflow(tmp_path)), "--server", f"http://127.0.0.1:{free_port()}",
               "--image", str(tmp_path / "absent.png"), "--retries", "1")
    assert code == ExitCode.USAGE == 64


def test_cli_overrides_reach_the_submitted_prompt(tmp_path):
    with FakeComfy(Scenario(steps=happy_steps(), outputs={})) as fake:
        code = cli(str(write_workflow(tmp_path)), "--server", fake.url, "--out", str(tmp_path / "out"),
                   "--prompt", "a dog", "--seed", "7", "--steps", "4", "--frames", "33",
                   "--set", "Sampler.cfg=3.5", "--set", "6.filename_prefix=run/clip", "--set", "4.ckpt_name=[1, 2]")
    assert code == ExitCode.SUCCESS
    sent = fake.prompts[0]["prompt"]
    assert sent["2"]["inputs"] == {"text": "a dog", "clip": ["4", 1]}
    assert (sent["3"]["inputs"]["seed"], sent["3"]["inputs"]["steps"], sent["3"]["inputs"]["cfg"]) == (7, 4, 3.5)
    assert sent["5"]["inputs"]["length"] == 33
    assert sent["6"]["inputs"]["filename_prefix"] == "run/clip"
    assert sent["4"]["inputs"]["ckpt_name"] == [1, 2]


def test_editor_workflow_is_converted_with_the_servers_object_info(tmp_path):
    object_info = {"SaveText": {"input": {"required": {"text": ["STRING", {}]}}, "input_order": {"required": ["text"]},
                                "display_name": "Save Text", "output": [], "output_node": True}}
    editor = {"version": 0.4, "links": [], "nodes": [
        {"id": 1, "type": "SaveText", "mode": 0, "inputs": [], "outputs": [], "widgets_values": ["hi"]}]}
    with FakeComfy(Scenario(steps=happy_steps(), object_info=object_info)) as fake:
        run_workflow(editor, fake.url, tmp_path, settings=settings())
    assert fake.prompts[0]["prompt"] == {
        "1": {"inputs": {"text": "hi"}, "class_type": "SaveText", "_meta": {"title": "Save Text"}}}
    assert ("GET", "/object_info") in fake.requests


def test_set_and_friendly_names_resolve_against_titles_and_ids():
    overrides = Overrides(sets=["3.cfg=7", "Video Size.batch_size=2", "Prompt.text=not json {"],
                          negative=None, width=640, height=360, seed=11)
    updated = apply_assignments(WORKFLOW, plan_overrides(WORKFLOW, overrides))
    assert updated["3"]["inputs"]["cfg"] == 7
    assert updated["5"]["inputs"] == {"width": 640, "height": 360, "length": 81, "batch_size": 2}
    assert updated["2"]["inputs"]["text"] == "not json {"
    assert updated["3"]["inputs"]["seed"] == 11
    assert WORKFLOW["3"]["inputs"]["cfg"] == 6.0


def test_size_falls_back_to_every_matching_input_without_a_video_size_node():
    workflow = {"1": {"class_type": "A", "inputs": {"width": 1, "num_frames": 5}, "_meta": {"title": "a"}},
                "2": {"class_type": "B", "inputs": {"width": 2, "frames": 9, "other": ["1", 0]}},
                "3": {"class_type": "C", "inputs": {"width": ["1", 0]}}}
    updated = apply_assignments(workflow, plan_overrides(workflow, Overrides(width=64, frames=17)))
    assert updated["1"]["inputs"] == {"width": 64, "num_frames": 17}
    assert updated["2"]["inputs"] == {"width": 64, "frames": 17, "other": ["1", 0]}
    assert updated["3"]["inputs"] == {"width": ["1", 0]}


@pytest.mark.parametrize(("overrides", "message"), [
    (Overrides(negative="blurry"), "--negative matches nothing: no node titled 'Negative Prompt' with an input "
                                   "text or prompt. Nodes in this workflow: 1: 'Input Image', 2: 'Prompt', "
                                   "3: 'Sampler', 4: 'Load Checkpoint', 5: 'Video Size', 6: 'Save'"),
    (Overrides(video=Path("v.mp4")), "--video matches nothing: no node titled 'Input Video'"),
    (Overrides(sets=["Nope.text=1"]), "--set: no node has id or title 'Nope'. Nodes in this workflow: 1: "),
    (Overrides(sets=["3.sampler=euler"]), "node 3 (Sampler) has no input 'sampler'; its inputs are: seed, steps, "
                                          "cfg, positive, latent_image"),
    (Overrides(sets=["3cfg=1"]), "--set expects NODE.input=value (NODE is a node id or title), got '3cfg=1'"),
    (Overrides(sets=["3.cfg"]), "--set expects NODE.input=value"),
])
def test_override_errors_say_what_is_wrong(overrides, message):
    with pytest.raises(UsageError) as caught:
        plan_overrides(WORKFLOW, overrides)
    assert message in str(caught.value)
    assert caught.value.exit_code == ExitCode.USAGE


def test_ambiguous_title_and_missing_friendly_targets():
    workflow = {"1": {"class_type": "A", "inputs": {"x": 1}, "_meta": {"title": "Twin"}},
                "2": {"class_type": "A", "inputs": {"x": 2}, "_meta": {"title": "Twin"}}}
    with pytest.raises(UsageError, match="the title 'Twin' is used by nodes 1, 2; use a node id"):
        plan_overrides(workflow, Overrides(sets=["Twin.x=3"]))
    with pytest.raises(UsageError, match="--seed matches nothing: no node has an input named seed or noise_seed"):
        plan_overrides(workflow, Overrides(seed=1))
    with pytest.raises(UsageError, match="--frames matches nothing: no node has an input named length or "
                                         "num_frames or frames"):
        plan_overrides(workflow, Overrides(frames=9))


def test_bad_workflow_file_and_bad_server_url_are_usage_errors(tmp_path, caplog):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert cli(str(broken)) == ExitCode.USAGE
    assert cli(str(tmp_path / "missing.json")) == ExitCode.USAGE
    assert cli(str(write_workflow(tmp_path)), "--server", "ftp://host") == ExitCode.USAGE
    messages_ = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert messages_[0].startswith(f"The workflow file {broken} is not valid JSON")
    assert messages_[1].startswith(f"Cannot read the workflow file {tmp_path / 'missing.json'}")
    assert messages_[2] == "Server URL 'ftp://host' is not an http(s) URL such as http://127.0.0.1:8188"


def test_negative_resolves_to_the_prompt_node_of_shipped_workflows():
    import json
    from pathlib import Path

    from videosdgx.client.overrides import Overrides, apply_assignments, plan_overrides

    workflow = json.loads((Path(__file__).parent.parent / "workflows/api/wan2.1-t2v-1.3b.json").read_text())
    updated = apply_assignments(workflow, plan_overrides(workflow, Overrides(prompt="a fox", negative="blurry")))
    prompt_nodes = [n for n in updated.values() if n.get("_meta", {}).get("title") == "Prompt"]
    assert [(n["inputs"]["prompt"], n["inputs"]["negative_prompt"]) for n in prompt_nodes] == [("a fox", "blurry")]


def test_node_text_outputs_reach_the_log(caplog):
    """A node's text output (the sizes a VideosDGX node rounded) is shown to the headless user."""
    import logging

    from videosdgx.client.progress import ProgressLine
    from videosdgx.client.tracker import JobTracker

    workflow = {"5": {"class_type": "VideosDGXWanEmptyLatent", "_meta": {"title": "Video Size"}}}
    tracker = JobTracker("p1", workflow, ProgressLine(1))
    with caplog.at_level(logging.WARNING):
        tracker.handle({"type": "executed", "data": {"prompt_id": "p1", "node": "5", "output": {
            "text": ["size 840x480 is not a multiple of 16; using 832x480"]}}})
    assert 'node 5 (VideosDGXWanEmptyLatent "Video Size"): size 840x480 is not a multiple of 16; using 832x480' in \
        caplog.messages
