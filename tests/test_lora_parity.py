"""LoRA parity with diffusers (fp32, CPU, tiny Wan DiTs): each published layout applied by us vs diffusers' own
LoRA loading (`WanPipeline.load_lora_weights`, which converts the kohya / official / lightx2v layouts); strength 0,
stacking, image-branch skipping, exact removal.

diffusers needs `peft` to load LoRAs. Where peft is not installed, the reference is diffusers' own conversion
(`WanPipeline.lora_state_dict`) merged into the diffusers weights here (W += B @ A, b += lora_B.bias).
"""

import copy
import importlib.util
import logging

import pytest
import torch
from diffusers import WanPipeline
from safetensors.torch import load_file
from test_wan_transformer import IMAGE_DIM, TEXT_DIM, diffusers_twin, ours_from as _ours_from, tiny_config

from videosdgx.testing.files import save_safetensors
from videosdgx.testing.lora import FORMATS, wan_lora_state, write_wan_lora
from videosdgx.wan.lora import apply_wan_lora

def ours_from(reference, cfg):
    """Our twin on its own copy of the weights (the references below change theirs in place)."""
    return _ours_from(copy.deepcopy(reference), cfg)


HAS_PEFT = importlib.util.find_spec("peft") is not None
TOLERANCE = 1e-5


def inputs(cfg, batch: int = 2) -> dict:
    torch.manual_seed(1)
    x = torch.randn(batch, cfg.in_dim, 3, 6, 10)
    text = torch.randn(batch, 7, TEXT_DIM)
    clip_fea = torch.randn(batch, 257, IMAGE_DIM) if cfg.has_image_branch else None
    return dict(x=x, t=torch.tensor([812.5, 301.25][:batch]), text=text, clip_fea=clip_fea)


def reference_forward(model, data) -> torch.Tensor:
    text = torch.cat([data["text"], data["text"].new_zeros(data["text"].shape[0], 505, TEXT_DIM)], dim=1)
    with torch.no_grad():
        return model(data["x"], data["t"], text, encoder_hidden_states_image=data["clip_fea"], return_dict=False)[0]


def ours_forward(model, data) -> torch.Tensor:
    with torch.no_grad():
        return model(data["x"], data["t"], data["text"], clip_fea=data["clip_fea"])


def diffusers_with_loras(reference, loras: list[tuple[str, float]]):
    """`reference` with the LoRA files applied by diffusers at the given strengths."""
    if HAS_PEFT:
        pipe = WanPipeline(tokenizer=None, text_encoder=None, vae=None, scheduler=None, transformer=reference)
        names = []
        for i, (path, _) in enumerate(loras):
            pipe.load_lora_weights(str(path), adapter_name=f"lora{i}")
            names.append(f"lora{i}")
        pipe.set_adapters(names, [strength for _, strength in loras])
        return pipe.transformer
    with torch.no_grad():
        for path, strength in loras:
            state, metadata = WanPipeline.lora_state_dict(str(path), return_lora_metadata=True)
            config = {k.removeprefix("transformer."): v for k, v in (metadata or {}).items()}
            scale = config["lora_alpha"] / config["r"] if config else 1.0
            for key, down in state.items():
                if key.endswith(".lora_A.weight"):
                    name = key.removeprefix("transformer.").removesuffix(".lora_A.weight")
                    up = state[key.replace("lora_A", "lora_B")]
                    reference.get_submodule(name).weight += strength * scale * (up @ down)
                    if key.replace("lora_A.weight", "lora_B.bias") in state:
                        reference.get_submodule(name).bias += strength * state[key.replace("lora_A.weight",
                                                                                         "lora_B.bias")]
    return reference


def assert_relative(expected: torch.Tensor, actual: torch.Tensor, tolerance: float = TOLERANCE) -> float:
    error = ((actual - expected).abs().max() / expected.abs().max()).item()
    assert error <= tolerance, error
    return error


CASES = {"t2v": dict(model_type="t2v", num_heads=2, head_dim=32),
         "i2v-clip": dict(model_type="i2v", num_heads=3, head_dim=24, has_image_branch=True)}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("case", CASES)
def test_each_layout_matches_diffusers(tmp_path, fmt: str, case: str):
    cfg = tiny_config(**CASES[case])
    reference = diffusers_twin(cfg)
    ours = ours_from(reference, cfg)
    data = inputs(cfg)
    base = ours_forward(ours, data)
    path = write_wan_lora(tmp_path / f"{fmt}.safetensors", ours, fmt, rank=4, seed=3, alpha=2.0)
    apply_wan_lora(ours, path, strength=0.8)
    expected = reference_forward(diffusers_with_loras(reference, [(path, 0.8)]), data)
    out = ours_forward(ours, data)
    assert (expected - base).abs().max() > 0.05 * base.abs().max()  # the LoRA changes the output visibly
    assert_relative(expected, out)


