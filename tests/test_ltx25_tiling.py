"""Tiled decoding of LTX-2.5's diffusion video decoder (ltx-core's `DiffusionVideoDecoder._decode_pixels`).

diffusers' `tiled_decode` cuts the same tiles (same stage-4 cells, flags and noise slices) but blends with other
weights (`x / E` where ltx-core ramps `(x + 1) / (E + 1)`) and trims its last tiles differently: its tile outputs,
recorded, must be ours, and blended with each formula give its output and ours. Hand-computed tile boundaries and
weights; one tile equals the untiled decode exactly; tiled vs untiled on a tiny random decoder; the options.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tests.test_ltx25_decoder import CONFIGS, relative
from tests.test_ltx25_pipeline import pipeline  # noqa: F401 (the demo bundle's pipeline, a fixture)
from videosdgx.bundle_files import BundleFiles
from videosdgx.cli import main
from videosdgx.job import VideoRequest
from videosdgx.ltx2 import diffusion_tiling as tiling
from videosdgx.ltx2 import memory
from videosdgx.ltx2.diffusion_decoder import DiffusionDecoderConfig, DiffusionVideoDecoder
from videosdgx.ltx2.diffusion_tiling import Interval, TileSizes
from videosdgx.ltx2.media_loaders import load_diffusion_decoder
from videosdgx.ltx2.pipeline25 import diffusion_decode
from videosdgx.ltx2.variants import LTX2_VARIANTS
from videosdgx.plan import Size, plan_run
from videosdgx.runtime.errors import ConfigurationError
from videosdgx.runtime.memory import MemoryStatus
from videosdgx.runtime.model_files import LoadRequest
from videosdgx.testing.ltx25_decoder import TINY_DECODER, decoder_state, diffusers_decoder, write_diffusion_vae

RELEASE = DiffusionDecoderConfig()  # ltx-core's class defaults (1024 -> 128 channels, stage 5 3x7x7, 2 v steps)
DIFFUSERS = dataclasses.replace(RELEASE, stage_channels=(2048, 1024, 512, 512, 256), stage5_kernel=(11, 11, 11))


@pytest.fixture(autouse=True)
def eager_flex(monkeypatch):
    import torch.nn.attention.flex_attention as flex

    monkeypatch.setattr(flex, "_FLEX_ATTENTION_DISABLE_COMPILE_DEBUG", True, raising=False)


def tiny(cfg: DiffusionDecoderConfig = TINY_DECODER) -> DiffusionVideoDecoder:
    model = DiffusionVideoDecoder(cfg)
    model.load_state_dict(decoder_state(cfg))
    return model.eval()


def latents(*shape: int) -> torch.Tensor:
    return torch.randn(1, 8, *shape, generator=torch.Generator().manual_seed(1))


def tiled(model: DiffusionVideoDecoder, z: torch.Tensor, tiles: TileSizes, seed: int = 2) -> torch.Tensor:
    return torch.cat(list(model.decode_tiles(z, tiles, torch.Generator().manual_seed(seed))), dim=2)


# ------------------------------------------------------------------------------------------------ geometry
def test_tiles_and_blend_weights_follow_ltx_core():
    """`split_by_size`: starts every size - overlap, the last tile ends at the length and grows back to the
    smallest tile; symmetric trapezoids i / (ramp + 1); the pixel-shuffle mapping of cells to pixels."""
    assert tiling.split_axis(17, 8, 4, 3) == [Interval(0, 8, 0, 4), Interval(4, 12, 4, 4), Interval(8, 16, 4, 4),
                                              Interval(12, 17, 4, 0)]
    # 11 cells, 6 per tile, overlap 2: [0, 6) [4, 10) [8, 11); the 3-cell last tile grows to 5: [6, 11)
    assert tiling.split_axis(11, 6, 2, 5) == [Interval(0, 6, 0, 2), Interval(4, 10, 2, 4), Interval(6, 11, 4, 0)]
    assert tiling.split_axis(8, 8, 2) == [Interval(0, 8, 0, 0)]
    assert tiling.split_axis(4, 3, 1, 5) == [Interval(0, 4, 0, 0)]  # shorter than the smallest tile: one
    assert torch.allclose(tiling.trapezoid(6, 2, 2), torch.tensor([1 / 3, 2 / 3, 1, 1, 2 / 3, 1 / 3]))
    assert torch.allclose(tiling.trapezoid(5, 0, 3), torch.tensor([1, 1, 3 / 4, 2 / 4, 1 / 4]))
    # time (stride 2): [s, e) -> [2s - 1, 2e - 1), the first tile [0, 2e - 1); space: x 8 (stride 2, patch 4)
    assert tiling.to_pixels(Interval(4, 12, 4, 4), 2, causal=True) == Interval(7, 23, 8, 8)
    assert tiling.to_pixels(Interval(0, 8, 0, 4), 2, causal=True) == Interval(0, 15, 0, 8)
    assert tiling.to_pixels(Interval(4, 12, 4, 4), 8, causal=False) == Interval(32, 96, 32, 32)


def test_overlaps_and_smallest_tiles_from_the_halos():
    """Overlap = the larger one-sided halo of stage 4 (depth x kernel // 2 cells) and stage 5 (the same in its
    frames / patches, over the upsampler's stride) in pixels, rounded up to the VAE's stride (8 frames, 32 px)."""
    # release: stage 4 (3, 5, 5) x 2 -> (2, 4, 4) cells; stage 5 (3, 7, 7) x 8 / 2 -> (4, 12, 12) cells;
    # cells of 2 frames / 8 px: 8 frames, 96 px; smallest tile: twice that -> 16 frames, 192 px
    assert tiling.pixel_scale(RELEASE) == (2, 8, 8) and tiling.min_tile_cells(RELEASE) == (3, 5, 5)
    assert tiling.overlaps(RELEASE) == (8, 96) and tiling.smallest_tiles(RELEASE) == (16, 192)
    # diffusers' defaults: stage 5 (11, 11, 11) x 8 / 2 -> 20 cells: 40 frames, 160 px (-> 80, 320)
    assert tiling.overlaps(DIFFUSERS) == (40, 160) and tiling.smallest_tiles(DIFFUSERS) == (80, 320)
    # tiny: stage 4 (3, 3, 5) x 2 -> (2, 2, 4); stage 5 (3, 5, 7) x 3 / 2 -> (2, 3, 5); 2 frames / 4 px per cell:
    # 4 frames -> 8, 20 px -> 24 (its VAE stride is 8); smallest: 16 frames, 48 px
    assert tiling.overlaps(TINY_DECODER) == (8, 24) and tiling.smallest_tiles(TINY_DECODER) == (16, 48)


def test_the_tiles_cover_the_video_and_their_weights_sum_to_one():
    grid = tiling.stage4_grid(TINY_DECODER, (9, 3, 13))  # latent 9 x 3 x 13 -> 33 x 6 x 26 cells
    assert grid == (33, 6, 26)
    groups = tiling.tile_groups(TINY_DECODER, grid, TileSizes(32, 0, 48))
    shape = (65, 24, 104)
    assert tiling.weight_sums(groups, shape) is None
    total = torch.zeros(shape)
    for tile in (t for group in groups for t in group):
        w_t, w_h, w_w = tile.weights
        total[tile.pixels] += w_t.view(-1, 1, 1) * w_h.view(-1, 1) * w_w
    assert torch.allclose(total, torch.ones(shape), atol=1e-6)
    assert [g[0].pixels[0] for g in groups] == [slice(0, 31), slice(23, 55), slice(47, 65)]
    assert [t.origin for t in groups[0]] == [True] * 4 and not any(t.trailing for t in groups[1])
    assert [t.pixels[2] for t in groups[0]] == [slice(0, 48), slice(24, 72), slice(48, 96), slice(72, 104)]


def test_weights_that_do_not_sum_to_one_are_normalised():
    """A stage-4 window of 11 columns makes the smallest tile 11 cells while tiles overlap by 8 (64 px): 25 columns
    in 16-cell tiles every 8 are [0, 16) [8, 24) [16, 25), the last grows to [14, 25) and shares 10 cells, so the
    middle tile's ramps (8 + 10 cells) overlap and its weights no longer sum to one; ltx-core divides by the sum."""
    cfg = dataclasses.replace(RELEASE, stage_kernels=((3, 7, 7), (3, 7, 7), (3, 5, 5), (3, 3, 11)),
                              stage_depths=(4, 6, 4, 1, 1), stage5_kernel=(3, 3, 3))
    assert tiling.overlaps(cfg) == (8, 64) and tiling.min_tile_cells(cfg) == (3, 3, 11)
    groups = tiling.tile_groups(cfg, (5, 4, 25), TileSizes(0, 0, 128))
    assert [t.cells[2] for t in groups[0]] == [slice(0, 16), slice(8, 24), slice(14, 25)]
    sums = tiling.weight_sums(groups, (9, 32, 200))
    assert sums is not None and sums[2].max() > 1.01 and torch.equal(sums[0], torch.ones(9))
    total = torch.zeros(200)
    for tile in groups[0]:
        total[tile.pixels[2]] += tile.weights[2]
    assert torch.allclose(total, sums[2]) and torch.equal(total[:112], torch.ones(112))


# ------------------------------------------------------------------------------------------------ decoding
@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("shape", [(3, 2, 3), (1, 1, 1)])
def test_one_tile_covering_the_clip_decodes_exactly_like_the_untiled_decode(name, shape):
    model, z = tiny(CONFIGS[name]), latents(*shape)
    assert torch.equal(tiled(model, z, TileSizes(4096, 4096, 4096)), model.decode(z, torch.Generator().manual_seed(2)))


@pytest.mark.parametrize("kernel, shape, sizes", [((3, 3, 5), (5, 2, 7), TileSizes(16, 0, 32)),
                                                   ((3, 3, 11), (3, 2, 10), TileSizes(16, 0, 48))])
def test_the_blend_is_a_partition_of_unity(kernel, shape, sizes, monkeypatch):
    """Tiles that each decode to ones blend to ones: across temporal tiles (the overlap carried from one to the
    next) and where the weights need dividing (a stage-4 window of 11: the 20 columns of cells are cut [0, 12)
    [6, 18) [9, 20), the last grown to the smallest tile, so the middle tile's ramps overlap)."""
    cfg = dataclasses.replace(TINY_DECODER, stage_kernels=(*TINY_DECODER.stage_kernels[:3], kernel),
                              stage_depths=(2, 1, 1, 1, 1), stage5_kernel=(3, 3, 3))
    model = tiny(cfg)
    monkeypatch.setattr(model, "decode_tile", lambda features, tile, *rest: torch.ones(
        1, 3, *(span.stop - span.start for span in tile.pixels)))
    out = tiled(model, latents(*shape), sizes)
    groups = tiling.tile_groups(cfg, tiling.stage4_grid(cfg, shape), sizes)
    assert len(groups) > 1 and len(groups[0]) == (2 if kernel[2] == 5 else 3)
    assert (tiling.weight_sums(groups, out.shape[2:]) is None) == (kernel[2] == 5)
    assert torch.allclose(out, torch.ones_like(out), atol=1e-6)


def blend(tiles: list[torch.Tensor], starts: list[int], length: int, overlap: int, dim: int,
          ramp: torch.Tensor) -> torch.Tensor:
    """Tiles laid at `starts` along `dim`, each overlap cross-faded with `ramp` (the incoming tile's weights)."""
    shape = list(tiles[0].shape)
    shape[dim] = length
    out = torch.zeros(shape)
    for j, (tile, start) in enumerate(zip(tiles, starts)):
        weights = torch.ones(tile.shape[dim])
        if j > 0:
            weights[:overlap] = ramp
        if j + 1 < len(tiles):
            weights[-overlap:] = 1 - ramp
        view = [1] * tile.ndim
        view[dim] = -1
        out.narrow(dim, start, tile.shape[dim]).add_(tile * weights.view(view))
    return out


TIME = (2, (5, 2, 3), TileSizes(16, 0, 0), dict(tile_sample_min_num_frames=16, tile_sample_stride_num_frames=8),
        [0, 7, 15, 23], 8)
SPACE = (4, (3, 2, 7), TileSizes(0, 0, 48), dict(tile_sample_min_width=48, tile_sample_stride_width=24), [0, 24], 24)


@pytest.mark.parametrize("name, axis, shape, tiles, options, starts, overlap",
                         [("v-2-steps", *TIME), ("v-2-steps", *SPACE), ("x0-1-step", *TIME)])
def test_tiles_decode_like_diffusers_tiled_decode_and_blend_like_ltx_core(name, axis, shape, tiles, options, starts,
                                                                          overlap):
    """The same cuts as diffusers (17 cells in 8-cell tiles every 4: frames [0, 15) [7, 23) [15, 31) [23, 33);
    14 columns of cells in 12-cell tiles every 6: pixels [0, 48) [24, 56)) and the same noise (one x0 step: drawn
    per tile, in order): diffusers' recorded tile outputs, cross-faded with its weights x / E, give its output;
    with ltx-core's (x + 1) / (E + 1), ours."""
    model, z = tiny(CONFIGS[name]), latents(*shape)
    reference = diffusers_decoder(CONFIGS[name], model.state_dict())
    big = dict(tile_sample_min_height=4096, tile_sample_stride_height=4096, tile_sample_min_width=4096,
               tile_sample_stride_width=4096, tile_sample_min_num_frames=4096, tile_sample_stride_num_frames=4096)
    reference.enable_tiling(**(big | options))
    recorded, denoise = [], reference.decoder.denoise
    reference.decoder.denoise = lambda *args: recorded.append(denoise(*args).clone()) or recorded[-1].clone()
    mean, std = (t.view(1, -1, 1, 1, 1) for t in (model.latents_mean, model.latents_std))
    with torch.no_grad():
        theirs = reference.decode(z * std + mean, generator=torch.Generator().manual_seed(2)).sample
    ours = tiled(model, z, tiles)
    assert len(recorded) == len(starts) and ours.shape == theirs.shape
    length = ours.shape[axis]
    steps = torch.arange(overlap, dtype=torch.float32)
    as_diffusers = blend(recorded, starts, length, overlap, axis, steps / overlap)
    as_ltx_core = blend(recorded, starts, length, overlap, axis, (steps + 1) / (overlap + 1))
    errors = relative(as_diffusers, theirs), relative(ours, as_ltx_core), relative(ours, theirs)
    print(f"{name}, axis {axis}: diffusers vs its tiles {errors[0]:.1e}, ours vs ltx-core's blend of them "
          f"{errors[1]:.1e}, ours vs diffusers {errors[2]:.1e} (the blend weights differ)")
    assert errors[0] <= 1e-5 and errors[1] <= 1e-5 and errors[2] > 1e-3


def test_tiled_is_the_untiled_decode_away_from_the_seams():
    """Tiles see windows shifted at their cut borders, so pixels near a seam differ from the untiled decode (the
    receptive field of stages 4-5 reaches further than the overlap); away from the seams they agree closely."""
    model, z = tiny(), latents(9, 2, 13)
    untiled = model.decode(z, torch.Generator().manual_seed(2))
    sizes = TileSizes(32, 0, 48)
    got = tiled(model, z, sizes)
    seams = torch.zeros(untiled.shape[2:], dtype=torch.bool)
    groups = tiling.tile_groups(TINY_DECODER, tiling.stage4_grid(TINY_DECODER, (9, 2, 13)), sizes)
    for tile in (t for group in groups for t in group):
        for axis, weights in enumerate(tile.weights):
            inside = torch.zeros(untiled.shape[2 + axis], dtype=torch.bool)
            inside[tile.pixels[axis]] = weights < 1
            seams |= inside.view([-1 if a == axis else 1 for a in range(3)])
    away = (got - untiled)[:, :, ~seams].abs().max() / untiled.abs().max()
    near = (got - untiled)[:, :, seams].abs().max() / untiled.abs().max()
    print(f"tiled vs untiled: {near:.1e} in the overlaps, {away:.1e} elsewhere ({(~seams).sum()} of "
          f"{seams.numel()} pixels)")
    assert away <= 1e-4 and near > 1e-3


@pytest.mark.parametrize("name", ["v-2-steps", "x0-1-step"])
def test_same_seed_same_frames(name):
    model, z = tiny(CONFIGS[name]), latents(5, 2, 7)
    sizes = TileSizes(16, 0, 48)
    first = tiled(model, z, sizes)
    assert torch.equal(first, tiled(model, z, sizes)) and not torch.equal(first, tiled(model, z, sizes, seed=3))


# ------------------------------------------------------------------------------------------------ choice, options
def test_the_automatic_choice_follows_the_free_memory():
    """Every size the choice may take fits the free memory less 1 GiB; none fits below the smallest tiles' peak
    (here stages 1-3 on the whole clip: 2.4 stage-4 inputs); given sizes are kept."""
    latent, cb = (16, 22, 40), 2  # 121 frames of 1280 x 704

    def peak(sizes: TileSizes) -> int:
        return tiling.device_peak(RELEASE, latent, sizes, cb)

    stages, tile = tiling.decode_phases(RELEASE, latent, TileSizes(16, 192, 192), cb)
    features = tiling.stage4_input_bytes(RELEASE, latent, cb)
    assert stages == int(tiling.FEATURE_COPIES * features) and tile == features + tiling.tile_bytes(
        RELEASE, (16, 192, 192), (704, 1280), cb)
    assert tiling.choose_tiles(RELEASE, latent, 10 ** 15, cb) == TileSizes()  # fits: one piece
    floor = tiling.SAFETY + peak(TileSizes(16, 192, 192))
    assert tiling.choose_tiles(RELEASE, latent, floor - 1, cb) is None
    chosen = [tiling.choose_tiles(RELEASE, latent, budget, cb) for budget in (floor, 4 * floor)]
    assert all(sizes != TileSizes() and peak(sizes) <= budget - tiling.SAFETY
               for sizes, budget in zip(chosen, (floor, 4 * floor)))
    assert peak(chosen[1]) > peak(chosen[0])
    given = tiling.choose_tiles(RELEASE, latent, 4 * floor, cb, frames=32)
    assert given.frames == 32 and tiling.choose_tiles(RELEASE, latent, 10 ** 15, cb, pixels=256) == \
        TileSizes(0, 256, 256)


def test_decoder_tiles_read_the_options_and_the_free_memory(monkeypatch):
    model = tiny()
    assert tiling.decoder_tiles(model, (5, 2, 7), {"decoder_tile_frames": 0, "decoder_tile_size": 0}) is None
    assert tiling.decoder_tiles(model, (5, 2, 7), {}) is None  # plenty of memory: one piece
    assert tiling.decoder_tiles(model, (5, 2, 7), {"decoder_tile_frames": 32}) == TileSizes(32, 0, 0)
    status = tiling.memory_status(torch.device("cpu"))
    monkeypatch.setattr(tiling, "memory_status", lambda device: dataclasses.replace(status, host_available=0))
    assert tiling.decoder_tiles(model, (5, 2, 7), {}) == TileSizes(16, 0, 48)  # nothing fits: the smallest
    z = latents(5, 2, 7)
    options = {"decoder_tile_frames": 32, "decoder_tile_size": 48}
    frames = diffusion_decode(model, z, 4, options=options)
    expected = tiled(model, z, TileSizes(32, 48, 48), seed=4)
    assert torch.equal(frames, ((expected[0].clamp(-1, 1) + 1) / 2).permute(1, 2, 3, 0))


def test_tile_options_below_the_decoders_smallest_tiles_are_refused():
    with pytest.raises(ConfigurationError, match=r"^--option decoder_tile_frames=8: this diffusion video decoder's "
                       r"tiles are at least 16 frames \(they overlap by 8\); give 16 or more, or 0 for no tiling "
                       r"along that axis\.$"):
        tiling.requested_tiles(TINY_DECODER, {"decoder_tile_frames": 8})
    with pytest.raises(ConfigurationError, match=r"decoder_tile_size=160: .* at least 192 pixels \(they overlap "
                       r"by 96\)"):
        tiling.requested_tiles(RELEASE, {"decoder_tile_size": 160})


@pytest.mark.parametrize("options, message", [
    ({"decoder_tile_frames": 12}, r"^--option decoder_tile_frames=12: give a whole multiple of 8 \(0: no tiling "
                                  r"along that axis\), e.g. --option decoder_tile_frames=64\.$"),
    ({"decoder_tile_size": "big"}, r"^--option decoder_tile_size=big: give a whole multiple of 32 .* "
                                   r"--option decoder_tile_size=512\.$"),
    ({"decoder_tile_size": -32}, r"decoder_tile_size=-32: give a whole multiple of 32"),
    ({"decoder_tile_frames": 64, "video_decoder": "conv"},
     r"^--option decoder_tile_frames: tiles the diffusion video decoder, which LTX-2.5 22B distilled \(audio \+ "
     r"video\) does not use with video_decoder=conv; leave the option out\.$"),
])
def test_tile_options_are_checked_before_loading(options, message):
    variant = LTX2_VARIANTS["ltx-2.5-22b-distilled"]
    with pytest.raises(ConfigurationError, match=message):
        variant.check(VideoRequest("waves", options=options))
    variant.check(VideoRequest("waves", options={"decoder_tile_frames": 0, "decoder_tile_size": 512}))
    with pytest.raises(ConfigurationError, match=r"which LTX-2.3 22B distilled \(audio \+ video\) has not; leave"):
        LTX2_VARIANTS["ltx-2.3-22b-distilled"].check(VideoRequest("waves", options={"decoder_tile_size": 512}))


def test_a_tile_option_below_the_smallest_tile_is_refused_before_sampling(pipeline, monkeypatch):
    request = VideoRequest("waves", width=64, height=64, frames=17, steps=1, seed=5,
                           options={"decoder_tile_frames": 16})
    result = pipeline.generate(request)  # 17 frames in 16-frame tiles: two temporal tiles
    assert torch.equal(result.frames, diffusion_decode(pipeline.diffusion_decoder, result.latents[0], 5,
                                                       options=request.options))
    monkeypatch.setattr(pipeline, "sample", lambda *a, **k: pytest.fail("sampled"))
    with pytest.raises(ConfigurationError, match=r"decoder_tile_frames=8: .* at least 16 frames \(they overlap by 8"):
        pipeline.generate(dataclasses.replace(request, options={"decoder_tile_frames": 8}))
    assert main(["generate", "--demo", "--model", "ltx-2.5-22b-distilled", "--prompt", "waves", "--option",
                 "decoder_tile_size=100"]) == 2


@pytest.mark.parametrize("prefixed", [True, False])
def test_the_plan_reads_the_decoders_widths_from_the_header(tmp_path, prefixed):
    path = write_diffusion_vae(tmp_path / "vae.safetensors", prefixed=prefixed)
    files = BundleFiles("ltx-2.5-22b-distilled", {"video_decoder": (path,)})
    assert memory.diffusion_decoder_config(files) == load_diffusion_decoder(path, LoadRequest()).module.config
    assert memory.diffusion_decoder_config(None) == RELEASE
    size, load = Size(1280, 704, 481), LoadRequest(torch.bfloat16)
    stages, tile = tiling.decode_phases(RELEASE, (61, 22, 40), TileSizes(16, 192, 192), 2)
    noise, frames = 481 * 704 * 1280 * 3 * 2, 481 * 704 * 1280 * 3 * 4
    assert memory.diffusion_decoding_activations(None, size, load) == max(stages + noise, tile + noise + frames,
                                                                         2 * frames)
    free = MemoryStatus(torch.device("cuda"), 1 << 40, 1 << 40, 1 << 40, 1 << 40, unified=True)
    plan = plan_run("ltx-2.5-22b-distilled", size, load, False, None, free)  # from the manifest
    assert plan.phases[-1].name == "decoding"
    assert plan.phases[-1].activations == memory.diffusion_decoding_activations(None, size, load)
