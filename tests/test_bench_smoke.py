"""Smoke test of the benchmark scripts: each main runs end to end on a tiny model (no timing asserts)."""

import importlib.util
import math
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture(scope="module")
def bench():
    """Import a bench script by file name, with bench/ on sys.path as when it runs as a script."""
    sys.path.insert(0, str(BENCH))
    modules = {}
    for name in ("load", "wan", "plan", "plan_ltx2", "magi1", "ltx2_dit", "lora", "ltx25", "skyreels"):
        spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
        modules[name] = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(modules[name])
    yield modules
    sys.path.remove(str(BENCH))
    for name in modules:
        del sys.modules[f"bench_{name}"]


def test_measure_span_sees_an_allocation():
    sys.path.insert(0, str(BENCH))
    try:
        import _measure
    finally:
        sys.path.remove(str(BENCH))
    with _measure.Span() as span:
        block = bytearray(64 * 2**20)
        block[:: 4096] = b"\x01" * len(block[:: 4096])  # touch every page
    assert span.peak - span.baseline >= 60 * 2**20
    assert span.seconds > 0
    assert _measure.table(["a", "b"], [["1", "22"]]).splitlines()[2] == "| 1 | 22 |"


def test_load_bench_tiny(bench, tmp_path):
    result = bench["load"].main(["--tiny", "--fp8", "--dtype", "bfloat16", "--workdir", str(tmp_path)])
    runs = result["runs"]
    assert set(runs) == {(m, c) for m in ("ours", "naive") for c in ("cold", "warm")} | {
        ("fp8-stream", "cold"), ("fp8-after-load", "cold")}
    assert all(0.0 <= run["residency"] <= 1.0 for run in runs.values())
    assert runs["fp8-stream", "cold"]["checksum"] == runs["fp8-after-load", "cold"]["checksum"]
    assert "page cache %" in result["report"] and "fp8-stream peak/file weights" in result["report"]
    weights = runs["ours", "cold"]["weights"]
    assert weights == runs["naive", "warm"]["weights"]
    assert abs(weights - 0.02e9) < 0.005e9
    assert runs["ours", "cold"]["checksum"] == runs["naive", "cold"]["checksum"]
    for run in runs.values():
        span = run["span"]
        assert span["peak"] >= span["final"] > 0 and span["seconds"] > 0
    assert "peak/weights" in result["report"] and "Goal: ours peak/weights <= 1.15" in result["report"]
    assert list(tmp_path.iterdir()) == []  # the temporary checkpoint is gone


def test_wan_bench_tiny(bench, tmp_path):
    result = bench["wan"].main(["--tiny", "--repeat", "1", "--workdir", str(tmp_path)])
    runs = result["runs"]
    assert runs["dit-ours"]["shape"] == runs["dit-diffusers"]["shape"] == [1, 16, 2, 4, 6]
    assert runs["vae-ours"]["shape"] == runs["vae-diffusers"]["shape"] == [1, 3, 5, 32, 48]
    # identical weights and inputs: ours and diffusers compute the same thing
    assert result["errors"]["dit"]["max"] < 1e-4
    assert result["errors"]["vae"]["max"] < 1e-4
    fp8 = runs["fp8"]
    assert 0.5 <= fp8["fp8_bytes"] / fp8["bf16_bytes"] < 1.0
    assert 0 < fp8["error"]["mean"] < 0.2 and math.isfinite(fp8["error"]["max"])
    assert "Goal: VAE decode peak memory" in result["report"]
    assert list(tmp_path.iterdir()) == []


def test_plan_bench_tiny(bench, tmp_path):
    result = bench["plan"].main(["--tiny", "--sizes", "64x64x5", "--workdir", str(tmp_path)])
    phases = result["results"]["64x64x5"]
    assert set(phases["measured"]) == set(phases["predicted"]) == {"text encoding", "sampling", "decoding"}
    assert all(value > 0 for value in phases["measured"].values())
    assert "Goal: |predicted / measured - 1| <= 15 %" in result["report"]
    assert list(tmp_path.iterdir()) == []


