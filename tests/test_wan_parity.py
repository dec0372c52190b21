"""End-to-end Wan parity with diffusers (fp32, CPU, tiny random models): sampling, decoding, UMT5 prompt rows
and the Wan2.2 A14B expert switch.

diffusers' `UniPCMultistepScheduler(use_flow_sigmas=True)` builds its grid from `linspace(1, 1/1000)` while Wan
uses `linspace(1 - 1/1000, 0)`; the parity runs give our sampler diffusers' grid (`flow_sigmas(..., sigma_max=1.0,
sigma_min=1e-3)`) so that both integrate the same trajectory.
"""

import dataclasses

import diffusers
import pytest
import sentencepiece
import torch
import transformers
from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanTransformer3DModel

from videosdgx.runtime.model_files import LoadRequest
from videosdgx.sampling import boundary_step, flow_sigmas
from videosdgx.testing.files import randomize_reference, save_safetensors
from videosdgx.testing.wan import CORPUS, tiny_sentencepiece
from videosdgx.text.tokenizer import load_tokenizer
from videosdgx.wan import sampler as wan_sampler
from videosdgx.wan.conditioning import TextConditioning
from videosdgx.wan.keys import from_diffusers_key
from videosdgx.wan.loaders import load_text_encoder
from videosdgx.wan.pipeline import decode_frames
from videosdgx.wan.sampler import SamplingSettings, sample_wan
from videosdgx.wan.text_prompt import WAN_TEXT_LEN, clean_prompt, encode_prompts
from videosdgx.wan.transformer import WanConfig, WanModel
from videosdgx.wan.vae import build_vae, vae_config_from_shapes
from videosdgx.wan.vae_keys import diffusers_to_official

TEXT_DIM = 32
HEIGHT, WIDTH, FRAMES = 32, 48, 9  # latent [16, 3, 4, 6]
LATENT_SHAPE = (16, 3, 4, 6)
LATENTS_MEAN = [0.1 * ((i % 5) - 2) for i in range(16)]
LATENTS_STD = [0.5 + 0.1 * i for i in range(16)]
LATENT_TOLERANCE = 1e-3


def diffusers_transformer(seed: int) -> WanTransformer3DModel:
    """Tiny T2V DiT (wan.md §10): 2 heads of 32, 2 layers, text width 32."""
    model = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=32, in_channels=16, out_channels=16,
        text_dim=TEXT_DIM, freq_dim=32, ffn_dim=128, num_layers=2, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=None, added_kv_proj_dim=None, rope_max_seq_len=1024,
    )
    return randomize_reference(model, seed)


def ours_transformer(reference: WanTransformer3DModel) -> WanModel:
    """Our DiT built on meta and filled strictly from the diffusers weights through the key map."""
    cfg = WanConfig(dim=64, ffn_dim=128, num_heads=2, num_layers=2, in_dim=16, out_dim=16, text_dim=TEXT_DIM,
                    freq_dim=32)
    with torch.device("meta"):
        model = WanModel(cfg)
    state = {from_diffusers_key(key): value for key, value in reference.state_dict().items()}
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


def vae_pair() -> tuple[AutoencoderKLWan, torch.nn.Module]:
    """A tiny Wan 2.1 VAE in diffusers (16 latent channels, uneven latent statistics) and ours from its weights."""
    torch.manual_seed(0)
    reference = AutoencoderKLWan(base_dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                                 temperal_downsample=[False, True, True], latents_mean=LATENTS_MEAN,
                                 latents_std=LATENTS_STD).eval()
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, param in reference.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            param.copy_(1 + 0.3 * noise if name.endswith("gamma") else 0.7 * param + 0.05 * noise)
    official = diffusers_to_official(reference.state_dict())
    config = vae_config_from_shapes({key: value.shape for key, value in official.items()})
    config = dataclasses.replace(config, latents_mean=tuple(LATENTS_MEAN), latents_std=tuple(LATENTS_STD))
    ours = build_vae(config).eval()
    ours.load_state_dict(official, strict=True)
    return reference, ours


def diffusers_scheduler(shift: float) -> UniPCMultistepScheduler:
    return UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=shift,
                                   num_train_timesteps=1000, solver_order=2)


def text_conditioning() -> TextConditioning:
    """Per-prompt rows of different lengths, as `encode_prompts` returns them (padding rows dropped)."""
    generator = torch.Generator().manual_seed(7)
    return TextConditioning(torch.randn(7, TEXT_DIM, generator=generator),
                            torch.randn(12, TEXT_DIM, generator=generator))


def pad_to_text_len(rows: torch.Tensor) -> torch.Tensor:
    """diffusers WanPipeline's rule with max_sequence_length=512: zero rows after the prompt's own rows."""
    return torch.cat([rows, rows.new_zeros(WAN_TEXT_LEN - rows.shape[0], rows.shape[1])])[None]


@pytest.fixture
def diffusers_grid(monkeypatch):
    """Let `sample_wan` use diffusers' UniPC flow grid instead of Wan's."""
    monkeypatch.setattr(wan_sampler, "sigma_schedule",
                        lambda s: flow_sigmas(s.steps, s.shift, sigma_max=1.0, sigma_min=1e-3))


