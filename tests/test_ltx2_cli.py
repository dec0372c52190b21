"""`videosdgx generate --demo` on every available LTX-2 bundle: an MP4 with the generated sound, through the
registry, the bundle's files by role and the real loaders (19B dev: two stages with the distilled LoRA, also on
fp8 weights; 2.3: 48 kHz sound)."""

import pytest

from videosdgx.cli import main
from videosdgx.manifest import load_manifest
from videosdgx.media import read_video
from videosdgx.testing import ltx25
from videosdgx.testing.ltx2 import DEMO_BUNDLES

BUNDLES = ("ltx-2-19b-distilled", "ltx-2-19b-dev", "ltx-2-19b-dev-fp8", "ltx-2-19b-dev-fp4", "ltx-2.3-22b-distilled",
           "ltx-2.3-22b-dev")


def test_every_available_ltx2_bundle_has_demo_files_and_is_run_here():
    bundles = load_manifest().bundles.values()
    available = {b.name for b in bundles if b.family == "ltx2" and b.status == "available"}
    assert available == set(DEMO_BUNDLES) | set(ltx25.DEMO_BUNDLES) and set(DEMO_BUNDLES) == set(BUNDLES)


@pytest.mark.parametrize("bundle", BUNDLES)
def test_demo_writes_an_mp4_with_sound(bundle, tmp_path, capsys):
    out = tmp_path / f"{bundle}.mp4"
    code = main(["generate", "--demo", "--model", bundle, "--prompt", "a drum solo in a cave", "--width", "128",
                 "--height", "64", "--frames", "9", "--steps", "2", "--seed", "5", "--out", str(out)])
    assert code == 0
    clip = read_video(out)
    assert clip.frames.shape == (9, 64, 128, 3) and clip.fps == 24
    assert clip.audio is not None and clip.audio["waveform"].shape[1] == 2
    assert clip.audio["sample_rate"] == (48000 if "2.3" in bundle else 24000)
    assert f"wrote {out} (9 frames, 128x64, 24 fps, with audio)" in capsys.readouterr().out
