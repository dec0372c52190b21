"""LTX-2 sampling: a 3-step distilled and a 2-step dev generation (CFG, STG, modality guidance, rescale) against
diffusers `LTX2Pipeline` on the same tiny weights, text features and noise; the dev schedule against diffusers'
dynamically shifted scheduler; image-to-video conditioning."""

from __future__ import annotations

import pytest
import torch
from diffusers import (
    AutoencoderKLLTX2Audio,
    AutoencoderKLLTX2Video,
    FlowMatchEulerDiscreteScheduler,
    LTX2Pipeline,
)
from diffusers.pipelines.ltx2 import LTX2TextConnectors
from diffusers.pipelines.ltx2.pipeline_ltx2 import calculate_shift
from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder

from videosdgx.ltx2.guidance import GuiderParams
from videosdgx.ltx2.keys import to_diffusers_key
from videosdgx.ltx2.loaders import load_dit
from videosdgx.ltx2.sampler import Guidance, TextContext, VideoCondition, denoise, noised
from videosdgx.ltx2.schedule import distilled_sigmas, ltx2_sigmas
from videosdgx.runtime.checkpoint import open_checkpoint
from videosdgx.runtime.errors import ConfigurationError
from videosdgx.runtime.model_files import LoadRequest
from videosdgx.sampling.noise import seeded_noise
from videosdgx.testing.ltx2 import tiny_dit_config, write_ltx2_checkpoint

LATENT_GRID, FPS = (2, 2, 3), 25.0
TEXT_LEN, GEMMA_LAYERS = 8, 3
AUDIO_MEL, AUDIO_CHANNELS = 16, 2  # packed audio width 2 * 16 / 4 = 8


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    cfg = tiny_dit_config("19B")
    path = write_ltx2_checkpoint(tmp_path_factory.mktemp("ltx2") / "dit.safetensors", cfg, seed=11,
                                 dtype=torch.float32)
    ours = load_dit(path, LoadRequest(dtype=torch.float32), cross_timestep="cross").module
    pipe = reference_pipeline(cfg)
    with open_checkpoint(path) as checkpoint:
        weights = {to_diffusers_key(k.removeprefix("model.diffusion_model.")): checkpoint.get(k).clone()
                   for k in checkpoint.keys()}
    pipe.transformer.load_state_dict(weights, strict=True)
    return ours, pipe, cfg


def reference_pipeline(cfg) -> LTX2Pipeline:
    from tests.test_ltx2_transformer import diffusers_twin

    torch.manual_seed(0)
    connectors = LTX2TextConnectors(
        caption_channels=cfg.caption_channels, text_proj_in_factor=GEMMA_LAYERS, video_connector_num_attention_heads=3,
        video_connector_attention_head_dim=8, video_connector_num_layers=1,
        video_connector_num_learnable_registers=None,
        audio_connector_num_attention_heads=3, audio_connector_attention_head_dim=8, audio_connector_num_layers=1,
        audio_connector_num_learnable_registers=None, connector_rope_base_seq_len=32, rope_theta=10000.0,
        rope_double_precision=False, causal_temporal_positioning=False, rope_type="split",
    )
    vae = AutoencoderKLLTX2Video(
        in_channels=3, out_channels=3, latent_channels=cfg.in_channels, block_out_channels=(8,),
        decoder_block_out_channels=(8,), layers_per_block=(1,), decoder_layers_per_block=(1, 1),
        spatio_temporal_scaling=(True,), decoder_spatio_temporal_scaling=(True,), decoder_inject_noise=(False, False),
        downsample_type=("spatial",), upsample_residual=(False,), upsample_factor=(1,), timestep_conditioning=False,
        patch_size=1, patch_size_t=1, encoder_causal=True, decoder_causal=False,
    )
    audio_vae = AutoencoderKLLTX2Audio(
        base_channels=cfg.audio_in_channels, output_channels=2, ch_mult=(1,), num_res_blocks=1, attn_resolutions=None,
        in_channels=2, resolution=32, latent_channels=AUDIO_CHANNELS, norm_type="pixel", causality_axis="height",
        dropout=0.0, mid_block_add_attention=False, sample_rate=16000, mel_hop_length=160, is_causal=True,
        mel_bins=AUDIO_MEL,
    )
    vocoder = LTX2Vocoder(in_channels=2 * AUDIO_MEL, hidden_channels=32, out_channels=2, upsample_kernel_sizes=[4, 4],
                          upsample_factors=[2, 2], resnet_kernel_sizes=[3], resnet_dilations=[[1, 3, 5]],
                          leaky_relu_negative_slope=0.1, output_sampling_rate=16000)
    pipe = LTX2Pipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, audio_vae=audio_vae, text_encoder=None, tokenizer=None,
        connectors=connectors, transformer=diffusers_twin(cfg), vocoder=vocoder,
    )
    # Latents are returned undecoded, so only the sizes the real VAE implies matter (RoPE uses the DiT's own).
    pipe.vae_spatial_compression_ratio, pipe.vae_temporal_compression_ratio = 32, 8
    return pipe