def run_diffusers(pipe: diffusers.WanPipeline, text: TextConditioning, seed: int, output_type: str, **kwargs):
    """Run diffusers' pipeline on the same text rows; returns (final latents, output)."""
    final = {}
    pipe.set_progress_bar_config(disable=True)

    def keep_latents(_pipe, step, _t, tensors):
        final["latents"] = tensors["latents"].clone()
        return {}

    with torch.no_grad():
        out = pipe(prompt_embeds=pad_to_text_len(text.positive), negative_prompt_embeds=pad_to_text_len(text.negative),
                   height=HEIGHT, width=WIDTH, num_frames=FRAMES, generator=torch.Generator("cpu").manual_seed(seed),
                   output_type=output_type, max_sequence_length=WAN_TEXT_LEN, callback_on_step_end=keep_latents,
                   callback_on_step_end_tensor_inputs=["latents"], **kwargs)
    return final["latents"], out.frames


def test_four_step_generation_and_decode_match_diffusers(diffusers_grid):
    reference = diffusers_transformer(seed=1)
    reference_vae, our_vae = vae_pair()
    pipe = diffusers.WanPipeline(tokenizer=None, text_encoder=None, vae=reference_vae,
                                 scheduler=diffusers_scheduler(shift=3.0), transformer=reference)
    text = text_conditioning()
    expected_latents, expected_frames = run_diffusers(pipe, text, seed=42, output_type="np",
                                                      num_inference_steps=4, guidance_scale=5.0)

    settings = SamplingSettings(steps=4, shift=3.0, guidance=5.0, seed=42)
    latents = sample_wan([ours_transformer(reference)], text, LATENT_SHAPE, settings)

    assert latents.shape == expected_latents.shape == (1, *LATENT_SHAPE)
    assert latents.std() > 0.2  # a real trajectory, not a collapsed one
    assert (latents - expected_latents).abs().max().item() <= LATENT_TOLERANCE

    frames = decode_frames(our_vae, latents)
    expected = torch.from_numpy(expected_frames[0])
    assert frames.shape == expected.shape == (FRAMES, HEIGHT, WIDTH, 3)
    assert 0.05 < frames.std() and 0 <= frames.min() and frames.max() <= 1
    assert (frames - expected).abs().max().item() <= LATENT_TOLERANCE


def test_wan_grid_is_not_diffusers_grid():
    """The grid swap above matters: Wan's own grid starts at 0.999 (shifted) instead of 1 - 1e-6."""
    wan, hf = flow_sigmas(4, 3.0), flow_sigmas(4, 3.0, sigma_max=1.0, sigma_min=1e-3)
    scheduler = diffusers_scheduler(3.0)
    scheduler.set_timesteps(4)
    assert torch.equal(hf.float(), scheduler.sigmas)
    assert scheduler.timesteps.tolist() == [int(s * 1000) for s in hf[:-1].tolist()] == [999, 900, 750, 500]
    assert (wan - hf)[:-1].abs().min() > 1e-4


def test_two_expert_generation_matches_diffusers(diffusers_grid):
    """Wan2.2 A14B: high-noise expert and its scale while t >= boundary·1000, then the low-noise one."""
    high, low = diffusers_transformer(seed=11), diffusers_transformer(seed=12)
    pipe = diffusers.WanPipeline(tokenizer=None, text_encoder=None, vae=vae_pair()[0],
                                 scheduler=diffusers_scheduler(shift=12.0), transformer=high, transformer_2=low,
                                 boundary_ratio=0.875)
    text = text_conditioning()
    expected, _ = run_diffusers(pipe, text, seed=5, output_type="latent", num_inference_steps=6,
                                guidance_scale=4.0, guidance_scale_2=3.0)
    settings = SamplingSettings(steps=6, shift=12.0, guidance=4.0, guidance_low=3.0, boundary=0.875, seed=5)
    assert boundary_step(wan_sampler.sigma_schedule(settings), 0.875) == 4  # both experts run
    latents = sample_wan([ours_transformer(high), ours_transformer(low)], text, LATENT_SHAPE, settings)
    assert (latents - expected).abs().max().item() <= LATENT_TOLERANCE


def recording(model: WanModel, name: str, calls: list) -> WanModel:
    """The same expert, logging (name, first timestep, batch) of every forward before running it."""
    forward = model.forward

    def logged(x, t, context, **extras):
        calls.append((name, t.flatten()[0].item(), x.shape[0]))
        return forward(x, t, context, **extras)

    model.forward = logged
    return model


