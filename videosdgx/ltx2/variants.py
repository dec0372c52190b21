"""Released LTX-2 variants and the official sampling defaults of ltx-pipelines (`utils/constants.py` @ 400fd310).

Distilled: the 8 published sigmas, no guidance. Dev: LTX2Scheduler sigmas, video CFG 3 / audio CFG 7, STG 1 on
block 29 (19B) or 28 (2.3 and later: `detect_params` gives 2.5 the 2.4 row, = 2.3's), modality guidance 3, rescale
0.7; 40 steps for 19B, 30 for 2.3 / 2.5. Frames 8k + 1 and sides that are multiples of 32 (the video VAE's strides),
64 for two-stage variants (stage 1 runs at half size).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from videosdgx.job import Variant
from videosdgx.ltx2.guidance import GuiderParams
from videosdgx.runtime.errors import ConfigurationError

# ltx-pipelines' default negative prompt (constants.py DEFAULT_NEGATIVE_PROMPT @ 400fd310).
LTX2_NEGATIVE_PROMPT = (
    "has_subtitles, has_blurbox, transition from black, transition to black, speech_ending_short, blurry, "
    "out of focus, overexposed, underexposed, low contrast, washed out colors, excessive noise, grainy "
    "texture, poor lighting, flickering, motion blur, distorted proportions, unnatural skin tones, deformed facial "
    "features, asymmetrical face, missing facial features, extra limbs, disfigured hands, wrong hand count, "
    "artifacts around text, inconsistent perspective, camera shake, incorrect depth of field, background too sharp, "
    "background clutter, distracting reflections, harsh shadows, inconsistent lighting direction, color banding, "
    "cartoonish rendering, 3D CGI look, unrealistic materials, uncanny valley effect, incorrect ethnicity, wrong "
    "gender, exaggerated expressions, wrong gaze direction, mismatched lip sync, silent or muted audio, distorted "
    "voice, robotic voice, echo, background noise, off-sync audio, incorrect dialogue, added dialogue, repetitive "
    "speech, jittery movement, awkward pauses, incorrect timing, unnatural transitions, inconsistent framing, tilted "
    "camera, flat lighting, inconsistent tone, cinematic oversaturation, stylized filters, or AI artifacts."
)
DEV_VIDEO = GuiderParams(cfg=3.0, stg=1.0, modality=3.0, rescale=0.7)
DEV_AUDIO = GuiderParams(cfg=7.0, stg=1.0, modality=3.0, rescale=0.7)


@dataclass(frozen=True, kw_only=True)
class LTX2Variant(Variant):
    """`version` "19B", "2.3" or "2.5" (the DiT generation the checkpoint must be); `distilled` selects the published
    sigmas and no guidance; `cross_timestep` the cross-modal AdaLN timestep convention (config.py);
    `video_decoders` the values of `--option video_decoder` (the first is the default; none: the conv VAE only)."""

    version: str
    distilled: bool
    video_guidance: GuiderParams = GuiderParams()
    audio_guidance: GuiderParams = GuiderParams()
    stg_block: int | None = None
    two_stage: bool = False  # half size, x2 latent upsample, 3 refining steps (dev: with the distilled LoRA)
    cross_timestep: str = "mixed"
    family: str = "ltx2"
    size_multiple: int = 32
    frame_step: int = 8
    inputs: frozenset[str] = field(default_factory=lambda: frozenset({"image", "end_image"}))
    video_decoders: tuple[str, ...] = ()
    temporal_upscale: bool = False  # takes `--option temporal_upscale=true` (LTX-2.5's temporal x2 upscaler)

    def check(self, request) -> None:
        """The options' values, before loading: `two_stage`, `temporal_upscale` (true / false), `video_decoder`; the
        image conditioning's (conditioning.py)."""
        from videosdgx.ltx2.conditioning import check_image_options

        check_image_options(request, self.version)
        option_flag(request.options, "two_stage", self.two_stage)
        if option_flag(request.options, "temporal_upscale", False):
            if not self.temporal_upscale:
                raise ConfigurationError(f"--option temporal_upscale: {self.title} has no temporal upscaler "
                                         "(LTX-2.5 bundles have one); leave the option out.")
            if request.frames is not None and request.frames < 1 + self.frame_step // 2:
                raise ConfigurationError(
                    f"--option temporal_upscale doubles the frame rate of a clip: {request.frames} frame(s) is a "
                    f"still. Ask for at least {self.frame_step + 1} frames (they become "
                    f"{2 * self.frame_step + 1}), or leave the option out.")
        decoder = request.options.get("video_decoder")
        self._check_decoder_tiles(request.options, decoder)
        if decoder is None or decoder in self.video_decoders:
            return
        if not self.video_decoders:
            raise ConfigurationError(f"--option video_decoder={decoder}: {self.title} decodes with its conv VAE "
                                     "only (LTX-2.5 has a diffusion decoder); leave the option out.")
        raise ConfigurationError(f"--option video_decoder={decoder}: {self.title} decodes with one of "
                                 f"{', '.join(self.video_decoders)} (default {self.video_decoders[0]}).")

    def _check_decoder_tiles(self, options: dict, decoder: str | None) -> None:
        """`decoder_tile_frames` (multiple of 8) / `decoder_tile_size` (pixels, multiple of 32): diffusion decoder
        tiles; 0 = that axis untiled (the decoder's smallest tiles are checked once it is loaded)."""
        for key, step, example in (("decoder_tile_frames", 8, 64), ("decoder_tile_size", 32, 512)):
            value = options.get(key)
            if value is None:
                continue
            if "diffusion" not in self.video_decoders or decoder == "conv":
                raise ConfigurationError(f"--option {key}: tiles the diffusion video decoder, which {self.title} "
                                         f"{'does not use with video_decoder=conv' if decoder == 'conv' else 'has not'}"
                                         "; leave the option out.")
            if not isinstance(value, int) or isinstance(value, bool) or value < 0 or value % step:
                raise ConfigurationError(f"--option {key}={value}: give a whole multiple of {step} (0: no tiling "
                                         f"along that axis), e.g. --option {key}={example}.")


