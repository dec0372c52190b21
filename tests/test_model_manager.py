"""VideosDGX models inside ComfyUI's model management (the stand-in follows core's comfy.model_management):
registered on load, released by "Unload models", evicted when memory is needed, reloaded with progress on use."""

from __future__ import annotations

import gc
import sys
import weakref
from types import SimpleNamespace

import pytest
import torch

from videosdgx.runtime.model_files import resident_weight_bytes, weights_dropped
from videosdgx.testing.wan import write_wan_models


@pytest.fixture(scope="module")
def comfy(comfy_pack, tmp_path_factory):
    base = tmp_path_factory.mktemp("comfyui")
    write_wan_models("wan2.1-t2v-1.3b", base / "models")
    comfy_pack.folder_paths.set_base(base)
    yield comfy_pack
    comfy_pack.model_management.current_loaded_models.clear()


@pytest.fixture()
def mm(comfy):
    mm = comfy.model_management
    mm.current_loaded_models.clear()
    mm.memory_budget = 1 << 50
    comfy.utils.updates.clear()
    yield mm
    mm.memory_budget = 1 << 50


def run(comfy, node_id: str, **inputs):
    return comfy.nodes[node_id].execute(**inputs).args


def load(comfy):
    model, = run(comfy, "VideosDGXWanModelLoader", model_name="wan2.1_t2v_1.3B_fp16.safetensors",
                 low_noise_model="none", weight_dtype="default", weight_format="default")
    text_encoder, = run(comfy, "VideosDGXWanTextEncoderLoader",
                        text_encoder_name="umt5_xxl_fp8_e4m3fn_scaled.safetensors")
    vae, = run(comfy, "VideosDGXWanVAELoader", vae_name="wan_2.1_vae.safetensors")
    return model, text_encoder, vae


def modules(model, text_encoder, vae) -> list[torch.nn.Module]:
    return [model.models[0], text_encoder.encoder, vae]


def registered(mm) -> list[torch.nn.Module]:
    return [entry.model.module for entry in mm.current_loaded_models]


def video(comfy, model, text_encoder, vae) -> torch.Tensor:
    conditioning, = run(comfy, "VideosDGXWanTextEncode", text_encoder=text_encoder, prompt="a fox", negative_prompt="")
    latent, = run(comfy, "VideosDGXWanEmptyLatent", width=16, height=16, length=5, latent_channels="16")
    sampled, = run(comfy, "VideosDGXWanSampler", model=model, conditioning=conditioning, latent=latent, seed=3,
                   steps=2, cfg=4.0, cfg_low_noise=3.0, shift=5.0, sampler="euler", denoise=1.0)
    images, = run(comfy, "VideosDGXWanVAEDecode", latent=sampled, vae=vae)
    return images


def test_loaded_models_are_registered_with_the_model_manager(comfy, mm):
    loaded = modules(*load(comfy))
    assert all(any(m is r for r in registered(mm)) for m in loaded)
    sizes = {id(entry.model.module): entry.model_memory() for entry in mm.current_loaded_models}
    assert all(sizes[id(m)] == resident_weight_bytes(m) > 0 for m in loaded)
    assert mm.current_loaded_models[0].model.module is loaded[-1]  # most recently loaded first, as in core


def test_unload_models_releases_them_and_the_next_run_reloads_them_with_progress(comfy, mm):
    outputs = load(comfy)
    loaded = modules(*outputs)
    sizes = [resident_weight_bytes(m) for m in loaded]
    first = video(comfy, *outputs)
    mm.unload_all_models()  # what POST /free {"unload_models": true} runs
    assert mm.current_loaded_models == []
    assert all(resident_weight_bytes(m) == 0 and all(p.is_meta for p in m.parameters()) for m in loaded)
    comfy.utils.updates.clear()
    again = video(comfy, *outputs)
    assert torch.equal(first, again)
    assert [resident_weight_bytes(m) for m in loaded] == sizes
    assert all(any(m is r for r in registered(mm)) for m in loaded)
    finished_byte_bars = [total for _, done, total in comfy.utils.updates if done == total > 10_000]
    assert len(finished_byte_bars) == 3  # each model streamed back from its file with a byte progress bar


