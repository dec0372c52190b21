"""Write tests/reference/skyreels_v3/a2v_chain.safetensors: the official talking-avatar clip chaining on CPU.

Contains no upstream code: it imports `TalkingAvatarPipeline` from $SKYREELS_V3_SRC after the CPU stubs and runs its
`generate` with the tiny avatar DiT and VAE of make_reference.py, a stand-in text encoder and CLIP (tiny.py) and
seeded wav2vec2 features. kornia must be the real package (the colour matching uses it): put it on PYTHONPATH.
See README.md.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import make_reference as ref  # stubs + official imports + the tiny DiT / VAE builders
import torch
from PIL import Image

stubs = ref.stubs
for name in [n for n in sys.modules if n == "kornia" or n.startswith("kornia.")]:
    del sys.modules[name]  # the stub; the colour matching needs the real kornia
import kornia  # noqa: E402
import skyreels_v3.utils.avatar_util as avatar_util  # noqa: E402  (imported with the stub by make_reference)

avatar_util.kornia = kornia

quantization = stubs.mod("torchao.quantization")
quantization.float8_weight_only, quantization.quantize_ = None, None
stubs.mod("torchao").quantization = quantization


def center_crop(image: torch.Tensor, size) -> torch.Tensor:
    """torchvision's centre crop (top/left rounded), for inputs at least as large as `size`."""
    height, width = size
    top, left = int(round((image.shape[-2] - height) / 2)), int(round((image.shape[-1] - width) / 2))
    return image[..., top: top + height, left: left + width]


sys.modules["torchvision.transforms.functional"].center_crop = center_crop
import skyreels_v3.pipelines.talking_avatar_pipeline as official  # noqa: E402

tiny = ref.tiny


class Text:
    def __init__(self, inputs):
        self.rows = [inputs["prompt"], inputs["negative"], inputs["connection"]]

    def encode(self, prompts):
        assert prompts[1] == "negative" and prompts[2] == "a person is talking", prompts
        return self.rows

    def to(self, *args, **kwargs):
        return self


class Clip:
    def __init__(self, base):
        self.base, self.model = base, torch.nn.Identity()

    def visual(self, video):
        return tiny.fake_clip(self.base, video[:, :, 0])


def pipeline(inputs) -> official.TalkingAvatarPipeline:
    model = official.WanModel(**tiny.AVATAR).eval()
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    model.load_state_dict(ref.seeded_weights(shapes, tiny.AVATAR_SEED), strict=True)
    pipe = official.TalkingAvatarPipeline.__new__(official.TalkingAvatarPipeline)
    pipe.model, pipe.vae = model, ref.official_vae_wrapper()
    pipe.clip, pipe.text_encoder = Clip(inputs["clip"]), Text(inputs)
    pipe.device, pipe.param_dtype, pipe.rank, pipe.sp_size = torch.device("cpu"), torch.float32, 0, 1
    pipe.vae_stride, pipe.patch_size, pipe.num_timesteps, pipe.use_timestep_transform = (4, 8, 8), (1, 2, 2), 1000, True
    pipe.offload, pipe.low_vram, pipe.sample_neg_prompt = False, False, "negative"
    return pipe


def run(pipe, inputs, frames: int, folder: Path) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The official output frames (uint8 [T, H, W, 3]) and every clip's colour-matched pixels."""
    Image.fromarray(inputs["portrait_uint8"].numpy()).save(folder / "portrait.png")
    torch.save(inputs["features"][:frames].clone(), folder / "audio.pt")
    matched, match = [], official.match_and_blend_colors
    official.match_and_blend_colors = lambda *a: matched.append(match(*a)) or matched[-1]
    data = {"prompt": "prompt", "cond_image": str(folder / "portrait.png"),
            "cond_audio": {"person1": str(folder / "audio.pt")}}
    out = pipe.generate(data, size_buckget="480P", n_prompt="", progress=False, **tiny.CHAIN)
    official.match_and_blend_colors = match
    return torch.from_numpy(out), matched


def main() -> None:
    torch.Tensor.to = ref._no_bf16
    ref.official_a2v.attention = ref.official_a2v.flash_attention = stubs.sdpa_blhd
    official.ASPECT_RATIO_627 = {"0.50": ([*tiny.PORTRAIT], 1)}
    inputs = tiny.chain_inputs()
    with tempfile.TemporaryDirectory() as folder:
        frames, clips = run(pipeline(inputs), inputs, tiny.CHAIN_FRAMES, Path(folder))
        short, _ = run(pipeline(inputs), inputs, tiny.SHORT_FRAMES, Path(folder))
    print("clips:", [tuple(c.shape) for c in clips])
    ref.save({"chain_frames": frames, "keyframe_clip": clips[0], "chained_clip_2": clips[2],
              "short_frames": short}, "a2v_chain.safetensors")


if __name__ == "__main__":
    main()
