"""LTX-2.5 pipeline: the LTX-2 pipeline on LTX-2.5's split files, with what 2.5 changes.

* Files by role: `dit` (transformer file with its embedded config), `text_encoder` (Gemma 4 12B with the
  projections bundled), `vae` (the conv video VAE: encodes images, decodes with `video_decoder=conv`),
  `audio_vae` (audio VAE + vocoder), optional `video_decoder` (the diffusion video VAE file: its decoder),
  `duration_head` and `tokenizer` (Gemma 4 tokenizer.json / tokenizer.model).
* Video decoding (`--option video_decoder`): the diffusion decoder when the bundle has it (default), its noise
  from a generator seeded with the job's seed, in tiles (diffusion_tiling.py) sized by `--option
  decoder_tile_frames` / `decoder_tile_size` or from the free memory; `conv` decodes with the conv VAE.
* Distilled sampling: the first (or only) stage uses Euler-ancestral steps, eta 1 (ltx-pipelines `distilled.py`:
  checkpoints from 2.5 on), noise from a generator seeded with `seed + 10000`, video drawn before audio; a second
  stage stays Euler.
* Without a frame count (`frames` None) the duration head picks it from the prompt (1..20 s, 8k + 1 frames).
* The text keys / values of each block are computed once per job (the 2.5 DiT's prompt modulation is static).
"""

from __future__ import annotations

import logging
from dataclasses import replace

import torch

from videosdgx.bundle_files import BundleFiles
from videosdgx.job import Progress, VideoRequest, VideoResult
from videosdgx.ltx2.diffusion_tiling import decoder_tiles, requested_tiles
from videosdgx.ltx2.duration_head25 import load_duration_head
from videosdgx.ltx2.loaders import load_dit
from videosdgx.ltx2.media_loaders import load_audio_vae, load_diffusion_decoder, load_video_vae, load_vocoder
from videosdgx.ltx2.pipeline import LTX2Pipeline, memory_plan
from videosdgx.ltx2.text_conditioner import read_transformer_config
from videosdgx.ltx2.text_encoder25 import load_ltx25_text_encoder
from videosdgx.ltx2.variants import LTX2Variant
from videosdgx.runtime.errors import ConfigurationError
from videosdgx.runtime.model_files import LoadRequest
from videosdgx.sampling.ancestral import EulerAncestralSolver

log = logging.getLogger(__name__)
ANCESTRAL_SEED_OFFSET = 10000  # ltx-pipelines ANCESTRAL_NOISE_SEED_OFFSET
ANCESTRAL_ETA = 1.0


class MemoEncoder:
    """The text encoder, remembering its last prompts' result (the duration head and the sampler share it)."""

    def __init__(self, encoder):
        self.encoder = encoder
        self.last: tuple[list[str], object] | None = None

    def encode(self, prompts: list[str]):
        if self.last is None or self.last[0] != prompts:
            self.last = (list(prompts), self.encoder.encode(prompts))
        return self.last[1]

    def release(self) -> None:
        self.encoder.release()


