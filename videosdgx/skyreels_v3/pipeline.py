"""SkyReels V3 pipelines behind the family seam: `load(variant, files, load, low_memory)` -> `.generate()`."""

from __future__ import annotations

import gc
import logging

import torch

from videosdgx.bundle_files import BundleFiles
from videosdgx.job import Progress, VideoRequest, VideoResult
from videosdgx.runtime.errors import ConfigurationError
from videosdgx.runtime.model_files import LoadRequest
from videosdgx.skyreels_v3.a2v import CONNECTION_PROMPT, AvatarSettings, AvatarText, animate_portrait
from videosdgx.skyreels_v3.buckets import avatar_bucket_size, bucket_size
from videosdgx.skyreels_v3.checks import check_request, v2v_mode_and_seconds
from videosdgx.skyreels_v3.loaders import load_avatar_dit, load_skyreels_dit, load_wav2vec2
from videosdgx.skyreels_v3.r2v import r2v_sigmas, sample_r2v
from videosdgx.skyreels_v3.references import encode_references, size_from_reference
from videosdgx.skyreels_v3.v2v import extend_single_shot, extension_sigmas, resize_nearest, switch_shot
from videosdgx.skyreels_v3.variants import AVATAR_MAX_FRAMES, SkyReelsVariant
from videosdgx.wan.conditioning import TextConditioning, encode_text, valid_size
from videosdgx.wan.loaders import WanTextEncoder, load_clip_vision, load_text_encoder, load_vae
from videosdgx.wan.pipeline import decode_frames

log = logging.getLogger(__name__)


class SkyReelsPipeline:
    """Components shared by the SkyReels V3 tasks: Wan 2.1 VAE, UMT5 (dropped after use when `low_memory`)."""

    def __init__(self, variant: SkyReelsVariant, files: BundleFiles, load: LoadRequest, low_memory: bool):
        self.variant, self.files, self.load, self.low_memory = variant, files, load, low_memory
        self.vae = load_vae(files.one("vae"), load).module
        self._text_encoder: WanTextEncoder | None = None

    def encode_text(self, prompt: str, negative: str, *more: str) -> TextConditioning | tuple:
        """The prompt pair (the variant's negative prompt when `negative` is empty); with `more` prompts, also their
        states `[tokens, 4096]` after the pair."""
        if self._text_encoder is None:
            tokenizer = self.files.optional("tokenizer")
            self._text_encoder = load_text_encoder(self.files.one("text_encoder"), self.load, tokenizer)
        text = encode_text(self._text_encoder, prompt, negative, self.variant.negative_prompt)
        extra = [encode_text(self._text_encoder, p, negative, self.variant.negative_prompt).positive for p in more]
        if self.low_memory:
            self._text_encoder = None
            gc.collect()
        return (text, *extra) if more else text

    def decode(self, latents: torch.Tensor, progress: Progress | None) -> torch.Tensor:
        on_chunk = None if progress is None else (lambda done, total: progress("decoding", done, total))
        return decode_frames(self.vae, latents, on_chunk)


