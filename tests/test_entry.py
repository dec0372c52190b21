"""The pack's root module as ComfyUI loads it: without ComfyUI, inside it, and under a path-derived name."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO, STUB, comfy_module_name

CORE_NODES = json.loads((Path(__file__).parent / "core_object_info.json").read_text())
WAN_NODE_IDS = {
    "VideosDGXWanModelLoader", "VideosDGXWanTextEncoderLoader", "VideosDGXWanTextEncode", "VideosDGXWanVAELoader",
    "VideosDGXWanVAEEncode", "VideosDGXWanVAEDecode", "VideosDGXWanCLIPVisionLoader", "VideosDGXWanEmptyLatent",
    "VideosDGXWanImageToVideo", "VideosDGXWanSampler", "VideosDGXWanLoraLoader",
}
LTX2_NODE_IDS = {
    "VideosDGXLTX2Loader", "VideosDGXLTX2TextEncoderLoader", "VideosDGXLTX2TextEncode", "VideosDGXLTX2VAELoader",
    "VideosDGXLTX2AudioVAELoader", "VideosDGXLTX2UpsamplerLoader", "VideosDGXLTX2Sampler", "VideosDGXLTX2Decode",
    "VideosDGXLTX25TextEncoderLoader", "VideosDGXLTX25VideoDecoderLoader", "VideosDGXLTX25DurationHeadLoader",
    "VideosDGXLTX25Length", "VideosDGXLTX25Decode",
}
MAGI1_NODE_IDS = {
    "VideosDGXMagiModelLoader", "VideosDGXMagiTextEncoderLoader", "VideosDGXMagiVAELoader", "VideosDGXMagiTextEncode",
    "VideosDGXMagiChunkSampler",
}
UPDATE_LINE = ("VideosDGX needs ComfyUI >= 0.3.60 with the V3 node API (comfy_api.latest); update ComfyUI. "
               "The VideosDGX nodes are not loaded.")
SKYREELS_NODE_IDS = {"VideosDGXSkyReelsModelLoader", "VideosDGXSkyReelsReferenceToVideo", "VideosDGXSkyReelsExtendVideo",
                     "VideosDGXSkyReelsAudioEncoderLoader", "VideosDGXSkyReelsTalkingAvatar"}
NODE_IDS = WAN_NODE_IDS | LTX2_NODE_IDS | MAGI1_NODE_IDS | SKYREELS_NODE_IDS


def run_python(code: str, *extra_path: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(str(p) for p in extra_path))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd="/",
                          timeout=120)


LOAD = """
import importlib.util, logging, sys
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
pack_dir = {pack_dir!r}
name = pack_dir.replace(".", "_x_")
spec = importlib.util.spec_from_file_location(name, pack_dir + "/__init__.py")
pack = importlib.util.module_from_spec(spec)
sys.modules[name] = pack
spec.loader.exec_module(pack)
"""


def test_without_comfyui_the_pack_imports_logs_one_line_and_loads_no_torch():
    code = LOAD.format(pack_dir=str(REPO)) + (
        "print(hasattr(pack, 'comfy_entrypoint'), hasattr(pack, 'NODE_CLASS_MAPPINGS'), 'torch' in sys.modules, "
        "'videosdgx' in sys.modules)"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False", "False", "False"]
    assert result.stderr.splitlines() == [f"WARNING VideosDGX: {UPDATE_LINE}"]


def test_entrypoint_lists_every_node_once_with_the_prefix(comfy_pack):
    assert not hasattr(comfy_pack.pack, "NODE_CLASS_MAPPINGS")
    assert asyncio.iscoroutinefunction(comfy_pack.pack.comfy_entrypoint)
    ids = [node.GET_SCHEMA().node_id for node in comfy_pack.node_list]
    assert isinstance(comfy_pack.node_list, list) and len(ids) == len(set(ids))
    assert set(ids) == NODE_IDS
    assert all(node_id.startswith("VideosDGX") for node_id in ids)
    assert not set(ids) & set(CORE_NODES)
    info = comfy_pack.nodes["VideosDGXWanSampler"].GET_SCHEMA().get_v1_info(comfy_pack.nodes["VideosDGXWanSampler"])
    assert info["python_module"] == f"custom_nodes.{REPO.name}" and info["display_name"] == "Wan Sampler (VideosDGX)"


def test_entrypoint_registers_latent_upscale_models_only_when_missing(comfy_pack, tmp_path):
    folder_paths = comfy_pack.folder_paths
    folder_paths.set_base(tmp_path)
    assert "latent_upscale_models" not in folder_paths.folder_names_and_paths
    asyncio.run(comfy_pack.pack.comfy_entrypoint())
    paths, extensions = folder_paths.folder_names_and_paths["latent_upscale_models"]
    assert paths == [str(tmp_path / "models" / "latent_upscale_models")] and ".safetensors" in extensions
    folder_paths.set_base(tmp_path, folders=("latent_upscale_models",))
    custom = str(tmp_path / "elsewhere")
    folder_paths.add_model_folder_path("latent_upscale_models", custom, is_default=True)
    asyncio.run(comfy_pack.pack.comfy_entrypoint())
    assert folder_paths.get_folder_paths("latent_upscale_models") == [
        custom, str(tmp_path / "models" / "latent_upscale_models")]


def test_pack_under_a_comfyui_module_name_finds_its_engine(tmp_path):
    pack_dir = tmp_path / "Comfy.UI" / "custom_nodes" / "VideosDGX.main"
    pack_dir.parent.mkdir(parents=True)
    pack_dir.symlink_to(REPO, target_is_directory=True)
    assert "_x_" in comfy_module_name(pack_dir)
    code = LOAD.format(pack_dir=str(pack_dir)) + (
        "import asyncio, videosdgx\n"
        "import folder_paths\n"
        f"folder_paths.set_base({str(tmp_path)!r})\n"
        "extension = asyncio.run(pack.comfy_entrypoint())\n"
        "nodes = asyncio.run(extension.get_node_list())\n"
        "from videosdgx.wan.variants import WAN_VARIANTS\n"
        "print(name)\n"
        "print(videosdgx.__file__)\n"
        "print(sorted({node.__module__.rsplit('.', 1)[0] for node in nodes}))\n"
        "print(len(nodes), len(WAN_VARIANTS), hasattr(__import__('torch'), 'xpu'))\n"
    )
    result = run_python(code, STUB)
    assert result.returncode == 0, result.stderr
    name, engine, modules, counts = result.stdout.splitlines()
    assert name == str(pack_dir).replace(".", "_x_")
    assert engine == str(pack_dir / "videosdgx" / "__init__.py")
    assert modules == repr([f"{name}.nodes"])
    from videosdgx.wan.variants import WAN_VARIANTS
    assert counts == f"{len(NODE_IDS)} {len(WAN_VARIANTS)} True"
    assert "needs ComfyUI" not in result.stderr