class LTX25Pipeline(LTX2Pipeline):
    def __init__(self, *args, duration_head=None, diffusion_decoder=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.text_encoder = MemoEncoder(self.text_encoder)
        self.duration_head = duration_head
        self.diffusion_decoder = diffusion_decoder
        self.dit.text_kv_cache = True

    def video_decoder(self, request: VideoRequest) -> str:
        """"diffusion" (default when loaded) or "conv"; refuses the diffusion decoder when it was not loaded."""
        choice = request.options.get("video_decoder", "diffusion" if self.diffusion_decoder is not None else "conv")
        if choice == "diffusion" and self.diffusion_decoder is None:
            raise ConfigurationError(
                f"--option video_decoder=diffusion: bundle {self.variant.name} has no diffusion video VAE "
                "(ltx-2.5-video-vae-bf16.safetensors in models/vae); install it with "
                f"`python install.py --models {self.variant.name}`, or pass --option video_decoder=conv."
            )
        return choice

    def decode_frames(self, latents: torch.Tensor, request: VideoRequest,
                      progress: Progress | None = None) -> torch.Tensor:
        if self.video_decoder(request) == "conv":
            return super().decode_frames(latents, request, progress)
        return diffusion_decode(self.diffusion_decoder, latents, request.seed, progress, request.options)

    def generate(self, request: VideoRequest, progress: Progress | None = None) -> VideoResult:
        if self.video_decoder(request) == "diffusion":  # before sampling
            requested_tiles(self.diffusion_decoder.config, request.options)
        if request.frames is None and self.duration_head is not None:
            video, audio, _ = self.text_encoder.encode([request.prompt])
            frames = self.duration_head.predict_frames(video[:1], audio[:1], float(request.fps or self.variant.fps),
                                                       frame_step=self.variant.frame_step)
            request = replace(request, frames=frames)
        try:
            return super().generate(request, progress)
        finally:
            self.text_encoder.last = None
            self.dit.clear_text_cache()

    def _solvers(self, request: VideoRequest, sigmas: torch.Tensor, seed_offset: int, device: torch.device):
        if not self.variant.distilled or seed_offset != 0:
            return None
        generator = torch.Generator(device=device).manual_seed(request.seed + ANCESTRAL_SEED_OFFSET)
        return (EulerAncestralSolver(sigmas, ANCESTRAL_ETA, generator=generator),
                EulerAncestralSolver(sigmas, ANCESTRAL_ETA, generator=generator))


def load_ltx25_pipeline(variant: LTX2Variant, files: BundleFiles, load: LoadRequest,
                        low_memory: bool = False) -> LTX25Pipeline:
    """Every component from the bundle's split LTX-2.5 files (see the module docstring for the roles)."""
    low_memory = memory_plan(files, load.device, low_memory)
    dit_file = files.one("dit")
    dit = load_dit(dit_file, load, expected_version=variant.version, variant=variant.name,
                   cross_timestep=variant.cross_timestep).module
    text_file = files.one("text_encoder")  # connector settings: its own embedded config, else the DiT's
    settings = read_transformer_config(text_file) or read_transformer_config(dit_file) or None
    text_encoder = load_ltx25_text_encoder(text_file, load, tokenizer=files.optional("tokenizer"), settings=settings)
    video_vae = load_video_vae(files.one("vae"), load).module
    decoder_file = files.optional("video_decoder")
    diffusion_decoder = load_diffusion_decoder(decoder_file, load).module if decoder_file else None
    audio_file = files.one("audio_vae")
    audio_vae = load_audio_vae(audio_file, load).module
    vocoder = load_vocoder(audio_file, replace(load, dtype=torch.float32)).module
    head_file = files.optional("duration_head")
    head = load_duration_head(head_file, replace(load, dtype=torch.float32)).module if head_file else None
    return LTX25Pipeline(variant, dit, text_encoder, video_vae, audio_vae, vocoder, None, low_memory,
                         duration_head=head, diffusion_decoder=diffusion_decoder)


def diffusion_decode(decoder, latents: torch.Tensor, seed: int, progress: Progress | None = None,
                     options: dict | None = None) -> torch.Tensor:
    """Frames [T, H, W, 3] in 0..1 from the diffusion decoder, its pixel noise seeded with `seed`: in tiles
    (`decoder_tiles`: `--option decoder_tile_frames` / `decoder_tile_size`, else chosen from the free memory)
    streamed to the CPU a temporal tile at a time; progress counts pixel frames."""
    device = next(decoder.parameters()).device
    tiles = decoder_tiles(decoder, tuple(latents.shape[2:]), options or {})
    generator = torch.Generator(device=device).manual_seed(seed)
    chunks = decoder.decode_tiles(latents, tiles, generator) if tiles else iter([decoder.decode(latents, generator)])
    total = (latents.shape[2] - 1) * decoder.config.temporal_factor + 1
    frames, done = [], 0
    if progress is not None:
        progress("decoding", 0, total)
    for chunk in chunks:
        frames.append(((chunk[0].float().clamp(-1, 1) + 1) / 2).permute(1, 2, 3, 0).cpu())
        done += frames[-1].shape[0]
        if progress is not None:
            progress("decoding", done, total)
    return torch.cat(frames)
