"""The rmm-mp command: smoke tests of every subcommand, in-process (click) and as a process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from rmm_mp import __version__
from rmm_mp.cli import main
from rmm_mp.hw import segment

ROOT = Path(__file__).resolve().parents[2]


def _no_segments_of(pid: int) -> bool:
    return not [m for m in segment.list_machines() if m.creator_pid == pid]


def test_run_delegate_churn_prints_table_and_writes_json(tmp_path: Path) -> None:
    """`rmm-mp run delegate-churn --cpus 2 --seconds 1 --json F` (as a process) exits 0, prints a
    per-CPU per-call table with count, p50, p99 and max, and writes the same figures as JSON."""
    out = tmp_path / "report.json"
    proc = subprocess.Popen([sys.executable, "-m", "rmm_mp", "run", "delegate-churn", "--platform", "host",
                             "--cpus", "2", "--seconds", "1", "--json", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stdout + stderr
    for column in ("cpu", "call", "count", "p50 us", "p99 us", "max us"):
        assert column in stdout
    assert "RMI_GRANULE_DELEGATE" in stdout and "RMI_GRANULE_UNDELEGATE" in stdout
    assert "invariants hold" in stdout
    report = json.loads(out.read_text())
    assert report["ok"] is True and report["cpus"] == 2 and report["workload"] == "delegate-churn"
    per_cpu = [r for r in report["latency"] if r["cpu"] != "all"]
    assert {r["cpu"] for r in per_cpu} == {0, 1}
    assert {r["call"] for r in per_cpu} == {"RMI_GRANULE_DELEGATE", "RMI_GRANULE_UNDELEGATE"}
    for record in per_cpu:
        assert record["count"] > 0 and 0 < record["p50"] <= record["p99"] <= record["max"]
    assert report["total_calls"] == sum(r["count"] for r in per_cpu)
    assert _no_segments_of(proc.pid)


def test_run_rejects_bad_cpus_before_creating_anything() -> None:
    """--cpus beyond the platform's count is a usage error (exit 2) naming the flag, the value
    and the valid range; no shared memory is created."""
    result = CliRunner().invoke(main, ["run", "delegate-churn", "--cpus", "9", "--seconds", "1"])
    assert result.exit_code == 2
    assert "--cpus" in result.output and "9" in result.output and "1..4" in result.output
    assert _no_segments_of(os.getpid())   # the command ran in this process


def test_run_rejects_unknown_workload_and_platform() -> None:
    """An unknown workload or platform name is a usage error that lists the bundled names."""
    runner = CliRunner()
    bad_workload = runner.invoke(main, ["run", "no-such-workload", "--seconds", "1"])
    assert bad_workload.exit_code == 2 and "delegate-churn" in bad_workload.output
    bad_platform = runner.invoke(main, ["run", "delegate-churn", "--platform", "nope", "--seconds", "1"])
    assert bad_platform.exit_code == 2 and "host" in bad_platform.output and "'nope'" in bad_platform.output


def test_platform_list_and_show() -> None:
    """`platform list` names the bundled platforms; `platform show host` prints its facts and
    feature register; `platform show` of a bad name fails with exit 2."""
    runner = CliRunner()
    listed = runner.invoke(main, ["platform", "list"])
    assert listed.exit_code == 0
    for name in ("host", "fvp", "large"):
        assert name in listed.output
    shown = runner.invoke(main, ["platform", "show", "host"])
    assert shown.exit_code == 0 and "0x0000028ffc314030" in shown.output and "16,384 granules" in shown.output
    assert runner.invoke(main, ["platform", "show", "nope"]).exit_code == 2


def test_workloads_list_clean_version_and_help() -> None:
    """`workloads list`, `clean --dry-run`, `--version` and `--help` work; help names the
    subcommands."""
    runner = CliRunner()
    assert "delegate-churn" in runner.invoke(main, ["workloads", "list"]).output
    cleaned = runner.invoke(main, ["clean", "--dry-run"])
    assert cleaned.exit_code == 0
    assert __version__ in runner.invoke(main, ["--version"]).output
    helped = runner.invoke(main, ["--help"])
    for sub in ("run", "clean", "platform", "workloads"):
        assert sub in helped.output


def test_python_dash_m_is_the_command() -> None:
    """`python -m rmm_mp --version` runs the same command line."""
    proc = subprocess.run([sys.executable, "-m", "rmm_mp", "--version"], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0 and proc.stdout.strip() == f"rmm-mp, version {__version__}"
