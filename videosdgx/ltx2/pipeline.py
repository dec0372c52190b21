"""LTX-2 pipeline: one checkpoint (DiT, video VAE, audio VAE, vocoder, text projection) + Gemma 3 -> video with
its sound. Text-to-video and image-to-video (a first and / or last frame, conditioning.py), distilled or dev
sampling.

`load_ltx2_pipeline` is the family's `pipeline` hook (families.py); `LTX2Pipeline.generate` takes a VideoRequest.
Request options (`request.options`): `cross_timestep` ("mixed" | "cross" | "own"); the image conditioning's
`image_strength`, `end_image_strength` and `image_crf` (conditioning.py: `image` is the first frame, `end_image`
the last); `two_stage` (true / false; default: the variant's).
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, replace

import torch

from videosdgx.bundle_files import BundleFiles
from videosdgx.job import Progress, VideoRequest, VideoResult
from videosdgx.ltx2.conditioning import (KEYFRAME_SEED_OFFSET, frame_images, image_condition, image_crf,
                                         noised_keyframes)
from videosdgx.ltx2.loaders import load_dit
from videosdgx.ltx2.lora_keys import is_text_side, load_ltx2_lora
from videosdgx.ltx2.media_loaders import load_audio_vae, load_upsampler, load_video_vae, load_vocoder
from videosdgx.ltx2.sampler import Guidance, TextContext, VideoCondition, denoise, noised
from videosdgx.ltx2.schedule import STAGE2_SIGMAS, distilled_sigmas, ltx2_sigmas
from videosdgx.ltx2.temporal import FrozenAudio
from videosdgx.ltx2.text_encoder import load_ltx2_text_encoder
from videosdgx.ltx2.variants import LTX2Variant, option_flag
from videosdgx.runtime.errors import ConfigurationError
from videosdgx.runtime.lora import apply_lora
from videosdgx.runtime.lora_formats import LoraFile
from videosdgx.runtime.memory import GB, memory_status
from videosdgx.runtime.model_files import LoadRequest
from videosdgx.sampling.noise import seeded_noise

log = logging.getLogger(__name__)

AUDIO_LATENTS_PER_SECOND = 16000 / 160 / 4  # mel rate / audio VAE time stride = 25
VAE_STRIDE = 32  # sides are multiples of this per stage


@dataclass(frozen=True)
class LTX2Size:
    width: int
    height: int
    frames: int
    notes: tuple[str, ...] = ()


def valid_size(width: int, height: int, frames: int, multiple: int = 32, frame_step: int = 8) -> LTX2Size:
    """Round to sides that are multiples of `multiple` and `frame_step * k + 1` frames, with a note per change."""
    if width < multiple or height < multiple or frames < 1:
        raise ConfigurationError(
            f"{width}x{height}, {frames} frames is too small for LTX-2: width and height must be at least {multiple} "
            f"(multiples of it) and frames {frame_step}k+1 (1, 9, 17, ... 121)."
        )
    fixed_w, fixed_h = (max(multiple, round(v / multiple) * multiple) for v in (width, height))
    fixed_f = (frames - 1 + frame_step // 2) // frame_step * frame_step + 1
    notes = []
    if (fixed_w, fixed_h) != (width, height):
        notes.append(f"LTX-2 sizes are multiples of {multiple}: {width}x{height} became {fixed_w}x{fixed_h}.")
    if fixed_f != frames:
        notes.append(f"LTX-2 makes {frame_step}k+1 frames: {frames} became {fixed_f}.")
    for note in notes:
        log.warning(note)
    return LTX2Size(fixed_w, fixed_h, fixed_f, tuple(notes))


class LTX2Pipeline:
    """Loaded LTX-2 components (None where a caller does not need one: the nodes build it from their parts).

    With `low_memory`, Gemma is released after each prompt encoding and guidance passes run one by one.
    `upsampler` (x2 latent upsampler) enables the two-stage flow; a dev model's second stage also needs
    `stage2_lora` (the distilled LoRA, applied to the DiT for the 3 refining steps only)."""

    def __init__(self, variant: LTX2Variant, dit, text_encoder, video_vae, audio_vae, vocoder, upsampler=None,
                 low_memory: bool = False, stage2_lora: LoraFile | None = None):
        self.variant, self.dit, self.text_encoder = variant, dit, text_encoder
        self.video_vae, self.audio_vae, self.vocoder, self.upsampler = video_vae, audio_vae, vocoder, upsampler
        self.low_memory, self.stage2_lora = low_memory, stage2_lora

    def generate(self, request: VideoRequest, progress: Progress | None = None) -> VideoResult:
        """Video + sound for `request`; unset values take the variant's defaults (see `sample`)."""
        positive, negative = self.encode_text(request)
        video, audio, size, fps = self.sample(request, positive, negative, progress)
        frames = self.decode_frames(video, request, progress)
        return VideoResult(frames=frames, fps=fps, audio=decode_audio(self.audio_vae, self.vocoder, audio),
                           latents=(video, audio), notes=size.notes)

    def decode_frames(self, latents: torch.Tensor, request: VideoRequest,
                      progress: Progress | None = None) -> torch.Tensor:
        """Frames [T, H, W, 3] in 0..1 of the video latents (the VAE's decoder; LTX-2.5 may use another)."""
        return decode_video(self.video_vae, latents, progress)

    def two_stage(self, request: VideoRequest) -> bool:
        """Two stages when the variant is two-stage, unless `request.options["two_stage"]` is false; refused
        without the upsampler (or, for dev, the distilled LoRA)."""
        variant = self.variant
        if not (option_flag(request.options, "two_stage", variant.two_stage) and variant.two_stage):
            return False
        if self.upsampler is None:
            raise ConfigurationError(
                f"{variant.title} samples in two stages and needs the x2 latent upsampler "
                f"({bundle_file(variant, 'upsampler')}); install it with "
                f"`python install.py --models {variant.name}`, or pass the option two_stage=false."
            )
        self._check_refining_lora("two_stage=false")
        return True

    def _check_refining_lora(self, alternative: str) -> None:
        """A dev model refines with the distilled LoRA; refused without it (`alternative`: the option to pass)."""
        variant = self.variant
        if not variant.distilled and self.stage2_lora is None:
            raise ConfigurationError(
                f"{variant.title} refines with the distilled LoRA ({bundle_file(variant, 'lora')}); install it with "
                f"`python install.py --models {variant.name}`, or pass the option {alternative}."
            )

    @contextmanager
    def refining(self):
        """The DiT of the refining steps: a dev model with the distilled LoRA applied (removed on exit)."""
        applied = None if self.variant.distilled else apply_lora(self.dit, self.stage2_lora, skippable=is_text_side)
        try:
            yield
        finally:
            if applied is not None:
                applied.remove()

    def sample(self, request: VideoRequest, positive: TextContext, negative: TextContext | None,
               progress: Progress | None = None, on_latent: Callable[[torch.Tensor], None] | None = None,
               ) -> tuple[torch.Tensor, torch.Tensor, LTX2Size, float]:
        """(video latents, audio latents, corrected size, fps). Two stages (see `two_stage`): half size with the
        variant's sampling (its solvers: `_solvers`), x2 latent upsample, 3 refining Euler steps without guidance
        (dev: with the distilled LoRA applied to the DiT for those steps, and the stage-1 sound kept, as
        ltx-pipelines' `TI2VidTwoStagesPipeline`). `on_latent` sees each step's denoised video latents."""
        variant = self.variant
        two_stage = self.two_stage(request)
        multiple = VAE_STRIDE * (2 if two_stage else 1)
        size = valid_size(request.width or variant.width, request.height or variant.height,
                          request.frames or variant.frames, multiple, variant.frame_step)
        fps = float(request.fps or variant.fps)
        self.dit.cross_timestep = request.options.get("cross_timestep", variant.cross_timestep)
        guidance = self.guidance(request)
        on_step = self._on_step(progress)

        def stage(stage_size: LTX2Size, sigmas, stage_guidance: Guidance, video=None, audio=None,
                  seed_offset: int = 0):
            return self._stage(request, stage_size, fps, sigmas, positive, negative, stage_guidance, video, audio,
                               seed_offset, on_step, on_latent)

        if not two_stage:
            video, audio = stage(size, None, guidance)
            return video, audio, size, fps
        video, audio = stage(LTX2Size(size.width // 2, size.height // 2, size.frames), None, guidance)
        video = self.upsampler.upsample(video, *self.latent_statistics())
        with self.refining():
            video, refined_audio = stage(size, torch.tensor(STAGE2_SIGMAS), Guidance(), video, audio, seed_offset=2)
        return video, refined_audio if variant.distilled else audio, size, fps

    def latent_statistics(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The video latents' per-channel (mean, std) the upsamplers un-normalise with: the video VAE's."""
        return self.video_vae.latents_mean, self.video_vae.latents_std

    @staticmethod
    def _on_step(progress: Progress | None):
        return None if progress is None else (lambda done, total: progress("sampling", done, total))

    def _stage(self, request, size, fps, sigmas, positive, negative, guidance, video, audio, seed_offset, on_step,
               on_latent, freeze_audio: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """One sampling stage; `video` / `audio` (optional) are latents to re-noise to `sigmas[0]`. `freeze_audio`:
        `audio` stays clean, as context only (`FrozenAudio`)."""
        device = next(self.dit.parameters()).device
        video_shape, audio_shape = self._latent_shapes(size, fps)
        sigmas = self._sigmas(request, video_shape) if sigmas is None else sigmas
        condition = self._image_condition(request, size, video_shape, fps, device)
        start = float(sigmas[0])
        base = torch.zeros(video_shape, device=device) if video is None else video.to(device)
        mask = None
        if condition is not None:
            base = base * condition.mask + condition.clean * (1 - condition.mask)
            mask = condition.mask
            condition = noised_keyframes(condition, request.seed + seed_offset + KEYFRAME_SEED_OFFSET, start)
        video = noised(base, seeded_noise(video_shape, request.seed + seed_offset, device=device), start, mask)
        audio = torch.zeros(audio_shape, device=device) if audio is None else audio.to(device)
        if not freeze_audio:
            audio = noised(audio, seeded_noise(audio_shape, request.seed + seed_offset + 1, device=device), start)
        model = FrozenAudio(self.dit) if freeze_audio else self.dit
        return denoise(model, video, audio, sigmas, positive, negative, guidance, fps, condition,
                       batched=not self.low_memory, callback=on_step, on_latent=on_latent,
                       solvers=self._solvers(request, sigmas, seed_offset, device))

    def _solvers(self, request: VideoRequest, sigmas: torch.Tensor, seed_offset: int, device: torch.device):
        """(video, audio) steppers of a stage; None: Euler (LTX-2 / 2.3). LTX-2.5 overrides it."""
        return None

    # ------------------------------------------------------------------------------------------------ steps
    def encode_text(self, request: VideoRequest) -> tuple[TextContext, TextContext | None]:
        """The prompt's connector outputs, and the negative prompt's when the guidance needs it."""
        prompts = [request.prompt]
        if "uncond" in self.guidance(request).passes():
            prompts.append(request.negative_prompt.strip() or self.variant.negative_prompt)
        video, audio, mask = self.text_encoder.encode(prompts)
        if self.low_memory:
            self.text_encoder.release()
            gc.collect()
        device = next(self.dit.parameters()).device
        contexts = [TextContext(v[None].to(device), a[None].to(device), m[None].to(device))
                    for v, a, m in zip(video, audio, mask)]
        return contexts[0], (contexts[1] if len(contexts) > 1 else None)

    def _latent_shapes(self, size: LTX2Size, fps: float) -> tuple[tuple[int, ...], tuple[int, ...]]:
        vae = self.video_vae.config
        video = (1, vae.latent_channels, (size.frames - 1) // vae.temporal_factor + 1,
                 size.height // vae.spatial_factor, size.width // vae.spatial_factor)
        audio_cfg = self.audio_vae.config
        mel_bins = audio_cfg.packed_width // audio_cfg.latent_channels
        audio = (1, audio_cfg.latent_channels, round(size.frames / fps * AUDIO_LATENTS_PER_SECOND), mel_bins)
        return video, audio

    def _sigmas(self, request: VideoRequest, video_shape: tuple[int, ...] | None) -> torch.Tensor:
        steps = request.steps or self.variant.steps
        if self.variant.distilled:
            return distilled_sigmas(steps)
        return ltx2_sigmas(steps, tokens=video_shape[2] * video_shape[3] * video_shape[4])

    def guidance(self, request: VideoRequest) -> Guidance:
        """Distilled: none. Dev: the variant's; `request.guidance` replaces the video CFG scale, and
        `request.options` may replace `audio_cfg`, `stg`, `modality` and `rescale` (both modalities)."""
        variant = self.variant
        if variant.distilled:
            return Guidance()
        video = variant.video_guidance if request.guidance is None else replace(variant.video_guidance,
                                                                                 cfg=request.guidance)
        audio = variant.audio_guidance
        if "audio_cfg" in request.options:
            audio = replace(audio, cfg=float(request.options["audio_cfg"]))
        shared = {name: float(request.options[name]) for name in ("stg", "modality", "rescale")
                  if name in request.options}
        return Guidance(replace(video, **shared), replace(audio, **shared), (variant.stg_block,))

    def _image_condition(self, request: VideoRequest, size: LTX2Size, video_shape: tuple[int, ...], fps: float,
                         device: torch.device) -> VideoCondition | None:
        """The first / last frame images encoded at this stage's size (conditioning.py); None without images."""
        images = frame_images(request, size.frames)
        return image_condition(self.video_vae, images, size.width, size.height, video_shape, fps,
                               image_crf(request, self.variant.version), device)


def bundle_file(variant: LTX2Variant, role: str) -> str:
    """"<file> in models/<folder>" of the variant's bundle entry with `role` (for messages)."""
    from videosdgx.manifest import load_manifest

    manifest = load_manifest()
    if variant.name in manifest.bundles:
        for entry in manifest.bundle_entries(variant.name):
            if entry.role == role:
                return f"{entry.filename} in models/{entry.folder}"
    return f"the bundle's {role} file"


def decode_video(video_vae, latents: torch.Tensor, progress: Progress | None = None) -> torch.Tensor:
    """Frames [T, H, W, 3] in 0..1, decoded as a stream; progress counts pixel frames."""
    frames, done = [], 0
    total = (latents.shape[2] - 1) * video_vae.config.temporal_factor + 1
    for chunk in video_vae.decode_chunks(latents):
        frames.append(((chunk[0].float().clamp(-1, 1) + 1) / 2).permute(1, 2, 3, 0).cpu())
        done += frames[-1].shape[0]
        if progress is not None:
            progress("decoding", done, total)
    return torch.cat(frames)


def decode_audio(audio_vae, vocoder, latents: torch.Tensor) -> dict:
    """ComfyUI AUDIO: waveform [1, 2, N] float32 and the vocoder's sample rate."""
    mel = audio_vae.decode(latents)
    with torch.no_grad():
        waveform = vocoder(mel.to(next(vocoder.parameters()).dtype))
    return {"waveform": waveform[:1].float().cpu(), "sample_rate": int(vocoder.sample_rate)}


def memory_plan(files: BundleFiles, device: torch.device, low_memory: bool) -> bool:
    """Decide, and say before anything loads, whether Gemma stays loaded: it is released after each prompt
    encoding (and guidance passes run one by one) when asked, or when the files take over 80% of free memory."""
    sizes = {role: sum(path.stat().st_size for path in files.all(role)) for role in files.paths}
    gemma, total = sizes.get("text_encoder", 0), sum(sizes.values())
    usable = memory_status(device).usable
    tight = total > 0.8 * usable
    plan = "Gemma is released after encoding" if low_memory or tight else "every model stays loaded"
    log.info("LTX-2 plan: %.1f GB of weights (Gemma %.1f GB), %.1f GB free on %s: %s%s.", total / GB, gemma / GB,
             usable / GB, device, plan, " (memory is tight)" if tight and not low_memory else "")
    return low_memory or tight


def load_ltx2_pipeline(variant: LTX2Variant, files: BundleFiles, load: LoadRequest,
                       low_memory: bool = False) -> LTX2Pipeline:
    """The family's `pipeline` hook: every component from the bundle's checkpoint + Gemma text encoder files."""
    if variant.version == "2.5":
        from videosdgx.ltx2.pipeline25 import load_ltx25_pipeline

        return load_ltx25_pipeline(variant, files, load, low_memory)
    low_memory = memory_plan(files, load.device, low_memory)
    checkpoint = files.one("checkpoint")
    dit = load_dit(checkpoint, load, expected_version=variant.version, variant=variant.name,
                   cross_timestep=variant.cross_timestep).module
    text_encoder = load_ltx2_text_encoder(files.one("text_encoder"), checkpoint, load,
                                          tokenizer=files.optional("tokenizer"))
    video_vae = load_video_vae(checkpoint, load).module
    audio_vae = load_audio_vae(checkpoint, load).module
    vocoder = load_vocoder(checkpoint, replace(load, dtype=torch.float32)).module  # as ltx-core: fp32 waveform
    upsampler_file, lora_file = files.optional("upsampler"), files.optional("lora")
    two_stage = variant.two_stage and upsampler_file is not None
    upsampler = load_upsampler(upsampler_file, load).module if two_stage else None
    lora = load_ltx2_lora(lora_file, load) if two_stage and lora_file and not variant.distilled else None
    return LTX2Pipeline(variant, dit, text_encoder, video_vae, audio_vae, vocoder, upsampler, low_memory, lora)