def option_flag(options: dict, name: str, default: bool) -> bool:
    """A true / false option (`--option NAME=true|false|1|0|yes|no`, or a bool from a node); others are refused."""
    value = options.get(name, default)
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ConfigurationError(f"--option {name}={value}: write {name}=true or {name}=false.")


def _variant(name: str, title: str, version: str, distilled: bool, two_stage: bool = False) -> LTX2Variant:
    common = dict(name=name, title=title, version=version, distilled=distilled, task="t2v+i2v", width=768,
                  height=512, frames=121, fps=24)
    if two_stage:  # ltx-pipelines' two-stage default size (stage 1 at half of it)
        common |= dict(width=1536, height=1024, two_stage=True, size_multiple=64)
    if distilled:
        return LTX2Variant(**common, steps=8, guidance=1.0, workflows=(name, f"{name}-i2v"))
    return LTX2Variant(**common, steps=40 if version == "19B" else 30, guidance=DEV_VIDEO.cfg,
                       video_guidance=DEV_VIDEO, audio_guidance=DEV_AUDIO, stg_block=29 if version == "19B" else 28,
                       negative_prompt=LTX2_NEGATIVE_PROMPT, workflows=(name,) if two_stage else ())


LTX2_VARIANTS: dict[str, LTX2Variant] = {v.name: v for v in (
    _variant("ltx-2-19b-distilled", "LTX-2 19B distilled (audio + video)", "19B", True, two_stage=True),
    _variant("ltx-2-19b-dev", "LTX-2 19B dev (audio + video)", "19B", False, two_stage=True),
    _variant("ltx-2.3-22b-distilled", "LTX-2.3 22B distilled (audio + video)", "2.3", True),
    _variant("ltx-2.3-22b-dev", "LTX-2.3 22B dev (audio + video)", "2.3", False),
    # LTX-2.5 (pipeline25.py): two stages (distilled: Euler-ancestral stage 1; dev: guided Euler stage 1, the
    # distilled LoRA 450 for stage 2), frames from the duration head when not given, the diffusion video decoder,
    # the optional temporal x2 upscale; the distilled model's shipped workflows (T2V, I2V, first / last frame).
    *(replace(_variant(name, title, "2.5", distilled, two_stage=True), workflows=workflows,
              video_decoders=("diffusion", "conv"), temporal_upscale=True)
      for name, title, distilled, workflows in (
          ("ltx-2.5-22b-distilled", "LTX-2.5 22B distilled (audio + video)", True,
           ("ltx-2.5-22b-distilled", "ltx-2.5-22b-distilled-i2v", "ltx-2.5-22b-distilled-flf")),
          ("ltx-2.5-22b-dev", "LTX-2.5 22B dev (audio + video)", False, ()))),
)}


def ltx2_variant(name: str) -> LTX2Variant:
    try:
        return LTX2_VARIANTS[name]
    except KeyError:
        raise ConfigurationError(f"Unknown LTX-2 model '{name}'. Choose one of: {', '.join(LTX2_VARIANTS)}.") from None
