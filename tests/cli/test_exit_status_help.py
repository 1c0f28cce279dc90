"""What a CI script reads before it branches on rmm-mp's exit status: every command such a script
runs says in its --help which statuses it ends with, and the status said for a bad file is the one
it gives; and what `run --json` leaves when the run gives no report. In-process (click's runner)
but for that last one, a process that ends before any CPU starts."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from rmm_mp.cli import main

ROOT = Path(__file__).resolve().parents[2]

# Each command a script would run, as typed after `rmm-mp`.
COMMANDS = [
    ["run"], ["stress"], ["explore"], ["check"], ["attest", "verify"], ["attest", "inspect"],
    ["workloads", "validate"], ["workloads", "show"], ["platform", "show"], ["clean"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_help_says_the_exit_statuses(command: list[str]) -> None:
    """`rmm-mp COMMAND --help` names its exit statuses: `workloads show` and `platform show`
    said nothing of them, so a script could not tell which status a bad file gave."""
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert re.search(r"\bexit (status|\d)", " ".join(result.output.split()).lower()), result.output


@pytest.mark.parametrize("command", [["workloads", "show"], ["platform", "show"]], ids=["workloads", "platform"])
def test_show_of_a_bad_file_gives_the_status_its_help_says(command: list[str], tmp_path: Path) -> None:
    """A file that is no TOML, and one that does not exist, end `show` with the status --help gives
    a bad file (2), and one that is fine with 0."""
    bad = tmp_path / "bad.toml"
    bad.write_text("x = [\n")
    runner = CliRunner()
    text = " ".join(runner.invoke(main, [*command, "--help"]).output.split())
    assert "0 when" in text and "2 when" in text, text
    for name in (str(bad), str(tmp_path / "missing.toml")):
        result = runner.invoke(main, [*command, name])
        assert result.exit_code == 2, result.output
    good = "quickstart" if command[0] == "workloads" else "host"
    assert runner.invoke(main, [*command, good]).exit_code == 0


def test_run_with_no_report_leaves_its_json_file_as_it_was(tmp_path: Path) -> None:
    """What `run --json`'s help and docs/latency.md say: a run that ends with an `Error:` line and
    no report (here the machine could not be made: RMM_MP_SHM_DIR names no directory) exits 1 and
    writes no JSON, so a file already there (an earlier run's) is left as it was. A script that
    reads the file after a non-zero status must know this, or it reads the earlier verdict."""
    out = tmp_path / "report.json"
    out.write_text('{"earlier": true}\n')
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RMM_MP_SHM_DIR": str(tmp_path / "no-such-directory")}
    proc = subprocess.run([sys.executable, "-m", "rmm_mp", "run", "quickstart", "--cpus", "1", "--iterations", "3",
                           "--no-progress", "--json", str(out)], capture_output=True, text=True, cwd=tmp_path,
                          env=env, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.startswith("Error: MachineError: ") and proc.stdout == "", proc.stdout + proc.stderr
    assert out.read_text() == '{"earlier": true}\n'
    help_text = " ".join(CliRunner().invoke(main, ["run", "--help"]).output.split())
    assert "a FILE already there is then left as it was" in help_text, help_text


def test_check_with_no_verdict_leaves_its_json_file_as_it_was(tmp_path: Path) -> None:
    """What `check --json`'s help says: with no verdict (exit status 2: here no such machine) no
    JSON is written, and an earlier check's file is left as it was."""
    out = tmp_path / "check.json"
    out.write_text('{"earlier": true}\n')
    result = CliRunner().invoke(main, ["check", "rmm-mp-1-0badc0de", "--json", str(out)])
    assert result.exit_code == 2 and "no machine named 'rmm-mp-1-0badc0de'" in result.output, result.output
    assert out.read_text() == '{"earlier": true}\n'
    help_text = " ".join(CliRunner().invoke(main, ["check", "--help"]).output.split())
    assert "with 2 or 130 none is written, and a FILE already there is left as it was" in help_text, help_text
