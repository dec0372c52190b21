"""MAGI-1's autoregressive chunk sampler (magi1.md §4.3-4.7): up to `window` chunks in flight at different noise
levels, a key-value cache of clean chunks, 3-pass guidance (base) or one pass with the nearly-clean rule (distill).

Chunks are emitted as soon as they are final; only the chunks in flight, the newest clean chunk and the cache are
held, so memory does not grow with the number of chunks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from videosdgx.magi1.cache import ChunkKVCache
from videosdgx.magi1.schedule import distill_step_size, guidance_scales, kv_range, time_schedule, window_stages
from videosdgx.magi1.transformer import ChunkLayout, MagiDiT
from videosdgx.sampling.loop import check_finite

NULL_CAPTION_TOKENS = 50  # the reference's null caption: its first 50 rows are attended


@dataclass(frozen=True)
class SamplerSettings:
    """The reference runtime settings of a variant (magi1.md §7 runtime_config / engine_config)."""

    steps: int
    distill: bool
    window: int = 4
    chunk_width: int = 6
    noise2clean_kvrange: tuple[int, ...] = (5, 4, 3, 2)
    clean_chunk_kvrange: int = 1
    clean_t: float = 0.9999
    cfg_t_range: tuple[float, ...] = (0.0, 0.0217, 0.1, 0.3, 0.999)
    prev_chunk_scales: tuple[float, ...] = (1.5, 1.5, 1.5, 1.0, 1.0)
    text_scales: tuple[float, ...] = (7.5, 7.5, 7.5, 0.0, 0.0)
    nearly_clean_threshold: float = 0.3
    nearly_clean_prev_scale: float = 0.7

    @property
    def steps_per_stage(self) -> int:
        return self.steps // self.window


@dataclass
class Captions:
    """Per-chunk conditional captions `[chunks, L, C]` + masks, and the null caption `[L, C]` (first 50 rows used)."""

    cond: torch.Tensor
    cond_mask: torch.Tensor
    null: torch.Tensor

    def null_mask(self, rows: int) -> torch.Tensor:
        mask = torch.zeros(rows, self.null.shape[0], dtype=torch.bool, device=self.null.device)
        mask[:, :NULL_CAPTION_TOKENS] = True
        return mask


StepProgress = Callable[[int, int], None]


class ChunkSampler:
    """Denoise `chunks` latent chunks of `[1, 16, chunk_width, h, w]` from `noise`, after an optional prefix.

    `prefix [1, 16, P, h, w]` is a clean latent prefix (I2V: P = 1, V2V: P frames); whole prefix chunks are
    cached once and never denoised, the rest is forced into the first chunk(s) at every step.
    """

    def __init__(self, model: MagiDiT, settings: SamplerSettings, captions: Captions, noise: torch.Tensor,
                 prefix: torch.Tensor | None = None, cache_device: torch.device | str | None = None):
        self.model, self.s, self.captions = model, settings, captions
        cw = settings.chunk_width
        self.chunks = noise.shape[2] // cw
        self.latents = dict(enumerate(noise.split(cw, dim=2)))
        self.prefix = prefix
        self.offset = 0 if prefix is None else prefix.shape[2] // cw
        self.tokens = cw * (noise.shape[3] // model.cfg.patch) * (noise.shape[4] // model.cfg.patch)
        self.times = time_schedule(settings.steps).to(noise.device)
        widest = max(settings.noise2clean_kvrange, default=0)
        self.cache = ChunkKVCache(keep=widest - 1 if widest else None, device=cache_device)
        self.dt = distill_step_size(settings.steps) if settings.distill else None

    def total_steps(self) -> int:
        return self.s.steps_per_stage * (self.chunks + self.s.window - 1 - self.offset)

    def run(self, progress: StepProgress | None = None) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield `(chunk index counted after the prefix, final latent)` as each chunk is done."""
        if self.offset:
            self._cache_prefix()
        done = [0] * self.chunks
        total, count = self.total_steps(), 0
        for stage in window_stages(self.chunks, self.s.window, self.offset):
            for idx in range(self.s.steps_per_stage):
                self._step(stage, idx)
                for c in range(stage.first, stage.end):
                    done[c] += 1
                count += 1
                if progress is not None:
                    progress(count, total)
                if done[stage.first] == self.s.steps:
                    emitted = self._emit(stage.first)
                    if emitted is not None:
                        yield stage.first - self.offset, emitted
        self.cache.clear()

    def _emit(self, chunk: int) -> torch.Tensor | None:
        """The finished chunk without its prefix frames (I2V keeps its first frame); older latents are dropped."""
        self.latents.pop(chunk - 1, None)
        latent = self.latents[chunk]
        if self.prefix is None:
            return latent
        cw, prefix_len = self.s.chunk_width, self.prefix.shape[2]
        if (chunk + 1) * cw <= prefix_len:
            return None
        start = 0 if chunk == 0 and prefix_len == 1 else max(chunk * cw, prefix_len) - chunk * cw
        return latent[:, :, start:]

    def _cache_prefix(self) -> None:
        """Write the keys and values of the whole prefix chunks (clean time, null captions, each sees itself)."""
        n = self.offset
        x = self.prefix[:, :, : n * self.s.chunk_width]
        t = torch.full((1, n), self.s.clean_t, device=x.device)
        ranges = [kv_range(c, self.s.steps, self.s.steps, self.s.noise2clean_kvrange, self.s.clean_chunk_kvrange)
                  for c in range(n)]
        layout = ChunkLayout(n, self.tokens, 0, ranges, self.cache, cache_chunks=n)
        null = self.captions.null.expand(1, n, -1, -1)
        # the reference writes this cache from its null-text pass: adaLN token 'dropped' for base, not for distill
        self.model(x, t, null, self.captions.null_mask(n)[None], layout, drop_caption=not self.s.distill,
                   distill_dt=self.dt)

    def _step(self, stage, idx: int) -> None:
        s, cw = self.s, self.s.chunk_width
        extra = stage.first > self.offset and idx == 0
        first = stage.first - 1 if extra else stage.first
        chunks = list(range(first, stage.end))
        steps = [(stage.level_end - 1 - k) * s.steps_per_stage + idx for k in range(stage.end - stage.first)]
        steps = ([s.steps] if extra else []) + steps
        clean = torch.full((), s.clean_t, device=self.times.device)
        t = torch.stack([self.times[i] if i < s.steps else clean for i in steps])[None]
        x = torch.cat([self.latents[c] for c in chunks], dim=2)
        x, t = self._force_prefix(x, t, first)
        ranges = [kv_range(c, st, s.steps, s.noise2clean_kvrange, s.clean_chunk_kvrange)
                  for c, st in zip(chunks, steps)]
        velocity = self._velocity(x, t, chunks, ranges, extra)
        n_extra = int(extra)
        dt = torch.stack([self.times[i + 1] - self.times[i] for i in steps[n_extra:]])
        for k, c in enumerate(chunks[n_extra:]):
            j = k + n_extra
            self.latents[c] = x[:, :, j * cw:(j + 1) * cw] + velocity[:, :, k * cw:(k + 1) * cw] * dt[k]
            check_finite(self.latents[c], steps[j], (self.model,))

    def _force_prefix(self, x: torch.Tensor, t: torch.Tensor, first: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Overwrite the input's frames that the prefix covers (whole prefix chunks also get t = 1)."""
        if self.prefix is None:
            return x, t
        start, length = first * self.s.chunk_width, self.prefix.shape[2]
        if length <= start:
            return x, t
        n = min(length - start, x.shape[2])
        x = x.clone()
        x[:, :, :n] = self.prefix[:, :, start:start + n]
        whole = (length - start) // self.s.chunk_width
        if whole:
            t = t.clone()
            t[:, :whole] = 1.0
        return x, t

    def _caption_rows(self, chunks: list[int], extra: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Conditional captions of the input chunks; the prepended clean chunk gets the null caption."""
        cap, mask = self.captions.cond[chunks], self.captions.cond_mask[chunks].bool()
        if extra:
            cap = torch.cat([self.captions.null[None], cap[1:]])
            mask = torch.cat([self.captions.null_mask(1), mask[1:]])
        return cap, mask

    def _velocity(self, x, t, chunks, ranges, extra: bool) -> torch.Tensor:
        """Guided velocity of the denoising chunks of the input (the prepended clean chunk excluded)."""
        s, cw, n = self.s, self.s.chunk_width, len(chunks)
        first, n_extra = chunks[0], int(extra)
        cond, cond_mask = self._caption_rows(chunks, extra)
        if s.distill:
            near = t[0, n_extra].item() > s.nearly_clean_threshold
            if near:  # a copy of the first denoising chunk that sees only itself
                x = torch.cat([x, x[:, :, n_extra * cw:(n_extra + 1) * cw]], dim=2)
                t = torch.cat([t, t[:, n_extra:n_extra + 1]], dim=1)
                cond, cond_mask = torch.cat([cond, cond[n_extra:n_extra + 1]]), torch.cat(
                    [cond_mask, cond_mask[n_extra:n_extra + 1]])
                ranges = ranges + [(first + n, first + n + 1)]
            layout = ChunkLayout(len(ranges), self.tokens, first, ranges, self.cache, cache_chunks=n_extra)
            v = self.model(x, t, cond[None], cond_mask[None], layout, drop_caption=False, distill_dt=self.dt)
            if near:
                j = slice(n_extra * cw, (n_extra + 1) * cw)
                v[:, :, j] = s.nearly_clean_prev_scale * v[:, :, j] + (1 - s.nearly_clean_prev_scale) * v[:, :, n * cw:]
                v = v[:, :, : n * cw]
            return v[:, :, n_extra * cw:]

        null = self.captions.null.expand(1, n, -1, -1)
        null_mask = self.captions.null_mask(n)[None]
        text_layout = ChunkLayout(n, self.tokens, first, ranges, self.cache)
        v_text = self.model(x, t, cond[None], cond_mask[None], text_layout, drop_caption=False)
        prev_layout = ChunkLayout(n, self.tokens, first, ranges, self.cache, cache_chunks=n_extra)
        v_prev = self.model(x, t, null, null_mask, prev_layout, drop_caption=True)
        m = n - n_extra  # unconditional: each denoising chunk alone, positions from 0, no cache
        alone = x[:, :, n_extra * cw:].reshape(1, x.shape[1], m, cw, *x.shape[3:]).transpose(0, 2).squeeze(2)
        alone_t = t[:, n_extra:].transpose(0, 1)
        layout = ChunkLayout(1, self.tokens, 0, [(0, 1)])
        v_un = self.model(alone, alone_t, null[:, :1].expand(m, -1, -1, -1), null_mask[:, :1].expand(m, -1, -1),
                          layout, drop_caption=True)
        v_un = torch.cat(v_un.split(1), dim=2)
        out = []
        for k in range(m):
            j = slice((k + n_extra) * cw, (k + n_extra + 1) * cw)
            prev, text = guidance_scales(t[0, k + n_extra].item(), s.cfg_t_range, s.prev_chunk_scales, s.text_scales)
            u = v_un[:, :, k * cw:(k + 1) * cw]
            out.append((1 - prev) * u + (prev - text) * v_prev[:, :, j] + text * v_text[:, :, j])
        return torch.cat(out, dim=2)
