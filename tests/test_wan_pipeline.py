"""WanPipeline end to end on tiny random files in the published layouts: every variant, input correction, refusals
with actionable messages, and the fp8 weight paths."""

import dataclasses
import logging
from pathlib import Path

import pytest
import torch
from torch import nn

from videosdgx.runtime.errors import CheckpointError, ConfigurationError, WrongComponentError
from videosdgx.runtime.fp8 import quantize_fp8
from videosdgx.runtime.model_files import LoadRequest
from videosdgx.runtime.quantized_linear import QuantizedLinear
from videosdgx.testing.files import save_safetensors
from videosdgx.testing.layouts import ltx2_checkpoint
from videosdgx.testing.wan import write_wan_models
from videosdgx.wan.conditioning import VideoSize, image_to_video_pixels
from videosdgx.wan.loaders import load_clip_vision, load_dit, load_text_encoder, load_vae
from videosdgx.bundle_files import find_bundle_files
from videosdgx.install.comfyui import model_folders
from videosdgx.job import VideoRequest
from videosdgx.wan.pipeline import WanPipeline
from videosdgx.wan.variants import WAN_VARIANTS, wan_variant

# Asked for 100x70, 6 frames: every variant corrects this to 96x64 (multiples of 16, or 32 for TI2V-5B), 5 frames.
ASKED = dict(width=100, height=70, frames=6)
CORRECTED = (5, 64, 96)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """`models(variant)`: the variant's tiny bundle, written once per module into its own models folder."""
    written = {}

    def get(name: str):
        if name not in written:
            written[name] = write_wan_models(name, tmp_path_factory.mktemp(name))
        return written[name]

    return get


@pytest.fixture(scope="module")
def pipelines(models):
    """`pipelines(variant)`: a WanPipeline on the variant's tiny files, fp32 on the CPU, loaded once per module."""
    loaded = {}

    def get(name: str) -> WanPipeline:
        if name not in loaded:
            loaded[name] = WanPipeline(wan_variant(name), models(name), LoadRequest())
        return loaded[name]

    return get


def image(seed: int, height: int = 40, width: int = 60) -> torch.Tensor:
    return torch.rand(1, height, width, 3, generator=torch.Generator().manual_seed(seed))


def request_for(name: str, **changes) -> VideoRequest:
    task = wan_variant(name).task
    fields = dict(prompt="a red fox running through snow", steps=2, seed=3, **ASKED,
                  image=image(1) if task in ("i2v", "flf2v", "ti2v") else None,
                  end_image=image(2) if task == "flf2v" else None)
    return VideoRequest(**{**fields, **changes})


