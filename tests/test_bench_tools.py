"""Smoke test of every benchmark in tools/: each runs with tiny options (seconds, not minutes),
ends with exit status 0 (targets met) or 1 (a target missed: tiny runs are noisy, so either is
allowed), prints no traceback, prints a PASS or MISS line where it has a target, and writes its
JSON. Real figures come from full runs (docs/performance.md); this only keeps the tools working.
The tools' computations (percentiles ...) are tested directly, without timing anything.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parent.parent / "tools"

sys.path.insert(0, str(TOOLS))     # the tools import benchlib from their own folder
try:
    import bench_attest  # noqa: E402
    import bench_rec  # noqa: E402
    import benchlib  # noqa: E402
finally:
    sys.path.remove(str(TOOLS))

# tool, tiny options, whether it prints a PASS/MISS verdict, a key its JSON must have
CASES = [
    ("bench_lock.py", ["--runs", "1", "--pairs", "2000"], True, "lock_unlock"),
    ("bench_delegate.py", ["--seconds", "0.3", "--repeat", "1", "--warmup", "0.1", "--calls", "500",
                           "--latency-repeat", "1"], True, "throughput"),
    ("bench_rec.py", ["--trips", "200", "--warmup", "20", "--repeat", "1", "--slice", "2000", "--entries", "1",
                      "--profile-trips", "50", "--cost-trips", "50", "--cost-repeat", "1"], True, "recording_cost"),
    ("bench_realm.py", ["--seconds", "0.5", "--repeat", "1", "--warmup", "0.1"], False, "calls_per_realm"),
    ("bench_attest.py", ["--tokens", "2", "--warmup", "0", "--repeat", "1"], False, "figures"),
    ("bench_stress.py", ["--steps", "200", "--only", "b"], False, "step_rate"),
    ("bench_run.py", ["--iterations", "100", "--overhead-repeat", "1", "--seconds", "0.3", "--repeat", "1",
                      "--skip-large"], True, "overhead"),
]


@pytest.mark.parametrize("tool, options, verdict, key", CASES, ids=[c[0] for c in CASES])
def test_benchmark_tool_runs(tool: str, options: list[str], verdict: bool, key: str, tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    proc = subprocess.run([sys.executable, str(TOOLS / tool), *options, "--json", str(out)],
                          capture_output=True, text=True, timeout=240, cwd=tmp_path)
    text = proc.stdout + proc.stderr
    assert proc.returncode in (0, 1), text
    assert "Traceback" not in text, text
    if verdict:
        assert "PASS" in proc.stdout or "MISS" in proc.stdout, text
        assert (proc.returncode == 1) == ("MISS" in proc.stdout), text
    figures = json.loads(out.read_text(encoding="utf-8"))
    assert key in figures
    assert figures.get("benchmark", tool.removesuffix(".py")) == tool.removesuffix(".py")
    if tool == "bench_run.py":
        # On 1 CPU recording must not change what the workload does, or (a) compares two works.
        assert figures["overhead"]["cpus"] == 1 and figures["overhead"]["same_work"], figures["overhead"]



@pytest.mark.parametrize("samples, p, expected", [
    ([7], 50, 7), ([7], 99, 7),
    ([1, 2], 50, 1),                            # lower middle: rank ceil(2 * 0.5) = 1, not the maximum
    ([1, 2], 99, 2),
    (list(range(1, 101)), 50, 50), (list(range(1, 101)), 99, 99), (list(range(1, 101)), 100, 100),
    (list(range(1, 201)), 99, 198),             # rank 198 of 200, not 199
    (list(range(1, 102)), 50, 51), (list(range(1, 102)), 99, 100),
])
def test_percentile_is_the_nearest_rank(samples: list[int], p: float, expected: int) -> None:
    """The round-trip and token percentiles take the same rank as the histograms' p50 and p99
    printed beside them (CallStats.percentile: nearest rank)."""
    assert benchlib.percentile(samples, p) == expected


def test_tools_take_percentiles_from_benchlib() -> None:
    """bench_rec and bench_attest compute their sample percentiles with the one helper."""
    assert bench_rec.percentile is benchlib.percentile and bench_attest.percentile is benchlib.percentile