def features(seed: int):
    """Gemma-like features `[1, L, caption x layers]` with left padding (3 pad tokens)."""
    g = torch.Generator().manual_seed(seed)
    embeds = torch.randn(1, TEXT_LEN, 24 * GEMMA_LAYERS, generator=g)
    mask = torch.ones(1, TEXT_LEN, dtype=torch.long)
    mask[:, :3] = 0
    return embeds, mask


def pixel_size(pipe: LTX2Pipeline) -> dict:
    """Frames / height / width that give LATENT_GRID with the reference's tiny VAE ratios."""
    f, h, w = LATENT_GRID
    spatial = pipe.vae_spatial_compression_ratio
    return dict(num_frames=(f - 1) * pipe.vae_temporal_compression_ratio + 1, height=h * spatial, width=w * spatial)


def latent_shapes(pipe: LTX2Pipeline):
    video = (1, pipe.transformer.config.in_channels, *LATENT_GRID)
    audio_frames = round(pixel_size(pipe)["num_frames"] / FPS * 16000 / 160 / 4)
    audio = (1, AUDIO_CHANNELS, audio_frames, AUDIO_MEL // pipe.audio_vae_mel_compression_ratio)
    return video, audio


def run_both(ours, pipe, sigmas: torch.Tensor, guidance: Guidance, reference_kwargs: dict):
    video_shape, audio_shape = latent_shapes(pipe)
    video_noise, audio_noise = seeded_noise(video_shape, 1), seeded_noise(audio_shape, 2)
    positive, negative = features(3), features(4)
    with torch.no_grad():
        reference_video, reference_audio = pipe(
            prompt_embeds=positive[0], prompt_attention_mask=positive[1], negative_prompt_embeds=negative[0],
            negative_prompt_attention_mask=negative[1], **pixel_size(pipe), frame_rate=FPS,
            sigmas=sigmas[:-1].tolist(), num_inference_steps=len(sigmas) - 1,
            latents=pipe._pack_latents(video_noise * float(sigmas[0])),
            audio_latents=pipe._pack_audio_latents(audio_noise * float(sigmas[0])), output_type="latent",
            return_dict=False, **reference_kwargs,
        )
        both = torch.cat([negative[0], positive[0]]), torch.cat([negative[1], positive[1]])
        video_ctx, audio_ctx, mask = pipe.connectors(*both, padding_side="left")
        contexts = [TextContext(v[None], a[None], m[None]) for v, a, m in zip(video_ctx, audio_ctx, mask)]
        video, audio = denoise(ours, video_noise * float(sigmas[0]), audio_noise * float(sigmas[0]), sigmas,
                               contexts[1], contexts[0], guidance, fps=FPS)
    return (video, audio), (reference_video, reference_audio)


def assert_close(ours: tuple, reference: tuple):
    for got, expected in zip(ours, reference):
        assert got.shape == expected.shape
        error = ((got - expected).abs().max() / expected.abs().max()).item()
        assert error < 1e-3, error


NO_GUIDANCE = dict(guidance_scale=1.0, stg_scale=0.0, modality_scale=1.0, guidance_rescale=0.0,
                   audio_guidance_scale=1.0, audio_stg_scale=0.0, audio_modality_scale=1.0, audio_guidance_rescale=0.0,
                   spatio_temporal_guidance_blocks=None)


def test_distilled_three_steps_match_diffusers(setup):
    ours, pipe, _ = setup
    assert_close(*run_both(ours, pipe, distilled_sigmas(3), Guidance(), NO_GUIDANCE))


def test_dev_two_steps_with_every_guidance_match_diffusers(setup):
    ours, pipe, cfg = setup
    video = GuiderParams(cfg=3.0, stg=1.0, modality=3.0, rescale=0.7)
    audio = GuiderParams(cfg=7.0, stg=0.5, modality=2.0, rescale=0.5)
    kwargs = dict(guidance_scale=3.0, stg_scale=1.0, modality_scale=3.0, guidance_rescale=0.7,
                  audio_guidance_scale=7.0, audio_stg_scale=0.5, audio_modality_scale=2.0, audio_guidance_rescale=0.5,
                  spatio_temporal_guidance_blocks=[1])
    sigmas = ltx2_sigmas(2, tokens=12)
    ours_out, reference_out = run_both(ours, pipe, sigmas, Guidance(video, audio, stg_blocks=(1,)), kwargs)
    assert_close(ours_out, reference_out)
    # Unbatched passes give the same result.
    unbatched = run_both_unbatched(ours, pipe, sigmas, Guidance(video, audio, stg_blocks=(1,)))
    assert_close(unbatched, reference_out)


def run_both_unbatched(ours, pipe, sigmas, guidance):
    video_shape, audio_shape = latent_shapes(pipe)
    video_noise, audio_noise = seeded_noise(video_shape, 1), seeded_noise(audio_shape, 2)
    positive, negative = features(3), features(4)
    with torch.no_grad():
        both = torch.cat([negative[0], positive[0]]), torch.cat([negative[1], positive[1]])
        video_ctx, audio_ctx, mask = pipe.connectors(*both, padding_side="left")
        contexts = [TextContext(v[None], a[None], m[None]) for v, a, m in zip(video_ctx, audio_ctx, mask)]
        return denoise(ours, video_noise * float(sigmas[0]), audio_noise * float(sigmas[0]), sigmas, contexts[1],
                       contexts[0], guidance, fps=FPS, batched=False)


@pytest.mark.parametrize("steps,tokens", [(40, 12), (30, 6144), (3, 1024)])
def test_dev_schedule_matches_diffusers_dynamic_shift(steps, tokens):
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.95, max_shift=2.05,
                                                base_image_seq_len=1024, max_image_seq_len=4096, shift_terminal=0.1,
                                                time_shift_type="exponential")
    mu = calculate_shift(tokens, 1024, 4096, 0.95, 2.05)
    scheduler.set_timesteps(sigmas=torch.linspace(1.0, 1 / steps, steps).tolist(), mu=mu)
    assert torch.allclose(ltx2_sigmas(steps, tokens), scheduler.sigmas.float(), atol=1e-6)