def test_strength_zero_and_removal_are_exact(tmp_path):
    cfg = tiny_config(**CASES["t2v"])
    ours = ours_from(diffusers_twin(cfg), cfg)
    data = inputs(cfg)
    base = ours_forward(ours, data)
    path = write_wan_lora(tmp_path / "l.safetensors", ours, "lightx2v", norm_diffs="random")
    applied = apply_wan_lora(ours, path, strength=0.0)
    assert torch.equal(ours_forward(ours, data), base)
    applied.set_strength(1.0)
    assert not torch.allclose(ours_forward(ours, data), base)
    applied.remove()
    assert torch.equal(ours_forward(ours, data), base)
    assert not any(hasattr(m, "lora_patch") for m in ours.modules())


def test_two_loras_stack_as_their_merged_sum(tmp_path):
    cfg = tiny_config(**CASES["t2v"])
    reference = diffusers_twin(cfg)
    ours = ours_from(reference, cfg)
    data = inputs(cfg)
    first = write_wan_lora(tmp_path / "a.safetensors", ours, "official", seed=1)
    second = write_wan_lora(tmp_path / "b.safetensors", ours, "kohya", seed=2, rank=3, alpha=1.5)
    apply_wan_lora(ours, first, 0.7)
    apply_wan_lora(ours, second, -0.4)
    expected = reference_forward(diffusers_with_loras(reference, [(first, 0.7), (second, -0.4)]), data)
    assert_relative(expected, ours_forward(ours, data))


def test_wan21_i2v_lora_on_a_model_without_image_branch(tmp_path, caplog):
    """A Wan 2.1 I2V LoRA on Wan 2.2 I2V (no CLIP branch): the image-branch layers are skipped with one log line,
    the rest applies exactly as the same LoRA with those layers removed."""
    cfg21 = tiny_config("i2v", 2, 32, has_image_branch=True)
    cfg22 = tiny_config("i2v", 2, 32)
    full = write_wan_lora(tmp_path / "i2v21.safetensors", ours_from(diffusers_twin(cfg21), cfg21), "lightx2v")
    tensors = load_file(str(full))
    assert any("k_img" in k for k in tensors)
    without = save_safetensors(tmp_path / "plain.safetensors",
                               {k: v for k, v in tensors.items() if "_img" not in k})
    model, twin = (ours_from(diffusers_twin(cfg22), cfg22) for _ in range(2))
    data = inputs(cfg22)
    base = ours_forward(twin, data)
    with caplog.at_level(logging.INFO, logger="videosdgx.runtime.lora"):
        apply_wan_lora(model, full)
    skipped = [r for r in caplog.records if "skipping" in r.getMessage()]
    assert len(skipped) == 1 and "_img" in skipped[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    apply_wan_lora(twin, without)
    expected = ours_forward(twin, data)
    assert not torch.equal(expected, base)
    assert torch.equal(expected, ours_forward(model, data))


def test_two_loras_stacked_equal_one_lora_of_their_merged_sum(tmp_path):
    """LoRA a at 0.7 plus LoRA b at -0.4 == one LoRA with down = [0.7 s_a A_a; -0.4 s_b A_b], up = [B_a, B_b]."""
    cfg = tiny_config(**CASES["t2v"])
    stacked = ours_from(diffusers_twin(cfg), cfg)
    merged = copy.deepcopy(stacked)
    (a, _), (b, _) = (wan_lora_state(stacked, "official", rank=r, seed=s, alpha=al)
                      for r, s, al in ((4, 1, 2.0), (3, 2, 6.0)))
    combined = {}
    for key in a:
        if key.endswith(".lora_A.weight"):
            scale_a = a[key.replace("lora_A.weight", "alpha")] / 4 if key.startswith("diffusion_model.blocks") else 1
            scale_b = b[key.replace("lora_A.weight", "alpha")] / 3 if key.startswith("diffusion_model.blocks") else 1
            combined[key] = torch.cat([0.7 * scale_a * a[key], -0.4 * scale_b * b[key]])
            up = key.replace("lora_A", "lora_B")
            combined[up] = torch.cat([a[up], b[up]], dim=1)
    apply_wan_lora(stacked, save_safetensors(tmp_path / "a.safetensors", a), 0.7)
    apply_wan_lora(stacked, save_safetensors(tmp_path / "b.safetensors", b), -0.4)
    apply_wan_lora(merged, save_safetensors(tmp_path / "ab.safetensors", combined))
    data = inputs(cfg)
    assert_relative(ours_forward(merged, data), ours_forward(stacked, data))