def test_expert_switch_follows_boundary_step_with_each_experts_scale(monkeypatch):
    """Official grid, T2V-A14B settings (40 steps, shift 12, boundary 0.875): 26 high-noise steps (wan.md §7.1)."""
    calls, scales = [], []
    real_cfg_forward = wan_sampler.cfg_forward

    def recording_cfg_forward(forward, x, cond, uncond, scale, **kwargs):
        scales.append(scale)
        return real_cfg_forward(forward, x, cond, uncond, scale, **kwargs)

    monkeypatch.setattr(wan_sampler, "cfg_forward", recording_cfg_forward)
    high, low = ours_transformer(diffusers_transformer(21)), ours_transformer(diffusers_transformer(22))
    experts = [recording(high, "high", calls), recording(low, "low", calls)]
    settings = SamplingSettings(steps=40, shift=12.0, guidance=4.0, guidance_low=3.0, boundary=0.875, seed=0)
    switch = boundary_step(wan_sampler.sigma_schedule(settings), 0.875)
    assert switch == 26
    sample_wan(experts, text_conditioning(), (16, 1, 2, 2), settings)

    assert [name for name, _, _ in calls] == ["high"] * switch + ["low"] * (40 - switch)
    assert scales == [4.0] * switch + [3.0] * (40 - switch)
    assert all(batch == 2 for _, _, batch in calls)  # cond + uncond in one forward
    timesteps = [t for _, t, _ in calls]
    assert min(timesteps[:switch]) >= 875 > max(timesteps[switch:])
    assert timesteps == [float(int(s * 1000)) for s in wan_sampler.sigma_schedule(settings)[:-1].tolist()]


# ----------------------------------------------------------------------------------------------------------------
# UMT5 through the Wan padding rule

PROMPTS = ["a red fox running through snow", "一只猫坐在冲浪板上", "ocean &amp; waves  crash\ton the rocks",
           " ".join(CORPUS * 12)]  # the last one is over 512 tokens: truncated to 511 pieces + </s>


@pytest.fixture(scope="module")
def umt5(tmp_path_factory):
    """A tiny UMT5 in transformers, saved as a ComfyUI-style file with its tokenizer embedded, and the
    transformers tokenizer twin of that SentencePiece model."""
    proto = tiny_sentencepiece()
    processor = sentencepiece.SentencePieceProcessor(model_proto=proto)
    vocab = [(processor.id_to_piece(i), processor.get_score(i)) for i in range(processor.get_piece_size())]
    hf_tokenizer = transformers.T5Tokenizer(vocab=vocab, extra_ids=0)
    torch.manual_seed(0)
    config = transformers.UMT5Config(vocab_size=128, d_model=32, d_kv=8, num_heads=4, d_ff=64, num_layers=2,
                                     relative_attention_num_buckets=32, relative_attention_max_distance=128,
                                     feed_forward_proj="gated-gelu", dropout_rate=0.0)
    hf_encoder = randomize_reference(transformers.UMT5EncoderModel(config), seed=4)
    state = {key: value.clone() for key, value in hf_encoder.state_dict().items()}
    state["spiece_model"] = torch.frombuffer(bytearray(proto), dtype=torch.uint8)
    path = save_safetensors(tmp_path_factory.mktemp("umt5") / "umt5_tiny.safetensors", state)
    return path, proto, hf_tokenizer, hf_encoder


def test_encode_prompts_match_transformers_umt5_with_wan_padding(umt5):
    path, proto, _, hf_encoder = umt5
    ours = load_text_encoder(path, LoadRequest())
    ids, mask = load_tokenizer(proto).encode([clean_prompt(p) for p in PROMPTS], max_length=WAN_TEXT_LEN)
    lengths = mask.sum(1).tolist()
    assert lengths[-1] == WAN_TEXT_LEN and max(lengths[:-1]) < 40
    with torch.no_grad():
        hidden = hf_encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    expected = torch.stack([pad_to_text_len(row[:length])[0] for row, length in zip(hidden, lengths)])

    contexts = encode_prompts(ours.encoder, ours.tokenizer, PROMPTS)
    assert [c.shape[0] for c in contexts] == lengths
    got = torch.stack([pad_to_text_len(c)[0] for c in contexts])
    assert got.shape == expected.shape == (len(PROMPTS), WAN_TEXT_LEN, 32)
    assert (got - expected).abs().max().item() <= 1e-5
    assert expected[0, lengths[0]:].abs().max() == 0 and expected[0, : lengths[0]].abs().min() > 0


def test_diffusers_wan_prompt_encoding_gives_the_same_rows(umt5):
    """diffusers' own `encode_prompt` (tokenizer, cleaning, trimming, zero padding) on the same encoder."""
    path, _, hf_tokenizer, hf_encoder = umt5
    ours = load_text_encoder(path, LoadRequest())
    pipe = diffusers.WanPipeline(tokenizer=hf_tokenizer, text_encoder=hf_encoder, vae=None,
                                 scheduler=diffusers_scheduler(3.0))
    with torch.no_grad():
        positive, negative = pipe.encode_prompt(PROMPTS[:3], negative_prompt=[PROMPTS[3]] * 3,
                                                max_sequence_length=WAN_TEXT_LEN, device="cpu")
    contexts = encode_prompts(ours.encoder, ours.tokenizer, PROMPTS)
    got = torch.stack([pad_to_text_len(c)[0] for c in contexts])
    assert (got[:3] - positive).abs().max().item() <= 1e-5
    assert (got[3] - negative[0]).abs().max().item() <= 1e-5