def test_a_model_that_needs_room_evicts_others(comfy, mm):
    model, text_encoder, vae = load(comfy)
    dit, encoder = model.models[0], text_encoder.encoder
    held = sum(resident_weight_bytes(m) for m in (dit, encoder, vae))
    mm.memory_budget = held + resident_weight_bytes(dit) // 2
    mm.free_memory(resident_weight_bytes(dit), torch.device("cpu"))  # what core does before loading a model
    assert any(weights_dropped(m) for m in (dit, encoder, vae))
    assert mm.get_free_memory() >= resident_weight_bytes(dit)
    mm.memory_budget = 1 << 50
    video(comfy, model, text_encoder, vae)
    assert not any(weights_dropped(m) for m in (dit, encoder, vae))


def test_loading_makes_room_by_evicting_registered_models(comfy, mm):
    model, text_encoder, vae = load(comfy)
    held = [model.models[0], text_encoder.encoder, vae]
    mm.memory_budget = sum(resident_weight_bytes(m) for m in held) + mm.extra_reserved_memory()
    again, = run(comfy, "VideosDGXWanVAELoader", vae_name="wan_2.1_vae.safetensors")
    assert any(weights_dropped(m) for m in held)
    assert not weights_dropped(again) and any(again is r for r in registered(mm))


def manager(comfy):
    return sys.modules[f"{comfy.pack.__name__}.nodes._model_manager"]


def test_a_module_dropped_by_the_graph_leaves_the_model_manager(comfy, mm):
    vae, = run(comfy, "VideosDGXWanVAELoader", vae_name="wan_2.1_vae.safetensors")
    assert len(mm.current_loaded_models) == 1
    del vae
    mm.cleanup_models()  # what core runs when a real model is freed: the entry is ours to remove
    assert len(mm.current_loaded_models) == 1 and mm.current_loaded_models[0].model_memory() == 0
    again, = run(comfy, "VideosDGXWanVAELoader", vae_name="wan_2.1_vae.safetensors")  # any call into the manager
    assert [entry.model.module for entry in mm.current_loaded_models] == [again]


def test_a_collection_in_the_middle_of_cores_loop_leaves_no_dead_entry(comfy, mm):
    """A module held only by garbage in a reference cycle is freed by whatever collection comes next, e.g. one that
    an allocation starts while core's `free_memory` walks its list (a CI run once failed on exactly that)."""
    vae, = run(comfy, "VideosDGXWanVAELoader", vae_name="wan_2.1_vae.safetensors")
    survivor, = run(comfy, "VideosDGXWanVAELoader", vae_name="wan_2.1_vae.safetensors")
    patcher, module = manager(comfy).patcher(vae), weakref.ref(vae)
    target, patcher_type = id(patcher), type(patcher)
    cycle = [vae]
    cycle.append(cycle)
    del vae, cycle
    loaded_size = patcher_type.loaded_size

    def loaded_size_then_collect(self):
        size = loaded_size(self)
        if id(self) == target:
            gc.collect()  # frees the module; and, once this call returns, anything only it held
        return size

    gc.disable()
    try:
        patcher_type.loaded_size = loaded_size_then_collect
        del patcher
        mm.unload_all_models()
    finally:
        patcher_type.loaded_size = loaded_size
        gc.enable()
    assert module() is None and mm.current_loaded_models == [] and weights_dropped(survivor)


def test_unified_memory_drops_weights_instead_of_offloading(comfy, monkeypatch):
    for unified, drops in ((True, True), (False, False)):
        monkeypatch.setattr(manager(comfy), "capabilities", lambda device: SimpleNamespace(unified_memory=unified))
        assert manager(comfy).evicting_drops_weights(torch.device("cuda")) is drops
    assert manager(comfy).evicting_drops_weights(torch.device("cpu"))
