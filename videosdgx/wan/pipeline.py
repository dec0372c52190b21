"""Wan pipeline: load a variant's components once, then turn prompts (and images) into videos."""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from videosdgx.bundle_files import BundleFiles
from videosdgx.job import Progress, VideoRequest, VideoResult
from videosdgx.runtime.errors import ConfigurationError
from videosdgx.runtime.model_files import LoadRequest
from videosdgx.wan.conditioning import ImageConditioning, encode_i2v, encode_text, encode_ti2v, valid_size
from videosdgx.wan.lightning import lightning_sigmas
from videosdgx.wan.loaders import WanTextEncoder, load_clip_vision, load_dit, load_text_encoder, load_vae
from videosdgx.wan.lora import ExpertLora, expert_loras_applied, read_wan_lora
from videosdgx.wan.sampler import SamplingSettings, sample_wan
from videosdgx.wan.variants import WanVariant

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WanFiles:
    """Model files of one variant. `dit` holds one file, or the high- then low-noise expert for A14B."""

    dit: tuple[Path, ...]
    vae: Path
    text_encoder: Path
    tokenizer: Path | None = None
    clip_vision: Path | None = None
    loras: tuple[tuple[Path, str], ...] = ()  # (file, "high" / "low" expert) that the bundle applies always

    @classmethod
    def from_bundle(cls, files: BundleFiles) -> "WanFiles":
        """Pick the files by manifest role; tokenizer files (official layout) are found in their folder; a bundle's
        `lora` goes to the model (the high-noise expert of A14B), its `lora_low` to the low-noise expert."""
        tokenizer = files.all("tokenizer")
        return cls(
            dit=files.all("dit") or (files.one("dit_high"), files.one("dit_low")), vae=files.one("vae"),
            text_encoder=files.one("text_encoder"), tokenizer=tokenizer[0].parent if tokenizer else None,
            clip_vision=files.optional("clip_vision"),
            loras=tuple((path, which) for role, which in (("lora", "high"), ("lora_low", "low"))
                        for path in files.all(role)),
        )


def load_wan_pipeline(variant: WanVariant, files: BundleFiles, load: LoadRequest, low_memory: bool) -> "WanPipeline":
    """The registry's pipeline hook: a Wan pipeline for a bundle's files."""
    return WanPipeline(variant, WanFiles.from_bundle(files), load, keep_text_encoder=not low_memory)