def test_distilled_schedule():
    assert distilled_sigmas().tolist() == pytest.approx([1.0, 0.99375, 0.9875, 0.98125, 0.975, 0.909375, 0.725,
                                                         0.421875, 0.0])
    with pytest.raises(ConfigurationError, match="1 to 8 steps"):
        distilled_sigmas(9)


def test_image_condition_keeps_first_frame_and_uses_per_token_timesteps(setup):
    ours, pipe, cfg = setup
    video_shape, audio_shape = latent_shapes(pipe)
    clean = seeded_noise(video_shape, 7)
    mask = torch.ones(1, 1, *video_shape[2:])
    mask[:, :, 0] = 0
    sigmas = distilled_sigmas(2)
    start = noised(clean, seeded_noise(video_shape, 1), float(sigmas[0]), mask)
    positive = TextContext(torch.randn(1, 4, 24), torch.randn(1, 4, 24))
    calls = []
    original = ours.forward

    def spy(video, audio, perturbation=None):
        calls.append(video.timesteps.clone())
        return original(video, audio, perturbation)

    ours.forward = spy
    try:
        video, _ = denoise(ours, start, seeded_noise(audio_shape, 2) * float(sigmas[0]), sigmas, positive,
                           condition=VideoCondition(clean, mask), fps=FPS)
    finally:
        del ours.forward
    assert torch.equal(video[:, :, 0], clean[:, :, 0]) and not torch.allclose(video[:, :, 1], clean[:, :, 1])
    first_frame_tokens = video_shape[3] * video_shape[4]
    assert (calls[0][:, :first_frame_tokens] == 0).all()
    assert torch.allclose(calls[0][:, first_frame_tokens:], sigmas[0])


@pytest.mark.parametrize("mode", ["cross", "own"])
def test_image_to_video_matches_diffusers(setup, mode):
    """Distilled image-to-video (first latent frame clean, per-token timesteps) against
    `LTX2ImageToVideoPipeline` given the same first-frame latent and noise."""
    from diffusers import LTX2ImageToVideoPipeline

    ours, pipe, _ = setup
    reference = LTX2ImageToVideoPipeline(**pipe.components)
    reference.vae_spatial_compression_ratio, reference.vae_temporal_compression_ratio = 32, 8
    video_shape, audio_shape = latent_shapes(pipe)
    clean = seeded_noise(video_shape, 9)
    mask = torch.ones(1, 1, *video_shape[2:])
    mask[:, :, 0] = 0
    sigmas = distilled_sigmas(2)
    start = noised(clean, seeded_noise(video_shape, 1), float(sigmas[0]), mask)
    audio_start = seeded_noise(audio_shape, 2) * float(sigmas[0])
    positive = features(3)
    size = pixel_size(pipe)
    ours.cross_timestep = mode
    try:
        with torch.no_grad():
            reference_video, reference_audio = reference(
                image=torch.rand(1, 3, size["height"], size["width"]), prompt_embeds=positive[0],
                prompt_attention_mask=positive[1], **size, frame_rate=FPS, sigmas=sigmas[:-1].tolist(),
                num_inference_steps=len(sigmas) - 1, latents=start, audio_latents=audio_start,  # VAE stats are 0 / 1
                output_type="latent", return_dict=False, use_cross_timestep=mode == "cross", **NO_GUIDANCE,
            )
            video_ctx, audio_ctx, ctx_mask = pipe.connectors(*positive, padding_side="left")
            video, audio = denoise(ours, start, audio_start, sigmas, TextContext(video_ctx, audio_ctx, ctx_mask),
                                   condition=VideoCondition(clean, mask), fps=FPS)
    finally:
        ours.cross_timestep = "cross"
    assert torch.equal(video[:, :, 0], clean[:, :, 0])
    assert_close((video, audio), (reference_video, reference_audio))
