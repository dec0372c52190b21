"""SkyReels V3 R2V: DiT and sampling parity with diffusers (fp32, CPU, tiny models), reference fitting against
Pillow, size buckets, the pipeline on fixture files, and bad input refused before loading."""

import numpy as np
import pytest
import torch
from diffusers import UniPCMultistepScheduler, WanTransformer3DModel
from PIL import Image

from videosdgx.job import VideoRequest
from videosdgx.runtime.errors import ConfigurationError, WrongComponentError
from videosdgx.runtime.identify import KeyView
from videosdgx.runtime.model_files import LoadRequest
from videosdgx.skyreels_v3.buckets import bucket_size
from videosdgx.skyreels_v3.loaders import load_skyreels_dit
from videosdgx.skyreels_v3.pipeline import check_request, load_skyreels_pipeline
from videosdgx.skyreels_v3.r2v import r2v_sigmas, sample_r2v
from videosdgx.skyreels_v3.references import fit_reference, lanczos_resize
from videosdgx.skyreels_v3.variants import skyreels_variant
from videosdgx.testing.files import randomize_reference, save_safetensors
from videosdgx.testing.skyreels_v3 import skyreels_dit_state, write_skyreels_bundle
from videosdgx.testing.wan import _dit_state, tiny_dit_config
from videosdgx.wan.conditioning import TextConditioning
from videosdgx.wan.detect import detect_wan
from videosdgx.wan.keys import to_diffusers_key
from videosdgx.wan.transformer import WAN_PRESETS, WanModel

TEXT_DIM = 48
R2V = skyreels_variant("skyreels-v3-r2v-14b")


def diffusers_dit(seed: int) -> WanTransformer3DModel:
    """The R2V DiT as the release defines it (diffusers Wan T2V), tiny: 2 heads of 128, 3 layers, random weights."""
    model = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=128, in_channels=16, out_channels=16,
        text_dim=TEXT_DIM, freq_dim=64, ffn_dim=192, num_layers=3, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=None, added_kv_proj_dim=None, rope_max_seq_len=1024,
    )
    return randomize_reference(model, seed)


@pytest.fixture(scope="module")
def dit_pair(tmp_path_factory):
    """diffusers' DiT and ours, loaded by the R2V loader from a file with diffusers' own keys."""
    reference = diffusers_dit(seed=3)
    path = save_safetensors(tmp_path_factory.mktemp("r2v") / "r2v.safetensors", reference.state_dict())
    return reference, load_skyreels_dit("r2v", path, LoadRequest()).module.eval()


def padded(rows: torch.Tensor) -> torch.Tensor:
    """The release's text rule: the prompt's rows, zero rows up to 512."""
    return torch.cat([rows, rows.new_zeros(512 - rows.shape[0], rows.shape[1])])[None]


def test_dit_on_noisy_plus_reference_frames_matches_diffusers(dit_pair):
    reference, ours = dit_pair
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, 16, 3 + 4, 4, 6, generator=generator)  # 3 noisy latent frames + 4 reference slots
    text = torch.randn(9, TEXT_DIM, generator=generator)
    t = torch.tensor([937.0])
    with torch.no_grad():
        expected = reference(x, t, padded(text), return_dict=False)[0]
        got = ours(x, t, text[None])
    assert got.shape == expected.shape == x.shape
    assert (got - expected).abs().max().item() <= 2e-5 * expected.abs().max().item()


def official_loop(model, text: TextConditioning, noise, refs, steps, shift, guidance, guidance_image):
    """The release's denoising loop (reference_to_video_pipeline.py) on diffusers components."""
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                        num_train_timesteps=1000, flow_shift=shift)
    scheduler.set_timesteps(steps)
    latents, frames = noise.clone(), noise.shape[2]
    positive, negative = padded(text.positive), padded(text.negative)
    with torch.no_grad():
        for t in scheduler.timesteps:
            def run(condition, context):
                out = model(torch.cat([latents, condition], dim=2), t.expand(1), context, return_dict=False)[0]
                return out[:, :, :frames]
            pred = run(refs, positive)
            if guidance > 1:
                uncond_text, uncond_both = run(refs, negative), run(torch.zeros_like(refs), negative)
                pred = uncond_both + guidance_image * (uncond_text - uncond_both) + guidance * (pred - uncond_text)
            latents = scheduler.step(pred, t, latents, return_dict=False)[0]
    return latents


@pytest.mark.parametrize("guidance, guidance_image, steps", [(1.0, 1.0, 4), (4.0, 2.5, 3)])
def test_sampling_matches_the_official_loop(dit_pair, guidance, guidance_image, steps):
    reference, ours = dit_pair
    generator = torch.Generator().manual_seed(5)
    noise = torch.randn(1, 16, 3, 4, 6, generator=generator)
    refs = torch.cat([torch.randn(1, 16, 2, 4, 6, generator=generator), torch.zeros(1, 16, 2, 4, 6)], dim=2)
    text = TextConditioning(torch.randn(7, TEXT_DIM, generator=generator), torch.randn(3, TEXT_DIM, generator=generator))
    expected = official_loop(reference, text, noise, refs, steps, 5.0, guidance, guidance_image)
    got = sample_r2v(ours, text, noise, refs, r2v_sigmas(steps, 5.0), guidance, guidance_image)
    assert got.std() > 0.2
    assert (got - expected).abs().max().item() <= 1e-4


