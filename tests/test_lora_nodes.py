"""The Wan LoRA loader node and the sampler's custom sigma list inside the ComfyUI stand-in: a Lightning chain on
tiny files equals the engine run, leaves the cached weights untouched, and bad inputs get clear messages."""

from __future__ import annotations

import pytest
import torch

from videosdgx.runtime.errors import ConfigurationError, WrongComponentError
from videosdgx.testing.files import save_safetensors
from videosdgx.testing.lora import ltx2_lora_state
from videosdgx.testing.wan import write_wan_bundle
from videosdgx.wan.lightning import lightning_settings
from videosdgx.wan.lora import ExpertLora, expert_loras_applied, read_wan_lora
from videosdgx.wan.sampler import sample_wan

HIGH, LOW = (f"wan2.2_t2v_lightx2v_4steps_lora_v1.1_{n}_noise.safetensors" for n in ("high", "low"))
LIGHTNING = "1.0, 0.9375, 0.8333333333333334, 0.625, 0.0"


@pytest.fixture(scope="module")
def comfy(comfy_pack, tmp_path_factory):
    base = tmp_path_factory.mktemp("comfyui")
    write_wan_bundle("wan2.2-t2v-a14b-lightning", base / "models")
    save_safetensors(base / "models" / "loras" / "ltx2_lora.safetensors", ltx2_lora_state())
    comfy_pack.folder_paths.set_base(base)
    return comfy_pack


def run(comfy, node_id: str, **inputs):
    return comfy.nodes[node_id].execute(**inputs).args


def experts(comfy):
    model, = run(comfy, "VideosDGXWanModelLoader", model_name="wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors",
                 low_noise_model="wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors", weight_dtype="default",
                 weight_format="default")
    return model


def test_lightning_chain_equals_the_engine_and_keeps_weights(comfy):
    model = experts(comfy)
    with_high, = run(comfy, "VideosDGXWanLoraLoader", model=model, lora_name=HIGH, strength=1.0, expert="high_noise")
    with_pair, = run(comfy, "VideosDGXWanLoraLoader", model=with_high, lora_name=LOW, strength=1.0, expert="low_noise")
    assert model.loras == () and len(with_pair.loras) == 2
    text_encoder, = run(comfy, "VideosDGXWanTextEncoderLoader",
                        text_encoder_name="umt5_xxl_fp8_e4m3fn_scaled.safetensors")
    conditioning, = run(comfy, "VideosDGXWanTextEncode", text_encoder=text_encoder, prompt="a fox", negative_prompt="")
    latent = {"samples": torch.zeros(1, 16, 2, 4, 6)}
    before = {n: p.clone() for n, p in model.models[1].named_parameters()}
    out, = run(comfy, "VideosDGXWanSampler", model=with_pair, conditioning=conditioning, latent=latent, seed=5,
               steps=30, cfg=1.0, cfg_low_noise=1.0, shift=5.0, sampler="euler", denoise=1.0, sigmas=LIGHTNING)
    assert all(torch.equal(p, before[n]) for n, p in model.models[1].named_parameters())
    assert not any(hasattr(m, "lora_patch") for expert in model.models for m in expert.modules())
    folder = comfy.folder_paths.get_folder_paths("loras")[0]
    pair = [ExpertLora(read_wan_lora(f"{folder}/{name}"), 1.0, which) for name, which in ((HIGH, "high"), (LOW, "low"))]
    with expert_loras_applied(model.models, pair):
        expected = sample_wan(list(model.models), conditioning.text, (16, 2, 4, 6), lightning_settings(0.875, seed=5))
    torch.testing.assert_close(out["samples"], expected, rtol=0, atol=1e-6)


def test_bad_inputs(comfy):
    node, sampler = comfy.nodes["VideosDGXWanLoraLoader"], comfy.nodes["VideosDGXWanSampler"]
    assert "Model file 'style.safetensors' is not in loras" in node.validate_inputs(lora_name="style.safetensors")
    assert "expert 'middle' is not one of: all, high_noise, low_noise" in node.validate_inputs(lora_name=HIGH,
                                                                                              expert="middle")
    assert "custom sigma list must fall strictly" in sampler.validate_inputs(sigmas="1.0, 0.5")
    assert "is not a list of numbers" in sampler.validate_inputs(sigmas="1.0, half, 0")
    assert sampler.validate_inputs(sigmas="") is True and sampler.validate_inputs(sigmas=LIGHTNING) is True
    model = experts(comfy)
    with pytest.raises(WrongComponentError, match="ltx2_lora.safetensors is a LTX-2 .* not a Wan LoRA"):
        run(comfy, "VideosDGXWanLoraLoader", model=model, lora_name="ltx2_lora.safetensors", strength=1.0,
            expert="all")
    one = type(model)(model.models[:1], None, model.names[:1])
    with pytest.raises(ConfigurationError, match="a low-noise LoRA is for Wan2.2 A14B"):
        run(comfy, "VideosDGXWanLoraLoader", model=one, lora_name=LOW, strength=1.0, expert="low_noise")
