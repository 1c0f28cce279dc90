"""`rmm-mp stress` and `rmm-mp check`, through click's runner (the click objects of
rmm_mp/stress/cli.py and rmm_mp/stress/check_cli.py, which rmm_mp/cli.py registers)."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import types
from pathlib import Path
from typing import Any, Callable

import psutil

import click
import pytest
from children import bound_pid, cpu_children, wait_for_cpus
from click.testing import CliRunner

from rmm_mp import Machine
from rmm_mp.hw import segment
from rmm_mp.hw.quiesce import Participant
from rmm_mp.stress import BUGS, check_cli
from rmm_mp.stress.check_cli import check
from rmm_mp.stress.cli import stress
from rmm_mp.stress.shared import MODE_FREE, StressSegment

# Many tests here send this process SIGINT (Ctrl-C) and expect KeyboardInterrupt, which an
# inherited SIG_IGN (pytest started in the background by a script) would keep away.
pytestmark = pytest.mark.usefixtures("ctrl_c")


def _unwrapped(text: str) -> str:
    """``text`` with the stress summary's lines read as one: it is wrapped after a phrase's "; "
    (StressReport.text), and these tests search across its phrases."""
    return text.replace(";\n    ", "; ")


def _ctrl_c_at_first_tick() -> tuple[list[float], Callable[[float, object], None]]:
    """An on_tick for stress.runner.run that sends this process SIGINT (Ctrl-C) once, at the
    first tick, and the list it notes that tick's elapsed time in."""
    sent: list[float] = []

    def first_tick(elapsed: float, seg: object) -> None:
        if not sent:
            sent.append(elapsed)
            os.kill(os.getpid(), signal.SIGINT)
    return sent, first_tick


def _cpus_bind_after_a_ctrl_c_all_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ctrl-C at the first tick kills the CPU processes that have not had the parent's go to
    bind yet (rmm_mp.cpu_start), as they all are then: switched off here, so that they start up,
    bind and meet the stop as CPUs already bound but not yet ready do (the tests that call this
    are about those; tests/stresstool/test_stress_never_started.py is about the others)."""
    from rmm_mp import cpu_start
    monkeypatch.setattr(cpu_start.StartGate, "kill_waiting", lambda self, live: [])


def test_list_bugs() -> None:
    """--list-bugs prints every catalogued bug with the checker that catches it, and exits 0. Its
    columns are headed and underlined, as the run report's tables are: a first-time user read the
    bare middle column ("lockdep", "ownership") with nothing to say it is the checker that finds
    the bug."""
    res = CliRunner().invoke(stress, ["--list-bugs"])
    assert res.exit_code == 0, res.output
    header, rule, *lines = res.output.splitlines()
    assert header.split()[:4] == ["bug", "found", "by", "mistake"], header
    assert set(rule) == {"-", " "} and len(rule.split()) == 3, rule
    assert len(lines) == len(BUGS)
    for name, bug in BUGS.items():
        assert any(line.split()[:2] == [name, bug.checker] for line in lines), name


@pytest.mark.parametrize("args, named", [(["--cpus", "4"], "--cpus"), (["mixed"], "WORKLOAD"),
                                         (["--inject", "lock-two-unordered", "--seed", "3"], "--seed, --inject")])
def test_list_bugs_refuses_what_it_would_ignore(args: list[str], named: str) -> None:
    """--list-bugs with an option or WORKLOAD beside it: a usage error (exit 2) naming what was
    given, not a listing that ignores it as if it had taken effect."""
    res = CliRunner().invoke(stress, ["--list-bugs", *args])
    assert res.exit_code == 2, res.output
    assert f"--list-bugs lists the catalog and exits: it takes no other option or argument (given: {named})" in res.output



def test_help_names_every_workload() -> None:
    """--help lists the WORKLOAD choices in its text (the usage line shows [WORKLOAD]): the list
    is written out there, so a new workload must be added to it."""
    from rmm_mp.stress.cli import WORKLOADS

    res = CliRunner().invoke(stress, ["--help"])
    text = " ".join(res.output.split())
    assert res.exit_code == 0 and "[WORKLOAD]" in text
    names = sorted(WORKLOADS)
    assert f"one of {', '.join(names[:-1])} and {names[-1]}" in text


def test_help_gives_exit_status_1_for_a_machine_that_could_not_be_made(tmp_path: Path) -> None:
    """RMM_MP_SHM_DIR naming no directory: `rmm-mp stress` prints `Error: MachineError: ...` and
    exits 1, with no report; --help's exit-status paragraph says so (it named findings, an
    interrupted run, a replay and a report file for 1, not a machine that could not be made)."""
    env = {**os.environ, "RMM_MP_SHM_DIR": str(tmp_path / "missing")}
    res = subprocess.run([sys.executable, "-m", "rmm_mp", "stress", "--seconds", "1"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 1 and res.stderr.startswith("Error: MachineError: "), res.stderr
    assert "finding" not in res.stdout, res.stdout
    text = " ".join(CliRunner().invoke(stress, ["--help"]).output.split())
    assert ("1 also, with no report but an `Error:` line saying why, when the machine could not be made "
            "(RMM_MP_SHM_DIR no usable directory, not enough free space in it: MachineError)") in text, text


def test_help_says_quiescent_every_needs_the_invariants_checker() -> None:
    """64b104b refuses --quiescent-every above 0 without the invariants checker; --help still
    described the option as if any --checkers would do."""
    text = " ".join(CliRunner().invoke(stress, ["--help"]).output.split())
    assert ("Without the invariants checker in --checkers there is no check at all, not even at the end, "
            "and a value above 0 is refused.") in text

def test_quiescent_every_is_shown_as_steps_or_seconds_and_its_errors_echo_the_value_as_typed() -> None:
    """--quiescent-every is a step count in a deterministic run and seconds in a free-running
    one: --help shows it as N|SECONDS, not click's FLOAT RANGE. A negative value is refused as
    typed (-1, not the -1.0 click made of it; -1.50 stays -1.50), a value that is no number
    says what was expected, not "is not a valid float range", and one typed as more than 0 that
    a float holds as 0 (1e-400) is refused: read as 0, it turned the checks off without a word."""
    [line] = [line for line in CliRunner().invoke(stress, ["--help"]).output.splitlines()
              if line.lstrip().startswith("--quiescent-every")]
    assert line.split()[:2] == ["--quiescent-every", "N|SECONDS"], line
    for typed, message in (("-1", "-1 is not in the range x>=0."), ("-1.50", "-1.50 is not in the range x>=0."),
                           ("abc", "'abc' is not a number: expected N steps or SECONDS, x>=0"),
                           ("1e-400", "1e-400 reads as 0, which turns the checks off; expected 0 for no checks")):
        res = CliRunner().invoke(stress, ["--quiescent-every", typed])
        assert res.exit_code == 2, res.output
        assert f"Invalid value for '--quiescent-every': {message}" in res.output, res.output


def test_option_types_show_their_metavar_as_click_8_1_asks_for_it() -> None:
    """click 8.1 (pyproject: click>=8.1) asks an option's type for its metavar with the option
    alone, get_metavar(param); 8.2 and later add the context. --quiescent-every's type required
    the context, so `rmm-mp stress --help` ended in a TypeError under click 8.1; --inject's
    type answers both calls."""
    params = {p.name: p for p in stress.params}
    for name, metavar in (("quiescent_every", "N|SECONDS"), ("inject", "BUG")):
        param = params[name]
        assert param.type.get_metavar(param) == metavar
        assert param.type.get_metavar(param, click.Context(stress)) == metavar


@pytest.mark.multiprocess
def _names_its_schema(data: dict[str, Any]) -> None:
    """The stress JSON opens with its document's name and version, as run's, explore's and
    check's do (it had none, so a CI script could not tell which document it read)."""
    assert next(iter(data)) == "schema" and data["schema"] == "rmm-mp-stress-report/1", list(data)[:3]


def test_failing_deterministic_run_writes_schedule_trace_and_json_then_replays(tmp_path: Path) -> None:
    """An injected bug under the random schedule: exit 1, the finding and the replay command are
    printed, the schedule file, the timeline and the JSON report are written; --replay of the
    file exits 1 (the finding again) and says the recording was reproduced."""
    sched, trace, report = tmp_path / "s.json", tmp_path / "t.json", tmp_path / "r.json"
    runner = CliRunner()
    res = runner.invoke(stress, ["--inject", "walk-unlock-parent-first", "--schedule", "random", "--steps", "2000",
                                 "--seed", "1", "--save-schedule", str(sched), "--trace", str(trace),
                                 "--json", str(report)])
    assert res.exit_code == 1, res.output
    assert "[lockdep: rule 5]" in res.output and f"replay: rmm-mp stress --replay {sched}" in res.output
    # A reader of "rule 5" is told where the rules are numbered.
    assert "finding(s) (lockdep's rules are numbered as in docs/locking.md):" in res.output
    data = json.loads(report.read_text())
    assert data["inject"] == ["walk-unlock-parent-first"] and data["findings"][0]["rule"] == "rule 5"
    _names_its_schema(data)
    assert data["ok"] is False
    assert json.loads(trace.read_text())["traceEvents"]
    res = runner.invoke(stress, ["--replay", str(sched)])
    assert res.exit_code == 1, res.output
    assert "replay reproduced the recorded findings" in res.output


@pytest.mark.multiprocess
def test_an_interrupted_replay_does_not_say_it_diverged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C at the first tick of a replay (its CPUs stop before the finding): exit 1, and the
    replay is said to be interrupted, not to have DIVERGED from its recording."""
    from rmm_mp.stress import cli as stress_cli

    sched = tmp_path / "s.json"
    runner = CliRunner()
    res = runner.invoke(stress, ["tables", "--seed", "1", "--schedule", "random", "--steps", "3000",
                                 "--inject", "lock-two-unordered", "--checkers", "lockdep", "--save-schedule", str(sched)])
    assert res.exit_code == 1 and sched.exists(), res.output
    real_run = stress_cli.run

    def interrupted_at_once(config, **kwargs):  # type: ignore[no-untyped-def]
        sent = []

        def tick(elapsed: float, seg: object) -> None:
            if not sent:
                sent.append(elapsed)
                os.kill(os.getpid(), signal.SIGINT)
        return real_run(config, **{**kwargs, "on_tick": tick})

    monkeypatch.setattr(stress_cli, "run", interrupted_at_once)
    res = runner.invoke(stress, ["--replay", str(sched)])
    assert res.exit_code == 1, res.output
    assert "replay interrupted before it reproduced the recorded findings" in res.output, res.output
    assert "DIVERGED" not in res.output


@pytest.mark.multiprocess
def test_an_interrupted_replay_of_a_clean_run_does_not_say_it_reproduced(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C at the first tick of the replay of a run that found nothing: it found nothing
    either, but it stopped before it could tell, so it is interrupted, not `reproduced` (it
    said so: an empty list equals an empty list). Found probing the replay verdicts."""
    from rmm_mp.stress import cli as stress_cli

    sched, j = tmp_path / "s.json", tmp_path / "r.json"
    runner = CliRunner()
    res = runner.invoke(stress, ["tables", "--seed", "1", "--schedule", "random", "--steps", "300",
                                 "--save-schedule", str(sched)])
    assert res.exit_code == 0 and sched.exists(), res.output
    real_run = stress_cli.run

    sent, first_tick = _ctrl_c_at_first_tick()

    def interrupted_at_once(config, **kwargs):  # type: ignore[no-untyped-def]
        return real_run(config, **{**kwargs, "on_tick": first_tick})

    monkeypatch.setattr(stress_cli, "run", interrupted_at_once)
    res = runner.invoke(stress, ["--replay", str(sched), "--json", str(j)])
    assert sent and res.exit_code == 1, res.output
    assert "replay interrupted before it reproduced the recorded findings" in res.stdout, res.output
    assert "replay reproduced" not in res.stdout and "(no findings recorded)" in res.stdout
    assert json.loads(j.read_text())["replay"]["verdict"] == "interrupted"


