"""Editor-format -> API-format conversion against a hand-written /object_info, for both link formats."""

import pytest

from videosdgx.client.convert import is_api_format, read_links, to_api, widget_inputs
from videosdgx.client.errors import PromptValidationError, UsageError

OBJECT_INFO = {
    "CheckpointLoaderSimple": {
        "input": {"required": {"ckpt_name": [["a.safetensors", "model.safetensors"], {}]}},
        "input_order": {"required": ["ckpt_name"]},
        "output": ["MODEL", "CLIP", "VAE"], "display_name": "Load Checkpoint"},
    "CLIPTextEncode": {
        "input": {"required": {"text": ["STRING", {"multiline": True}], "clip": ["CLIP", {}]}},
        "input_order": {"required": ["text", "clip"]},
        "output": ["CONDITIONING"], "display_name": "CLIP Text Encode (Prompt)"},
    "KSampler": {
        "input": {"required": {
            "model": ["MODEL"], "seed": ["INT", {"default": 0, "control_after_generate": True}],
            "steps": ["INT", {"default": 20}], "cfg": ["FLOAT", {"default": 8.0}],
            "sampler_name": [["euler", "dpmpp_2m"]], "scheduler": [["normal", "karras"]],
            "positive": ["CONDITIONING"], "negative": ["CONDITIONING"], "latent_image": ["LATENT"],
            "denoise": ["FLOAT", {"default": 1.0}]}},
        "input_order": {"required": ["model", "seed", "steps", "cfg", "sampler_name", "scheduler", "positive",
                                     "negative", "latent_image", "denoise"]},
        "output": ["LATENT"], "display_name": "KSampler"},
    "EmptyLatentVideo": {
        "input": {"required": {"width": ["INT", {}], "height": ["INT", {}]},
                  "optional": {"fps": ["INT", {"forceInput": True}], "length": ["INT", {}], "hint": ["LATENT", {}]}},
        "input_order": {"required": ["width", "height"], "optional": ["fps", "length", "hint"]},
        "output": ["LATENT"], "display_name": "Empty Latent Video"},
    "LegacySeeded": {
        "input": {"required": {"noise_seed": ["INT", {}], "steps": ["INT", {}]}},
        "input_order": {"required": ["noise_seed", "steps"]}, "output": ["NOISE"], "display_name": "Legacy Seeded"},
    "PlainSeed": {
        "input": {"required": {"seed": ["INT", {"control_after_generate": False}], "steps": ["INT", {}]}},
        "input_order": {"required": ["seed", "steps"]}, "output": ["INT"], "display_name": "Plain Seed"},
    "NewCombo": {
        "input": {"required": {"mode": ["COMBO", {"options": ["a", "b"]}], "image": ["IMAGE"],
                               "strength": ["FLOAT", {}], "enabled": ["BOOLEAN", {}]}},
        "output": ["IMAGE"], "display_name": "New Combo"},
    "VAEDecode": {
        "input": {"required": {"samples": ["LATENT"], "vae": ["VAE"]}},
        "input_order": {"required": ["samples", "vae"]}, "output": ["IMAGE"], "display_name": "VAE Decode"},
    "ImageBlend": {
        "input": {"required": {"latent": ["LATENT"], "image": ["IMAGE"], "factor": ["FLOAT", {}]}},
        "input_order": {"required": ["latent", "image", "factor"]}, "output": ["IMAGE"], "display_name": "Blend"},
    "SaveImage": {
        "input": {"required": {"images": ["IMAGE"], "filename_prefix": ["STRING", {"default": "ComfyUI"}]}},
        "input_order": {"required": ["images", "filename_prefix"]}, "output": [], "output_node": True,
        "display_name": "Save Image"},
}


def editor(nodes: list[dict], links: list[tuple], version: str) -> dict:
    """An editor graph; links are (id, origin, origin_slot, target, target_slot, type)."""
    if version == "0.4":
        return {"version": 0.4, "last_node_id": 99, "last_link_id": 99, "nodes": nodes,
                "links": [list(link) for link in links], "groups": [], "config": {}, "extra": {}}
    keys = ("id", "origin_id", "origin_slot", "target_id", "target_slot", "type")
    return {"version": 1, "state": {"lastNodeId": 99, "lastLinkId": 99, "lastGroupid": 0, "lastRerouteId": 0},
            "nodes": nodes, "links": [dict(zip(keys, link)) for link in links], "reroutes": []}


