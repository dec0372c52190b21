"""Wan2.2 Lightning: the published 4-step schedule through the sampler's custom sigma list, CFG 1, expert switch;
LoRAs per A14B expert, applied for one run and removed exactly."""

import copy

import pytest
import torch
from test_lora_parity import inputs, ours_forward
from test_wan_transformer import diffusers_twin, ours_from, tiny_config

from videosdgx.runtime.errors import ConfigurationError, WrongComponentError
from videosdgx.sampling import seeded_noise
from videosdgx.wan.conditioning import TextConditioning
from videosdgx.testing.lora import write_wan_lora
from videosdgx.wan.lightning import lightning_settings, lightning_sigmas
from videosdgx.wan.lora import ExpertLora, apply_expert_loras, apply_wan_lora, expert_loras_applied, read_wan_lora
from videosdgx.wan.sampler import SamplingSettings, sample_wan

LATENT = (16, 2, 4, 6)


def test_published_timesteps():
    assert lightning_sigmas() == pytest.approx((1.0, 0.9375, 0.833333333, 0.625, 0.0), abs=1e-9)


class Recorder(torch.nn.Module):
    """Wraps an expert and logs (name, timesteps, batch) of each call."""

    def __init__(self, model, name, log):
        super().__init__()
        self.model, self.name, self.log, self.cfg = model, name, log, model.cfg
        self.patch_embedding = model.patch_embedding

    def forward(self, x, t, context, **rest):
        self.log.append((self.name, t.tolist(), x.shape[0]))
        return self.model(x, t, context, **rest)


@pytest.mark.parametrize("boundary", [0.875, 0.9])
def test_lightning_run_is_four_conditional_euler_steps(boundary):
    cfg = tiny_config("t2v", 2, 32)
    high, low = (ours_from(diffusers_twin(cfg), cfg) for _ in range(2))
    torch.manual_seed(0)
    text = TextConditioning(torch.randn(5, cfg.text_dim), torch.randn(3, cfg.text_dim))
    log = []
    experts = [Recorder(high, "high", log), Recorder(low, "low", log)]
    settings = lightning_settings(boundary, seed=3)
    out = sample_wan(experts, text, LATENT, settings)
    timesteps = [1000.0, 937.5, 833.3333333333334, 625.0]
    assert [(name, batch) for name, _, batch in log] == [("high", 1), ("high", 1), ("low", 1), ("low", 1)]
    assert [t[0] for _, t, _ in log] == pytest.approx(timesteps, rel=1e-6)
    # The same run written out: x <- x + (sigma_next - sigma) * v(x, sigma * 1000), conditional pass only.
    sigmas = lightning_sigmas()
    x = seeded_noise((1, *LATENT), 3)
    with torch.no_grad():
        for i, model in enumerate((high, high, low, low)):
            v = model(x, torch.tensor([sigmas[i] * 1000]), text.positive[None])
            x = (x + (sigmas[i + 1] - sigmas[i]) * v).float()
    torch.testing.assert_close(out, x, rtol=0, atol=1e-6)


@pytest.mark.parametrize("sigmas", [(1.0, 0.5), (1.2, 0.5, 0.0), (1.0, 0.5, 0.7, 0.0), (0.0,)])
def test_bad_custom_sigmas(sigmas):
    cfg = tiny_config("t2v", 2, 32)
    settings = SamplingSettings(steps=4, shift=5.0, guidance=1.0, seed=0, sigmas=sigmas)
    text = TextConditioning(torch.randn(5, cfg.text_dim), torch.randn(3, cfg.text_dim))
    with pytest.raises(ConfigurationError, match="custom sigma list must fall strictly from at most 1.0 to a "
                                                 "final 0.0"):
        sample_wan([ours_from(diffusers_twin(cfg), cfg)], text, LATENT, settings)


def test_custom_sigmas_refuse_denoise():
    cfg = tiny_config("t2v", 2, 32)
    settings = SamplingSettings(steps=4, shift=5.0, guidance=1.0, seed=0, sigmas=lightning_sigmas(), denoise=0.5)
    text = TextConditioning(torch.randn(5, cfg.text_dim), torch.randn(3, cfg.text_dim))
    with pytest.raises(ConfigurationError, match="denoise < 1 cannot be combined with a custom sigma list"):
        sample_wan([ours_from(diffusers_twin(cfg), cfg)], text, LATENT, settings)


def test_lightning_pair_goes_to_its_experts_for_one_run(tmp_path):
    cfg = tiny_config("t2v", 2, 32)
    high, low = (ours_from(diffusers_twin(cfg), cfg) for _ in range(2))
    data = inputs(cfg)
    before = [ours_forward(m, data) for m in (high, low)]
    pair = [ExpertLora(read_wan_lora(write_wan_lora(tmp_path / f"{name}.safetensors", high, "lightx2v", seed=i)),
                       1.0, name) for i, name in enumerate(("high", "low"))]
    alone = copy.deepcopy(high)
    apply_wan_lora(alone, pair[0].lora)
    with expert_loras_applied([high, low], pair):
        assert torch.equal(ours_forward(high, data), ours_forward(alone, data))
        assert not torch.equal(ours_forward(low, data), before[1])
    assert all(torch.equal(ours_forward(m, data), b) for m, b in zip((high, low), before))


def test_low_noise_lora_needs_two_experts_and_failures_undo(tmp_path):
    cfg = tiny_config("t2v", 2, 32)
    model = ours_from(diffusers_twin(cfg), cfg)
    lora = read_wan_lora(write_wan_lora(tmp_path / "l.safetensors", model, "official"))
    with pytest.raises(ConfigurationError, match="a low-noise LoRA is for Wan2.2 A14B"):
        apply_expert_loras([model], [ExpertLora(lora, 1.0, "low")])
    data = inputs(cfg)
    before = ours_forward(model, data)
    narrow = ours_from(diffusers_twin(tiny_config("t2v", 2, 16)), tiny_config("t2v", 2, 16))
    wrong = read_wan_lora(write_wan_lora(tmp_path / "w.safetensors", narrow, "official"))
    with pytest.raises(WrongComponentError):
        apply_expert_loras([model], [ExpertLora(lora), ExpertLora(wrong)])
    assert torch.equal(ours_forward(model, data), before)