@pytest.mark.multiprocess
def test_a_replay_stopped_by_its_time_limit_does_not_say_it_diverged(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A replay whose --seconds (its safety limit) is over before it starts: it stops, `ended:
    timeout`, without the recorded finding. It stopped part-way, as an interrupted one does, so
    it says so (verdict `timeout`), not that it DIVERGED: a CI job on a slow host would have
    taken that for a changed outcome. Exit status 1 as before.

    The limit ends the run while the CPU processes are still starting up; each stops once it
    is up. The grace time for that (2 s) is raised for this test: a CPU that a loaded host kept
    from coming up within it was terminated, a `cpu-died` finding, and the test failed on its
    findings (seen once under heavy load). How the tool treats such a CPU is
    test_a_cpu_stuck_as_it_starts_is_a_finding_when_the_time_limit_ends_the_run's subject."""
    from rmm_mp.stress import runner
    monkeypatch.setattr(runner, "DETERMINISTIC_GRACE_S", 300.0)
    sched, _ = _recorded(tmp_path)
    j = tmp_path / "r.json"
    res = CliRunner().invoke(stress, ["--replay", str(sched), "--seconds", "0.000001", "--json", str(j)])
    assert res.exit_code == 1, res.output
    data = json.loads(j.read_text())
    assert data["ended"] == "timeout" and not data["findings"], res.output
    assert "replay stopped by its time limit (--seconds) before it reproduced the recorded findings" in res.stdout
    assert "DIVERGED" not in res.stdout and data["replay"]["verdict"] == "timeout"


@pytest.mark.multiprocess
def test_an_interrupted_run_with_a_finding_is_not_shrunk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C stopped the run after it found something: `--shrink` does not then start up to
    two minutes of replays; the command says so, saves the schedule and exits 1."""
    import dataclasses

    from rmm_mp.stress import cli as stress_cli

    real_run = stress_cli.run

    def interrupted(config, **kwargs):  # type: ignore[no-untyped-def]
        return dataclasses.replace(real_run(config, **kwargs), interrupted=True)

    def no_shrink(*args: object, **kwargs: object) -> None:
        raise AssertionError("shrink started after an interrupted run")

    monkeypatch.setattr(stress_cli, "run", interrupted)
    monkeypatch.setattr(stress_cli, "shrink", no_shrink)
    path = tmp_path / "s.json"
    result = CliRunner().invoke(stress, ["tables", "--seed", "1", "--schedule", "random", "--steps", "3000",
                                         "--inject", "lock-two-unordered", "--checkers", "lockdep", "--shrink",
                                         "--save-schedule", str(path)])
    assert result.exit_code == 1, result.output
    assert "not shrunk: the run was interrupted" in result.output
    assert path.exists()


def _signal_when_called(monkeypatch: pytest.MonkeyPatch, module: object, name: str, signum: int) -> list[int]:
    """Send ``signum`` to this process as ``module.name`` is first called (before the call)."""
    real = getattr(module, name)
    calls: list[int] = []

    def wrapper(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 1:
            os.kill(os.getpid(), signum)
        return real(*args, **kwargs)
    monkeypatch.setattr(module, name, wrapper)
    return calls


@pytest.mark.multiprocess
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["Ctrl-C", "SIGTERM"])
def test_a_signal_after_the_cpus_stopped_still_gives_the_report(monkeypatch: pytest.MonkeyPatch,
                                                                signum: signal.Signals) -> None:
    """Ctrl-C or SIGTERM as the final invariant check starts, the CPUs already stopped: the
    check is skipped and the report of what ran is printed all the same, marked interrupted and
    saying what was not done (exit 1), not 'Aborted!' (Ctrl-C) or a silent death (SIGTERM);
    nothing is left in the segment directory."""
    from rmm_mp.stress import ending
    calls = _signal_when_called(monkeypatch, ending, "invariants", signum)
    res = CliRunner().invoke(stress, ["tables", "--schedule", "random", "--steps", "300", "--quiescent-every", "0"])
    what = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
    assert calls and res.exit_code == 1, res.output
    assert re.search(rf"; [1-9][\d,]* operations? in .*; ended: interrupted \({what}\)\n", _unwrapped(res.output)), res.output
    assert f"not done: invariants not checked at the end: interrupted ({what})" in res.output
    # This process's segments only: under xdist another worker's machines come and go meanwhile.
    assert not [e for e in os.listdir(segment.SHM_DIR) if e.startswith(f"rmm-mp-{os.getpid()}-")]


@pytest.mark.multiprocess
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["Ctrl-C", "SIGTERM"])
def test_a_signal_after_the_end_was_computed_makes_the_run_end_interrupted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, signum: signal.Signals) -> None:
    """Ctrl-C or SIGTERM as the runner computes how the run ended (_ended), the CPUs stopped at
    their budget and the invariants checker off, so no step follows to take the signal: the
    report says "ended: interrupted", its JSON too, and the exit status is 1 (it said "ended:
    budget" with interrupted set, and exited 0)."""
    from rmm_mp.stress import ending
    calls = _signal_when_called(monkeypatch, ending, "_ended", signum)
    j = tmp_path / "r.json"
    res = CliRunner().invoke(stress, ["tables", "--schedule", "random", "--steps", "300", "--checkers", "lockdep",
                                      "--json", str(j)])
    assert calls and res.exit_code == 1, res.output
    assert re.search(r"; [1-9][\d,]* operations? in .*; ended: interrupted \((Ctrl-C|SIGTERM)\)\n(lock contention: .*\n)?(.*\n)*no findings, but the run was interrupted \((Ctrl-C|SIGTERM)\) before its end: no pass\n", _unwrapped(res.output)), res.output
    assert json.loads(j.read_text())["ended"] == "interrupted"


@pytest.mark.multiprocess
def test_the_json_says_a_run_with_a_finding_was_interrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C as the runner computes how a run with a finding ended (nothing left undone
    after it with the lockdep checker alone): `ended` stays "finding", as the text says, and
    the JSON's `interrupted` is true. It had no such key, so the JSON of this run read as one
    that ran to its end (`not_done` empty), though the command exits 1 for the interruption.
    The text's summary line says it too (`ended: finding; interrupted (Ctrl-C)`): it said only
    `ended: finding`, so the text never mentioned the Ctrl-C the exit status was for."""
    from rmm_mp.stress import ending
    calls = _signal_when_called(monkeypatch, ending, "_ended", signal.SIGINT)
    j = tmp_path / "r.json"
    res = CliRunner().invoke(stress, [*_FAILING, "--save-schedule", str(tmp_path / "s.json"), "--json", str(j)])
    assert calls and res.exit_code == 1, res.output
    data = json.loads(j.read_text())
    assert data["ended"] == "finding" and data["findings"] and data["not_done"] == []
    _names_its_schema(data)
    assert data["interrupted"] is True
    assert re.search(r"; ended: finding; interrupted \(Ctrl-C\)\n(lock contention: .*\n)?[1-9]\d* finding\(s\)( \(lockdep's rules are numbered as in docs/locking\.md\))?:\n", _unwrapped(res.output)), res.output
    assert 0 < data["startup_s"] < data["elapsed_s"], data     # deterministic: until the first turn


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["Ctrl-C", "SIGTERM"])
def test_a_signal_while_the_population_is_built_gives_a_report_of_nothing_run(
        monkeypatch: pytest.MonkeyPatch, signum: signal.Signals) -> None:
    """Ctrl-C or SIGTERM while the parent builds the population: no CPU is started, and the
    report says so, marked interrupted (exit 1)."""
    from rmm_mp.stress import runner
    _signal_when_called(monkeypatch, runner, "build", signum)
    monkeypatch.setattr(runner, "run_cpus", lambda *a, **k: pytest.fail("the CPUs were started"))
    res = CliRunner().invoke(stress, ["--seconds", "1"])
    what = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
    assert res.exit_code == 1, res.output
    assert f"0 operations in 0.0 s; checkers: lockdep, ownership, invariants, watchdog; ended: interrupted ({what})" \
        in _unwrapped(res.output)
    assert f"not done: the CPUs were not started: interrupted ({what}) while the population was built" \
        in res.output


_FAILING = ["tables", "--seed", "1", "--schedule", "random", "--steps", "3000", "--inject", "lock-two-unordered",
            "--checkers", "lockdep"]
"""A short deterministic run that finds something (so it has a schedule and a timeline to write)."""


def _failing_with_files(tmp_path: Path) -> tuple[Any, Path, Path, Path]:
    """_FAILING run with its schedule, timeline and JSON named in ``tmp_path``: the result and
    the three paths."""
    sched, trace, j = tmp_path / "s.json", tmp_path / "t.json", tmp_path / "r.json"
    res = CliRunner().invoke(stress, [*_FAILING, "--save-schedule", str(sched), "--trace", str(trace),
                                      "--json", str(j)])
    return res, sched, trace, j


def _recorded(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """A schedule file of the _FAILING run (saved with its JSON report), and that report."""
    sched, j = tmp_path / "s.json", tmp_path / "run.json"
    res = CliRunner().invoke(stress, [*_FAILING, "--save-schedule", str(sched), "--json", str(j)])
    assert res.exit_code == 1 and sched.exists(), res.output
    return sched, json.loads(j.read_text())


def _replayed(sched: Path, j: Path) -> tuple[Any, dict[str, Any]]:
    res = CliRunner().invoke(stress, ["--replay", str(sched), "--json", str(j)])
    return res, json.loads(j.read_text())


@pytest.mark.multiprocess
def test_the_json_of_a_replay_gives_its_verdict(tmp_path: Path) -> None:
    """A replay that reproduced its recording and one that diverged from it both exit 1 when
    there are findings (a script cannot tell them apart by the exit status): the JSON says which
    (`replay.verdict`), with the recorded findings and the replay's own; a run that is no replay
    has `replay` null. Found by scripting a replay for CI: the JSON had no verdict at all."""
    sched, ran = _recorded(tmp_path)
    assert ran["replay"] is None
    res, data = _replayed(sched, tmp_path / "same.json")
    assert res.exit_code == 1 and "replay reproduced the recorded findings" in res.stdout, res.output
    assert data["replay"] == {"file": str(sched), "verdict": "reproduced", "moved_lines": False, "reworded": False,
                              "recorded": ran["findings"], "seen": data["findings"]}
    assert data["findings"] == ran["findings"]
    _names_its_schema(data)
    recording = json.loads(sched.read_text())
    recording["result"]["findings"][0]["message"] += " (a finding the replay does not make)"
    sched.write_text(json.dumps(recording))
    res, data = _replayed(sched, tmp_path / "other.json")
    assert res.exit_code == 1 and "replay DIVERGED from the recorded findings" in res.stdout, res.output
    assert data["replay"]["verdict"] == "diverged" and data["replay"]["seen"] == ran["findings"]
    assert data["replay"]["recorded"] == recording["result"]["findings"]
    assert data["replay"]["reworded"] is True     # only the message differs


@pytest.mark.multiprocess
def test_a_replay_after_an_edit_that_moved_the_lines_still_reproduces(tmp_path: Path) -> None:
    """A schedule file recorded before an edit that moved code (every source line number of
    its findings changed, here by rewriting the file) still reproduces: findings are compared
    without line numbers, the printed line says they moved, `replay.moved_lines` is true, and
    the findings printed and in the JSON keep the lines of the code that ran. The same finding
    in another function diverges. Any edit used to make every saved schedule DIVERGE."""
    sched, ran = _recorded(tmp_path)
    assert any(re.search(r"\.py:\d+", f["site"]) for f in ran["findings"]), ran["findings"]
    original = sched.read_text()
    sched.write_text(re.sub(r"(\.py:)(\d+)", lambda m: f"{m.group(1)}{int(m.group(2)) + 7}", original))
    res, data = _replayed(sched, tmp_path / "moved.json")
    assert res.exit_code == 1, res.output
    assert "replay reproduced the recorded findings (some at other source lines" in res.stdout, res.output
    assert data["replay"]["verdict"] == "reproduced" and data["replay"]["moved_lines"] is True
    assert data["findings"] == ran["findings"] == data["replay"]["seen"]
    assert ran["findings"][0]["site"] in res.stdout
    recording = json.loads(original)
    site = recording["result"]["findings"][0]["site"]
    recording["result"]["findings"][0]["site"] = re.sub(r"\((\w+)\)", r"(\1_elsewhere)", site, count=1)
    assert recording["result"]["findings"][0]["site"] != site
    sched.write_text(json.dumps(recording))
    res, data = _replayed(sched, tmp_path / "other.json")
    assert "replay DIVERGED from the recorded findings" in res.stdout, res.output
    assert data["replay"]["verdict"] == "diverged" and data["replay"]["moved_lines"] is False


@pytest.mark.multiprocess
def test_the_printed_replay_command_pastes_as_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The `replay:` line is a command a shell runs as printed, even for a schedule path with a
    space and a quote in it (it used to be printed unquoted: pasted, it named other files), and
    it reproduces the finding."""
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(stress, [*_FAILING, "--save-schedule", "my run's.schedule.json"])
    assert res.exit_code == 1, res.output
    command = re.search(r"^replay: (.*)$", res.stdout, re.M)
    assert command is not None, res.stdout
    argv = shlex.split(command.group(1))
    assert argv[:2] == ["rmm-mp", "stress"] and argv[2:] == ["--replay", "my run's.schedule.json"], argv
    again = CliRunner().invoke(stress, argv[2:])
    assert "replay reproduced the recorded findings" in again.stdout, again.output


@pytest.mark.multiprocess
def test_a_file_that_cannot_be_written_after_the_run_is_named_not_a_traceback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--json in a directory removed during the run (checked before it, the path can still
    fail, as a full disk makes it): the report, the schedule and the timeline are still given,
    the JSON is named with the reason and the exit status is 1, with no traceback and no
    partial file."""
    import shutil

    from rmm_mp.stress import cli as stress_cli

    real_run = stress_cli.run
    gone = tmp_path / "gone"
    gone.mkdir()

    def run_then_remove_the_directory(config, **kwargs):  # type: ignore[no-untyped-def]
        report = real_run(config, **kwargs)
        shutil.rmtree(gone)
        return report

    monkeypatch.setattr(stress_cli, "run", run_then_remove_the_directory)
    sched, trace, j = tmp_path / "s.json", tmp_path / "t.json", gone / "r.json"
    res = CliRunner().invoke(stress, [*_FAILING, "--save-schedule", str(sched), "--trace", str(trace),
                                      "--json", str(j)])
    assert isinstance(res.exception, SystemExit) and res.exit_code == 1, (res.output, res.exception)
    assert f"schedule: {sched}\n" in res.stdout and f"timeline: {trace} " in res.stdout
    message = f"could not write the json report to {j}: No such file or directory"
    assert f"Report files not written\n  {message}\n" in res.stdout
    assert f"Error: {message}\n" in res.stderr and "Traceback" not in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json", "t.json"]


def test_the_json_names_the_files_written_and_those_that_could_not_be(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The JSON, written last, lists the schedule and itself under ``outputs`` and a timeline
    that could not be written under ``output_errors``, as `rmm-mp run`'s JSON does: a reader of
    the JSON alone learns that the trace is missing."""
    from rmm_mp.stress import cli as stress_cli

    def full(report: object, path: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(stress_cli.timeline, "write", full)
    res, sched, trace, j = _failing_with_files(tmp_path)
    assert res.exit_code == 1, res.output
    document = json.loads(j.read_text())
    assert document["outputs"] == {"schedule": str(sched), "json": str(j)}
    assert document["output_errors"] == [f"could not write the trace report to {trace}: No space left on device"]


@pytest.mark.multiprocess
def _outside_the_command(signum: int, frame: object) -> None:
    """Stands in for SIGTERM's default handler in a test, which would end pytest: a SIGTERM that
    reaches it escaped the command's own handling."""
    raise KeyboardInterrupt("SIGTERM reached the handler in place before the run")


@pytest.mark.multiprocess
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["Ctrl-C", "SIGTERM"])
def test_a_signal_as_the_report_is_printed_still_gives_it_marked_interrupted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, signum: signal.Signals) -> None:
    """Ctrl-C or SIGTERM after run() returned, as the report's text is made for printing: the
    report is printed all the same, once, marked interrupted (it had reached its budget), the
    JSON is still written and says so, and the exit status is 1: not 'Aborted!' with no report
    (Ctrl-C) or a silent death (SIGTERM)."""
    from rmm_mp.stress.report import StressReport

    previous = signal.signal(signal.SIGTERM, _outside_the_command)
    try:
        calls = _signal_when_called(monkeypatch, StressReport, "text", signum)
        j = tmp_path / "r.json"
        res = CliRunner().invoke(stress, ["tables", "--schedule", "random", "--steps", "300", "--json", str(j)])
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert calls and isinstance(res.exception, SystemExit) and res.exit_code == 1, (res.output, res.exception)
    assert len(re.findall(r"; [1-9][\d,]* operations? in .*; ended: interrupted \((Ctrl-C|SIGTERM)\)\n(lock contention: .*\n)?(.*\n)*no findings, but the run was interrupted \((Ctrl-C|SIGTERM)\) before its end: no pass\n", _unwrapped(res.stdout))) == 1, \
        res.stdout
    assert "ended: budget" not in res.stdout
    data = json.loads(j.read_text())
    assert data["ended"] == "interrupted" and data["outputs"] == {"json": str(j)} and not data["output_errors"]


@pytest.mark.multiprocess
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["Ctrl-C", "SIGTERM"])
def test_a_signal_before_the_shrinking_skips_it_and_still_writes_the_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, signum: signal.Signals) -> None:
    """Ctrl-C or SIGTERM as --shrink is about to start, the report printed: no shrinking, said
    so ('not shrunk: interrupted', also under not_done in the JSON), the report marked
    interrupted after it, the schedule and the JSON still written, exit 1, no traceback."""
    from rmm_mp.stress import cli as stress_cli

    previous = signal.signal(signal.SIGTERM, _outside_the_command)
    try:
        calls = _signal_when_called(monkeypatch, stress_cli, "shrink", signum)
        sched, j = tmp_path / "s.json", tmp_path / "r.json"
        res = CliRunner().invoke(stress, [*_FAILING, "--shrink", "--save-schedule", str(sched), "--json", str(j)])
    finally:
        signal.signal(signal.SIGTERM, previous)
    what = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
    assert calls and isinstance(res.exception, SystemExit) and res.exit_code == 1, (res.output, res.exception)
    assert "[lockdep: " in res.stdout and "shrunk in" not in res.stdout and "shrink attempt" not in res.output
    assert f"not shrunk: interrupted ({what})\ninterrupted ({what}) after the run; ended: finding\n" in res.stdout
    assert f"schedule: {sched}\nreplay: rmm-mp stress --replay {sched}\n" in res.stdout and sched.exists()
    data = json.loads(j.read_text())
    assert data["not_done"] == [f"not shrunk: interrupted ({what})"] and data["findings"]
    assert data["outputs"] == {"schedule": str(sched), "json": str(j)}


@pytest.mark.multiprocess
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["Ctrl-C", "SIGTERM"])
def test_a_signal_during_the_shrinking_is_in_the_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      signum: signal.Signals) -> None:
    """Ctrl-C or SIGTERM as shrinking's first replay starts: the search ends (said on stdout),
    and the JSON says so too: `shrink` with `interrupted` true and the figures of the original
    and of the run reported (here the same), `not_done` naming the shrinking, `interrupted`
    true, and the --trace timeline's summary ends "interrupted (SIGNAL)"; the exit status is 1. The JSON used to read as a finished run (`not_done` empty, no
    shrink information). Found by Ctrl-C about 2.8 s into `--inject rd-refcount-plain-rmw
    --schedule random --seed 1 --shrink --json j.json`."""
    from rmm_mp.stress import shrink as shrinking

    previous = signal.signal(signal.SIGTERM, _outside_the_command)
    try:
        calls = _signal_when_called(monkeypatch, shrinking, "run", signum)
        j = tmp_path / "r.json"
        res = CliRunner().invoke(stress, [*_FAILING, "--shrink", "--save-schedule", str(tmp_path / "s.json"),
                                          "--json", str(j), "--trace", str(tmp_path / "t.json")])
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert calls and isinstance(res.exception, SystemExit) and res.exit_code == 1, (res.output, res.exception)
    # The replay the signal stopped is dropped, not counted (it read "after 1 replay").
    assert "shrinking interrupted after 0 replays (0 kept, and one cut short)" in res.stdout, res.output
    # The timeline's summary, the shrunk report's, names the signal (it said "Ctrl-C or
    # SIGTERM": the search kept no name).
    what = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
    summary = json.loads((tmp_path / "t.json").read_text())["otherData"]["summary"]
    assert summary.endswith(f"; ended: finding; interrupted ({what})"), summary
    data = json.loads(j.read_text())
    figures = {"finding_step": data["findings"][0]["step"], "steps": data["steps"], "switches": data["switches"],
               "preemptions": data["preemptions"]}
    assert data["shrink"] == {"replays": 0, "kept": 0, "interrupted": True, "cut_short": True, "limit": None,
                              "original": figures, "shrunk": figures}
    assert data["interrupted"] is True and data["ended"] == "finding"
    assert len(data["not_done"]) == 1 and data["not_done"][0].startswith("shrinking interrupted after 0 replays")