class WanPipeline:
    """Loaded Wan components. `keep_text_encoder=False` frees the encoder after each use (tight memory)."""

    def __init__(self, variant: WanVariant, files: WanFiles, load: LoadRequest, keep_text_encoder: bool = True):
        if len(files.dit) != variant.experts:
            raise ConfigurationError(
                f"{variant.title} needs {variant.experts} DiT file(s) (high-noise then low-noise expert for A14B), "
                f"got {len(files.dit)}."
            )
        if variant.clip_vision and files.clip_vision is None:
            raise ConfigurationError(
                f"{variant.title} needs a CLIP vision file (clip_vision_h.safetensors); install it with "
                f"`python install.py --models {variant.name}`."
            )
        self.variant, self.files, self.load, self.keep_text_encoder = variant, files, load, keep_text_encoder
        self._text_encoder: WanTextEncoder | None = None
        self.vae = load_vae(files.vae, load).module
        self.experts = [load_dit(path, load).module for path in files.dit]
        self.clip_vision = load_clip_vision(files.clip_vision, load).module if variant.clip_vision else None
        self.loras = [ExpertLora(self._read_lora(path), 1.0, which) for path, which in files.loras]

    def _read_lora(self, path: Path):
        """A Wan LoRA file, held on the DiTs' device in their compute dtype."""
        return read_wan_lora(path, self.load.dtype, self.load.device)

    @property
    def text_encoder(self) -> WanTextEncoder:
        if self._text_encoder is None:
            self._text_encoder = load_text_encoder(self.files.text_encoder, self.load, self.files.tokenizer)
        return self._text_encoder

    def _release_text_encoder(self) -> None:
        if not self.keep_text_encoder:
            self._text_encoder = None
            gc.collect()

    def generate(self, request: VideoRequest, progress: Progress | None = None) -> VideoResult:
        """Text (+ image) to video with the variant's defaults for everything `request` leaves unset (None)."""
        variant = self.variant
        loras = self.loras + [ExpertLora(self._read_lora(c.path), c.strength, c.target) for c in request.loras]
        size = valid_size(_given(request.width, variant.width), _given(request.height, variant.height),
                          _given(request.frames, variant.frames), variant.size_multiple)
        text = encode_text(self.text_encoder, request.prompt, request.negative_prompt, variant.negative_prompt)
        self._release_text_encoder()
        image = self._image_conditioning(request, size)
        guidance = _given(request.guidance, variant.guidance)
        steps, shift = _given(request.steps, variant.steps), _given(request.shift, variant.shift)
        settings = SamplingSettings(
            steps=steps, shift=shift, guidance=guidance, seed=request.seed, solver=request.solver or variant.solver,
            guidance_low=_given(request.guidance_low, variant.guidance_low or guidance), boundary=variant.boundary,
            sigmas=lightning_sigmas(steps, shift) if variant.schedule == "lightning" else None,
        )
        latent_shape = size.latent_shape(self.experts[0].cfg.out_dim, self.vae.config.spatial_factor)
        step_progress = None if progress is None else (lambda step, total, _: progress("sampling", step + 1, total))
        with expert_loras_applied(self.experts, loras):
            latents = sample_wan(self.experts, text, latent_shape, settings, image, callback=step_progress)
        frames = self.decode(latents, progress)
        return VideoResult(frames, _given(request.fps, variant.fps), latents=latents, notes=size.notes)

    def _image_conditioning(self, request: VideoRequest, size) -> ImageConditioning | None:
        task = self.variant.task
        if task in ("i2v", "flf2v"):
            if request.image is None:
                raise ConfigurationError(f"{self.variant.title} turns an image into a video: give a start image.")
            if task == "flf2v" and request.end_image is None:
                raise ConfigurationError(f"{self.variant.title} needs a first and a last frame image.")
            return encode_i2v(self.vae, size, request.image, request.end_image, self.clip_vision)
        if task == "ti2v" and request.image is not None:
            return encode_ti2v(self.vae, size, request.image)
        if request.image is not None:
            raise ConfigurationError(f"{self.variant.title} is text-to-video only; it takes no image.")
        return None

    def decode(self, latents: torch.Tensor, progress: Progress | None = None) -> torch.Tensor:
        """Normalised latents -> frames `[T, H, W, 3]` in 0..1, decoded chunk by chunk."""
        on_chunk = None if progress is None else (lambda done, total: progress("decoding", done, total))
        return decode_frames(self.vae, latents, on_chunk)


def _given(value, default):
    """The user's value when set (0 included), else the variant's default."""
    return default if value is None else value


def decode_frames(vae, latents: torch.Tensor, on_chunk: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Latents `[B, C, T, h, w]` -> IMAGE frames `[B * frames, H, W, 3]` in 0..1 (videos one after the other).

    Decodes one latent frame at a time; `on_chunk(done, total)` runs after each (and may raise to cancel).
    """
    parameter = next(vae.parameters())
    frames, total = [], latents.shape[0] * latents.shape[2]
    with torch.no_grad():
        for video in latents.split(1):
            for chunk in vae.decode_chunks(video.to(parameter.device, parameter.dtype)):
                frames.append(((chunk[0].float().clamp(-1, 1) + 1) / 2).permute(1, 2, 3, 0).cpu())
                if on_chunk is not None:
                    on_chunk(len(frames), total)
    return torch.cat(frames)