@pytest.mark.parametrize("name", sorted(WAN_VARIANTS))
def test_every_variant_generates_a_corrected_size_video(name, pipelines, caplog):
    variant = wan_variant(name)
    with caplog.at_level(logging.WARNING, logger="videosdgx.job"):
        video = pipelines(name).generate(request_for(name))
    assert video.frames.shape == (*CORRECTED, 3) and video.frames.dtype == torch.float32
    assert video.frames.min() >= 0 and video.frames.max() <= 1 and video.frames.std() > 0.05
    assert video.fps == variant.fps == (24 if name == "wan2.2-ti2v-5b" else 16)
    channels, spatial = (48, 16) if variant.vae == "2.2" else (16, 8)
    assert video.latents.shape == (1, channels, 2, 64 // spatial, 96 // spatial)
    assert torch.isfinite(video.latents).all()
    multiple = 32 if variant.vae == "2.2" else 16
    corrections = [r.getMessage() for r in caplog.records if r.name == "videosdgx.job"]
    assert corrections == [f"size 100x70 is not a multiple of {multiple}; using 96x64",
                           "6 frames is not 4n+1; using 5 frames"]


def test_ti2v_runs_with_and_without_image_and_keeps_the_image_latent(pipelines):
    pipeline = pipelines("wan2.2-ti2v-5b")
    with_image = pipeline.generate(request_for("wan2.2-ti2v-5b"))
    text_only = pipeline.generate(request_for("wan2.2-ti2v-5b", image=None))
    assert text_only.frames.shape == with_image.frames.shape == (*CORRECTED, 3)
    with torch.no_grad():
        first = pipeline.vae.encode(image_to_video_pixels(image(1), VideoSize(96, 64, 5)))
    assert first.shape == (1, 48, 1, 4, 6)
    assert torch.allclose(with_image.latents[:, :, :1], first, atol=1e-5)
    assert not torch.allclose(text_only.latents[:, :, :1], first, atol=1e-2)


def test_image_to_video_depends_on_the_images(pipelines):
    pipeline = pipelines("wan2.1-flf2v-14b-720p")
    base = pipeline.generate(request_for("wan2.1-flf2v-14b-720p"))
    other_end = pipeline.generate(request_for("wan2.1-flf2v-14b-720p", end_image=image(9)))
    assert (base.latents - other_end.latents).abs().max() > 1e-3


def test_seeds_reproduce_exactly_and_differ(pipelines):
    pipeline = pipelines("wan2.1-t2v-1.3b")
    first = pipeline.generate(request_for("wan2.1-t2v-1.3b", seed=11))
    again = pipeline.generate(request_for("wan2.1-t2v-1.3b", seed=11))
    other = pipeline.generate(request_for("wan2.1-t2v-1.3b", seed=12))
    assert torch.equal(first.latents, again.latents) and torch.equal(first.frames, again.frames)
    assert (first.latents - other.latents).abs().mean() > 0.1


@pytest.mark.parametrize(("name", "width", "smallest"), [("wan2.1-t2v-1.3b", 8, 16), ("wan2.2-ti2v-5b", 16, 32)])
def test_too_small_sizes_are_refused_with_the_valid_values(pipelines, name, width, smallest):
    with pytest.raises(ConfigurationError) as caught:
        pipelines(name).generate(request_for(name, width=width, height=64, frames=5))
    message = str(caught.value)
    assert f"{width}x64, 5 frames is too small" in message
    assert f"at least {smallest}" in message and "4n+1: 1, 5, 9" in message


def test_over_long_prompt_is_truncated_with_a_warning(pipelines, caplog):
    prompt = " ".join(["a red fox running through snow"] * 120)
    with caplog.at_level(logging.WARNING, logger="videosdgx.text.tokenizer"):
        video = pipelines("wan2.1-t2v-1.3b").generate(request_for("wan2.1-t2v-1.3b", prompt=prompt))
    warnings = [message for message in caplog.messages if "over the limit of 512" in message]
    assert len(warnings) == 1 and warnings[0].startswith("Prompt 0 is ")
    assert int(warnings[0].split()[3]) > 512
    assert video.frames.shape == (*CORRECTED, 3)


def test_a14b_with_one_expert_is_refused(models):
    files = models("wan2.2-t2v-a14b")
    with pytest.raises(ConfigurationError) as caught:
        WanPipeline(wan_variant("wan2.2-t2v-a14b"), dataclasses.replace(files, dit=files.dit[:1]), LoadRequest())
    message = str(caught.value)
    assert "Wan2.2 T2V-A14B needs 2 DiT file(s)" in message and "got 1" in message
    assert "high-noise" in message and "low-noise" in message


def test_valid_files_load_without_warnings(models, caplog):
    """clip_vision_h stores 32 blocks and Wan uses the first 31: the unused last block is no reason to warn."""
    with caplog.at_level(logging.WARNING):
        WanPipeline(wan_variant("wan2.1-i2v-14b-480p"), models("wan2.1-i2v-14b-480p"), LoadRequest())
    assert caplog.messages == []


def test_wan21_i2v_without_clip_vision_names_the_file(models):
    files = models("wan2.1-i2v-14b-480p")
    with pytest.raises(ConfigurationError, match="clip_vision_h.safetensors") as caught:
        WanPipeline(wan_variant("wan2.1-i2v-14b-480p"), dataclasses.replace(files, clip_vision=None), LoadRequest())
    assert "install.py --models wan2.1-i2v-14b-480p" in str(caught.value)


def test_image_models_refuse_missing_images_and_t2v_refuses_one(pipelines):
    with pytest.raises(ConfigurationError, match="give a start image"):
        pipelines("wan2.2-i2v-a14b").generate(request_for("wan2.2-i2v-a14b", image=None))
    with pytest.raises(ConfigurationError, match="needs a first and a last frame"):
        pipelines("wan2.1-flf2v-14b-720p").generate(request_for("wan2.1-flf2v-14b-720p", end_image=None))
    with pytest.raises(ConfigurationError, match="text-to-video only"):
        pipelines("wan2.1-t2v-1.3b").generate(request_for("wan2.1-t2v-1.3b", image=image(1)))


LOADERS = {"dit": (load_dit, "Wan Model Loader"), "vae": (load_vae, "Wan VAE Loader"),
           "text_encoder": (load_text_encoder, "Wan Text Encoder Loader"),
           "clip_vision": (load_clip_vision, "Wan CLIP Vision Loader")}


@pytest.mark.parametrize(("loader", "given"), [
    ("dit", "vae"), ("dit", "text_encoder"), ("dit", "clip_vision"), ("vae", "text_encoder"), ("vae", "dit"),
    ("text_encoder", "vae"), ("clip_vision", "dit"),
])
def test_a_wan_file_given_to_the_wrong_loader_names_the_right_one(models, loader, given):
    files = models("wan2.1-i2v-14b-480p")
    path = files.dit[0] if given == "dit" else getattr(files, given)
    with pytest.raises(WrongComponentError) as caught:
        LOADERS[loader][0](path, LoadRequest())
    message = str(caught.value)
    assert message.startswith(path.name)
    assert f"load it with the {LOADERS[given][1]}" in message
    assert f"{LOADERS[loader][1]} needs a" in message


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_an_ltx2_file_is_refused_by_every_wan_loader(tmp_path, loader):
    path = save_safetensors(tmp_path / "ltx-2-19b-dev.safetensors", ltx2_checkpoint())
    with pytest.raises(WrongComponentError) as caught:
        LOADERS[loader][0](path, LoadRequest())
    assert "is a LTX-2" in str(caught.value) and "load it with the LTX-2 Loader" in str(caught.value)


def test_pipeline_with_files_in_the_wrong_roles_is_refused(models):
    files = models("wan2.1-t2v-1.3b")
    with pytest.raises(WrongComponentError, match="load it with the Wan Text Encoder Loader"):
        WanPipeline(wan_variant("wan2.1-t2v-1.3b"), dataclasses.replace(files, vae=files.text_encoder),
                    LoadRequest())


def test_missing_model_file_names_it_and_the_install_command(tmp_path):
    files = write_wan_models("wan2.2-t2v-a14b", tmp_path)
    files.dit[1].unlink()
    with pytest.raises(CheckpointError) as caught:
        find_bundle_files("wan2.2-t2v-a14b", model_folders(models_dir=tmp_path))
    message = str(caught.value)
    assert f"diffusion_models/{files.dit[1].name}" in message and files.dit[0].name not in message
    assert "python install.py --models wan2.2-t2v-a14b" in message


def test_truncated_dit_file_reports_expected_and_actual_size(tmp_path):
    files = write_wan_models("wan2.1-t2v-1.3b", tmp_path)
    data = files.dit[0].read_bytes()
    files.dit[0].write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as caught:
        load_dit(files.dit[0], LoadRequest())
    message = str(caught.value)
    assert "is truncated" in message
    assert f"expected {len(data):,} bytes" in message and f"found {len(data) // 2:,} bytes" in message


# ----------------------------------------------------------------------------------------------------------------
# fp8 weights


def is_block_projection(key: str) -> bool:
    """The Linears Kijai's scaled-fp8 Wan files store as fp8 (wan.md §9): q,k,v,o of both attentions, ffn.0/2."""
    return key.startswith("blocks.") and key.endswith(".weight") and ".norm" not in key and "modulation" not in key


def is_any_linear(key: str) -> bool:
    return key.endswith(".weight") and "norm" not in key and key != "patch_embedding.weight" and "." in key


def write_fp8_scaled(source: Path, target: Path, quantize, scale_shape: tuple[int, ...]) -> set[str]:
    """A ComfyUI scaled-fp8 DiT: chosen Linear weights fp8 + `scale_weight`, the `scaled_fp8` marker."""
    from safetensors.torch import load_file

    state = load_file(source)
    out = {"scaled_fp8": torch.empty(2, dtype=torch.float8_e4m3fn)}
    quantized = set()
    for key, value in state.items():
        if value.ndim == 2 and quantize(key):
            out[key], scale = quantize_fp8(value)
            out[key.removesuffix("weight") + "scale_weight"] = scale.reshape(scale_shape)
            quantized.add(key.removesuffix(".weight"))
        else:
            out[key] = value
    save_safetensors(target, out)
    return quantized


def dit_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return (torch.randn(1, 16, 2, 8, 12, generator=generator), torch.tensor([700.0]),
            torch.randn(1, 9, 64, generator=generator))


def relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    return ((got - expected).norm() / expected.norm()).item()


@pytest.mark.parametrize(("quantize", "scale_shape"), [(is_block_projection, (1,)), (is_any_linear, ())],
                         ids=["block-projections", "every-linear"])
def test_comfyui_fp8_scaled_dit_loads_close_to_the_float_one(models, tmp_path, quantize, scale_shape):
    source = models("wan2.1-t2v-1.3b").dit[0]
    path = tmp_path / "wan2.1_t2v_1.3B_fp8_e4m3fn_scaled.safetensors"
    quantized = write_fp8_scaled(source, path, quantize, scale_shape)
    reference = load_dit(source, LoadRequest()).module
    model = load_dit(path, LoadRequest()).module
    layers = {name for name, module in model.named_modules() if isinstance(module, QuantizedLinear)}
    assert layers == quantized and "blocks.1.ffn.2" in layers
    assert len(layers) == (20 if quantize is is_block_projection else 26)
    for name in layers:
        layer = model.get_submodule(name)
        assert layer.weight.dtype == torch.float8_e4m3fn and layer.scale_weight.shape == scale_shape
    assert type(model.get_submodule("patch_embedding")) is nn.Conv3d
    with torch.no_grad():
        expected, got = reference(*dit_inputs()), model(*dit_inputs())
    assert 1e-4 < relative_error(got, expected) < 0.05


def test_convert_to_fp8_at_load_quantizes_the_linears(models):
    source = models("wan2.1-t2v-1.3b").dit[0]
    reference = load_dit(source, LoadRequest()).module
    model = load_dit(source, LoadRequest(weight_format="fp8_e4m3fn")).module
    linears = {name for name, module in reference.named_modules() if isinstance(module, nn.Linear)}
    converted = {name for name, module in model.named_modules() if isinstance(module, QuantizedLinear)}
    assert converted == linears and len(linears) == 26
    for name in converted:
        layer = model.get_submodule(name)
        assert layer.weight.dtype == torch.float8_e4m3fn and layer.weight_scale.dtype == torch.float32
        assert layer.bias.dtype == torch.float32
    with torch.no_grad():
        expected, got = reference(*dit_inputs()), model(*dit_inputs())
    assert 1e-4 < relative_error(got, expected) < 0.05


def test_pipeline_with_fp8_weights_stays_close(models, pipelines):
    name = "wan2.1-i2v-14b-480p"
    fp8 = WanPipeline(wan_variant(name), models(name), LoadRequest(weight_format="fp8_e4m3fn"))
    request = request_for(name, width=96, height=64, frames=5)
    expected, got = pipelines(name).generate(request), fp8.generate(request)
    assert got.frames.shape == expected.frames.shape
    assert 1e-4 < relative_error(got.latents, expected.latents) < 0.1