class R2VPipeline(SkyReelsPipeline):
    """Reference-to-video: 1-4 reference images + prompt."""

    def __init__(self, variant: SkyReelsVariant, files: BundleFiles, load: LoadRequest, low_memory: bool):
        super().__init__(variant, files, load, low_memory)
        self.dit = load_skyreels_dit("r2v", files.one("dit"), load).module

    def generate(self, request: VideoRequest, progress: Progress | None = None) -> VideoResult:
        variant = self.variant
        check_request(variant, request)
        resolution = request.options.get("resolution", variant.resolution)
        width, height = size_from_reference(request.references[0], resolution)
        size = valid_size(request.width or width, request.height or height, request.frames or variant.frames,
                          variant.size_multiple)
        log.info("R2V: %dx%d, %d frames, %d reference(s)", size.width, size.height, size.frames,
                 len(request.references))
        text = self.encode_text(request.prompt, request.negative_prompt)
        generator = torch.Generator().manual_seed(request.seed)
        spatial = self.vae.config.spatial_factor
        shape = (1, self.dit.cfg.out_dim, (size.frames - 1) // 4 + 1, size.height // spatial, size.width // spatial)
        noise = torch.randn(shape, generator=generator)
        references = encode_references(self.vae, request.references, size.width, size.height, generator)
        sigmas = r2v_sigmas(request.steps or variant.steps, request.shift or variant.shift)
        step_progress = None if progress is None else (lambda step, total, _: progress("sampling", step + 1, total))
        guidance = variant.guidance if request.guidance is None else request.guidance
        latents = sample_r2v(self.dit, text, noise, references, sigmas, guidance,
                             float(request.options.get("guidance_image", 1.0)), request.solver or variant.solver,
                             step_progress)
        frames = self.decode(latents, progress)
        given = request.width or request.height
        notes = () if given else (f"{size.width}x{size.height}: the {resolution} bucket of the first reference",)
        return VideoResult(frames, float(request.fps or variant.fps), latents=latents, notes=notes)


class V2VPipeline(SkyReelsPipeline):
    """Video extension: single shot (`transformer/`, role dit) or shot switching (`shot_transformer/`, role
    dit_shot, loaded when first used)."""

    def __init__(self, variant: SkyReelsVariant, files: BundleFiles, load: LoadRequest, low_memory: bool):
        super().__init__(variant, files, load, low_memory)
        self.dit = load_skyreels_dit("v2v", files.one("dit"), load).module
        self._shot_dit = None

    @property
    def shot_dit(self):
        if self._shot_dit is None:
            path = self.files.optional("dit_shot")
            if path is None:
                raise ConfigurationError(
                    "Shot switching needs the shot_transformer of Skywork/SkyReels-V3-V2V-14B (bundle "
                    "skyreels-v3-v2v-14b, role dit_shot); install it with "
                    "`python install.py --models skyreels-v3-v2v-14b`."
                )
            self._shot_dit = load_skyreels_dit("v2v", path, self.load).module
        return self._shot_dit

    def generate(self, request: VideoRequest, progress: Progress | None = None) -> VideoResult:
        variant = self.variant
        check_request(variant, request)
        mode, seconds = v2v_mode_and_seconds(variant, request)
        resolution = request.options.get("resolution", variant.resolution)
        height, width = bucket_size(request.video.shape[1], request.video.shape[2], resolution)
        size = valid_size(request.width or width, request.height or height, 1, variant.size_multiple)
        width, height = size.width, size.height
        video = resize_nearest(request.video, height, width)
        log.info("V2V %s: %d s after %d input frames at %dx%d", mode, seconds, video.shape[0], width, height)
        text = self.encode_text(request.prompt, request.negative_prompt)
        sigmas = extension_sigmas(request.steps or variant.steps, request.shift or variant.shift)
        guidance = variant.guidance if request.guidance is None else request.guidance
        solver = request.solver or variant.solver
        fps = request.fps or variant.fps
        step_progress = None if progress is None else (lambda step, total, _: progress("sampling", step + 1, total))
        if mode == "shot":
            frames = switch_shot(self.shot_dit, text, video, seconds, fps, self.encode_frames, self.decode_frames,
                                 sigmas, request.seed, guidance, solver, step_progress)
        else:
            frames = extend_single_shot(self.dit, text, video, seconds, self.encode_frames, self.decode_frames,
                                        sigmas, request.seed, guidance, solver, step_progress)
        note = f"{width}x{height}{'' if request.width or request.height else f': the {resolution} bucket'}; " \
               "the result holds the new frames only"
        return VideoResult(frames, float(fps), notes=(note,))

    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        parameter = next(self.vae.parameters())
        pixels = (frames.permute(3, 0, 1, 2)[None] * 2 - 1).to(parameter.device, parameter.dtype)
        with torch.no_grad():
            return self.vae.encode(pixels).float()

    def decode_frames(self, latents: torch.Tensor) -> torch.Tensor:
        return decode_frames(self.vae, latents)


class A2VPipeline(SkyReelsPipeline):
    """Talking avatar: a portrait and speech (up to 200 s) -> 25 fps video carrying that speech."""

    def __init__(self, variant: SkyReelsVariant, files: BundleFiles, load: LoadRequest, low_memory: bool):
        super().__init__(variant, files, load, low_memory)
        self.dit = load_avatar_dit(files.one("dit"), load).module
        self.clip_vision = load_clip_vision(files.one("clip_vision"), load).module
        self.audio_encoder = load_wav2vec2(files.one("audio_encoder"), load).module

    def generate(self, request: VideoRequest, progress: Progress | None = None) -> VideoResult:
        variant = self.variant
        check_request(variant, request)
        resolution = request.options.get("resolution", variant.resolution)
        height, width = avatar_bucket_size(request.image.shape[1], request.image.shape[2], resolution)
        size = valid_size(request.width or width, request.height or height, 1, variant.size_multiple)
        text, connection = self.encode_text(request.prompt, request.negative_prompt, CONNECTION_PROMPT)
        settings = AvatarSettings(
            steps=request.steps or variant.steps, shift=request.shift or variant.shift,
            guidance=variant.guidance if request.guidance is None else request.guidance,
            guidance_audio=float(request.options.get("guidance_audio", variant.guidance_audio)),
            clip_frames=variant.frames, motion_frames=int(request.options.get("motion_frames", variant.motion_frames)),
            drop_frames=variant.drop_frames,
            max_frames=request.frames or AVATAR_MAX_FRAMES,
        )
        log.info("A2V: %dx%d, up to %d frames", size.width, size.height, settings.max_frames)
        step_progress = None if progress is None else (lambda done, total: progress("sampling", done, total))
        frames, audio = animate_portrait(self.dit, self.vae, self.clip_vision, self.audio_encoder,
                                         AvatarText(text.positive, text.negative, connection), request.image,
                                         request.audio, size.height, size.width, settings, request.seed,
                                         step_progress, variant.fps)
        given = request.width or request.height
        notes = () if given else (f"{size.width}x{size.height}: the {resolution} portrait bucket",)
        return VideoResult(frames, float(variant.fps), audio=audio, notes=notes)


def load_skyreels_pipeline(variant: SkyReelsVariant, files: BundleFiles, load: LoadRequest,
                           low_memory: bool = False) -> SkyReelsPipeline:
    """The registry's `pipeline` hook."""
    if variant.task == "r2v":
        return R2VPipeline(variant, files, load, low_memory)
    if variant.task == "v2v":
        return V2VPipeline(variant, files, load, low_memory)
    if variant.task == "a2v":
        return A2VPipeline(variant, files, load, low_memory)
    raise ConfigurationError(f"{variant.title} has no pipeline in this release yet.")