def test_lanczos_resize_matches_pillow():
    image = (np.random.default_rng(0).random((37, 53, 3)) * 255).astype(np.uint8)
    pixels = torch.from_numpy(image).float().permute(2, 0, 1) / 255
    for height, width in [(20, 30), (80, 100), (37, 20), (64, 53)]:
        expected = np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.LANCZOS)) / 255
        got = lanczos_resize(pixels, height, width).permute(1, 2, 0).numpy()
        single_axis = height == 37 or width == 53
        # Pillow rounds to 8 bits (also between its two passes); we keep floats.
        assert np.abs(got - expected).max() <= (0.51 if single_axis else 1.2) / 255


def test_reference_is_fitted_and_centred_on_white():
    image = torch.full((1, 30, 20, 3), 0.25)  # tall: fills the height of a wide frame
    fitted = fit_reference(image, width=64, height=48)
    assert fitted.shape == (3, 48, 64)
    new_w = int(48 * 20 / 30)  # 32
    left = (64 - new_w) // 2
    assert torch.allclose(fitted[:, :, :left], torch.ones(1))  # white = 1 in [-1, 1]
    assert torch.allclose(fitted[:, :, left + new_w:], torch.ones(1))
    assert torch.allclose(fitted[:, :, left:left + new_w], torch.full((1,), -0.5), atol=1e-6)


@pytest.mark.parametrize("size, resolution, expected", [
    ((1080, 1920), "720P", (720, 1280)), ((1080, 1920), "480P", (480, 848)), ((1000, 1000), "540P", (720, 720)),
    ((1920, 1080), "720P", (1280, 720)), ((900, 1200), "720P", (832, 1104)),
])
def test_bucket_is_the_closest_ratio_rounded_to_16(size, resolution, expected):
    assert bucket_size(*size, resolution) == expected


def test_pipeline_on_fixture_files(tmp_path):
    files = write_skyreels_bundle("skyreels-v3-r2v-14b", tmp_path)
    pipe = load_skyreels_pipeline(R2V, files, LoadRequest())
    cat, dog = torch.rand(1, 40, 30, 3, generator=torch.Generator().manual_seed(1)), torch.zeros(1, 20, 50, 3)
    request = VideoRequest(prompt="a cat and a dog", references=(cat, dog), width=64, height=48, frames=9, steps=2)
    result = pipe.generate(request)
    again = pipe.generate(request)
    other = pipe.generate(VideoRequest(prompt="a cat and a dog", references=(dog,), width=64, height=48, frames=9,
                                       steps=2))
    assert result.frames.shape == (9, 48, 64, 3) and result.fps == 24
    assert torch.equal(result.frames, again.frames)  # seeded noise and reference samples
    assert not torch.allclose(result.latents, other.latents)  # the references condition the video


def test_more_than_four_references_is_refused_before_loading():
    images = tuple(torch.rand(1, 8, 8, 3) for _ in range(5))
    with pytest.raises(ConfigurationError, match="at most 4 reference images; 5 were given"):
        check_request(R2V, VideoRequest(prompt="x", references=images))
    with pytest.raises(ConfigurationError, match="needs 1 to 4 reference images"):
        check_request(R2V, VideoRequest(prompt="x"))
    with pytest.raises(ConfigurationError, match="Reference image 2 is not an IMAGE"):
        check_request(R2V, VideoRequest(prompt="x", references=(images[0], torch.rand(8, 8))))
    with pytest.raises(ConfigurationError, match="Unknown resolution '1080P'"):
        check_request(R2V, VideoRequest(prompt="x", references=images[:1], options={"resolution": "1080P"}))


def test_v2v_file_is_refused_by_the_r2v_loader(tmp_path):
    v2v = save_safetensors(tmp_path / "v2v.safetensors", skyreels_dit_state("v2v", seed=0))
    with pytest.raises(WrongComponentError, match="original Wan keys.*not of SkyReels V3 R2V-14B"):
        load_skyreels_dit("r2v", v2v, LoadRequest())
    r2v = save_safetensors(tmp_path / "r2v.safetensors", skyreels_dit_state("r2v", seed=0))
    with pytest.raises(WrongComponentError, match="diffusers key layout of SkyReels V3 R2V-14B"):
        load_skyreels_dit("v2v", r2v, LoadRequest())
    i2v = save_safetensors(tmp_path / "i2v.safetensors", _dit_state(tiny_dit_config("i2v", "2.1", True), 0))
    with pytest.raises(WrongComponentError, match="Wan I2V DiT with 36 input channels"):
        load_skyreels_dit("v2v", i2v, LoadRequest())


def test_identification_names_the_skyreels_releases():
    """R2V / V2V weights are a Wan T2V-14B's: identification says which SkyReels file each layout would be."""
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in WanModel(WAN_PRESETS["wan2.1-t2v-14b"]).state_dict().items()}
    official = detect_wan(KeyView(shapes, dict.fromkeys(shapes, torch.bfloat16)))
    renamed = {to_diffusers_key(k): v for k, v in shapes.items()}
    diffusers = detect_wan(KeyView(renamed, dict.fromkeys(renamed, torch.bfloat16)))
    assert official.family == diffusers.family == "wan"
    assert "SkyReels V3 V2V-14B" in official.notes[0] and "SkyReels V3 R2V-14B" in diffusers.notes[0]
