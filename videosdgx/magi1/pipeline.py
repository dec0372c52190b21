"""MAGI-1 pipeline: T2V, I2V (image prefix), V2V (video continuation), per-chunk prompts; each 24-frame chunk is
decoded and reported as soon as it is final."""

from __future__ import annotations

import dataclasses
import gc
import math
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F

from videosdgx.bundle_files import BundleFiles
from videosdgx.job import Progress, VideoRequest, VideoResult
from videosdgx.magi1.loaders import MagiTextEncoder, load_dit, load_text_encoder, load_vae
from videosdgx.magi1.sampler import Captions, ChunkSampler
from videosdgx.magi1.special_tokens import SpecialTokens, chunk_captions, load_special_tokens
from videosdgx.magi1.tiling import tiled_decode, tiled_encode
from videosdgx.magi1.transformer import MagiDiT
from videosdgx.magi1.variants import CHUNK_FRAMES, PREFIX_VIDEO_FRAMES, MagiVariant
from videosdgx.magi1.vae import SCALE_FACTOR, MagiVAE
from videosdgx.runtime.errors import ConfigurationError
from videosdgx.runtime.model_files import LoadRequest

ChunkCallback = Callable[[int, torch.Tensor], None]


def _spiece(files: BundleFiles):
    found = [p for p in files.all("tokenizer") if p.name == "spiece.model"]
    if not found:
        raise ConfigurationError(f"Bundle {files.bundle} has no spiece.model (role tokenizer); install the bundle "
                                 f"with `python install.py --models {files.bundle}`.")
    return found[0]


def _text_encoder_path(files: BundleFiles):
    return files.optional("text_encoder_index") or list(files.all("text_encoder"))


