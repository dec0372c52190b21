"""MAGI-1 VAE: encode (video, single image), decode (incl. one latent frame) and the official tiling vs the
official modules (tests/reference/magi1)."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from videosdgx.magi1.tiling import tiled_decode, tiled_encode
from videosdgx.magi1.vae import MagiVAE
from videosdgx.testing.magi1 import TINY_VAE, vae_state

REFERENCE = load_file(Path(__file__).parent / "reference" / "magi1" / "vae.safetensors")


@pytest.fixture(scope="module")
def case():
    vae = MagiVAE(TINY_VAE)
    vae.load_state_dict(vae_state())
    g = torch.Generator().manual_seed(5)
    video = torch.rand(1, 3, 8, 40, 40, generator=g) * 2 - 1
    return vae.eval(), video, torch.randn(1, 16, 3, 5, 5, generator=g)


def rel(a, b):
    assert a.shape == b.shape
    return ((a - b).abs().max() / b.abs().max()).item()


def test_encode_and_decode_match_official(case):
    vae, video, z = case
    with torch.no_grad():
        assert rel(vae.encode(video), REFERENCE["encode"]) < 1e-4
        assert rel(vae.encode(video[:, :, :1]), REFERENCE["encode_image"]) < 1e-4
        assert rel(vae.decode(z[:, :, :2, :3, :3]), REFERENCE["decode"]) < 1e-4
        assert rel(vae.decode(z[:, :, :1, :3, :3]), REFERENCE["decode_frame"]) < 1e-4


def test_tiled_encode_and_decode_match_official(case):
    vae, video, z = case
    with torch.no_grad():
        assert rel(tiled_encode(vae, video, tile_frames=4, tile_pixels=32), REFERENCE["tiled_encode"]) < 1e-4
        decoded = tiled_decode(vae, z, tile_frames=8, tile_pixels=32)
    assert decoded.shape[2] == 9  # 3 latent frames in tiles of 2: 8 + 1 frames
    assert rel(decoded, REFERENCE["tiled_decode"]) < 1e-4