def node(node_id: int, kind: str, widgets=None, inputs=(), mode: int = 0, title: str | None = None) -> dict:
    """An editor node; inputs are (name, type, link_id or None)."""
    entry = {"id": node_id, "type": kind, "pos": [0, 0], "size": [100, 50], "flags": {}, "order": node_id,
             "mode": mode, "properties": {"Node name for S&R": kind}, "outputs": [],
             "inputs": [{"name": name, "type": kind_, "link": link} for name, kind_, link in inputs]}
    if widgets is not None:
        entry["widgets_values"] = widgets
    if title is not None:
        entry["title"] = title
    return entry


@pytest.fixture(params=["0.4", "1.0"])
def version(request) -> str:
    return request.param


def test_widget_order_is_required_then_optional_without_socket_or_forced_inputs():
    assert widget_inputs(OBJECT_INFO["EmptyLatentVideo"]) == [("width", False), ("height", False), ("length", False)]
    assert widget_inputs(OBJECT_INFO["KSampler"]) == [
        ("seed", True), ("steps", False), ("cfg", False), ("sampler_name", False), ("scheduler", False),
        ("denoise", False)]
    assert widget_inputs(OBJECT_INFO["NewCombo"]) == [("mode", False), ("strength", False), ("enabled", False)]


def test_widgets_values_map_onto_widget_inputs(version):
    graph = editor([node(1, "EmptyLatentVideo", [832, 480, 81]), node(2, "NewCombo", ["b", 0.25, True])], [], version)
    api = to_api(graph, OBJECT_INFO)
    assert api["1"]["inputs"] == {"width": 832, "height": 480, "length": 81}
    assert api["2"]["inputs"] == {"mode": "b", "strength": 0.25, "enabled": True}


def test_control_after_generate_companion_value_is_skipped(version):
    graph = editor([
        node(1, "KSampler", [42, "fixed", 20, 7.5, "euler", "karras", 0.9]),
        node(2, "LegacySeeded", [99, "randomize", 8]),
        node(3, "PlainSeed", [5, 6]),
    ], [], version)
    api = to_api(graph, OBJECT_INFO)
    assert api["1"]["inputs"] == {"seed": 42, "steps": 20, "cfg": 7.5, "sampler_name": "euler",
                                  "scheduler": "karras", "denoise": 0.9}
    assert api["2"]["inputs"] == {"noise_seed": 99, "steps": 8}
    assert api["3"]["inputs"] == {"seed": 5, "steps": 6}


def test_links_become_source_id_and_output_index(version):
    graph = editor([
        node(1, "CheckpointLoaderSimple", ["model.safetensors"]),
        node(2, "CLIPTextEncode", ["a cat"], inputs=[("clip", "CLIP", 7)]),
        node(3, "VAEDecode", inputs=[("samples", "LATENT", None), ("vae", "VAE", 8)]),
    ], [(7, 1, 1, 2, 0, "CLIP"), (8, 1, 2, 3, 1, "VAE")], version)
    api = to_api(graph, OBJECT_INFO)
    assert api["2"]["inputs"] == {"text": "a cat", "clip": ["1", 1]}
    assert api["3"]["inputs"] == {"vae": ["1", 2]}


def test_both_link_formats_read_the_same():
    links = [(7, 1, 1, 2, 0, "CLIP")]
    assert read_links(editor([], links, "0.4")) == read_links(editor([], links, "1.0"))
    assert read_links(editor([], links, "0.4"))[7].origin_slot == 1


def test_reroutes_are_followed_to_the_real_source(version):
    graph = editor([
        node(1, "CheckpointLoaderSimple", ["model.safetensors"]),
        node(5, "Reroute", inputs=[("", "*", 1)]),
        node(6, "Reroute", inputs=[("", "*", 2)]),
        node(2, "CLIPTextEncode", ["text"], inputs=[("clip", "CLIP", 3)]),
    ], [(1, 1, 1, 5, 0, "CLIP"), (2, 5, 0, 6, 0, "CLIP"), (3, 6, 0, 2, 1, "CLIP")], version)
    api = to_api(graph, OBJECT_INFO)
    assert set(api) == {"1", "2"}
    assert api["2"]["inputs"]["clip"] == ["1", 1]


