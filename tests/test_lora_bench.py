"""Smoke test of bench/lora.py on tiny configs (no timing asserts)."""

import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"


def test_lora_bench_tiny(tmp_path):
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("bench_lora", BENCH / "lora.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        result = module.main(["--tiny", "--repeat", "1", "--workdir", str(tmp_path)])
    finally:
        sys.path.remove(str(BENCH))
    runs = result["runs"]
    assert runs["ours"]["lora_bytes"] >= 0 and "ours: LoRA / no LoRA" in result["report"]
    assert len(runs["ours"]["spans"]) == len(runs["ours"]["base_spans"]) == 1
    assert (runs["sample-default"]["rows"], runs["sample-default"]["calls"]) == (80, 40)
    assert (runs["sample-lightning"]["rows"], runs["sample-lightning"]["calls"]) == (4, 4)
    if "lora" in result["errors"]:
        assert result["errors"]["lora"] < 1e-4
    assert list(tmp_path.iterdir()) == []