def test_plan_ltx2_bench_tiny(bench, tmp_path):
    result = bench["plan_ltx2"].main(["--tiny", "--workdir", str(tmp_path)])
    phases = result["results"]["128x128x9"]
    assert set(phases["measured"]) == set(phases["predicted"]) == {
        "text encoding", "sampling", "upsampling", "stage-2 sampling", "decoding"}
    assert all(value > 0 for value in phases["measured"].values())
    assert "distilled two-stage image-to-video" in result["report"]
    assert "Goal: |predicted / measured - 1| <= 15 %" in result["report"]
    assert list(tmp_path.iterdir()) == []


def test_ltx2_dit_bench_tiny(bench, tmp_path):
    result = bench["ltx2_dit"].main(["--tiny", "--repeat", "1", "--workdir", str(tmp_path)])
    runs = result["runs"]
    assert runs["ours"]["shapes"] == runs["diffusers"]["shapes"] == [[1, 12, 8], [1, 5, 8]]
    assert max(result["errors"]) < 1e-4 and "ours/diffusers" in result["report"]
    assert list(tmp_path.iterdir()) == []


def test_magi1_bench_tiny(bench, tmp_path, monkeypatch):
    monkeypatch.delenv("MAGI1_SRC", raising=False)  # ours only: the official code is not part of the test suite
    result = bench["magi1"].main(["--tiny", "--repeat", "1", "--rounds", "2", "--workdir", str(tmp_path)])
    first, ours = result["runs"]["ours"]
    assert first["out"] == ours["out"]
    assert ours["shape"] == [1, 16, 6, 4, 4] and ours["cache_bytes"] == 3 * 2 * 24 * 2 * 2 * 16 * 4
    assert "official: skipped" in result["report"]


def test_lora_bench_tiny(bench, tmp_path):
    result = bench["lora"].main(["--tiny", "--repeat", "1", "--workdir", str(tmp_path)])
    runs = result["runs"]
    assert runs["ours"]["lora_bytes"] >= 0 and "ours: LoRA / no LoRA" in result["report"]
    assert len(runs["ours"]["spans"]) == len(runs["ours"]["base_spans"]) == 1
    assert (runs["sample-default"]["rows"], runs["sample-default"]["calls"]) == (80, 40)
    assert (runs["sample-lightning"]["rows"], runs["sample-lightning"]["calls"]) == (4, 4)
    if "lora" in result["errors"]:
        assert result["errors"]["lora"] < 1e-4
    assert list(tmp_path.iterdir()) == []


def test_ltx25_decoders_bench_tiny(bench):
    result = bench["ltx25"].main(["--tiny", "--frames", "3", "--size", "2", "3", "--blocks", "2", "--eager-flex"])
    runs = result["runs"]
    assert runs["diffusion-ours"]["shape"] == runs["diffusion-diffusers"]["shape"] == [1, 3, 17, 16, 24]
    assert runs["conv-ours"]["shape"] == [1, 3, 17, 32, 48]  # the tiny conv VAE's x16 (the diffusion one: x8)
    assert result["error"] < 1e-4 and "diffusion ours/diffusers" in result["report"]


def test_skyreels_bench_tiny(bench, monkeypatch):
    monkeypatch.delenv("SKYREELS_V3_SRC", raising=False)  # the official projector is not part of the test suite
    result = bench["skyreels"].main(["--tiny", "--repeat", "2"])
    runs = result["runs"]
    assert result["errors"]["w2v"] < 1e-5 and "skipped" in runs["proj-official"]
    for name in ("w2v-ours", "w2v-transformers", "proj-ours"):
        assert len(runs[name]["all_seconds"]) == 2 and runs[name]["seconds"] == min(runs[name]["all_seconds"])
    assert "wav2vec2, 10 s audio" in result["report"] and "audio projector" in result["report"]


def test_skyreels_bench_merges_rounds(bench):
    rounds = [{"all_seconds": [3.0, 2.0], "all_cpu": [5.0, 4.0], "all_peaks": [7, 8]},
              {"all_seconds": [2.5], "all_cpu": [3.5], "all_peaks": [6]}]
    merged = bench["skyreels"].merged(rounds)
    assert (merged["seconds"], merged["cpu"], merged["peak"]) == (2.0, 3.5, 8)
    assert merged["all_seconds"] == [3.0, 2.0, 2.5] and bench["skyreels"].merged([{"skipped": "x"}]) == {"skipped": "x"}
