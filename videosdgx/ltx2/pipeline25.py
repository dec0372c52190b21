"""LTX-2.5 pipeline: the LTX-2 pipeline on LTX-2.5's split files, with what 2.5 changes.

* Files by role: `dit` (transformer file with its embedded config), `text_encoder` (Gemma 4 12B with the
  projections bundled), `vae` (the conv video VAE: encodes images, decodes with `video_decoder=conv`),
  `audio_vae` (audio VAE + vocoder), optional `video_decoder` (the diffusion video VAE file: its decoder),
  `duration_head` and `tokenizer` (Gemma 4 tokenizer.json / tokenizer.model), `upsampler` (spatial x2),
  `temporal_upsampler` (temporal x2) and, for dev, `lora` (the distilled LoRA).
* Video decoding (`--option video_decoder`): the diffusion decoder when the bundle has it (default), its noise
  from a generator seeded with the job's seed, in tiles (diffusion_tiling.py) sized by `--option
  decoder_tile_frames` / `decoder_tile_size` or from the free memory; `conv` decodes with the conv VAE.
* Two stages (as the 19B path, `LTX2Pipeline.sample`), `--option two_stage=false` for one: stage 1 at half size,
  the `upsampler` (spatial x2) file, stage 2 = 3 Euler steps at full size without guidance. Distilled
  (`DistilledPipeline`): stage 1 takes Euler-ancestral steps, eta 1 (checkpoints from 2.5 on), noise from a
  generator seeded with `seed + 10000`, video drawn before audio. Dev (`TI2VidTwoStagesPipeline`): stage 1 is
  guided Euler (30 LTX2Scheduler steps, CFG 3 / 7, STG block 28), stage 2 runs with the `lora` (distilled LoRA 450)
  applied and the stage-1 sound is kept.
* `--option temporal_upscale=true` (`temporal_upsampler` file): after the last stage the video latents go through
  the temporal x2 upscaler (F latent frames -> 2F - 1, n pixel frames -> 2n - 1, the frame rate doubles) and one
  refinement round as ltx-pipelines' `DFRPipeline` does it: `DISTILLED_SIGMAS[4:]` (re-noised to 0.975, 4 steps),
  Euler-ancestral eta 0.5 seeded with `seed + 1000`, no guidance, the DiT (dev: with the distilled LoRA) conditioned
  at `min(2 fps, 60)` fps, the start image re-pinned at frame 0. Where it differs from DFR: the whole clip is one
  window (DFR: 2 tiles meeting at a seam keyframe held at strength 0.95), no generated keyframe slots and no
  detailing IC-LoRA (DFR's stage 1 / 2 add them), one round (DFR: up to 2), and the sound (stage-1 / stage-2 result,
  resampled to the refined clip's time base) is clean context for the video's cross-attention (diffusers'
  `freeze_audio`; ltx-pipelines runs the round on video alone). The shipped sound is the last stage's, cut to the
  video's duration.
* Without a frame count (`frames` None) the duration head picks it from the prompt (1..20 s, 8k + 1 frames).
* The text keys / values of each block are computed once per job (the 2.5 DiT's prompt modulation is static).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

import torch

from videosdgx.bundle_files import BundleFiles
from videosdgx.job import Progress, VideoRequest, VideoResult
from videosdgx.ltx2.diffusion_tiling import decoder_tiles, requested_tiles
from videosdgx.ltx2.duration_head25 import load_duration_head
from videosdgx.ltx2.loaders import load_dit
from videosdgx.ltx2.lora_keys import load_ltx2_lora
from videosdgx.ltx2.media_loaders import (load_audio_vae, load_diffusion_decoder, load_upsampler, load_video_vae,
                                          load_vocoder)
from videosdgx.ltx2.pipeline import LTX2Pipeline, LTX2Size, bundle_file, memory_plan
from videosdgx.ltx2.sampler import Guidance, TextContext
from videosdgx.ltx2.temporal import (TEMPORAL_ETA, TEMPORAL_NOISE_SEED_OFFSET, TEMPORAL_SIGMAS, audio_context,
                                     conditioning_fps)
from videosdgx.ltx2.text_conditioner import read_transformer_config
from videosdgx.ltx2.text_encoder25 import load_ltx25_text_encoder
from videosdgx.ltx2.variants import LTX2Variant, option_flag
from videosdgx.runtime.errors import ConfigurationError, WrongComponentError
from videosdgx.runtime.model_files import LoadRequest
from videosdgx.sampling.ancestral import EulerAncestralSolver
from videosdgx.sampling.solvers import EulerSolver

log = logging.getLogger(__name__)
ANCESTRAL_SEED_OFFSET = 10000  # ltx-pipelines ANCESTRAL_NOISE_SEED_OFFSET
ANCESTRAL_ETA = 1.0
TEMPORAL_STAGE = 4  # seed offset of the temporal round's start noise (stage 1: 0, stage 2: 2)


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
    """`LTX2Pipeline` with the 2.5 parts (module docstring); `temporal_upsampler` enables `temporal_upscale`."""

    def __init__(self, *args, duration_head=None, diffusion_decoder=None, temporal_upsampler=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.text_encoder = MemoEncoder(self.text_encoder)
        self.duration_head = duration_head
        self.diffusion_decoder = diffusion_decoder
        self.temporal_upsampler = temporal_upsampler
        self.dit.text_kv_cache = True

    def temporal_upscale(self, request: VideoRequest) -> bool:
        """`request.options["temporal_upscale"]` (default false); refused without the temporal upscaler (or, for
        dev, the distilled LoRA the refinement runs with)."""
        if not option_flag(request.options, "temporal_upscale", False):
            return False
        variant = self.variant
        if self.temporal_upsampler is None:
            raise ConfigurationError(
                f"--option temporal_upscale needs the temporal x2 latent upscaler "
                f"({bundle_file(variant, 'temporal_upsampler')}); install it with "
                f"`python install.py --models {variant.name}`, or leave the option out."
            )
        self._check_refining_lora("temporal_upscale=false")
        return True

    def sample(self, request: VideoRequest, positive: TextContext, negative: TextContext | None,
               progress: Progress | None = None, on_latent: Callable[[torch.Tensor], None] | None = None,
               ) -> tuple[torch.Tensor, torch.Tensor, LTX2Size, float]:
        """`LTX2Pipeline.sample`, then with `temporal_upscale` the temporal x2 round: (video latents of 2n - 1
        frames, the sound's latents as sampled, that size, twice the frame rate)."""
        temporal = self.temporal_upscale(request)
        video, audio, size, fps = super().sample(request, positive, negative, progress, on_latent)
        if not temporal:
            return video, audio, size, fps
        video = self.temporal_upsampler.upsample(video, *self.latent_statistics())
        size = LTX2Size(size.width, size.height, 2 * size.frames - 1, size.notes)
        condition_fps = conditioning_fps(2 * fps)
        tokens = self._latent_shapes(size, condition_fps)[1][2]
        context = audio_context(audio, tokens, size.frames / (size.frames + 1))
        with self.refining():
            video, _ = self._stage(request, size, condition_fps, TEMPORAL_SIGMAS, positive, None, Guidance(), video,
                                   context, TEMPORAL_STAGE, self._on_step(progress), on_latent, freeze_audio=True)
        return video, audio, size, 2 * fps

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

    def latent_statistics(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The diffusion video VAE file's when loaded (ltx-pipelines builds its upsampler with the statistics of its
        video VAE file, the diffusion one in Lightricks' set), else the conv VAE's; not the decoder choice's, so
        that `video_decoder` changes the decoding only."""
        if self.diffusion_decoder is not None:
            return self.diffusion_decoder.latents_mean, self.diffusion_decoder.latents_std
        return super().latent_statistics()

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
            result = super().generate(request, progress)
        finally:
            self.text_encoder.last = None
            self.dit.clear_text_cache()
        if self.temporal_upscale(request):  # the sound was made for n frames at fps: cut it to 2n - 1 at 2 fps
            result = replace(result, audio=cut_audio(result.audio, result.frames.shape[0], result.fps))
        return result

    def _solvers(self, request: VideoRequest, sigmas: torch.Tensor, seed_offset: int, device: torch.device):
        """Distilled stage 1: Euler-ancestral (eta 1); the temporal round: Euler-ancestral (eta 0.5) on the video,
        Euler on the held sound (a no-op); otherwise Euler."""
        generator = torch.Generator(device=device)
        if seed_offset == TEMPORAL_STAGE:
            generator.manual_seed(request.seed + TEMPORAL_NOISE_SEED_OFFSET)
            return EulerAncestralSolver(sigmas, TEMPORAL_ETA, generator=generator), EulerSolver(sigmas)
        if not self.variant.distilled or seed_offset != 0:
            return None
        generator.manual_seed(request.seed + ANCESTRAL_SEED_OFFSET)
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
    upsampler_file, temporal_file, lora_file = (files.optional(role) for role in
                                                ("upsampler", "temporal_upsampler", "lora"))
    upsampler = _upsampler(upsampler_file, load, "spatial") if variant.two_stage and upsampler_file else None
    temporal = _upsampler(temporal_file, load, "temporal") if variant.temporal_upscale and temporal_file else None
    lora = load_ltx2_lora(lora_file, load) if lora_file and not variant.distilled else None
    return LTX25Pipeline(variant, dit, text_encoder, video_vae, audio_vae, vocoder, upsampler, low_memory, lora,
                         duration_head=head, diffusion_decoder=diffusion_decoder, temporal_upsampler=temporal)


def _upsampler(path, load: LoadRequest, mode: str):
    """The latent upscaler file of a role, refused when it is the other kind (spatial / temporal)."""
    module = load_upsampler(path, load).module
    if module.config.mode != mode:
        raise WrongComponentError(
            f"{path} is a {module.config.mode} latent upscaler, but this place needs the {mode} x2 one "
            f"(ltx-2.5-latent-{mode}-upscaler-x2-bf16-1.0.safetensors in models/latent_upscale_models)."
        )
    return module


def cut_audio(sound: dict, frames: int, fps: float) -> dict:
    """ComfyUI AUDIO cut to the duration of `frames` at `fps` (after the temporal round, whose 2n - 1 frames at
    2 fps last a little less than the n frames the sound was made for)."""
    samples = round(frames / fps * sound["sample_rate"])
    return {**sound, "waveform": sound["waveform"][..., :samples]}


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