@pytest.mark.multiprocess
def test_a_shrinking_stopped_at_its_limit_says_so_and_how_to_go_on(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A search its bound of replays stops with cuts left to try (here 2 replays, each stubbed to
    give the run being shrunk again, so none is kept): its summary line says it stopped at its
    limit, and after the schedule's lines one gives the command that shrinks on from the saved
    schedule. The summary read "shrunk in 40 replays" as after a finished search (`--inject
    data-create-rtt-before-rd --checkers watchdog --schedule random --shrink`, seed 0: 40
    replays, 1,106 -> 17 preemptions, single switches not yet tried)."""
    from rmm_mp.stress import cli as stress_cli
    from rmm_mp.stress import shrink as shrinking

    original: list[object] = []

    def same_run(cfg: object, **kwargs: object) -> object:
        return original[0]

    def shrink_twice(report: Any, **kwargs: Any) -> Any:
        original.append(report)
        return shrinking.shrink(report, **{**kwargs, "max_attempts": 2})

    monkeypatch.setattr(shrinking, "run", same_run)
    monkeypatch.setattr(stress_cli, "shrink", shrink_twice)
    sched = tmp_path / "s.json"
    j = tmp_path / "r.json"
    res = CliRunner().invoke(stress, [*_FAILING, "--shrink", "--save-schedule", str(sched), "--json", str(j)])
    assert res.exit_code == 1 and sched.exists(), res.output
    assert "shrunk in 2 replays (0 kept), stopped at its limit of 2 replays with cuts left to try: " in res.stdout
    assert json.loads(j.read_text())["shrink"]["limit"] == "2 replays"
    assert res.stdout.endswith(f"schedule: {sched}\nreplay: rmm-mp stress --replay {sched}\nshrink further: "
                               f"rmm-mp stress --replay {sched} --shrink (the search stopped at its limit of 2 "
                               "replays)\n"), res.stdout


def test_a_finished_shrinking_is_in_the_json(tmp_path: Path) -> None:
    """--shrink that ran to its end: `shrink` gives the replays made and kept, `interrupted`
    false, the original run's figures and the shrunk run's (the report's); nothing is left
    undone. A run without --shrink has `shrink` null."""
    j = tmp_path / "r.json"
    res = CliRunner().invoke(stress, [*_FAILING, "--shrink", "--save-schedule", str(tmp_path / "s.json"),
                                      "--json", str(j)])
    assert res.exit_code == 1 and "shrunk in " in res.stdout, res.output
    data = json.loads(j.read_text())
    searched = data["shrink"]
    assert searched["interrupted"] is False and searched["replays"] >= searched["kept"] >= 1, searched
    _names_its_schema(data)
    assert searched["limit"] is None or searched["limit"] in ("40 replays", "120 s"), searched
    assert searched["shrunk"] == {"finding_step": data["findings"][0]["step"], "steps": data["steps"],
                                  "switches": data["switches"], "preemptions": data["preemptions"]}
    assert searched["original"]["preemptions"] > searched["shrunk"]["preemptions"]
    assert data["not_done"] == [] and data["interrupted"] is False
    assert json.loads(_recorded(tmp_path)[0].read_text())  # a run of its own ...
    assert _recorded(tmp_path)[1]["shrink"] is None         # ... has no shrink


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["Ctrl-C", "SIGTERM"])
def test_a_signal_while_the_files_are_written_names_the_files_not_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, signum: signal.Signals) -> None:
    """A run with a finding interrupted by Ctrl-C (as its end is worked out), then Ctrl-C or
    SIGTERM as the timeline starts to be written: the schedule (written before) is given, the
    timeline and the JSON after it are named as not written, interrupted, and the exit status
    is 1: not 'Aborted!' (Ctrl-C) or a silent death (SIGTERM: a handler of the test's own
    stands in for the default one, which would end pytest); no partial or temporary file is
    left. (The files of a run that was not interrupted are written held back: see the next
    test.) The copy windows are set to 0: the second signal is a second request here."""
    from rmm_mp import interrupts
    from rmm_mp.stress import ending, timeline

    def outside_the_writing(signum: int, frame: object) -> None:
        raise KeyboardInterrupt("SIGTERM reached the handler in place before the run")

    monkeypatch.setattr(interrupts, "COPY_S", 0.0)
    monkeypatch.setattr(interrupts, "REPEAT_S", 0.0)
    previous = signal.signal(signal.SIGTERM, outside_the_writing)
    try:
        ended = _signal_when_called(monkeypatch, ending, "_ended", signal.SIGINT)
        calls = _signal_when_called(monkeypatch, timeline, "write", signum)
        res, sched, trace, j = _failing_with_files(tmp_path)
    finally:
        signal.signal(signal.SIGTERM, previous)
    what = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
    assert ended and calls and isinstance(res.exception, SystemExit) and res.exit_code == 1, (res.output, res.exception)
    assert f"schedule: {sched}\nreplay: rmm-mp stress --replay {sched}\n" in res.stdout
    assert "timeline:" not in res.stdout
    for key, path in (("trace", trace), ("json", j)):
        message = f"could not write the {key} report to {path}: interrupted ({what})"
        assert f"  {message}\n" in res.stdout and f"Error: {message}\n" in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["Ctrl-C", "SIGTERM"])
def test_a_signal_while_the_files_of_a_given_verdict_are_written_changes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, signum: signal.Signals) -> None:
    """A run with a finding, not interrupted, its report printed to the last line: Ctrl-C or
    SIGTERM as the timeline, written after that line, starts to be written changes nothing,
    as one during `check --json`'s or `explore --json`'s file after their last line: every file
    is written, the JSON says the run was not interrupted, nothing is said of an interruption,
    and the exit status is the finding's 1. The files were written as a step that took the
    signal: the timeline and the JSON were named as not written (interrupted) after the whole
    report was out. Found by a signal-timing fuzz (a signal sent as the last line is read lands
    a few milliseconds later, in the files' write); the hook sends it from that write."""
    from rmm_mp.stress import timeline

    previous = signal.signal(signal.SIGTERM, _outside_the_command)
    try:
        calls = _signal_when_called(monkeypatch, timeline, "write", signum)
        res, sched, trace, j = _failing_with_files(tmp_path)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert calls and isinstance(res.exception, SystemExit) and res.exit_code == 1, (res.output, res.exception)
    assert f"schedule: {sched}\n" in res.stdout and f"timeline: {trace} " in res.stdout, res.stdout
    assert "interrupted" not in res.output and "not written" not in res.output, res.output
    data = json.loads(j.read_text())
    assert data["interrupted"] is False and data["findings"] and data["not_done"] == []
    assert data["outputs"] == {"schedule": str(sched), "trace": str(trace), "json": str(j)}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "s.json", "t.json"]


def test_clean_free_running_run_exits_zero(tmp_path: Path) -> None:
    """Two CPUs free-running the tables workload for a second: no finding, exit 0; the machine
    is named on stderr first, so that `rmm-mp check` can attach to it. The summary and the JSON
    say how much of the run's time was the CPU processes' start-up, which --seconds does not
    count (a run of --seconds 1 reported "in 2.1 s" with nothing to say why)."""
    j = tmp_path / "r.json"
    res = CliRunner().invoke(stress, ["tables", "--seconds", "1", "--seed", "3", "--json", str(j)])
    assert res.exit_code == 0, res.output
    assert "free-running" in res.output and "no findings" in res.output
    data = json.loads(j.read_text())
    assert 0 < data["startup_s"] < data["elapsed_s"], data
    _names_its_schema(data)
    # The JSON keeps 3 decimals, the text 1: compare within the text's rounding (1.4504 s is
    # "1.5" in the text and 1.45 in the JSON, which formats as "1.4": seen on CPython 3.12).
    shown = re.search(r" in (\d+\.\d) s \((\d+\.\d) s of it start-up\);", res.stdout)
    assert shown, res.stdout
    assert abs(float(shown[1]) - data["elapsed_s"]) <= 0.0505, (shown[0], data["elapsed_s"])
    assert abs(float(shown[2]) - data["startup_s"]) <= 0.0505, (shown[0], data["startup_s"])
    assert re.match(r"machine (rmm-mp-\d+-[0-9a-f]{8}) \(inspect it while it runs: rmm-mp check \1\)\n", res.stderr)


def test_a_free_running_finding_says_how_to_get_a_replayable_run() -> None:
    """A free-running run that finds a catalogued bug keeps no schedule: the output used to end
    with the finding, with no `replay:` line and nothing to say why, which a first-time user read
    as a missing file. It now says the run cannot be replayed and gives the deterministic run of
    the same workload, CPUs, seed, bug and checkers, which saves a schedule when it finds one
    (the command is parsed by the stress command's own options, not run: such a run and its
    replay are tested by test_failing_deterministic_run_writes_schedule_trace_and_json_then_replays).
    A clean free-running run prints no such line (test_clean_free_running_run_exits_zero). It
    says that run may need more steps than its default budget: it interleaves the CPUs another
    way (map-unprotected-leaks-lock, seed 1, needs some 32,000), and the bare command read as
    one that finds the same bug."""
    res = CliRunner().invoke(stress, ["--inject", "lock-two-unordered", "--seconds", "1", "--checkers", "lockdep"])
    assert res.exit_code == 1, res.output
    lines = res.stdout.splitlines()
    assert lines[-1] == ("not replayable (a free-running run keeps no schedule); a deterministic run saves one "
                         "when it finds something (a deterministic run interleaves the CPUs differently, so it may need more --steps "
                         "than its 20,000): rmm-mp stress tables --seed 0 --inject lock-two-unordered "
                         "--checkers lockdep --schedule random"), lines[-3:]
    command = shlex.split(lines[-1].split(": ", 1)[1])
    assert command[:2] == ["rmm-mp", "stress"]
    params = stress.make_context("stress", command[2:]).params
    assert (params["workload"], params["seed"], params["inject"], params["schedule"]) == (
        "tables", 0, ("lock-two-unordered",), "random"), params


class _Seg:
    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses

    def status(self, cpu: int) -> int:
        return self.statuses[cpu]


def test_free_running_seconds_count_from_when_every_cpu_is_ready() -> None:
    """A free-running run's --seconds start when the last CPU process is ready, not at spawning:
    counted from spawning, '--cpus 4 --seconds 2' on a loaded 2-core host completed no
    operation at all. The supervisor tells run_cpus to stop the CPUs that long after it first
    sees every CPU ready (or done already), and not before."""
    from types import SimpleNamespace

    from rmm_mp.stress.config import StressConfig
    from rmm_mp.stress.runner import _Supervisor
    from rmm_mp.stress.shared import ABSENT, DONE, READY
    seg = _Seg([ABSENT, ABSENT, ABSENT])
    sup = _Supervisor(SimpleNamespace(), seg, StressConfig(cpus=3, seconds=2.0), None, (), None)
    for elapsed, statuses in ((0.5, [READY, ABSENT, ABSENT]), (2.5, [READY, READY, ABSENT]),
                              (3.0, [READY, DONE, READY]), (4.9, [READY, DONE, READY])):
        seg.statuses = statuses
        assert sup._free_length(elapsed) is None, elapsed
    assert sup.ready_at == 3.0
    assert sup._free_length(5.0) == "time is up"


@pytest.mark.parametrize("args, message", [
    (["--checkers", "lockdep,bogus"], "unknown bogus"),
    (["--inject", "no-such-bug"], "no-such-bug"),
    # Two bugs swapping the same code: the second replaced the first, which the summary still
    # called injected while the run found nothing of it; a bug named twice is refused too.
    (["--inject", "lock-two-unordered", "--inject", "lock-two-check-late"],
     "--inject = lock-two-unordered, lock-two-check-late: lock-two-unordered and lock-two-check-late both replace "
     "GranuleTable.lock_two, so only one of them could be on; expected bugs that replace different code"),
    (["--inject", "rd-refcount-plain-rmw", "--inject", "rec-destroy-aux-after-rec", "--schedule", "random"],
     "rd-refcount-plain-rmw and rec-destroy-aux-after-rec both replace the RMI_REC_DESTROY handler"),
    (["--inject", "lock-two-unordered", "--inject", "lock-two-unordered"],
     "--inject = lock-two-unordered, lock-two-unordered: lock-two-unordered is named twice; expected each bug at "
     "most once"),
    (["nowhere"], "nowhere"),
    (["--trace", "t.json"], "--trace needs a deterministic run (--schedule random or pct, or --replay)"),
    (["--save-schedule", "s.json"], "--save-schedule needs a deterministic run"),
    (["--shrink"], "--shrink needs a deterministic run"),
    (["--seconds", "0"], "Invalid value for '--seconds': 0 is not in the range 0.000000001..86,400"),
    (["--cpus", "1"], "Invalid value for '--cpus': 1 is not in the range 2..64"),
    # One past the most the stress segment and the host run queue hold (stress.shared.MAX_CPUS).
    (["--cpus", "65"], "Invalid value for '--cpus': 65 is not in the range 2..64"),
    (["--seed", "-1"], "Invalid value for '--seed': -1 is not in the range 0..18,446,744,073,709,551,615"),
    (["--quiescent-every", "-1"], "Invalid value for '--quiescent-every': -1 is not in the range x>=0."),
    # An option the run would not use is refused, not ignored.
    (["--checkers", ""], "--checkers = '': expected a comma-separated subset of lockdep, ownership, invariants, "
                         "watchdog, 'all' or 'none'"),
    (["--checkers", " , "], "--checkers = ' , ': expected a comma-separated subset"),
    (["--steps", "50"], "--steps is the budget of a deterministic run (--schedule random or pct)"),
    (["--pct-depth", "2"], "--pct-depth applies to --schedule pct only (this run's schedule is free)"),
    (["--schedule", "random", "--pct-depth", "2"], "--pct-depth applies to --schedule pct only (this run's schedule "
                                                   "is random)"),
    # Counted in steps: 0.5 used to become 0 and turn the checks off without a word.
    (["--schedule", "random", "--quiescent-every", "0.5"], "--quiescent-every = 0.5: a deterministic run checks every "
                                                           "N steps; expected a whole number of steps"),
    # Quiescent points only run the invariant checker: without it the option did nothing, silently.
    (["--checkers", "lockdep", "--quiescent-every", "5"], "--quiescent-every = 5: quiescent points run the "
                                                          "invariant checker, which this run's checkers (lockdep)"),
    (["--checkers", "none", "--schedule", "random", "--quiescent-every", "100"], "checkers (none) leave out"),
])
def test_usage_errors_exit_2(args: list[str], message: str) -> None:
    """A bad checker, bug or workload name, an option out of its range (named as typed), or an
    option only a deterministic run can honour on a free-running one, is a usage error naming it
    (exit 2), before any run."""
    res = CliRunner().invoke(stress, args)
    assert res.exit_code == 2 and message in res.output, res.output


def test_the_most_cpus_are_accepted_and_get_a_machine_and_a_stress_segment_of_that_many(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`--cpus 64`, the most (as `rmm-mp run`'s), is accepted: the run's machine (the host
    platform, grown from its 4 CPUs) and its stress segment are made for 64 CPUs, and the
    supervisor is handed both; it is stopped there, so no CPU process is started. The segment
    held 60 CPUs (one page), and the option allowed 16."""
    from rmm_mp.stress import runner
    from rmm_mp.stress.shared import MAX_CPUS
    seen: list[tuple[int, int, int]] = []

    class Stop(Exception):
        pass

    def supervised(machine: Machine, seg: Any, config: Any, *rest: Any) -> Any:
        seen.append((config.cpus, machine.cpus, seg.cpus))
        raise Stop()
    monkeypatch.setattr(runner, "_supervised", supervised)
    monkeypatch.setattr(runner, "build", lambda machine, guests: None)     # the population: not needed
    res = CliRunner().invoke(stress, ["--cpus", "64"])
    assert isinstance(res.exception, Stop), res.output
    assert MAX_CPUS == 64 and seen == [(64, 64, 64)]


def test_a_free_running_start_up_is_allowed_more_time_on_an_oversubscribed_host(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A free-running run on a host whose cores each have 6 CPUs to run (runtime.oversubscription,
    its cap: 12 or more CPUs on 2 cores): run_cpus's own limit, the backstop for a start-up that
    never ends, is --seconds plus 6 times START_ALLOWANCE_S, not plus a flat 60 s that 64 CPUs
    on a loaded 2-core host nearly spent getting ready (50 s); a start-up cut off by it had its
    CPUs killed, each a cpu-died finding. Without oversubscription it stays 60 s. run_cpus is
    stopped there, so no CPU process starts."""
    from rmm_mp.stress import runner
    from rmm_mp.stress.config import StressConfig
    limits: list[float] = []

    class Stop(Exception):
        pass

    def run_cpus(*args: Any, **kwargs: Any) -> Any:
        limits.append(kwargs["timeout_s"])
        raise Stop()
    monkeypatch.setattr(runner, "run_cpus", run_cpus)
    monkeypatch.setattr(runner, "build", lambda machine, guests: None)     # the population: not needed
    for factor in (6.0, 1.0):
        monkeypatch.setattr(runner, "oversubscription", lambda cpus: factor)
        with pytest.raises(Stop):
            runner.run(StressConfig(cpus=2, seconds=3.0))
    assert limits == [3.0 + 6 * runner.START_ALLOWANCE_S, 3.0 + runner.START_ALLOWANCE_S] and \
        runner.START_ALLOWANCE_S == 60.0


def test_the_stress_segment_holds_the_words_of_every_cpu() -> None:
    """A stress segment of as many CPUs as the host run queue serves (host.runqueue.MAX_CPUS,
    64, which every stress CPU's run loop uses): every CPU's words lie inside it and apart from
    every other CPU's and from the run-wide words (the last CPU's status and steps, written,
    change nothing else). A segment of one more CPU is refused, naming the limit. The segment
    was one page, which held 60."""
    from rmm_mp.host.runqueue import MAX_CPUS
    from rmm_mp.stress.shared import READY, StressSegment
    with Machine.create("host", cpus=1) as m:
        seg = StressSegment.create(m.name, MAX_CPUS, 0, 0, 7, 9)
        try:
            last = MAX_CPUS - 1
            seg.set_status(last, READY, blocked_on=5)
            seg.set_point(last, 3, 0x1234)
            seg.set_priority(last, 11)
            assert (seg.status(last), seg.blocked_on(last), seg.point(last), seg.steps_of(last),
                    seg.priority(last)) == (READY, 5, (3, 0x1234), 1, 11)
            assert all(seg.status(c) == 0 and seg.steps_of(c) == 0 for c in range(last))
            assert (seg.cpus, seg.budget, seg.rng, seg.step) == (MAX_CPUS, 7, 9, 0)
        finally:
            seg.close()
        with pytest.raises(ValueError, match=f"cpus = {MAX_CPUS + 1}: the stress segment holds 1..{MAX_CPUS} CPUs"):
            StressSegment.create(m.name, MAX_CPUS + 1, 0, 0, 0, 0)


def test_checkers_none_runs_the_operations_alone() -> None:
    """--checkers none: a run with no checker, said in the report."""
    res = CliRunner().invoke(stress, ["tables", "--seconds", "0.5", "--checkers", "none"])
    assert res.exit_code == 0, res.output
    assert "checkers: none;" in res.output


# Free-running: 2.5 s, past the default 2 s interval (--quiescent-every itself is refused without
# the invariants checker); deterministic: past the default 2000 steps.
@pytest.mark.parametrize("schedule", [["--seconds", "2.5"],
                                      ["--schedule", "random", "--steps", "6000"]])
def test_without_the_invariants_checker_no_invariant_is_checked(schedule: list[str], tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """--checkers lockdep leaves the invariants checker out: no quiescent pause and no check at
    the end, free-running or deterministic, even with a bug that breaks the invariants (a
    free-running run paused and checked anyway, and the end-of-run check ran for every run)."""
    monkeypatch.chdir(tmp_path)     # a run with findings saves its schedule in the current directory
    res = CliRunner().invoke(stress, ["rtts", "--inject", "rtt-create-parent-released-early", "--checkers", "lockdep",
                                      "--seed", "2", *schedule])
    assert "checkers: lockdep;" in res.output and "[invariants" not in res.output, res.output
    assert "quiescent invariant check" not in res.output, res.output


@pytest.mark.parametrize("extra, shown", [
    (["tables"], "WORKLOAD"), (["--cpus", "3"], "--cpus"), (["--seed", "1"], "--seed"),
    (["--schedule", "pct"], "--schedule"), (["--steps", "10"], "--steps"), (["--pct-depth", "2"], "--pct-depth"),
    (["--inject", "lock-two-unordered"], "--inject"), (["--checkers", "lockdep"], "--checkers"),
    (["--quiescent-every", "5"], "--quiescent-every"),
])
def test_replay_refuses_what_its_file_fixes(tmp_path: Path, extra: list[str], shown: str) -> None:
    """A replay runs its file's configuration; an option that would change it is refused by
    name (it used to be ignored without a word), before any run. --seconds, the safety limit,
    still applies."""
    sched = tmp_path / "s.json"
    sched.write_text(json.dumps({"format": "rmm-mp-schedule", "version": 1, "config": {}, "switches": []}))
    res = CliRunner().invoke(stress, ["--replay", str(sched), *extra])
    assert res.exit_code == 2, res.output
    assert f"{shown} cannot be combined with --replay: a replay runs the workload, CPUs, seed, schedule, steps, " \
           f"bugs and checkers recorded in {sched}" in res.output
    assert "operations" not in res.output


@pytest.mark.parametrize("option", ["--trace", "--save-schedule", "--json"])
def test_unwritable_output_path_is_a_usage_error_before_any_run(tmp_path: Path, option: str) -> None:
    """An output file in a directory that does not exist: exit 2 naming the option and the
    path, before any run (nothing is printed of one)."""
    path = str(tmp_path / "missing" / "out.json")
    res = CliRunner().invoke(stress, ["--schedule", "random", "--steps", "10", option, path])
    assert res.exit_code == 2, res.output
    assert f"{option} = '{path}': expected a file that can be written (No such file or directory)" in res.output
    assert "operations" not in res.output and not (tmp_path / "missing").exists()


def test_one_file_for_two_outputs_is_a_usage_error(tmp_path: Path) -> None:
    """--trace and --json naming one file: the second would overwrite the first after the run."""
    path = str(tmp_path / "out.json")
    res = CliRunner().invoke(stress, ["--schedule", "random", "--steps", "10", "--trace", path, "--json", path])
    assert res.exit_code == 2, res.output
    assert f"--json = '{path}': expected a file of its own (--trace writes it too)" in res.output
    assert "operations" not in res.output and list(tmp_path.iterdir()) == []


def test_check_names_a_json_file_that_fails_when_written(machine: Machine, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """--json checked before attaching can still fail when written (a full disk): exit 2 with
    the file and the reason, not a traceback, and no partial file."""

    def full(document: object, path: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(check_cli, "write_json", full)
    target = tmp_path / "c.json"
    res = CliRunner().invoke(check, [machine.name, "--json", str(target)])
    assert res.exit_code == 2 and not isinstance(res.exception, OSError), res.output
    assert f"Error: could not write the json report to {target}: No space left on device" in res.stderr
    assert not target.exists()


def test_check_refuses_an_unwritable_json_path(machine: Machine, tmp_path: Path) -> None:
    """`check NAME --json` with a path in a missing folder: exit 2 naming --json and why."""
    res = CliRunner().invoke(check, [machine.name, "--json", str(tmp_path / "missing" / "c.json")])
    assert res.exit_code == 2 and "--json = " in res.output and "No such file or directory" in res.output, res.output


def test_check_a_live_machine(machine: Machine, tmp_path: Path) -> None:
    """`rmm-mp check NAME` attaches: exit 0 while the invariants hold; with a lock held by CPU 2
    exit 1, the lock-free violation and the holder listed (and in the JSON); an unknown name
    exits 2."""
    runner = CliRunner()
    res = runner.invoke(check, [machine.name])
    assert res.exit_code == 0 and "invariants hold" in res.output, res.output
    table = machine.granule_table(3)
    table.lock(500)
    try:
        res = runner.invoke(check, [machine.name, "--json", str(tmp_path / "c.json")])
    finally:
        table.unlock(500)
    assert res.exit_code == 1, res.output
    assert "[lock-free]" in res.output and "lock held by CPU 2" in res.output
    assert f"CPU 2 (running): call not known (only rmm-mp stress CPUs publish theirs); holds NS {table.addr(500):#x}" in res.output
    data = json.loads((tmp_path / "c.json").read_text())
    assert not data["ok"] and data["cpus"][2]["held"] == [table.addr(500)]
    res = runner.invoke(check, ["rmm-mp-1-00000000"])
    assert res.exit_code == 2 and "no machine named" in res.output



def test_check_of_a_machine_whose_cpus_publish_no_calls_does_not_say_between_calls(machine: Machine,
                                                                                  tmp_path: Path) -> None:
    """Only `rmm-mp stress` CPUs publish their calls (a stress segment beside the machine); a
    `rmm-mp run` machine has none, and a CPU holding an RMM lock there is inside a call. The
    check said "between calls; holds RTT ..." of it, which reads as a lock left behind (what
    the watchdog calls a leaked lock). It now says the call is not known and the JSON has
    calls_published false; a stress machine's CPU still reads "between calls"."""
    table = machine.granule_table(3)        # CPU 2's lock word, as inside an RMI
    table.lock(500)
    try:
        res = CliRunner().invoke(check, [machine.name, "--no-pause", "--json", str(tmp_path / "c.json")])
        seg = StressSegment.create(machine.name, machine.cpus, MODE_FREE, 0, 0, 1)
        try:
            stress_res = CliRunner().invoke(check, [machine.name, "--no-pause", "--json", str(tmp_path / "s.json")])
        finally:
            seg.close()
    finally:
        table.unlock(500)
    assert (f"CPU 2 (running): call not known (only rmm-mp stress CPUs publish theirs); "
            f"holds NS {table.addr(500):#x}") in res.output, res.output
    assert "between calls" not in res.output
    assert json.loads((tmp_path / "c.json").read_text())["calls_published"] is False
    assert f"CPU 2 (running): between calls; holds NS {table.addr(500):#x}" in stress_res.output, stress_res.output
    assert json.loads((tmp_path / "s.json").read_text())["calls_published"] is True


def test_check_help_gives_the_exit_status_of_a_machine_where_nothing_takes_part() -> None:
    """A machine where nothing takes part in pauses exits 1 on a violation (its JSON quiescent
    false): --help says so, as docs/stress.md does. It said only "3 violations were seen on a
    machine that was not quiescent (not parked in time, or --no-pause)", which a reader of
    quiescent false took for 3."""
    res = CliRunner().invoke(check, ["--help"])
    assert res.exit_code == 0
    text = " ".join(res.output.split())
    assert ('1 they do not, on a quiescent machine or on one where nothing takes part in pauses ("nothing to '
            'pause": no run\'s CPU is at work, so it is checked as it is, its JSON quiescent false)') in text, text


def test_check_says_when_the_machine_is_not_quiescent(machine: Machine, tmp_path: Path) -> None:
    """A participant that never reaches a quiescent point: after --wait the check runs anyway
    and says the machine was NOT quiescent (JSON quiescent false, 0 of 1 parked), naming the
    participant as the machine's creator (a thread of this process; it was "0 of 1 CPUs"); with
    --no-pause it does not ask; on a machine where nothing takes part it says so. Violations
    seen without a quiescent machine exit 3, not 1."""
    stop = threading.Event()
    entered = threading.Event()

    def busy() -> None:
        with Participant(machine.control):
            entered.set()
            stop.wait(30)

    thread = threading.Thread(target=busy, daemon=True)
    runner = CliRunner()
    res = runner.invoke(check, [machine.name, "--wait", "0"])
    assert res.exit_code == 0 and res.output.startswith("nothing to pause: no CPU"), res.output
    thread.start()
    entered.wait(5)
    try:
        res = runner.invoke(check, [machine.name, "--wait", "0.2", "--json", str(tmp_path / "c.json")])
        assert res.exit_code == 0, res.output
        # The participant is a thread of this process, the machine's creator: named as such,
        # not counted as a CPU.
        assert res.output.startswith(f"NOT quiescent: 0 of 1 participant parked after 0.2 s: the machine's creator "
                                     f"(pid {os.getpid()}, not parked: a run's parent process, which builds and "
                                     "tears down its realms); no CPU process takes part; a violation may be a call "
                                     "in progress, or a change made while the check read the machine (the scan "
                                     "is not atomic)\ninvariants hold"), res.output
        data = json.loads((tmp_path / "c.json").read_text())
        assert data["ok"] and not data["quiescent"] and (data["participants"], data["parked"]) == (1, 0)
        assert data["parent_participant"] == os.getpid()
        res = runner.invoke(check, [machine.name, "--no-pause"])
        assert res.exit_code == 0 and res.output.startswith("not paused (--no-pause)"), res.output
        table = machine.granule_table(3)
        table.lock(500)
        try:    # violations on a machine that is not quiescent may be calls in progress: exit 3
            for options in (["--wait", "0.1"], ["--no-pause"]):
                res = runner.invoke(check, [machine.name, *options])
                assert res.exit_code == 3 and "[lock-free]" in res.output, (options, res.output)
        finally:
            table.unlock(500)
    finally:
        stop.set()
        thread.join(10)


def test_check_counts_two_entries_of_the_creator_as_the_creators(machine: Machine) -> None:
    """The machine's creator takes part through two participant entries (two threads of this
    process, neither reaching a point): the check names the creator with both its entries, not
    parked, and counts no other participant and no CPU process. It said "the machine's
    creator (pid P, not parked: ...), and 1 other", the creator's second entry taken for
    another participant."""
    stop = threading.Event()
    entered = [threading.Event(), threading.Event()]

    def busy(n: int) -> None:
        with Participant(machine.control):
            entered[n].set()
            stop.wait(30)

    threads = [threading.Thread(target=busy, args=(n,), daemon=True) for n in range(2)]
    for thread in threads:
        thread.start()
    try:
        assert all(e.wait(5) for e in entered)
        res = CliRunner().invoke(check, [machine.name, "--wait", "0.2"])
        assert res.exit_code == 0, res.output
        assert res.output.startswith(f"NOT quiescent: 0 of 2 participants parked after 0.2 s: the machine's creator "
                                     f"(pid {os.getpid()}, 2 participant entries, 2 of them not parked: a run's "
                                     "parent process, which builds and tears down its realms); no CPU process "
                                     "takes part;"), res.output
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)


@pytest.mark.multiprocess
def test_sigterm_to_the_process_group_stops_the_run_cleanly(tmp_path: Path) -> None:
    """`timeout` ends a free-running stress run with SIGTERM to its process group, as soon as
    the CPU processes exist: the run stops as on Ctrl-C (report, `ended: interrupted`, exit
    1), the CPU processes are gone, and no segment of the run is left (the stress segment
    made under the machine's name included)."""
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-m", "rmm_mp", "stress", "mixed", "--seconds", "120"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(root)})
    parent = psutil.Process(proc.pid)
    wait_for_cpus(proc.pid, 2, 120)
    children = parent.children()
    prefix = f"{segment.NAME_PREFIX}{proc.pid}-"
    try:
        assert any(name.startswith(prefix) and name.endswith(".stress") for name in os.listdir(segment.SHM_DIR))
        os.killpg(proc.pid, signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 1, stdout + stderr
        assert "ended: interrupted (SIGTERM)" in stdout and "no findings" in stdout, stdout + stderr
        psutil.wait_procs(children, timeout=30)
        assert not [c for c in children if c.is_running()]
        assert not [name for name in os.listdir(segment.SHM_DIR) if name.startswith(prefix)]
    finally:
        for name in os.listdir(segment.SHM_DIR):   # what a failure left, so no later test trips on it
            if name.startswith(prefix):
                os.unlink(os.path.join(segment.SHM_DIR, name))


def test_a_run_without_operations_says_it_tested_nothing() -> None:
    """0 operations (say --seconds 0.01) is not reported as a plain "no findings": the text
    says nothing was tested and how to give the run room."""
    from rmm_mp.stress.config import StressConfig
    from rmm_mp.stress.report import StressReport
    empty = StressReport(StressConfig(seconds=0.01), (), "time", 0.6, {0: 0, 1: 0}).text()
    assert empty.splitlines()[-1] == ("no findings, but no operation completed: nothing was tested (give the run "
                                     "more --seconds or --steps)")
    clean = StressReport(StressConfig(), (), "time", 1.0, {0: 3, 1: 0})
    assert clean.text().splitlines()[-1] == "no findings" and clean.to_json()["ok"] is True


def test_json_has_a_step_budget_only_for_a_deterministic_run() -> None:
    """A free-running run has no step budget (it lasts --seconds): its JSON says null rather than
    the unused default."""
    from rmm_mp.stress.config import StressConfig
    from rmm_mp.stress.report import StressReport
    assert StressReport(StressConfig(), (), "time", 1.0, {0: 1}).to_json()["steps_budget"] is None
    det = StressReport(StressConfig(schedule="random", steps=50), (), "budget", 1.0, {0: 1})
    assert det.to_json()["steps_budget"] == 50


def test_summary_counts_in_words() -> None:
    """One of anything is singular in the summary line ("1 quiescent invariant check", "1 step"),
    several are plural."""
    from rmm_mp.stress.config import StressConfig
    from rmm_mp.stress.report import StressReport
    one = StressReport(StressConfig(schedule="random", steps=1), (), "budget", 0.1, {0: 1}, steps=1, switches=1,
                       preemptions=1, quiescent_checks=1).summary()
    assert "; 1 operation in" in one and "; 1 step, 1 switch (1 preemption)" in one
    assert "; 1 quiescent invariant check;" in one
    two = StressReport(StressConfig(schedule="random", steps=2), (), "budget", 0.1, {0: 2}, steps=2, switches=2,
                       preemptions=0, quiescent_checks=2).summary()
    assert "; 2 operations in" in two and "; 2 steps, 2 switches (0 preemptions)" in two
    assert "; 2 quiescent invariant checks;" in two
    assert "start-up" not in two        # startup_s None: the CPUs never all got ready
    started = StressReport(StressConfig(), (), "time", 2.04, {0: 2}, startup_s=0.96).summary()
    assert "; 2 operations in 2.0 s (1.0 s of it start-up); checkers:" in started


def test_summary_says_how_many_operations_were_idle() -> None:
    """Operations that found nothing to do (a `vcpu` with the run queue empty and no guest to
    rebuild, a `guest-tables` on a CPU owning no guest realm) are counted but cheap, so on
    many CPUs they were most of the summary's count with nothing said (`running`, 16 CPUs:
    857,819 operations, 775 REC entries). The summary says how many were idle (the relaunches,
    made in an idle `vcpu`, are work); a run without idle events says nothing of them."""
    from rmm_mp.stress.config import StressConfig
    from rmm_mp.stress.report import StressReport
    counts = {"guest-tables": 300, "guest-tables-idle": 280, "vcpu": 700, "vcpu-idle": 650, "relaunch": 5,
              "rec-enter": 50}
    line = StressReport(StressConfig(workload="running", cpus=16), (), "time", 5.0, {0: 1000}, counts=counts).summary()
    assert ("; 1,000 operations (925 of them idle: an empty run queue and no guest to rebuild, or no "
            "guest realm of its own) in 5.0 s; checkers:") in line, line
    busy = StressReport(StressConfig(workload="tables"), (), "time", 5.0, {0: 10}, counts={"tables": 10}).summary()
    assert "idle" not in busy


def test_summary_says_a_run_that_kept_its_end_was_interrupted() -> None:
    """A run that ended on a finding, an abort or its time limit keeps that end when Ctrl-C or
    SIGTERM also came: the summary line adds the signal (as the JSON's `interrupted` does), the
    one the runner named or, when none was named, both; a run that ended "interrupted" says it
    once, naming the signal as `rmm-mp run`'s report does (it said "ended: interrupted" alone,
    found by a kill/interrupt campaign on the CLI), and one not interrupted says nothing of it."""
    from rmm_mp.stress.config import StressConfig
    from rmm_mp.stress.report import StressReport
    cfg = StressConfig(schedule="random", steps=10)
    for ended in ("finding", "aborted", "timeout"):
        line = StressReport(cfg, (), ended, 1.0, {0: 1}, interrupted=True, interrupted_by="SIGTERM").summary()
        assert line.endswith(f"; ended: {ended}; interrupted (SIGTERM)"), line
    unnamed = StressReport(cfg, (), "finding", 1.0, {0: 1}, interrupted=True).summary()
    assert unnamed.endswith("; ended: finding; interrupted (Ctrl-C or SIGTERM)"), unnamed
    marked = StressReport(cfg, (), "finding", 1.0, {0: 1}).marked_interrupted(by="Ctrl-C").summary()
    assert marked.endswith("; ended: finding; interrupted (Ctrl-C)"), marked
    assert StressReport(cfg, (), "interrupted", 1.0, {0: 1}, interrupted=True,
                        interrupted_by="Ctrl-C").summary().endswith("; ended: interrupted (Ctrl-C)")
    assert StressReport(cfg, (), "interrupted", 1.0, {0: 1}, interrupted=True).summary().endswith("; ended: interrupted")
    assert StressReport(cfg, (), "budget", 1.0, {0: 1}).marked_interrupted(by="SIGTERM").summary().endswith(
        "; ended: interrupted (SIGTERM)")
    assert StressReport(cfg, (), "finding", 1.0, {0: 1}).summary().endswith("; ended: finding")


def test_the_population_is_not_built_under_a_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pause asked for before the stress run's parent starts building the population (a
    `rmm-mp check` just after the machine appears: it found no participant, so it is reading
    the machine as it is) holds the build back until it ends. Before, the parent joined as a
    participant and built at once, under the check's scan: the check could report the half-made
    population as violations, with exit status 1 ("nothing to pause")."""
    from rmm_mp.hw.quiesce import Pause, _requested
    from rmm_mp.stress import runner
    from rmm_mp.stress.config import StressConfig

    class Built(Exception):
        pass
    under_pause: list[bool] = []

    def build(machine: Machine, guests: bool = True) -> None:
        under_pause.append(_requested(machine.control.view))
        raise Built

    def pause_now(machine: Machine) -> None:
        pause = Pause(machine.control).__enter__()
        threading.Timer(0.3, pause.__exit__).start()
    monkeypatch.setattr(runner, "build", build)
    with pytest.raises(Built):
        runner.run(StressConfig(cpus=2, schedule="random", steps=10), on_machine=pause_now)
    assert under_pause == [False]


def _participate(machine: Machine, leave: threading.Event, steps: list[int],
                 entered: threading.Event | None = None) -> None:
    """A participant as a CPU's loop is one: a quiescent point between steps, until ``leave``;
    ``steps[0]`` counts the steps made (how a test sees that it is not held parked). It sets
    ``entered`` once it counts as a participant."""
    with Participant(machine.control) as part:
        if entered is not None:
            entered.set()
        while not leave.is_set():
            part.point()
            steps[0] += 1
            time.sleep(0.0002)


def test_check_whose_pause_lapsed_says_it_was_not_quiescent(machine: Machine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A check held up for longer than its lease (stopped with Ctrl-Z, starved): the CPUs went
    on meanwhile. When it goes on, its renewer parks them again, but what it read may be calls
    in progress: NOT quiescent, and violations exit 3. Before, it said "quiescent: 1 of 1".
    The lease runs out by moving the quiesce module's clock past it while the check reads the
    machine (not by a 0.1 s lease that the participant had to park within on a loaded host),
    and each step is awaited (up to 30 s) rather than expected within a short window."""
    from rmm_mp.hw import quiesce
    from rmm_mp.hw.quiesce import Pause, census
    lease_ns = 120_000_000_000          # no wait below outlasts it: only the clock ends it
    offset_ns = [0]
    monkeypatch.setattr(quiesce, "time", types.SimpleNamespace(
        monotonic_ns=lambda: time.monotonic_ns() + offset_ns[0],
        monotonic=lambda: time.monotonic() + offset_ns[0] / 1e9, sleep=time.sleep))
    leave, gate, entered = threading.Event(), threading.Event(), threading.Event()
    steps = [0]
    real_renew, real_invariants = Pause._renew, check_cli.invariants

    def stalled_renew(self: Pause) -> None:
        gate.wait(60)
        if self._renew_once():          # back: it renews at once, then as usual
            real_renew(self)

    def late(m: Machine):  # type: ignore[no-untyped-def]
        assert census(m.control).parked == 1
        before = steps[0]
        offset_ns[0] += lease_ns        # held up for as long as the lease: it runs out
        end = time.monotonic() + 30
        while steps[0] == before and time.monotonic() < end:
            time.sleep(0.001)
        assert steps[0] > before        # the participant went on
        gate.set()                      # the renewer comes back: it parks again
        end = time.monotonic() + 30
        while census(m.control).parked < 1 and time.monotonic() < end:
            time.sleep(0.001)
        assert census(m.control).parked == 1
        return real_invariants(m)
    monkeypatch.setattr(Pause.__init__, "__defaults__", (lease_ns,))
    monkeypatch.setattr(Pause, "_renew", stalled_renew)
    monkeypatch.setattr(check_cli, "invariants", late)
    thread = threading.Thread(target=_participate, args=(machine, leave, steps, entered), daemon=True)
    thread.start()
    try:
        assert entered.wait(30), "the participant never joined"
        res = CliRunner().invoke(check, [machine.name, "--wait", "30"])
    finally:
        gate.set()
        leave.set()
        thread.join(10)
    assert res.exit_code == 0, res.output
    assert res.output.startswith("NOT quiescent: the pause lapsed (this check was held up for longer than its 120 s "
                                 "lease), so the CPUs went on meanwhile; a violation may be"), res.output


# A creator that dies mid-call: a participant of a pause, holding a granule lock, killed with
# SIGKILL (nothing unlinks its segments or drops its participant count), its reaper (hw.reaper)
# killed just before (it would unlink the segments at once: an orphan is what is left when both die).
_CREATOR_DIES_MID_CALL = r"""
import os, signal, sys
from rmm_mp import Machine
from rmm_mp.hw import reaper
from rmm_mp.hw.quiesce import Participant
m = Machine.create("host", cpus=1)
Participant(m.control).__enter__()
m.cpu(0)                           # bound to this process, as a CPU process binds its CPU
m.granule_table(1).lock(500)       # owner 1: CPU 0
print(m.name, flush=True)
os.kill(reaper.pid(), signal.SIGKILL)   # a pending SIGKILL: it runs no code again
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.multiprocess
def test_check_of_an_orphaned_machine_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`rmm-mp check` of a machine whose creator was killed, and its reaper (its segments left
    in /dev/shm until `rmm-mp clean`): nothing runs on it, so the check asks for no pause and says the machine
    is an orphan; the lock its CPU died holding is a violation that may be a call cut off
    (exit 3, JSON orphan true), and the line of that CPU (bound to the dead creator) says its
    process is dead (JSON dead). Before, the check paused it, waited --wait seconds for a
    participant that had died, and said "NOT quiescent: 0 of 1 CPUs parked after 5 s"; and
    the CPU's line said "CPU 0 (running)", as if its call and locks were in use.
    The orphan lives in a segment directory of its own: Machine.create in a test running
    alongside sweeps orphans away, and once swept this one was "no machine named ..."."""
    shm_dir = tmp_path / "shm"
    shm_dir.mkdir()
    monkeypatch.setattr(segment, "SHM_DIR", str(shm_dir))
    proc = subprocess.Popen([sys.executable, "-c", _CREATOR_DIES_MID_CALL], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "RMM_MP_SHM_DIR": str(shm_dir)})
    out, err = proc.communicate(timeout=60)
    name = out.decode().strip()
    try:
        assert proc.returncode == -signal.SIGKILL and re.fullmatch(r"rmm-mp-\d+-[0-9a-f]{8}", name), err
        res = CliRunner().invoke(check, [name, "--wait", "60", "--json", str(tmp_path / "c.json")])
        assert res.exit_code == 3, res.output
        assert res.output.startswith(f"orphaned: its creator (pid {proc.pid}) is gone, so nothing runs on it and "
                                     "nothing was paused;"), res.output
        assert "lock held by CPU 0" in res.output
        assert "CPU 0 (its process is dead): call not known (only rmm-mp stress CPUs publish theirs); holds " in res.output, res.output
        assert "(running)" not in res.output
        data = json.loads((tmp_path / "c.json").read_text())
        assert data["orphan"] and not data["quiescent"] and data["participants"] == 0
        assert data["cpus"][0]["dead"] is True
    finally:
        for entry in os.listdir(segment.SHM_DIR):
            if entry.startswith(name + ".") and name:
                os.unlink(os.path.join(segment.SHM_DIR, entry))


# A creator killed between calls, with its reaper: an orphan whose invariants hold.
_CREATOR_DIES_IDLE = r"""
import os, signal
from rmm_mp import Machine
from rmm_mp.hw import reaper
m = Machine.create("host", cpus=1)
print(m.name, flush=True)
os.kill(reaper.pid(), signal.SIGKILL)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.multiprocess
def test_check_of_an_orphan_whose_invariants_hold_exits_4(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An orphan (its creator and the reaper killed between calls) holds its invariants: the
    check says so and that it is orphaned, and exits 4 (not live), not 0. Before, exit 0: a
    script looping `while rmm-mp check NAME` (docs/stress.md) over a run killed this way
    watched the dead machine for ever. In a segment directory of its own, as the orphan test
    above."""
    shm_dir = tmp_path / "shm"
    shm_dir.mkdir()
    monkeypatch.setattr(segment, "SHM_DIR", str(shm_dir))
    proc = subprocess.Popen([sys.executable, "-c", _CREATOR_DIES_IDLE], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "RMM_MP_SHM_DIR": str(shm_dir)})
    out, err = proc.communicate(timeout=60)
    name = out.decode().strip()
    try:
        assert proc.returncode == -signal.SIGKILL and re.fullmatch(r"rmm-mp-\d+-[0-9a-f]{8}", name), err
        res = CliRunner().invoke(check, [name, "--json", str(tmp_path / "c.json")])
        assert res.exit_code == 4, res.output
        assert res.output.startswith(f"orphaned: its creator (pid {proc.pid}) is gone"), res.output
        assert "invariants hold over" in res.output
        data = json.loads((tmp_path / "c.json").read_text())
        assert data["ok"] and data["orphan"]
    finally:
        for entry in os.listdir(segment.SHM_DIR):
            if entry.startswith(name + ".") and name:
                os.unlink(os.path.join(segment.SHM_DIR, entry))


def test_check_of_a_machine_orphaned_during_the_check_says_so_and_exits_4(machine: Machine, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A creator killed with its reaper while the check ran (here: its first look at the creator
    finds it live, any later one gone): the orphan was decided once, at the start, so the check
    said the machine was checked as it is and exited 0, its JSON orphan false. It decides again
    once the machine is scanned: the first line says the machine became an orphan, exit 4."""
    looks: list[str] = []

    def dead_creator(name: str) -> int | None:
        looks.append(name)
        return None if len(looks) == 1 else 4242
    monkeypatch.setattr(check_cli, "_dead_creator", dead_creator)
    res = CliRunner().invoke(check, [machine.name, "--json", str(tmp_path / "c.json")])
    assert res.exit_code == 4, res.output
    assert res.output.startswith("orphaned during this check: its creator (pid 4242) ended while the machine was "
                                 "checked"), res.output
    assert "invariants hold over" in res.output
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["ok"] and data["orphan"] and not data["quiescent"]


def test_check_of_a_machine_whose_rmm_is_dead_exits_4(machine: Machine, tmp_path: Path) -> None:
    """A machine whose RMM crashed (the dead flag: every SMC now fails) while its invariants
    hold: the check names the crash and exits 4 (not live), JSON ok and dead; it exited 0. A
    lock left held is still a violation: exit 1, as on a live machine."""
    machine.control.mark_dead("RMM bug on CPU 0 in FID 0xc4000150(): a test's crash")
    res = CliRunner().invoke(check, [machine.name, "--json", str(tmp_path / "c.json")])
    assert res.exit_code == 4, res.output
    assert "invariants hold over" in res.output
    assert "the machine is dead: RMM bug on CPU 0 in FID 0xc4000150(): a test's crash" in res.output
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["ok"] and data["dead"]
    table = machine.granule_table(1)
    table.lock(500)
    try:
        res = CliRunner().invoke(check, [machine.name])
    finally:
        table.unlock(500)
    assert res.exit_code == 1 and "[lock-free]" in res.output, res.output


def test_check_json_names_its_schema_in_every_verdict(machine: Machine, tmp_path: Path) -> None:
    """`check --json` opens with "schema": "rmm-mp-check-report/1" whatever the verdict: the
    invariants hold (0), a lock left held on a machine checked as it is (1), the same with
    --no-pause while a CPU takes part in pauses (3), an RMM that is dead (4). The document had no
    such key: a script could not tell it from the other commands' JSON (only `run`'s named itself)."""
    runner, out = CliRunner(), tmp_path / "c.json"
    seen: dict[int, object] = {}

    def checked(*options: str) -> None:
        res = runner.invoke(check, [machine.name, "--json", str(out), *options])
        document = json.loads(out.read_text())
        seen[res.exit_code] = next(iter(document.items()))
    checked()
    table = machine.granule_table(3)
    table.lock(500)
    try:
        checked()
        with Participant(machine.control):
            checked("--no-pause")
    finally:
        table.unlock(500)
    machine.control.mark_dead("RMM bug on CPU 0: a test's crash")
    checked()
    assert seen == {status: ("schema", "rmm-mp-check-report/1") for status in (0, 1, 3, 4)}, seen


def test_check_of_an_rmm_that_dies_as_it_is_checked_says_one_thing(machine: Machine, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The RMM of a live machine crashes after the check printed its lines but before it chose
    its exit status (the dead flag reads false, then true). The status, the lines and the JSON
    must tell one story: exit 0 with no "the machine is dead" line and JSON dead false, or exit
    4 with both. The flag was read three times (the line, the JSON, the status), so this run
    exited 4 while its output and JSON said nothing of a dead RMM."""
    reads: list[bool] = []

    def flips(self: Machine) -> bool:
        reads.append(True)
        return len(reads) > 1       # alive at the first read, dead from the second on
    monkeypatch.setattr(Machine, "dead", property(flips))
    monkeypatch.setattr(Machine, "dead_reason", property(lambda self: "a test's crash"))
    res = CliRunner().invoke(check, [machine.name, "--json", str(tmp_path / "c.json")])
    data = json.loads((tmp_path / "c.json").read_text())
    said_dead = "the machine is dead: a test's crash" in res.output
    assert (res.exit_code, said_dead, data["dead"]) in ((0, False, False), (4, True, True)), (res.exit_code,
                                                                                             res.output, data)


@pytest.mark.parametrize("closes", [False, True])
def test_check_of_a_run_that_stops_or_ends_while_checked(closes: bool, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The run stops (its CPUs leave their points) while the check reads the machine, and may
    close the machine too: the check says so. Before, it said "NOT quiescent: 1 of 1 CPUs
    parked after 5 s" (the CPU had parked at once, and no 5 s had passed) and nothing about
    the machine being gone."""
    m = Machine.create("host", cpus=1)
    leave, entered = threading.Event(), threading.Event()

    def work() -> None:
        with Participant(m.control) as part:
            entered.set()
            while not leave.is_set() and not m.control.stop_requested:
                part.point()
                time.sleep(0.0002)
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    entered.wait(5)
    real = check_cli.invariants

    def ending(attached: Machine):  # type: ignore[no-untyped-def]
        m.control.request_stop()
        if closes:
            thread.join(10)
            m.close()
        return real(attached)
    monkeypatch.setattr(check_cli, "invariants", ending)
    try:
        res = CliRunner().invoke(check, [m.name, "--json", str(tmp_path / "c.json")])
    finally:
        leave.set()
        thread.join(10)
        m.close()
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].startswith("NOT quiescent: the run was stopping (its stop flag is set), so its CPUs did not "
                               "stay parked; a violation may be"), res.output
    gone = "the machine was closed while it was checked (its run ended): this is what it held then"
    assert (gone in lines) == closes, res.output
    assert json.loads((tmp_path / "c.json").read_text())["closed"] == closes


@pytest.mark.multiprocess
def test_ctrl_c_as_the_machine_closes_still_gives_the_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C as run() closes the machine, after the report was made: the report is printed and
    written, ended: interrupted, exit 1, and nothing is left in the segment directory. The
    machine used to be closed after the run's signal guard had ended: the KeyboardInterrupt
    escaped run() and the command ended with click's bare "Aborted!", no report. (SIGTERM there
    is the same path; it is not sent here because the machine module's handler would end
    pytest.)"""
    calls = _signal_when_called(monkeypatch, segment, "unlink_parts", signal.SIGINT)
    j = tmp_path / "r.json"
    res = CliRunner().invoke(stress, ["tables", "--schedule", "random", "--steps", "300", "--checkers", "lockdep",
                                      "--json", str(j)])
    assert calls and res.exit_code == 1, res.output
    assert "Aborted!" not in res.output, res.output
    assert re.search(r"; [1-9][\d,]* operations? in .*; ended: interrupted \((Ctrl-C|SIGTERM)\)\n(lock contention: .*\n)?(.*\n)*no findings, but the run was interrupted \((Ctrl-C|SIGTERM)\) before its end: no pass\n", _unwrapped(res.output)), res.output
    assert json.loads(j.read_text())["ended"] == "interrupted"
    assert not [e for e in os.listdir(segment.SHM_DIR) if e.startswith(f"rmm-mp-{os.getpid()}-")]


def test_free_running_quiescent_checks_keep_an_interval_below_half_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    """--quiescent-every 0.1 on a free-running run pauses the machine every 0.1 s (the parent
    ticks every 0.05 s). The pause was only considered at the watchdog's half-second look, so
    any interval below 0.5 s gave a check every 0.5 s: two runs, with 0.1 and 0.25, both made
    58 checks in 35 s. The supervisor now weighs the pause at every tick."""
    from types import SimpleNamespace

    from rmm_mp.stress.config import StressConfig
    from rmm_mp.stress.runner import _Supervisor
    from rmm_mp.stress.shared import END_RUNNING, READY
    seg = _Seg([READY, READY])
    seg.end = END_RUNNING  # type: ignore[attr-defined]
    sup = _Supervisor(SimpleNamespace(), seg, StressConfig(cpus=2, seconds=60.0, quiescent_every=0.1,
                                                           checkers=("invariants",)), None, (), None)
    monkeypatch.setattr(sup, "_a_cpu_died", lambda: False)
    pauses: list[float] = []
    monkeypatch.setattr(sup, "_pause_and_check", lambda: pauses.append(elapsed))
    for tick in range(1, 21):          # 0.05 .. 1.0 s
        elapsed = tick * 0.05
        sup.tick(elapsed)
    assert len(pauses) >= 9, pauses
    assert all(b - a >= 0.1 - 1e-9 for a, b in zip(pauses, pauses[1:])), pauses


def test_a_free_running_quiescent_check_waits_longer_for_cpus_on_an_oversubscribed_host(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A free-running quiescent check on a host whose cores each have 6 CPUs to run (the cap
    of runtime.oversubscription): it waits 6 times PAUSE_WAIT_S for the CPUs to park, and
    PAUSE_WAIT_S itself without oversubscription. It waited a flat 2 s, which 64 CPUs on a
    loaded 2-core host exceeded (2.2 s) in one check of ten: that check was silently skipped.
    A stand-in for hw.quiesce.Pause records the wait (and gives up, so no check is made)."""
    from types import SimpleNamespace

    from rmm_mp.stress import runner
    from rmm_mp.stress.config import StressConfig
    waits: list[float] = []

    class FakePause:
        participants = 64

        def __init__(self, control: object) -> None:
            pass

        def __enter__(self) -> "FakePause":
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def wait(self, timeout_s: float) -> bool:
            waits.append(timeout_s)
            return False
    monkeypatch.setattr(runner, "Pause", FakePause)
    sup = runner._Supervisor(SimpleNamespace(control=None), _Seg([0, 0]),  # type: ignore[arg-type]
                             StressConfig(cpus=2, seconds=60.0, quiescent_every=1.0), None, (), None)
    for factor in (6.0, 1.0):
        monkeypatch.setattr(runner, "oversubscription", lambda cpus: factor)
        sup._pause_and_check()
    assert waits == [12.0, 2.0]         # 6 x and 1 x PAUSE_WAIT_S (2 s)
    assert sup.quiescent_checks == 0


def test_ctrl_c_of_a_check_releases_the_pause_and_exits_130(machine: Machine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C while a check holds its CPUs parked (here: during the scan): the pause is released,
    so the participant goes on, and the check exits 130 with no verdict. It exited 1 with click's
    "Aborted!", the status that means "the invariants do not hold"."""
    leave = threading.Event()
    steps = [0]

    def interrupted(m: Machine) -> None:
        raise KeyboardInterrupt
    monkeypatch.setattr(check_cli, "invariants", interrupted)
    thread = threading.Thread(target=_participate, args=(machine, leave, steps), daemon=True)
    thread.start()
    try:
        res = CliRunner().invoke(check, [machine.name])
        before = steps[0]
        deadline = time.monotonic() + 10
        while steps[0] == before and time.monotonic() < deadline:
            time.sleep(0.001)
        moved = steps[0] > before                           # the participant is not held parked
    finally:
        leave.set()
        thread.join(10)
    assert res.exit_code == 130, res.output
    assert "interrupted (Ctrl-C): no verdict; any pause this check held is released" in res.output
    assert "Aborted!" not in res.output and moved


@pytest.mark.multiprocess
def test_cpus_killed_by_a_second_ctrl_c_are_not_findings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C twice while the CPUs start (or stop): the second kills them. That is the user's
    doing, not a CPU dying of a bug: before, each was a `cpu-died` watchdog finding, so the run
    `ended: finding` and a deterministic run saved a schedule "with findings". Found by fuzzing
    signal timing against the CLI. Now the run ends "interrupted", with no finding, and says
    what was cut off; the end state is not checked (a killed CPU may have been inside a call).
    The two Ctrl-Cs are raised at the first two ticks, 50 ms apart: the CPU processes are
    still starting then (a spawned interpreter takes far longer to import rmm_mp)."""
    from rmm_mp.stress import runner
    from rmm_mp.stress.config import StressConfig
    _cpus_bind_after_a_ctrl_c_all_the_same(monkeypatch)
    ticks = []

    def on_tick(elapsed: float, seg: object) -> None:
        ticks.append(elapsed)
        if len(ticks) <= 2:
            raise KeyboardInterrupt("Ctrl-C")

    report = runner.run(StressConfig(cpus=2, schedule="random", steps=100_000), on_tick=on_tick)
    assert report.findings == ()
    assert report.ended == "interrupted" and report.interrupted and report.interrupted_by == "Ctrl-C"
    killed = [n for n in report.not_done if "was killed by a second Ctrl-C" in n]
    assert killed, report.not_done
    assert any(n.startswith("invariants not checked at the end") for n in report.not_done), report.not_done


def test_shrink_of_a_finding_before_the_first_step_is_skipped_not_a_traceback() -> None:
    """A deterministic run with --shrink whose finding came before any step (a CPU process
    killed with SIGKILL while it started up: cpu-died) has no schedule. The CLI handed it to
    shrink anyway, which raised ValueError ("only a deterministic run with a finding can be
    shrunk") as a traceback. Found by fuzzing signals against `rmm-mp stress --shrink`. Now
    the report is kept and the command says why it was not shrunk."""
    from rmm_mp.interrupts import Interrupts
    from rmm_mp.stress.cli import _shrunk
    from rmm_mp.stress.config import StressConfig
    from rmm_mp.stress.findings import Finding
    from rmm_mp.stress.report import StressReport
    died = Finding("watchdog", "cpu-died", "CPU 0 was killed by SIGKILL; locks it still held: none", 0)
    report = StressReport(StressConfig(schedule="random", steps=3000), (died,), "aborted", 0.5, {})
    said: list[str] = []
    with Interrupts(sigterm=False) as stop:
        kept, searched, limit = _shrunk(stop, report, said.append)
    assert kept is report and searched is None and limit == ""
    assert said == ["not shrunk: the run took no step, so it has no schedule to shrink"]


_KILLED_CPU = """
import sys, time
from rmm_mp import Machine
from rmm_mp.hw.quiesce import Participant
machine = Machine.attach(sys.argv[1])
machine.cpu(1)
with Participant(machine.control):
    print("ready", flush=True)
    time.sleep(60)
"""


def test_check_does_not_wait_for_a_participant_killed_between_points(machine: Machine, tmp_path: Path) -> None:
    """A CPU process (bound to CPU 1, a participant that never reaches a point) killed with
    SIGKILL while the machine lives on, beside a live participant that parks: the check's pause
    recognises the dead one (its process is gone) and does not wait for it; it says "quiescent:
    1 of 1" and names the dead CPU, also in the JSON; a violation then exits 3 (the dead CPU's
    call was cut off), and the dead CPU's line among the CPUs holding locks says its process is
    dead (it said "CPU 1 (running)"), as the JSON's "dead" does. Before, the dead process stayed
    counted and every pause waited --wait seconds and said "NOT quiescent: 1 of 2 CPUs parked".
    --wait is 60 s and the check must end within 30: with --wait 5 and 4 s allowed, the bound
    was a limit on the check's speed, which a loaded 2-core host can break."""
    child = subprocess.Popen([sys.executable, "-c", _KILLED_CPU, machine.name], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
    finally:
        child.kill()
        child.wait(10)
    leave, steps = threading.Event(), [0]
    thread = threading.Thread(target=_participate, args=(machine, leave, steps), daemon=True)
    thread.start()
    try:
        t0 = time.monotonic()
        res = CliRunner().invoke(check, [machine.name, "--wait", "60", "--json", str(tmp_path / "c.json")])
        # Well short of --wait, which a check that waited for the dead CPU would have spent; not
        # a speed limit (the check takes a fraction of a second, more on a loaded host).
        assert time.monotonic() - t0 < 30.0, res.output
        assert res.exit_code == 0, res.output
        assert res.output.startswith(f"quiescent: 1 of 1 participant parked between calls: the machine's creator "
                                     f"(pid {os.getpid()}: "), res.output
        assert (f"dead, not waited for: CPU 1 (pid {child.pid}): ended without leaving the machine (killed?)"
                in res.output)
        data = json.loads((tmp_path / "c.json").read_text())
        assert data["quiescent"] and data["dead_participants"] == [{"pid": child.pid, "cpu": 1}]
        assert [c["dead"] for c in data["cpus"]] == [c == 1 for c in range(machine.cpus)]
        table = machine.granule_table(2)        # a lock word of the dead CPU 1
        table.lock(500)
        try:
            res = CliRunner().invoke(check, [machine.name, "--wait", "5"])
        finally:
            table.unlock(500)
        assert res.exit_code == 3 and "[lock-free]" in res.output, res.output
        assert (f"CPU 1 (its process is dead): call not known (only rmm-mp stress CPUs publish theirs); "
                f"holds NS {table.addr(500):#x}") in res.output, res.output
        assert "CPU 1 (running)" not in res.output
    finally:
        leave.set()
        thread.join(10)


def _kill_the_first_cpu_as_it_starts(done: threading.Event, killed: list[int],
                                     signum: int = signal.SIGKILL) -> None:
    """Send ``signum`` (SIGKILL unless told) to the first CPU process this process spawns, long
    before it can take a step (its interpreter is still starting); give up after 60 s or once
    ``done`` is set."""
    deadline = time.monotonic() + 60
    while not killed and not done.is_set() and time.monotonic() < deadline:
        for child in cpu_children():
            try:
                os.kill(child.pid, signum)
            except ProcessLookupError:
                continue
            killed.append(child.pid)
            break
        time.sleep(0.002)


def test_a_cpu_killed_before_the_first_step_is_one_finding_and_saves_no_schedule(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A deterministic `rmm-mp stress` whose first CPU process is killed (SIGKILL) while it
    starts up: the killed CPU is a cpu-died finding, and the only one; the other CPU, still
    starting or waiting for its turn when the run was aborted and killed after the grace time
    (0.1 s here, so that it always is), is no finding of its own but a "not done" line. No
    schedule is saved: the run took no step. Before, the other CPU was a second cpu-died
    finding and stress-tables-random-0.schedule.json was written, whose replay said DIVERGED."""
    from rmm_mp.stress import runner
    monkeypatch.setattr(runner, "DETERMINISTIC_GRACE_S", 0.1)
    monkeypatch.setattr(runner, "oversubscription", lambda cpus: 1.0)    # the same on a 1-core host
    monkeypatch.chdir(tmp_path)
    done, killed = threading.Event(), []
    watcher = threading.Thread(target=_kill_the_first_cpu_as_it_starts, args=(done, killed), daemon=True)
    watcher.start()
    try:
        res = CliRunner().invoke(stress, ["tables", "--schedule", "random", "--steps", "3000", "--seconds", "60",
                                          "--json", "r.json"])
    finally:
        done.set()
        watcher.join(10)
    assert killed, res.output
    data = json.loads((tmp_path / "r.json").read_text())
    died = [f for f in data["findings"] if f["rule"] == "cpu-died"]
    assert len(died) == 1 and "was killed by SIGKILL" in died[0]["message"], res.output
    assert data["steps"] == 0 and res.exit_code == 1, res.output
    other = 1 - died[0]["cpu"]
    # Registered for a turn, or still starting up, when the run was aborted: either way a line
    # of its own that says so.
    assert any(n.startswith((f"CPU {other} did not stop within", f"CPU {other} was still starting up when the run "
                                                                  "was stopped: it did not stop within"))
               and n.endswith("so this is no finding of its own") for n in data["not_done"]), data["not_done"]
    assert "schedule not saved: the run took no step, so it has no schedule to follow" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]
    assert "schedule" not in data["outputs"]


def test_a_schedule_missing_a_dead_cpus_switches_is_neither_written_nor_shrunk(tmp_path: Path) -> None:
    """A deterministic run in which CPU 1 died after some steps returned no result, so its
    switch log (kept in its process) is not in the schedule: a replay would follow another
    interleaving (a run killed at step 128,542 replayed 14 of its 31,053 switches and said
    DIVERGED). Asked for by name, the schedule is refused with the reason (ValueError, which
    the CLI names among the files not written); --shrink says why it does not search. Before,
    both went ahead."""
    from rmm_mp.interrupts import Interrupts
    from rmm_mp.stress import schedule as schedule_file
    from rmm_mp.stress.cli import _shrunk
    from rmm_mp.stress.config import StressConfig
    from rmm_mp.stress.findings import Finding
    from rmm_mp.stress.report import StressReport
    died = Finding("watchdog", "cpu-died", "CPU 1 was killed by SIGKILL; locks it still held: none", 1)
    report = StressReport(StressConfig(schedule="random", steps=3000), (died,), "aborted", 0.5, {0: 3}, steps=40,
                          switches=9, schedule=((0, 0), (12, 1)), unreported=(1,))
    why = "CPU 1 returned no result (its process died), so the switches it made are lost"
    assert report.unreplayable().startswith(why)
    with pytest.raises(ValueError, match=re.escape(f"not written: {why}")):
        schedule_file.write(report, tmp_path / "s.json")
    assert not (tmp_path / "s.json").exists()
    said: list[str] = []
    with Interrupts(sigterm=False) as stop:
        kept, searched, limit = _shrunk(stop, report, said.append)
    assert kept is report and searched is None and limit == "" and said[0].startswith(f"not shrunk: {why}"), said


def test_the_timeline_of_a_run_whose_cpu_died_says_it_is_incomplete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """`stress --trace` of a deterministic run in which CPU 1 died after some steps: its points
    and the switches it made are lost with it. The timeline is still written (CPU 0's calls
    and locks are the run's), but says it is incomplete: a line after `timeline:`, an instant
    event at step 0 and otherData.incomplete give the reason, CPU 1's track says it returned
    nothing, and no running slices are drawn. Before, it was drawn as if whole: with only CPU
    0's switches to CPU 1 left, CPU 1 was drawn running from its first turn to the end, over
    every step CPU 0 ran, and nothing said so."""
    from rmm_mp.hw import points
    from rmm_mp.interrupts import Interrupts
    from rmm_mp.stress.cli import _after_run
    from rmm_mp.stress.config import StressConfig
    from rmm_mp.stress.findings import Finding
    from rmm_mp.stress.report import StressReport
    monkeypatch.chdir(tmp_path)
    fid = 0xC400_0150
    cpu0 = [(1, points.RMI_ENTRY, fid), (2, points.LOCK, 0x8000_1000), (5, points.UNLOCK, 0x8000_1000),
            (6, points.RMI_EXIT, fid), (20, points.RMI_ENTRY, fid), (21, points.RMI_EXIT, fid)]
    died = Finding("watchdog", "cpu-died", "CPU 1 was killed by SIGKILL; locks it still held: none", 1)
    report = StressReport(StressConfig(workload="tables", schedule="random", steps=3000), (died,), "aborted", 0.5,
                          {0: 2}, steps=24, switches=4, schedule=((0, 0), (7, 1), (15, 1)), points={0: cpu0},
                          unreported=(1,))
    trace = tmp_path / "t.json"
    with Interrupts(sigterm=False) as stop, pytest.raises(SystemExit) as ended:
        _after_run(stop, report, report.config, None, None, False, False, str(trace), None, None)
    out = capsys.readouterr().out
    why = "CPU 1 returned no result (its process died), so its calls and locks and the switches it made are lost"
    assert ended.value.code == 1 and f"timeline: {trace}" in out
    assert f"timeline incomplete: {why}" in out, out
    data = json.loads(trace.read_text())
    events = data["traceEvents"]
    assert data["otherData"]["incomplete"].startswith(why)
    assert [e["name"] for e in events if e["ph"] == "i" and e["ts"] == 0] == ["incomplete timeline"]
    assert not [e for e in events if e["name"] == "running"]
    names = {e["args"]["name"] for e in events if e["name"] == "thread_name"}
    assert {"CPU 0", "CPU 1 (returned no result: not drawn)"} <= names
    assert sorted((e["ts"], e["dur"]) for e in events if e.get("cat") == "rmi") == [(1, 5), (20, 1)]


@pytest.mark.usefixtures("ctrl_c")
def test_a_ctrl_c_as_a_deterministic_run_starts_waits_for_cpus_still_starting(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C at the supervisor's first tick of a deterministic run, while the CPU processes are
    still starting up (importing rmm_mp takes them far longer than a tick): they stop once they
    are up, within the grace time, which is scaled by runtime.oversubscription as a free-running
    run's is (the CPUs start all at once, sharing the host's cores). Here the unscaled grace time
    is 0.05 s and the host is taken as 1,200 times oversubscribed (60 s in all): every CPU returns
    its result, none is killed, and the run ends interrupted with the invariants checked. With
    the unscaled time (a loaded host: 16 CPUs on 2 cores took 5 s to start, against 2 s of
    grace), every CPU was killed, each a "not done" line, and the final check was skipped.
    The scaled grace time is only a safety limit, so it is made a minute (the host taken as
    1,200 times oversubscribed): with 5 s, this test failed at a load average of 60, its 2 CPUs
    taking longer than that to start up."""
    from rmm_mp.stress import runner
    from rmm_mp.stress.config import StressConfig
    monkeypatch.setattr(runner, "DETERMINISTIC_GRACE_S", 0.05)
    monkeypatch.setattr(runner, "oversubscription", lambda cpus: 1200.0)
    _cpus_bind_after_a_ctrl_c_all_the_same(monkeypatch)
    sent, first_tick = _ctrl_c_at_first_tick()

    report = runner.run(StressConfig(workload="tables", schedule="random", steps=2000, seconds=60),
                        on_tick=first_tick)
    assert sent and report.interrupted and report.ended == "interrupted", report.text()
    assert report.unreported == () and report.steps <= report.config.cpus * 2, report.text()
    assert report.not_done == () and report.findings == (), report.text()


@pytest.mark.usefixtures("ctrl_c")
@pytest.mark.parametrize("schedule", ["free", "random"])
def test_a_ctrl_c_as_run_cpus_begins_to_start_the_cpus_still_checks_the_invariants(
        monkeypatch: pytest.MonkeyPatch, schedule: str) -> None:
    """Ctrl-C as run_cpus begins, before it blocks Ctrl-C and SIGTERM to start the CPU processes
    (sent here as it pickles the CPUs' plan; so no CPU process starts): the KeyboardInterrupt
    escapes run_cpus. The run ends interrupted, with no finding; the final invariant check is
    made (the machine is as the population left it: no CPU made a call) and the one "not done"
    line says the CPUs' run was not begun and why. Noted as a signal after the run, it skipped the
    check ("invariants not checked at the end: interrupted (Ctrl-C)"), the report unable to say
    whether the invariants held, and said "the CPUs' results not received" of CPUs never run."""
    from rmm_mp import cpu_args
    from rmm_mp.stress import ending, runner
    from rmm_mp.stress.config import StressConfig
    checks: list[object] = []
    real_invariants = ending.invariants
    monkeypatch.setattr(ending, "invariants", lambda machine: checks.append(machine) or real_invariants(machine))
    pickle_args = cpu_args.pickle_args

    def interrupted(args: tuple[Any, ...]) -> Any:
        os.kill(os.getpid(), signal.SIGINT)
        return pickle_args(args)
    monkeypatch.setattr(cpu_args, "pickle_args", interrupted)
    config = StressConfig(workload="tables", schedule=schedule, seconds=60)
    report = runner.run(config)
    assert report.interrupted and report.ended == "interrupted" and report.findings == (), report.text()
    assert report.not_done == ("the CPUs' run not begun: interrupted (Ctrl-C) as their processes were being "
                               "started, before any of them was ready, so none made a call",), report.not_done
    assert len(checks) == 1, checks
    assert report.interrupted_by == "Ctrl-C"


@pytest.mark.usefixtures("ctrl_c")
def test_a_deterministic_run_stopped_before_its_first_turn_gives_none(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C at the supervisor's first tick of a deterministic run of 4 CPUs, while their
    processes still start up (grace time a minute, so none is killed): the parent gives no
    first turn; each CPU, once registered, leaves at once, with no step taken. The run ends
    interrupted, every CPU returns its result, 0 steps, nothing "not done", no finding, and the
    invariants are checked at the end. The parent gave the first turn once all had registered,
    and the CPUs then passed the turn at random until each had seen the stop (17 steps for 16
    CPUs), racing the grace time that had run since the Ctrl-C: on a loaded 2-core host a Ctrl-C
    1.3 s into `rmm-mp stress --cpus 16 --schedule random` (11.9 s of start-up, 12 s of grace)
    had the CPU holding the turn killed, a cpu-died finding, the run "aborted" and the final
    invariant check skipped."""
    from rmm_mp.stress import ending, runner
    from rmm_mp.stress.config import StressConfig
    monkeypatch.setattr(runner, "DETERMINISTIC_GRACE_S", 60.0)
    monkeypatch.setattr(runner, "oversubscription", lambda cpus: 1.0)
    checks: list[object] = []
    real_invariants = ending.invariants
    monkeypatch.setattr(ending, "invariants", lambda machine: checks.append(machine) or real_invariants(machine))
    _cpus_bind_after_a_ctrl_c_all_the_same(monkeypatch)
    sent, first_tick = _ctrl_c_at_first_tick()

    report = runner.run(StressConfig(workload="tables", cpus=4, schedule="random", steps=2000, seconds=120),
                        on_tick=first_tick)
    assert sent and report.interrupted and report.ended == "interrupted", report.text()
    assert report.steps == 0 and report.switches == 0 and sum(report.ops.values()) == 0, report.text()
    assert report.unreported == () and sorted(report.ops) == [0, 1, 2, 3], report.text()
    assert report.not_done == () and report.findings == () and len(checks) == 1, report.text()


_TERMINATED = "did not stop within 0.1 s of being asked and was terminated"
"""How a stand-in for run_cpus says a CPU was killed after the grace time."""


def _stress_segments(monkeypatch: pytest.MonkeyPatch) -> "list[StressSegment]":
    """The stress segments the runner creates from now on (its StressSegment.create wrapped),
    for a stand-in for run_cpus to set what the CPUs or the supervisor's tick would have."""
    from rmm_mp.stress import runner
    segs: list[StressSegment] = []
    create = runner.StressSegment.create

    def created(*args: Any) -> StressSegment:
        segs.append(create(*args))
        return segs[-1]
    monkeypatch.setattr(runner.StressSegment, "create", created)
    return segs


@pytest.mark.parametrize("schedule", ["free", "random"])
def test_the_start_up_time_includes_the_spawning_of_the_cpu_processes(monkeypatch: pytest.MonkeyPatch,
                                                                      schedule: str) -> None:
    """The report's start-up time is counted as its elapsed time is, from the run's start: a
    stand-in for run_cpus takes 0.4 s to "spawn" the CPU processes, then its first tick (0.05 s
    on its own clock, which starts after the spawning) sees every CPU ready. The start-up is
    0.4 s or more, not 0.05: taken from the ticks' clock it left out the spawning, which took
    15 s of a 64-CPU run's start-up on a loaded 2-core host (the report said 32.0 s of start-up
    where the CPUs were all ready 47 s into the run, so the run's own part looked 15 s longer
    than it was)."""
    from rmm_mp.cpu_outcome import RunResult
    from rmm_mp.stress import runner, shared
    from rmm_mp.stress.config import StressConfig
    segs = _stress_segments(monkeypatch)

    def run_cpus(*args: Any, **kwargs: Any) -> RunResult:
        time.sleep(0.4)                                 # the spawning, before run_cpus's clock starts
        for cpu in (0, 1):
            segs[0].set_status(cpu, shared.READY)
            segs[0].register()
        kwargs["on_tick"](0.05)
        return RunResult({}, (), False, 0.05, "time is up")
    monkeypatch.setattr(runner, "run_cpus", run_cpus)
    report = runner.run(StressConfig(workload="tables", schedule=schedule, seconds=60, checkers=()))
    assert report.startup_s is not None and 0.4 <= report.startup_s <= report.elapsed_s, report.text()


def test_a_ctrl_c_killing_deterministic_cpus_still_starting_up_ends_the_run_interrupted(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A deterministic run stopped by a Ctrl-C while its CPU processes still start up, on a host where
    the start-up outlasts the grace time (64 CPUs on a loaded 2-core host: 24 to 50 s, against 12 s
    at most): run_cpus (a stand-in here, so no CPU process starts) reports both CPUs terminated
    after the grace time, and the supervisor's tick that saw them gone aborted the run (the stress
    segment says abort). No finding, one "not done" line saying that 0 of 2 CPUs had become ready
    and that both were still starting up, and the run ends "interrupted", as a free-running one
    does (it ended "aborted", the word for a run a failure stopped: seen with a Ctrl-C 10 s into
    `rmm-mp stress --cpus 64 --schedule random`). The final invariant check is made, once: no
    turn was given, so no CPU had made a call (it was skipped, "invariants not checked at the
    end: CPU 0 ...", as if a CPU had been cut off inside one)."""
    from rmm_mp.cpu_outcome import CpuFailure, RunResult
    from rmm_mp.stress import ending, runner, shared
    from rmm_mp.stress.config import StressConfig
    segs = _stress_segments(monkeypatch)
    HOW = _TERMINATED
    checks: list[object] = []
    real_invariants = ending.invariants
    monkeypatch.setattr(ending, "invariants", lambda machine: checks.append(machine) or real_invariants(machine))

    def run_cpus(*args: Any, **kwargs: Any) -> RunResult:
        segs[0].set_end(shared.END_ABORT)
        return RunResult({}, tuple(CpuFailure(cpu, HOW, "", (), terminated=True) for cpu in (0, 1)), True, 1.0,
                         "interrupted (Ctrl-C)", interrupted_by="Ctrl-C")
    monkeypatch.setattr(runner, "run_cpus", run_cpus)
    report = runner.run(StressConfig(workload="tables", schedule="random", steps=2000, seconds=60))
    assert report.interrupted and report.findings == (), report.text()
    assert report.ended == "interrupted", report.text()
    assert report.not_done == ("the start-up not finished, interrupted (Ctrl-C): 0 of 2 CPUs had become ready by "
                               f"the run's end; CPUs 0 and 1 (2) were still starting up when the run was interrupted: "
                               f"each {HOW}, before its first operation, so this is no finding of theirs",), \
        report.not_done
    assert len(checks) == 1, checks


def test_a_start_up_cut_short_by_a_ctrl_c_says_how_many_cpus_were_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    """A deterministic run of 2 CPUs stopped by a Ctrl-C while CPU 1 still starts up, CPU 0
    registered for its turn (run_cpus is a stand-in here, so no CPU process starts; both are
    killed after the grace time): the "not done" lines begin with "the start-up not
    finished, interrupted (Ctrl-C): 1 of 2 CPUs had become ready by the run's end", which
    tells a slow start-up from one that never got going, and goes on to say that CPU 1 was
    still starting up; CPU 0's line says it waited for its turn. Before, only the per-CPU lines
    said anything, each alike whether 63 or none of 64 CPUs were up, and each "waiting for its
    turn (or still starting up)", whichever it was."""
    from rmm_mp.cpu_outcome import CpuFailure, RunResult
    from rmm_mp.stress import runner, shared
    from rmm_mp.stress.config import StressConfig
    segs = _stress_segments(monkeypatch)
    HOW = _TERMINATED

    def run_cpus(*args: Any, **kwargs: Any) -> RunResult:
        segs[0].set_status(0, shared.READY)      # registered, as stress.sched's start does
        segs[0].register()
        segs[0].set_end(shared.END_ABORT)
        return RunResult({}, tuple(CpuFailure(cpu, HOW, "", (), terminated=True) for cpu in (0, 1)), True, 1.0,
                         "interrupted (Ctrl-C)", interrupted_by="Ctrl-C")
    monkeypatch.setattr(runner, "run_cpus", run_cpus)
    report = runner.run(StressConfig(workload="tables", schedule="random", steps=2000, seconds=60))
    assert report.ended == "interrupted" and report.findings == (), report.text()
    assert report.not_done[:2] == (
        f"the start-up not finished, interrupted (Ctrl-C): 1 of 2 CPUs had become ready by the run's end; CPU 1 was "
        f"still starting up when the run was interrupted: it {HOW}, before its first operation, so this is no finding "
        "of its own",
        f"CPU 0 {HOW}: it was waiting for its turn after the run was stopped, so this is no finding of its own"), \
        report.not_done
    assert "not done: the start-up not finished, interrupted (Ctrl-C): 1 of 2 CPUs" in report.text()
    assert len(report.not_done) == 2, report.not_done     # no "invariants not checked": no turn was given


def test_a_ctrl_c_in_the_grace_time_after_the_time_limit_leaves_a_deterministic_run_timed_out(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A deterministic run that its --seconds limit stopped (the supervisor's tick past the
    limit, run_cpus's "time is up") with both CPUs registered and waiting for their first turn;
    a Ctrl-C comes only during the grace time that follows, and both CPUs are killed after it
    (run_cpus is a stand-in here, so no CPU process starts). The run ends "timeout", what
    stopped it, with each CPU a "not done" line and no finding: the interrupt did not stop the
    run, as for a free-running CPU stuck at start-up. It ended "interrupted": the exemption for
    a Ctrl-C that kills deterministic CPUs still starting up took any interrupt seen, not only
    one that stopped the run."""
    from rmm_mp.cpu_outcome import CpuFailure, RunResult
    from rmm_mp.stress import runner, shared
    from rmm_mp.stress.config import StressConfig
    segs = _stress_segments(monkeypatch)
    HOW = _TERMINATED

    def run_cpus(*args: Any, **kwargs: Any) -> RunResult:
        for cpu in (0, 1):
            segs[0].set_status(cpu, shared.READY)     # registered, waiting for the first turn
        kwargs["on_tick"](kwargs["timeout_s"])          # the tick at the limit: timed out
        return RunResult({}, tuple(CpuFailure(cpu, HOW, "", (), terminated=True) for cpu in (0, 1)), True, 1.0,
                         "time is up", interrupted_by="Ctrl-C")
    monkeypatch.setattr(runner, "run_cpus", run_cpus)
    report = runner.run(StressConfig(workload="tables", schedule="random", steps=2000, seconds=60))
    assert report.findings == () and report.ended == "timeout", report.text()
    assert report.not_done == tuple(f"CPU {cpu} {HOW}: it was waiting for its turn after the run was stopped, so "
                                    "this is no finding of its own" for cpu in (0, 1)), report.not_done


def test_cpus_killed_while_still_starting_up_are_named_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """A free-running run of 6 CPUs stopped by a Ctrl-C while CPUs 1 and 3 to 5 still start up,
    CPUs 0 and 2 ready (run_cpus is a stand-in here, so no CPU process starts; the four are
    killed after the grace time). The report has one "not done" line: 2 of 6 CPUs had become
    ready, and "CPUs 1 and 3 to 5 (4) were still starting up when the run was interrupted: each
    did not stop within ... and was terminated, before its first operation". Each was a line of
    its own that began "CPU 3 did not stop within 30 s of being asked and was terminated", as a
    stuck CPU's does: at 64 CPUs, dozens of them (a Ctrl-C in a 64-CPU start-up)."""
    from rmm_mp.cpu_outcome import CpuFailure, RunResult
    from rmm_mp.stress import runner, shared
    from rmm_mp.stress.config import StressConfig
    segs = _stress_segments(monkeypatch)
    HOW = _TERMINATED

    def run_cpus(*args: Any, **kwargs: Any) -> RunResult:
        for cpu in (0, 2):
            segs[0].set_status(cpu, shared.DONE)
        return RunResult({}, tuple(CpuFailure(cpu, HOW, "", (), terminated=True) for cpu in (1, 3, 4, 5)), True, 1.0,
                         "interrupted (Ctrl-C)", interrupted_by="Ctrl-C")
    monkeypatch.setattr(runner, "run_cpus", run_cpus)
    report = runner.run(StressConfig(workload="tables", cpus=6, seconds=5))
    assert report.ended == "interrupted" and report.findings == (), report.text()
    assert report.not_done == (
        f"the start-up not finished, interrupted (Ctrl-C): 2 of 6 CPUs had become ready by the run's end; CPUs 1 and "
        f"3 to 5 (4) were still starting up when the run was interrupted: each {HOW}, before its first operation, so "
        "this is no finding of theirs",), report.not_done


@pytest.mark.usefixtures("ctrl_c")
def test_a_ctrl_c_killing_free_running_cpus_still_starting_up_is_no_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C at the first tick of a free-running run, while the CPU processes are still starting up,
    with a grace time far shorter than their start-up (0.05 s, not scaled: a 16-CPU run on a loaded
    2-core host took 32 s to start, against its 30 s): they are killed before they were ever ready.
    They are named in one "not done" line, which says that 0 of 2 CPUs had become ready and that
    CPUs 0 and 1 were "still starting up when the run was interrupted ... no finding of theirs"
    (each had a line of its own, which began as a stuck CPU's does), the run ends interrupted with no
    finding, and the invariants are still checked at the end (no CPU made a call). Each was a
    cpu-died finding, a user's interrupt reported as watchdog findings (found with SIGTERM 5 s into
    `rmm-mp stress --cpus 16` on a loaded host: 16 findings)."""
    from rmm_mp.stress import runner
    from rmm_mp.stress.config import StressConfig
    monkeypatch.setattr(runner, "FREE_GRACE_S", 0.05)
    monkeypatch.setattr(runner, "oversubscription", lambda cpus: 1.0)
    _cpus_bind_after_a_ctrl_c_all_the_same(monkeypatch)
    sent, first_tick = _ctrl_c_at_first_tick()

    report = runner.run(StressConfig(workload="tables", seconds=5), on_tick=first_tick)
    assert sent and report.interrupted and report.ended == "interrupted", report.text()
    assert report.findings == (), report.text()
    assert re.fullmatch(r"the start-up not finished, interrupted \(Ctrl-C\): 0 of 2 CPUs had become ready by the "
                        r"run's end; CPUs 0 and 1 \(2\) were still starting up when the run was interrupted: each did "
                        r"not stop within [0-9.]+ s of being asked and was terminated, before its first operation, so "
                        r"this is no finding of theirs", report.not_done[0]), report.not_done
    assert not [line for line in report.not_done if line.startswith("CPU ")], report.not_done
    assert all(not line.startswith("invariants not checked") for line in report.not_done)


@pytest.mark.usefixtures("ctrl_c")
def test_a_ctrl_c_after_the_time_limit_leaves_a_cpu_stuck_at_start_up_a_finding(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A free-running run whose first CPU process is stopped (SIGSTOP) as it starts: it never
    gets ready, and run_cpus's own limit (--seconds plus START_ALLOWANCE_S, made 0.3 s here)
    stops the run, "time is up"; a Ctrl-C then arrives during the grace time (1 s), as a user
    of a run that seems to hang would send one. The stopped CPU, killed after the grace time, is
    still a cpu-died finding: it was stuck, and the limit, not the interrupt, stopped the run.
    It was a "not done" line, "still starting up when the run was interrupted ... no finding of
    its own", because any interrupt during the run counted (found by a review)."""
    from rmm_mp.stress import runner
    from rmm_mp.stress.config import StressConfig
    monkeypatch.setattr(runner, "START_ALLOWANCE_S", 0.3)
    monkeypatch.setattr(runner, "FREE_GRACE_S", 1.0)
    monkeypatch.setattr(runner, "oversubscription", lambda cpus: 1.0)    # the same on a 1-core host
    limit_seen: list[float] = []
    sent: list[float] = []

    def tick(elapsed: float, seg: Any) -> None:
        # run_cpus checks its limit right after this tick: a tick at or past the limit is
        # followed by "time is up", so the Ctrl-C goes at the tick after that one.
        if limit_seen and not sent:
            sent.append(elapsed)
            os.kill(os.getpid(), signal.SIGINT)
        if elapsed >= 0.5:
            limit_seen.append(elapsed)

    done, stopped = threading.Event(), []
    watcher = threading.Thread(target=_kill_the_first_cpu_as_it_starts, args=(done, stopped, signal.SIGSTOP),
                               daemon=True)
    watcher.start()
    try:
        report = runner.run(StressConfig(workload="tables", seconds=0.2), on_tick=tick)
    finally:
        done.set()
        watcher.join(10)
    assert stopped and sent and report.interrupted, report.text()
    died = [f for f in report.findings if f.rule == "cpu-died"]
    assert died, report.text()
    assert not any("still starting up when the run was interrupted" in n for n in report.not_done), report.text()


def test_a_free_running_cpu_makes_no_operation_before_every_cpu_is_ready() -> None:
    """A free-running run of 2 CPUs whose first CPU process is stopped (SIGSTOP) as it starts,
    and let go (SIGCONT) 0.5 s after the other CPU is ready: the ready CPU makes no operation
    while the other is still starting up, and the run then works as usual (operations, no
    finding). A ready CPU went to work at once, taking the host's cores from the CPUs still
    starting up (64 of them on 2 cores), before the run's --seconds had begun."""
    from rmm_mp.stress import runner
    from rmm_mp.stress.config import StressConfig
    from rmm_mp.stress.shared import ABSENT
    waited: dict[str, float] = {}
    ops_while_starting: list[int] = []
    done, stopped = threading.Event(), []

    def tick(elapsed: float, seg: Any) -> None:
        if not stopped or "resumed" in waited:
            return
        ready = [cpu for cpu in range(seg.cpus) if seg.status(cpu) != ABSENT]
        if len(ready) == seg.cpus:
            return
        if ready:
            ops_while_starting.append(seg.ops(ready[0]))
            waited.setdefault("since", elapsed)
            if elapsed - waited["since"] >= 0.5:
                waited["resumed"] = elapsed
                os.kill(stopped[0], signal.SIGCONT)

    watcher = threading.Thread(target=_kill_the_first_cpu_as_it_starts, args=(done, stopped, signal.SIGSTOP),
                               daemon=True)
    watcher.start()
    try:
        report = runner.run(StressConfig(workload="tables", seconds=0.5), on_tick=tick)
    finally:
        done.set()
        watcher.join(10)
        if stopped:
            try:
                os.kill(stopped[0], signal.SIGCONT)
            except ProcessLookupError:
                pass
    assert stopped and "resumed" in waited, (stopped, waited, report.text())
    assert ops_while_starting and max(ops_while_starting) == 0, ops_while_starting
    assert report.findings == () and sum(report.ops.values()) > 0, report.text()


def _named_cpu_besides(pids: list[int]) -> bool:
    """Whether a CPU process of this process other than ``pids`` has its kernel name (rmm-mp-cpuN:
    cpu_main sets it once the interpreter has imported it)."""
    for child in cpu_children():
        try:
            if child.pid not in pids and child.name().startswith("rmm-mp-cpu"):
                return True
        except psutil.Error:
            continue
    return False


def test_a_cpu_stuck_as_it_starts_is_a_finding_when_the_time_limit_ends_the_run(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A deterministic run whose first CPU process is stopped (SIGSTOP) while it starts up: it
    never registers for a turn, so the run never starts, and the --seconds limit ends it. The
    stopped CPU, killed after the grace time, is a cpu-died finding (the run cannot start
    without it: it is stuck, not waiting for a turn); the other, registered and waiting for the
    first turn, leaves without a step once the limit stops the run (no first turn is given) and
    returns its result (it waited for a turn until killed after the grace time, a "not done"
    line, until the parent stopped giving a first turn to a stopped run). Both were
    "not done" lines, "waiting for its turn (or still starting up) ... no finding of its own",
    and the run said "no findings" with exit status 0 (found by a review: SIGSTOP on a CPU of
    `rmm-mp stress --schedule random`)."""
    from rmm_mp.stress import runner
    from rmm_mp.stress.config import StressConfig
    monkeypatch.setattr(runner, "DETERMINISTIC_GRACE_S", 0.2)
    monkeypatch.setattr(runner, "oversubscription", lambda cpus: 1.0)    # the same on a 1-core host

    held: list[bool] = []

    def tick(elapsed: float, seg: Any) -> None:
        # The limit is held back (once) until the CPU that was not stopped is up: its import
        # takes longer than the limit on a loaded host. It cannot register meanwhile (this tick
        # holds up the parent's go, which it waits for; waiting for that ran the whole 60 s each
        # time): it is up once its process has its kernel name, the first thing cpu_main does
        # after the imports, and then it only reads its args and says so.
        if held:
            return
        held.append(True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not _named_cpu_besides(stopped):
            time.sleep(0.01)
        time.sleep(2.0)

    done, stopped = threading.Event(), []
    watcher = threading.Thread(target=_kill_the_first_cpu_as_it_starts, args=(done, stopped, signal.SIGSTOP),
                               daemon=True)
    watcher.start()
    try:
        report = runner.run(StressConfig(workload="tables", schedule="random", steps=2000, seconds=0.5),
                            on_tick=tick)
    finally:
        done.set()
        watcher.join(10)
    assert stopped and report.ended == "timeout" and report.steps == 0, report.text()
    died = [f for f in report.findings if f.rule == "cpu-died"]
    assert len(died) == 1 and len(report.findings) == 1, report.text()
    other = 1 - died[0].cpu
    assert [n for n in report.not_done if n.startswith(f"CPU {died[0].cpu} ")] == [], report.text()
    assert report.not_done == () and other in report.ops and report.unreported == (died[0].cpu,), report.text()


def test_a_cpu_stopped_as_it_starts_ends_a_deterministic_run_before_its_limit(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A deterministic run whose first CPU process is stopped (SIGSTOP) while it starts up, with
    a --seconds limit of 60: the supervisor sees the process stopped for STOPPED_START_S (1 s
    here) and ends the run, a stopped-at-start-up finding naming the CPU, instead of waiting out
    the limit (600 s by default) and only then reporting it. The stopped CPU, killed after the
    grace time, is no second finding. Before, the run took the whole 60 s and ended "timeout"."""
    from rmm_mp.stress import runner
    from rmm_mp.stress.config import StressConfig
    monkeypatch.setattr(runner, "DETERMINISTIC_GRACE_S", 0.2)
    monkeypatch.setattr(runner, "oversubscription", lambda cpus: 1.0)    # the same on a 1-core host
    monkeypatch.setattr(runner, "STOPPED_START_S", 1.0)
    done, stopped = threading.Event(), []
    watcher = threading.Thread(target=_kill_the_first_cpu_as_it_starts, args=(done, stopped, signal.SIGSTOP),
                               daemon=True)
    watcher.start()
    began = time.monotonic()
    try:
        report = runner.run(StressConfig(workload="tables", schedule="random", steps=2000, seconds=60))
    finally:
        done.set()
        watcher.join(10)
    took = time.monotonic() - began
    assert stopped and report.ended == "aborted" and report.steps == 0, report.text()
    assert [f.rule for f in report.findings] == ["stopped-at-start-up"], report.text()
    assert "was stopped (SIGSTOP) for 1 s" in report.findings[0].message, report.text()
    assert took < 45, (took, report.text())


def test_a_cpu_stopped_after_it_registered_ends_a_deterministic_run_before_its_limit(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A deterministic run of 2 CPUs whose CPU without the first turn is stopped (SIGSTOP) once
    the first turn is given: registered, it waits for its turn, and when the schedule gives it
    the turn the other CPU waits for it. A stopped process uses no CPU time, so the hang check
    never fired, and the run waited out its --seconds limit (60 s here, 600 s by default). Now
    the CPU with the turn seen stopped for STOPPED_START_S (1 s here) is a stopped-with-the-turn
    finding and the run is aborted; the stopped CPU, killed after the grace time, is no second
    (cpu-died) finding. Found by a review."""
    from rmm_mp.stress import runner
    from rmm_mp.stress.config import StressConfig
    monkeypatch.setattr(runner, "DETERMINISTIC_GRACE_S", 0.2)
    monkeypatch.setattr(runner, "oversubscription", lambda cpus: 1.0)    # the same on a 1-core host
    monkeypatch.setattr(runner, "STOPPED_START_S", 1.0)
    machines: list[Any] = []
    stopped: list[int] = []

    def stop_the_other_at_the_first_turn(elapsed: float, seg: Any) -> None:
        if stopped or seg.turn >= 2:
            return
        cpu = 1 - seg.turn
        os.kill(bound_pid(machines[0], cpu), signal.SIGSTOP)
        stopped.append(cpu)

    began = time.monotonic()
    report = runner.run(StressConfig(workload="tables", schedule="random", steps=100_000, seconds=60),
                        on_tick=stop_the_other_at_the_first_turn, on_machine=machines.append)
    took = time.monotonic() - began
    assert stopped and report.ended == "aborted", report.text()
    assert [(f.rule, f.cpu) for f in report.findings] == [("stopped-with-the-turn", stopped[0])], report.text()
    assert "was stopped (SIGSTOP) for 1 s while it had the turn" in report.findings[0].message, report.text()
    assert any(line.startswith(f"CPU {stopped[0]} ") and "stopped with the turn" in line
               for line in report.not_done), report.not_done
    assert took < 45, (took, report.text())


def test_a_run_whose_results_were_lost_is_no_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A deterministic `stress` run in which the parent's receive drops every CPU's result (the
    CPU processes exit normally): before, it printed "no findings, but no operation completed"
    and exited 0, a pass that had seen nothing. Now each CPU is a `result-lost` finding naming
    it (exit status 1), the snapshot does not call its process dead, and the schedule is not
    saved, with the reason worded for a result lost rather than a process that died."""
    from rmm_mp import cpu_supervisor

    def drop(self: Any, cpu: int, pipe: Any) -> None:
        try:
            pipe.recv()
        except (EOFError, OSError):
            pipe.close()
    monkeypatch.setattr(cpu_supervisor._Supervisor, "_receive", drop)
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(stress, ["tables", "--schedule", "random", "--steps", "30", "--json", "r.json"])
    assert res.exit_code == 1, res.output
    assert "no findings" not in res.output
    for cpu in (0, 1):
        assert (f"[watchdog: result-lost] CPU {cpu}: CPU {cpu} exited normally (status 0), but its result never "
                "reached the parent; locks it still held: none") in res.output, res.output
    assert "its process is dead" not in res.output and "(its process died)" not in res.output
    assert ("schedule not saved: CPU 0, 1 returned no result (its process exited normally, but the result did "
            "not reach the parent), so the switches it made are lost") in res.output, res.output
    data = json.loads((tmp_path / "r.json").read_text())
    assert not data["ok"] and [f["rule"] for f in data["findings"]] == ["result-lost"] * 2


def test_a_result_the_parent_cannot_read_is_a_finding_not_a_traceback(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Every message the parent receives from a CPU fails to unpickle (pickle.UnpicklingError, as
    an unreadable CpuResult gives): before, the error escaped run_cpus and `stress` ended with a
    traceback and no report. Now the report is printed, each CPU a `result-lost` finding naming
    the error, and the exit status is 1."""
    import multiprocessing.connection
    import pickle

    def unreadable(*args: Any, **kwargs: Any) -> Any:
        raise pickle.UnpicklingError("invalid load key, '\\x00'.")
    monkeypatch.setattr(multiprocessing.connection._ForkingPickler, "loads", unreadable)
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(stress, ["tables", "--schedule", "random", "--steps", "30"])
    assert res.exit_code == 1, res.output
    assert ("[watchdog: result-lost] CPU 0: CPU 0 sent a result that the parent could not read "
            "(UnpicklingError: invalid load key, '\\x00'.)") in res.output, res.output


def test_summary_says_how_far_a_run_went_past_its_step_budget() -> None:
    """--steps is where a deterministic run starts to end: the operations under way finish, so a
    run with a budget of 20,000 took 20,088 steps, and the summary gave the 20,088 with nothing
    to say that this was intended. It now gives the budget and the steps past it; a run that
    ended otherwise (a finding) or exactly at its budget says nothing of the kind."""
    from rmm_mp.stress.config import StressConfig
    from rmm_mp.stress.report import StressReport
    cfg = StressConfig(schedule="random", steps=20_000)
    over = StressReport(cfg, (), "budget", 1.0, {0: 9}, steps=20_088, switches=3).summary()
    assert "; 20,088 steps (budget 20,000: 88 to finish the operations under way), 3 switches" in over, over
    exact = StressReport(cfg, (), "budget", 1.0, {0: 9}, steps=20_000, switches=3).summary()
    assert "; 20,000 steps, 3 switches" in exact and "budget 20" not in exact, exact
    found = StressReport(cfg, (), "finding", 1.0, {0: 9}, steps=20_088, switches=3).summary()
    assert "budget 20" not in found, found


class _Segment:
    """A stand-in for the stress segment as the progress line reads it (no machine, no CPUs)."""

    def __init__(self, cpus: int) -> None:
        self.cpus, self.registered, self.step = cpus, 0, 0
        self.statuses = [0] * cpus
        self.done = [0] * cpus

    def status(self, cpu: int) -> int:
        return self.statuses[cpu]

    def ops(self, cpu: int) -> int:
        return self.done[cpu]


def test_the_progress_line_counts_the_cpus_ready_while_they_start(monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """The progress line on a terminal's stderr while a free-running run's 64 CPU processes
    start (a stand-in segment, so no process starts): "starting CPUs: K of 64 ready", redrawn
    on the tick where K moves (not only once a second), then, once all are ready, the
    operations, padded over the longer start-up line; a deterministic run counts the CPUs
    registered. Nothing is drawn when stderr is no terminal. It said "0 operations" for the
    whole start-up (25 to 50 s at 64 CPUs on a 2-core host), which looked like a hang."""
    from rmm_mp.stress import cli, shared
    from rmm_mp.stress.config import StressConfig
    assert cli._progress(StressConfig(cpus=64)) is None         # captured stderr: no terminal
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    seg = _Segment(64)
    tick = cli._progress(StressConfig(cpus=64))
    assert tick is not None
    tick(1.0, seg)      # type: ignore[arg-type]
    for cpu in range(37):
        seg.statuses[cpu] = shared.READY
    tick(1.2, seg)      # type: ignore[arg-type]
    tick(1.25, seg)     # type: ignore[arg-type]   # nothing new: not redrawn
    seg.statuses = [shared.READY] * 63 + [shared.DONE]
    seg.done[0] = 5
    tick(2.0, seg)      # type: ignore[arg-type]
    drawn = capsys.readouterr().err.split("\r")[1:]
    assert [d.rstrip() for d in drawn] == ["     1 s: starting CPUs: 0 of 64 ready",
                                           "     1 s: starting CPUs: 37 of 64 ready", "     2 s: 5 operations"], drawn
    assert len(drawn[2]) == len(drawn[1])
    seg = _Segment(2)
    seg.registered, seg.step = 1, 0
    det = cli._progress(StressConfig(cpus=2, schedule="random", seconds=60))
    assert det is not None
    det(1.0, seg)       # type: ignore[arg-type]
    seg.registered, seg.step = 2, 9
    det(2.0, seg)       # type: ignore[arg-type]
    assert [d.rstrip() for d in capsys.readouterr().err.split("\r")[1:]] == [
        "     1 s: starting CPUs: 1 of 2 ready", "     2 s: 0 operations, 9 steps"]


def test_the_progress_line_groups_the_thousands_as_the_report_does() -> None:
    """The progress line's counts read as the summary line's do, with thousands separators: it
    showed "5391 operations" above a summary of "6,631 operations", and a deterministic run's
    "12853 steps" above "12,853 steps"."""
    from rmm_mp.stress import cli
    assert cli.progress_text(2.0, 2, 2, 5391, None).rstrip() == "     2 s: 5,391 operations"
    assert cli.progress_text(2.0, 2, 2, 131, 12853).rstrip() == "     2 s: 131 operations, 12,853 steps"


def test_the_summary_says_plainly_when_cpus_that_returned_no_result_had_counted_nothing() -> None:
    """CPUs that returned no result and whose counters in the stress segment read 0: the summary
    says they counted none, not "0 more counted in shared memory by", which read as if they had
    added something."""
    from rmm_mp.stress.config import StressConfig
    from rmm_mp.stress.report import StressReport
    report = StressReport(StressConfig(), (), "time", 1.0, {}, unreported=(0, 1), unreported_ops={0: 0, 1: 0})
    assert ("0 operations (over the CPUs that returned a result; CPUs 0 and 1, which returned none, had counted "
            "none in shared memory) in 1.0 s") in report.summary(), report.summary()
    some = StressReport(StressConfig(), (), "time", 1.0, {2: 4}, unreported=(0,), unreported_ops={0: 7})
    assert "4 operations (over the CPUs that returned a result; 7 more counted in shared memory by CPU 0, which " \
           "returned none) in 1.0 s" in some.summary(), some.summary()


def test_check_prints_a_stray_valueerror_of_attach_as_its_other_refusals(monkeypatch: pytest.MonkeyPatch) -> None:
    """Test-only: attach refuses a name with a ValueError ("name = ..."), a usage error, and
    words every other refusal as a MachineError; a ValueError of another kind (none is known) is
    printed as those are, its type named, exit status 2, no traceback."""
    def stray(name: str) -> Machine:
        raise ValueError("something else")
    monkeypatch.setattr(Machine, "attach", staticmethod(stray))
    res = CliRunner().invoke(check, ["rmm-mp-1234-0a1b2c3d"])
    assert res.exit_code == 2 and res.output.rstrip().splitlines()[-1] == "Error: ValueError: something else", \
        res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
