"""The rmm-mp command: smoke tests of every subcommand, in-process (click) and as a process
(`run` and `workloads` are tested in test_run.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from rmm_mp import __version__
from rmm_mp.cli import main

ROOT = Path(__file__).resolve().parents[2]


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
    assert "sve False," in shown.output and "max_recs_order 10 (MAX_RECS 1023)" in shown.output
    fvp = runner.invoke(main, ["platform", "show", "fvp"])   # SVE_VL 15 in the register: 2048-bit vectors
    assert "0x000002bffcf3fe30" in fvp.output and "sve True (vectors up to 2048 bits)" in fvp.output
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