def test_primitive_values_are_inlined_into_their_targets(version):
    sampler = node(4, "KSampler", [0, "fixed", 20, 7.0, "euler", "normal", 1.0],
                   inputs=[("seed", "INT", 11), ("steps", "INT", 12)])
    sampler["inputs"][0]["widget"] = {"name": "seed"}
    graph = editor([
        node(9, "PrimitiveNode", [1234, "increment"]),
        node(10, "PrimitiveNode", [30]),
        sampler,
    ], [(11, 9, 0, 4, 0, "INT"), (12, 10, 0, 4, 1, "INT")], version)
    api = to_api(graph, OBJECT_INFO)
    assert set(api) == {"4"}
    assert api["4"]["inputs"]["seed"] == 1234
    assert api["4"]["inputs"]["steps"] == 30
    assert api["4"]["inputs"]["cfg"] == 7.0


def test_notes_and_muted_nodes_are_dropped_with_links_to_them(version):
    graph = editor([
        node(1, "CheckpointLoaderSimple", ["model.safetensors"]),
        node(2, "Note", ["remember this"]),
        node(3, "MarkdownNote", ["# heading"]),
        node(4, "VAEDecode", inputs=[("samples", "LATENT", None), ("vae", "VAE", 1)], mode=2),
        node(5, "SaveImage", ["kept"], inputs=[("images", "IMAGE", 2)]),
    ], [(1, 1, 2, 4, 1, "VAE"), (2, 4, 0, 5, 0, "IMAGE")], version)
    api = to_api(graph, OBJECT_INFO)
    assert set(api) == {"1", "5"}
    assert api["5"]["inputs"] == {"filename_prefix": "kept"}


def test_bypassed_nodes_are_rewired_to_their_input_of_the_same_type(version):
    graph = editor([
        node(1, "EmptyLatentVideo", [64, 64, 9]),
        node(2, "VAEDecode", inputs=[("samples", "LATENT", 1), ("vae", "VAE", None)]),
        node(3, "ImageBlend", [0.5], inputs=[("latent", "LATENT", 2), ("image", "IMAGE", 3)], mode=4),
        node(4, "NewCombo", ["a", 1.0, False], inputs=[("image", "IMAGE", 4)], mode=4),
        node(5, "SaveImage", ["out"], inputs=[("images", "IMAGE", 5)]),
    ], [(1, 1, 0, 2, 0, "LATENT"), (2, 1, 0, 3, 0, "LATENT"), (3, 2, 0, 3, 1, "IMAGE"),
        (4, 3, 0, 4, 0, "IMAGE"), (5, 4, 0, 5, 0, "IMAGE")], version)
    api = to_api(graph, OBJECT_INFO)
    assert set(api) == {"1", "2", "5"}
    assert api["5"]["inputs"] == {"images": ["2", 0], "filename_prefix": "out"}


def test_bypassed_node_without_an_input_of_that_type_drops_the_link(version):
    graph = editor([
        node(1, "EmptyLatentVideo", [64, 64, 9]),
        node(2, "VAEDecode", inputs=[("samples", "LATENT", 1), ("vae", "VAE", None)], mode=4),
        node(3, "SaveImage", ["out"], inputs=[("images", "IMAGE", 2)]),
    ], [(1, 1, 0, 2, 0, "LATENT"), (2, 2, 0, 3, 0, "IMAGE")], version)
    assert to_api(graph, OBJECT_INFO)["3"]["inputs"] == {"filename_prefix": "out"}


def test_titles_come_from_the_node_title_or_the_display_name(version):
    graph = editor([node(1, "CLIPTextEncode", ["x"], title="Prompt"), node(2, "CLIPTextEncode", ["y"])], [], version)
    api = to_api(graph, OBJECT_INFO)
    assert api["1"]["_meta"] == {"title": "Prompt"}
    assert api["2"]["_meta"] == {"title": "CLIP Text Encode (Prompt)"}
    assert api["1"]["class_type"] == "CLIPTextEncode"


def test_widgets_values_given_as_a_mapping(version):
    graph = editor([node(1, "EmptyLatentVideo", {"width": 320, "length": 17, "unrelated": 1})], [], version)
    assert to_api(graph, OBJECT_INFO)["1"]["inputs"] == {"width": 320, "length": 17}


