"""Every benchmark script in bench/ runs in its ``--smoke`` mode and prints the JSON it promises.

Each script runs in a subprocess from the repository root, as a user runs it
(``python bench/X.py --smoke``); the test parses the JSON document at the
start of its output and checks its top-level keys. A script added to bench/
without an entry in ``EXPECTED_KEYS`` fails here, so none escapes. Timings are
never checked.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
SMOKE_TIMEOUT_S = 180  # a smoke run takes seconds; this only stops a hung one

# Top-level keys of each script's JSON document in --smoke mode.
EXPECTED_KEYS: dict[str, set[str]] = {
    "primitives.py": {"benchmark", "smoke", "prg", "shamir", "encoding"},
    "core_refactor.py": {"benchmark", "smoke", "commits", "repeats", "machine", "cases"},
    "secagg_vs_flower.py": {"smoke", "chacha20_ns_per_word", "cases", "upload_bytes_per_param", "masking", "scale"},
    "active.py": {"benchmark", "smoke", "params", "semi_honest", "active", "active_over_semi_honest",
                  "active_over_semi_honest_protocol", "goal", "goal_met", "semi_honest_correct", "active_correct"},
    "he.py": {"smoke", "machine", "paillier", "threshold", "ckks"},
    "ckks_compact.py": {"benchmark", "smoke", "machine", "candidates", "rows", "ratios", "goal"},
    "he_threshold.py": {"benchmark", "smoke", "key", "scaling", "limit", "exponentiations", "partial_decrypt",
                        "proof_overhead", "verify", "per_ciphertext_proof_reference", "combine_correct", "goal_met"},
    "dp.py": {"benchmark", "smoke", "samplers", "encoder", "round"},
    "record_dp.py": {"benchmark", "smoke", "setting", "rows", "seconds_per_round"},
    "gpu.py": {"benchmark", "smoke", "device", "cuda", "keystream", "client_masking", "server_unmasking",
               "cpu_streaming_rss"},
    "flower_engine.py": {"sizes", "dropouts"},
    "flower_harness.py": {"smoke", "n", "d", "cases"},
    "run_all.py": {"benchmark", "smoke", "commit", "scripts"},
}

# Optional extras a script imports: without them it is skipped, saying which.
NEEDS: dict[str, tuple[str, ...]] = {
    "secagg_vs_flower.py": ("flwr",),
    "flower_harness.py": ("flwr",),
    "flower_engine.py": ("flwr",),
    "he.py": ("phe", "tenseal"),
    "he_threshold.py": ("gmpy2",),
    "record_dp.py": ("torch", "opacus"),
    "gpu.py": ("torch",),
}

# run_all.py --smoke runs the other scripts again: two cheap ones exercise its path.
EXTRA_ARGS: dict[str, list[str]] = {"run_all.py": ["--only", "primitives.py", "dp.py"]}


def bench_scripts() -> list[str]:
    """bench/*.py files that run as scripts (helper modules such as timing.py have no main guard)."""
    return sorted(p.name for p in BENCH.glob("*.py") if 'if __name__ == "__main__"' in p.read_text())


def smoke_flag(script: str) -> str:
    # flower_engine.py has no --smoke yet; its --quick runs in a few seconds.
    return "--smoke" if "--smoke" in (BENCH / script).read_text() else "--quick"


def run_smoke(script: str) -> dict[str, Any]:
    missing = [m for m in NEEDS.get(script, ()) if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"{script} needs the optional package(s) {', '.join(missing)}, not installed")
    cmd = [sys.executable, str(BENCH / script), smoke_flag(script), *EXTRA_ARGS.get(script, [])]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=SMOKE_TIMEOUT_S)
    assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    start = proc.stdout.find("{")
    assert start >= 0, f"{script} printed no JSON:\n{proc.stdout[-2000:]}"
    document, _ = json.JSONDecoder().raw_decode(proc.stdout[start:])
    assert isinstance(document, dict)
    return document


def test_every_bench_script_has_expected_keys() -> None:
    assert set(bench_scripts()) == set(EXPECTED_KEYS), (
        "bench/ scripts and EXPECTED_KEYS differ: add the new script's JSON keys here"
    )


@pytest.mark.parametrize("script", sorted(EXPECTED_KEYS))
def test_smoke_run_prints_expected_json(script: str) -> None:
    document = run_smoke(script)
    missing = EXPECTED_KEYS[script] - set(document)
    assert not missing, f"{script} --smoke JSON lacks {sorted(missing)}"
    if script == "secagg_vs_flower.py":
        assert all(case["ours_correct"] for case in document["cases"]), "our aggregate missed the plaintext mean"
        assert all(row["correct"] for row in document["scale"])
    if script == "he_threshold.py":
        assert document["combine_correct"] and document["per_ciphertext_proof_reference"]["verifies"]
    if script == "active.py":
        assert document["semi_honest_correct"] and document["active_correct"]
        assert document["params"]["threshold"] == 8 and document["params"]["max_corrupt"] == 6
    if script == "run_all.py":
        assert {s: r["returncode"] for s, r in document["scripts"].items()} == {"primitives.py": 0, "dp.py": 0}
