"""Write the SkyReels V3 reference tensors of tests/reference/skyreels_v3/ by running the official modules on CPU.

Contains no upstream code: it imports the official SkyReels-V3 package from $SKYREELS_V3_SRC after
/work/shared/reference/skyreels_v3_cpu_stubs.py (on PYTHONPATH) has stubbed its GPU-only imports. Weights come
from `videosdgx.testing.skyreels_v3.seeded_weights`, so the tests rebuild them instead of storing them. See README.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import skyreels_v3_cpu_stubs as stubs  # noqa: F401  (must come before the official imports)
import torch
from safetensors.torch import save_file

from videosdgx.testing.skyreels_v3 import seeded_weights

HERE = Path(__file__).resolve().parent
sys.modules["torchvision.transforms"].functional = stubs.mod("torchvision.transforms.functional")
# Import single pipeline modules without the package __init__ (it pulls in the avatar's torchao / audio stack).
PIPELINES = Path(stubs.os.environ["SKYREELS_V3_SRC"], "skyreels_v3", "pipelines")
stubs.mod("skyreels_v3.pipelines").__path__ = [str(PIPELINES)]
sys.path.insert(0, str(HERE))
import tiny  # noqa: E402

import skyreels_v3.modules.transformer as official_transformer  # noqa: E402
import skyreels_v3.modules.transformer_a2v as official_a2v  # noqa: E402
import skyreels_v3.modules.vae as official_vae  # noqa: E402
import skyreels_v3.pipelines.single_shot_extension_pipeline as official_extension  # noqa: E402
from skyreels_v3.scheduler.fm_solvers_unipc import FlowUniPCMultistepScheduler  # noqa: E402
from skyreels_v3.utils.util import process_video  # noqa: E402

_tensor_to = torch.Tensor.to


def _no_bf16(self, *args, **kwargs):
    """fp32 oracle: the official blocks end with `x.to(torch.bfloat16)`; keep float32 instead."""
    args = tuple(torch.float32 if a is torch.bfloat16 else a for a in args)
    if kwargs.get("dtype") is torch.bfloat16:
        kwargs["dtype"] = torch.float32
    return _tensor_to(self, *args, **kwargs)


class DeviceList(list):
    """The official forward reads `x.device` of a list input without block offload (upstream bug): give it one."""

    device = torch.device("cpu")


def official_dit() -> torch.nn.Module:
    model = official_transformer.WanModel(**tiny.DIT).eval()
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    model.load_state_dict(seeded_weights(shapes, tiny.DIT_SEED), strict=True)
    return model


def official_vae_wrapper() -> official_vae.WanVAE:
    wrapper = official_vae.WanVAE.__new__(official_vae.WanVAE)
    model = official_vae.WanVAE_(dim=tiny.VAE_DIM, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                                 temperal_downsample=[False, True, True]).eval()
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    model.load_state_dict(seeded_weights(shapes, tiny.VAE_SEED), strict=True)
    mean, std = torch.tensor(tiny.LATENTS_MEAN), torch.tensor(tiny.LATENTS_STD)
    wrapper.vae, wrapper.mean, wrapper.std, wrapper.scale = model, mean, std, [mean, 1 / std]
    return wrapper


class FixedText:
    """Stands in for the UMT5 encoder: the prompt rows, zero-padded to 512 as the official encoder returns them."""

    def __init__(self, rows: torch.Tensor):
        self.context = torch.cat([rows, rows.new_zeros(512 - rows.shape[0], rows.shape[1])])[None]

    def encode(self, prompt):
        return self.context

    def to(self, *args, **kwargs):
        return self


def dit_cases(model, inputs: dict) -> dict:
    with torch.no_grad():
        shot = model(DeviceList([inputs["noisy"], inputs["context_latent"]]), t=inputs["t_shot"],
                     context=FixedText(inputs["text"]).context)
        extension = model(torch.cat([inputs["context_latent"], inputs["noisy"]], dim=2), t=inputs["t_extension"],
                          context=FixedText(inputs["text"]).context)
    return {"shot_out": shot, "extension_out": extension}


def extension_case(model, inputs: dict) -> dict:
    """The official single-shot `extend_video` loop on the tiny DiT and VAE (input resize by `process_video`)."""
    last = inputs["video_uint8"][-25:]  # get_video_info keeps extend_video's 25 condition frames
    prefix, _, height, width = process_video(last.numpy(), None, tiny.BUCKET)
    pipe = official_extension.SingleShotExtensionPipeline.__new__(official_extension.SingleShotExtensionPipeline)
    pipe.transformer, pipe.vae, pipe.text_encoder = model, official_vae_wrapper(), FixedText(inputs["text"])
    pipe.scheduler, pipe.device, pipe.offload, pipe.low_vram = FlowUniPCMultistepScheduler(), "cpu", False, False
    pipe.vae_stride, pipe.patch_size, pipe.sp_size = (4, 8, 8), (1, 2, 2), 1
    official_extension.get_video_info = lambda *_: (prefix, None, height, width)
    frames = pipe.extend_video("unused.mp4", "prompt", tiny.EXTENSION_SECONDS, tiny.SEED)
    return {"prefix_pixels": prefix, "extension_frames": torch.from_numpy(frames)}


def avatar_case() -> dict:
    """`transformer_a2v.WanModel` (single speaker) on seeded inputs; the audio projector's tokens are kept too."""
    model = official_a2v.WanModel(**tiny.AVATAR).eval()
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    model.load_state_dict(seeded_weights(shapes, tiny.AVATAR_SEED), strict=True)
    inputs, kept = tiny.avatar_inputs(), {}
    model.audio_proj.register_forward_hook(lambda _m, _i, out: kept.setdefault("audio_tokens", out))
    tokens = inputs["noisy"].shape[2] * inputs["noisy"].shape[3] * inputs["noisy"].shape[4] // 4
    with torch.no_grad():
        out = model([inputs["noisy"][0]], t=inputs["t"], context=[inputs["text"]], seq_len=tokens,
                    clip_fea=inputs["clip"], y=[inputs["y"][0]], audio=inputs["audio"],
                    ref_target_masks=torch.ones(3, 4, 6))
    return {"avatar_out": out, "audio_tokens": kept["audio_tokens"]}


def save(tensors: dict, name: str) -> None:
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    save_file(tensors, str(HERE / name))
    for key, value in tensors.items():
        print(f"{name:18s} {key:20s} {tuple(value.shape)} {value.dtype}")


def main() -> None:
    torch.Tensor.to = _no_bf16
    official_transformer.attention = stubs.sdpa_blhd
    official_a2v.attention = official_a2v.flash_attention = stubs.sdpa_blhd
    inputs = tiny.inputs()
    model = official_dit()
    save({**inputs, **dit_cases(model, inputs), **extension_case(model, inputs)}, "v2v.safetensors")
    save(avatar_case(), "a2v.safetensors")


if __name__ == "__main__":
    main()