def test_api_format_passes_through_unchanged():
    api = {"1": {"class_type": "SaveImage", "inputs": {"images": ["2", 0]}}}
    assert is_api_format(api)
    assert to_api(api, None) is api
    assert not is_api_format(editor([], [], "0.4"))


def test_unknown_node_types_are_reported_by_name(version):
    graph = editor([node(1, "WanVideoSampler", [1]), node(2, "MissingPack", []), node(3, "Note", ["n"])], [], version)
    with pytest.raises(PromptValidationError, match="does not know the node types MissingPack, WanVideoSampler"):
        to_api(graph, OBJECT_INFO)


def test_unusable_inputs_are_usage_errors():
    with pytest.raises(UsageError, match="neither API format"):
        to_api({"nodes_but_wrong": 1}, OBJECT_INFO)
    with pytest.raises(UsageError, match="needs /object_info"):
        to_api(editor([], [], "1.0"), None)


def test_full_graph_converts_identically_from_both_formats():
    nodes = [
        node(1, "CheckpointLoaderSimple", ["model.safetensors"]),
        node(2, "CLIPTextEncode", ["a cat"], inputs=[("clip", "CLIP", 1)], title="Prompt"),
        node(3, "CLIPTextEncode", ["blurry"], inputs=[("clip", "CLIP", 3)], title="Negative Prompt"),
        node(10, "Reroute", inputs=[("", "*", 2)]),
        node(5, "EmptyLatentVideo", [832, 480, 81], title="Video Size"),
        node(4, "KSampler", [42, "randomize", 20, 6.0, "euler", "normal", 1.0],
             inputs=[("model", "MODEL", 4), ("positive", "CONDITIONING", 5), ("negative", "CONDITIONING", 6),
                     ("latent_image", "LATENT", 7)], title="Sampler"),
        node(6, "VAEDecode", inputs=[("samples", "LATENT", 8), ("vae", "VAE", 9)]),
        node(7, "SaveImage", ["video/wan"], inputs=[("images", "IMAGE", 10)]),
        node(8, "Note", ["how to use"]),
    ]
    links = [(1, 1, 1, 2, 0, "CLIP"), (2, 1, 1, 10, 0, "CLIP"), (3, 10, 0, 3, 0, "CLIP"), (4, 1, 0, 4, 0, "MODEL"),
             (5, 2, 0, 4, 1, "CONDITIONING"), (6, 3, 0, 4, 2, "CONDITIONING"), (7, 5, 0, 4, 3, "LATENT"),
             (8, 4, 0, 6, 0, "LATENT"), (9, 1, 2, 6, 1, "VAE"), (10, 6, 0, 7, 0, "IMAGE")]
    expected = {
        "1": {"inputs": {"ckpt_name": "model.safetensors"}, "class_type": "CheckpointLoaderSimple",
              "_meta": {"title": "Load Checkpoint"}},
        "2": {"inputs": {"text": "a cat", "clip": ["1", 1]}, "class_type": "CLIPTextEncode",
              "_meta": {"title": "Prompt"}},
        "3": {"inputs": {"text": "blurry", "clip": ["1", 1]}, "class_type": "CLIPTextEncode",
              "_meta": {"title": "Negative Prompt"}},
        "5": {"inputs": {"width": 832, "height": 480, "length": 81}, "class_type": "EmptyLatentVideo",
              "_meta": {"title": "Video Size"}},
        "4": {"inputs": {"seed": 42, "steps": 20, "cfg": 6.0, "sampler_name": "euler", "scheduler": "normal",
                         "denoise": 1.0, "model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0],
                         "latent_image": ["5", 0]}, "class_type": "KSampler", "_meta": {"title": "Sampler"}},
        "6": {"inputs": {"samples": ["4", 0], "vae": ["1", 2]}, "class_type": "VAEDecode",
              "_meta": {"title": "VAE Decode"}},
        "7": {"inputs": {"filename_prefix": "video/wan", "images": ["6", 0]}, "class_type": "SaveImage",
              "_meta": {"title": "Save Image"}},
    }
    assert to_api(editor(nodes, links, "0.4"), OBJECT_INFO) == expected
    assert to_api(editor(nodes, links, "1.0"), OBJECT_INFO) == expected