class MagiPipeline:
    """Loaded MAGI-1 components. `low_memory` frees the T5 encoder after each use and keeps the KV cache on the CPU."""

    def __init__(self, variant: MagiVariant, files: BundleFiles, load: LoadRequest, low_memory: bool = False):
        self.variant, self.files, self.low_memory = variant, files, low_memory
        self.dit = load_dit(files.optional("dit_index") or list(files.all("dit")), load, variant.size)
        self.load = dataclasses.replace(load, weight_format="default")  # fp8 storage is for the DiT only
        self.vae = load_vae(files.one("vae"), files.optional("vae_config"), self.load)
        self.tokens: SpecialTokens = load_special_tokens(files.one("special_tokens"))
        self._text: MagiTextEncoder | None = None

    @property
    def text_encoder(self) -> MagiTextEncoder:
        if self._text is None:
            self._text = load_text_encoder(_text_encoder_path(self.files), _spiece(self.files), self.load)
        return self._text

    def generate(self, request: VideoRequest, progress: Progress | None = None,
                 on_chunk: ChunkCallback | None = None) -> VideoResult:
        """The whole video; `on_chunk(index, frames)` sees each chunk's frames as soon as they are decoded."""
        frames = []
        for index, chunk in self.chunks(request, progress):
            frames.append(chunk)
            if on_chunk is not None:
                on_chunk(index, chunk)
        fps = request.fps or self.variant.fps
        video = torch.cat(frames)
        asked = request.frames or self.variant.frames
        notes = () if video.shape[0] == asked else (
            f"MAGI-1 makes whole chunks of {CHUNK_FRAMES} frames: {video.shape[0]} frames instead of {asked}",)
        return VideoResult(video, fps, notes=notes)

    def chunks(self, request: VideoRequest, progress: Progress | None = None) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield `(chunk index, frames [T, H, W, 3] in 0..1)` as each chunk is final."""
        self.variant.check(request)
        captions = self.text_encoder.encode(list(request.prompts) or [request.prompt])
        if self.low_memory:
            self._text = None
            gc.collect()
        yield from sample_chunks(self.dit, self.vae, self.tokens, self.variant, request, captions, progress,
                                 cache_device="cpu" if self.low_memory else None)


def sample_chunks(dit: MagiDiT, vae: MagiVAE, tokens: SpecialTokens, variant: MagiVariant, request: VideoRequest,
                  captions: list[tuple[torch.Tensor, torch.Tensor]], progress: Progress | None = None,
                  cache_device: torch.device | str | None = None) -> Iterator[tuple[int, torch.Tensor]]:
    """The chunk loop shared by the pipeline and the sampler node: `captions` holds one encoded prompt per chunk
    (the last one repeats for the remaining chunks). Yields `(chunk index, frames)` as each chunk is final;
    `progress("sampling", step, total)` runs after every model step and may raise to cancel."""
    settings = variant.sampler_settings(request)
    width, height = request.width or variant.width, request.height or variant.height
    fps = request.fps or variant.fps
    device = next(dit.parameters()).device
    prefix = _prefix(vae, request, width, height, fps)
    prefix = None if prefix is None else prefix.to(device)
    prefix_frames = 0 if prefix is None else prefix.shape[2]
    cw = settings.chunk_width
    chunks = math.ceil(((request.frames or variant.frames) // 4 + prefix_frames) / cw)
    clean = prefix_frames // cw
    per_chunk = [captions[min(i, len(captions) - 1)] for i in range(chunks - clean)]
    null = dit.y_embedder.null_caption_embedding.detach().float()
    cond, mask = chunk_captions([(c.to(device), m.to(device)) for c, m in per_chunk], tokens.to(device), clean, null)
    generator = torch.Generator().manual_seed(request.seed)
    noise = torch.randn(1, 16, chunks * cw, height // 8, width // 8, generator=generator).to(device)
    sampler = ChunkSampler(dit, settings, Captions(cond, mask, null), noise, prefix, cache_device=cache_device)
    step_progress = None if progress is None else (lambda done, total: progress("sampling", done, total))
    with torch.no_grad():
        for index, latent in sampler.run(step_progress):
            frames = decode_chunk(vae, latent, tile_frames=fps // 2)
            if progress is not None:
                progress("decoding", index + 1, chunks - clean)
            yield index, frames


def resample_frames(frames: torch.Tensor, source_fps: float, fps: float) -> torch.Tensor:
    """Frames at `fps`: output frame k shows the latest source frame whose time, rounded to the output grid, is at
    most k (how ffmpeg's fps filter, which the reference uses, duplicates and drops frames)."""
    if abs(source_fps - fps) < 1e-6:
        return frames
    count = max(1, round(frames.shape[0] * fps / source_fps))
    slots = torch.floor(torch.arange(frames.shape[0], dtype=torch.float64) * fps / source_fps + 0.5)
    index = torch.searchsorted(slots, torch.arange(count, dtype=torch.float64), right=True) - 1
    return frames[index.clamp(min=0)]


def _prefix(vae: MagiVAE, request: VideoRequest, width: int, height: int, fps: int) -> torch.Tensor | None:
    """The clean latent prefix: the start image (I2V) or the first 32 frames of the video (V2V)."""
    if request.image is not None:
        pixels = request.image[:1]
    elif request.video is not None:
        pixels = resample_frames(request.video, request.video_fps or fps, fps)[:PREFIX_VIDEO_FRAMES]
    else:
        return None
    return encode_prefix(vae, pixels, width, height, tile_frames=fps // 2)


def _vae_input(vae: MagiVAE, frames: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """IMAGE frames `[T, H, W, 3]` in 0..1 -> `[1, 3, T, height, width]` in [-1, 1], stretched to the size."""
    weight = next(vae.parameters())
    x = frames.permute(0, 3, 1, 2).float()
    if x.shape[-2:] != (height, width):
        x = F.interpolate(x, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    x = x.clamp(0, 1) * 2 - 1
    return x.permute(1, 0, 2, 3)[None].to(weight.device, weight.dtype)


def encode_prefix(vae: MagiVAE, frames: torch.Tensor, width: int, height: int, tile_frames: int) -> torch.Tensor:
    """Scaled latent prefix `[1, 16, P, h, w]` of an image (P = 1) or video frames (tiled, as the reference)."""
    with torch.no_grad():
        latent = tiled_encode(vae, _vae_input(vae, frames, width, height), tile_frames=tile_frames)
    return latent.float() * SCALE_FACTOR


def decode_chunk(vae: MagiVAE, latent: torch.Tensor, tile_frames: int) -> torch.Tensor:
    """One chunk's frames `[T, H, W, 3]` in 0..1 (the reference's tiled decode: 256 px tiles, `tile_frames`)."""
    weight = next(vae.parameters())
    video = tiled_decode(vae, (latent / SCALE_FACTOR).to(weight.device, weight.dtype), tile_frames=tile_frames)
    return ((video[0].float().clamp(-1, 1) + 1) / 2).permute(1, 2, 3, 0).cpu()


def load_magi1_pipeline(variant: MagiVariant, files: BundleFiles, load: LoadRequest,
                        low_memory: bool = False) -> MagiPipeline:
    """The family registry's `pipeline` hook."""
    return MagiPipeline(variant, files, load, low_memory)
