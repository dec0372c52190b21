"""Released SkyReels V3 models and the official defaults of their pipelines (skyreels_v3.md §1, §4)."""

from __future__ import annotations

from dataclasses import dataclass

from videosdgx.job import Variant, VideoRequest
from videosdgx.runtime.errors import ConfigurationError

MAX_REFERENCES = 4
EXTENSION_CHUNK_SECONDS = 5
EXTENSION_MAX_SECONDS = 30
SHOT_SECONDS = (2, 3, 4, 5)
AVATAR_MAX_SECONDS = 200
AVATAR_RESOLUTIONS = ("480P", "720P")
AVATAR_MAX_FRAMES = 5000  # the release's `max_frames_num` (200 s at 25 fps)
AVATAR_NEGATIVE_PROMPT = (  # the release's `talking_avatar_19B.sample_neg_prompt`
    "bright tones, overexposed, static, blurred details, subtitles, style, works, paintings, images, static, overall "
    "gray, worst quality, low quality, JPEG compression residue, ugly, incomplete, extra fingers, poorly drawn hands, "
    "poorly drawn faces, deformed, disfigured, misshapen limbs, fused fingers, still picture, messy background, "
    "three legs, many people in the background, walking backwards"
)


@dataclass(frozen=True, kw_only=True)
class SkyReelsVariant(Variant):
    """A SkyReels V3 model. Width/height are the 16:9 bucket of `resolution`; the real size follows the input's
    aspect ratio (buckets.py). `frames` is the default clip length (5 s; one 81-frame clip for the avatar)."""

    shift: float
    solver: str = "unipc"
    resolution: str = "720P"
    max_seconds: float = 5.0
    guidance_audio: float | None = None  # avatar: audio CFG scale
    motion_frames: int = 0  # avatar: generated frames carried into the next clip
    drop_frames: int = 0  # avatar: frames made past each clip's kept part and dropped (overlap with the next)

    def check(self, request: VideoRequest) -> None:
        """The family's checks before loading (checks.py)."""
        from videosdgx.skyreels_v3.checks import check_request

        check_request(self, request)


SKYREELS_V3_VARIANTS: dict[str, SkyReelsVariant] = {v.name: v for v in (
    SkyReelsVariant(
        name="skyreels-v3-r2v-14b", title="SkyReels V3 R2V-14B (reference to video)", family="skyreels_v3",
        task="r2v", width=1280, height=720, frames=121, fps=24, steps=8, guidance=1.0, shift=5.0,
        inputs=frozenset({"references"}), required=frozenset({"references"}), max_references=MAX_REFERENCES,
        workflows=("skyreels-v3-r2v-14b",),
    ),
    SkyReelsVariant(
        name="skyreels-v3-v2v-14b", title="SkyReels V3 V2V-14B (video extension)", family="skyreels_v3",
        task="v2v", width=1280, height=720, frames=121, fps=24, steps=8, guidance=1.0, shift=8.0,
        inputs=frozenset({"video"}), required=frozenset({"video"}), max_seconds=EXTENSION_MAX_SECONDS,
        workflows=("skyreels-v3-v2v-14b-extend", "skyreels-v3-v2v-14b-shot"),
    ),
    # Defaults of the official pipeline class (40 steps, shift 5, text CFG 5, audio CFG 4); the official CLI
    # passes 4 steps, shift 11, CFG 1 / 1 instead (`--steps 4 --shift 11 --cfg 1 --set guidance_audio=1`).
    SkyReelsVariant(
        name="skyreels-v3-a2v-19b", title="SkyReels V3 A2V-19B (talking avatar)", family="skyreels_v3",
        task="a2v", width=1280, height=720, frames=81, fps=25, steps=40, guidance=5.0, shift=5.0, solver="euler",
        inputs=frozenset({"image", "audio"}), required=frozenset({"image", "audio"}), max_seconds=AVATAR_MAX_SECONDS,
        guidance_audio=4.0, motion_frames=25, drop_frames=12, negative_prompt=AVATAR_NEGATIVE_PROMPT,
        workflows=("skyreels-v3-a2v-19b",),
    ),
)}


def skyreels_variant(name: str) -> SkyReelsVariant:
    try:
        return SKYREELS_V3_VARIANTS[name]
    except KeyError:
        raise ConfigurationError(
            f"Unknown SkyReels V3 model '{name}'. Choose one of: {', '.join(SKYREELS_V3_VARIANTS)}."
        ) from None
