"""Smoke test of every benchmark in tools/: each runs with tiny options (seconds, not minutes),
ends with exit status 0 (targets met) or 1 (a target missed: tiny runs are noisy, so either is
allowed), prints no traceback, prints a PASS or MISS line where it has a target, and writes its
JSON. Real figures come from full runs (docs/performance.md); this only keeps the tools working.
The tools' computations (percentiles ...) are tested directly, without timing anything.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from rmm_mp.cpu_outcome import CpuFailure, RunResult
from rmm_mp.stress import StressReport
from rmm_mp.stress.findings import Finding

TOOLS = Path(__file__).resolve().parent.parent / "tools"

sys.path.insert(0, str(TOOLS))     # the tools import benchlib from their own folder
try:
    import bench_attest  # noqa: E402
    import bench_delegate  # noqa: E402
    import bench_realm  # noqa: E402
    import bench_rec  # noqa: E402
    import bench_run  # noqa: E402
    import bench_stress  # noqa: E402
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
    """Each tool in tools/ with tiny options: exit 0 or 1 (1 exactly when it prints MISS, where it has a
    verdict), no traceback, and a JSON holding its key figure; bench_run compares the same work on 1 CPU."""
    out = tmp_path / "figures.json"
    proc = subprocess.run([sys.executable, str(TOOLS / tool), *options, "--json", str(out)],
                          capture_output=True, text=True, timeout=240, cwd=tmp_path)
    text = proc.stdout + proc.stderr
    assert proc.returncode in (0, 1), text
    assert "Traceback" not in text, text
    if verdict:
        assert "PASS" in proc.stdout or "MISS" in proc.stdout, text
        assert (proc.returncode == 1) == ("MISS" in proc.stdout), text
    written = out.read_text(encoding="utf-8")
    figures = json.loads(written)
    # One format for every tool (benchlib.write_json): bench_stress wrote indent 1 and no final newline.
    assert written == json.dumps(figures, indent=2) + "\n", f"{tool}'s --json is not indented by 2 with a final newline"
    assert key in figures
    assert figures.get("benchmark", tool.removesuffix(".py")) == tool.removesuffix(".py")
    # Every tool writes the options it ran with (bench_lock and bench_stress wrote none).
    assert figures["options"]["json"] == str(out), figures.get("options")
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


CUT_SHORT = RunResult({}, (), True, 0.5, "Ctrl-C")


@pytest.mark.parametrize("tool", [bench_delegate, bench_realm], ids=["bench_delegate", "bench_realm"])
def test_ctrl_c_during_a_cpu_run_ends_the_tool_as_interrupted(tool, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """A run of CPU processes that Ctrl-C cut short ends the tool with status 130, not with
    "CPU processes failed:" and nothing after it, status 1 (which means a missed target)."""
    monkeypatch.setattr(tool, "run_cpus", lambda *a, **k: CUT_SHORT)
    args = argparse.Namespace(granules=1, layout="spread", seconds=1.0, warmup=0.0, tick=0.1, order="alternate")
    with pytest.raises(SystemExit) as ended:
        tool.throughput_run(1, args)
    assert ended.value.code == benchlib.INTERRUPTED == 130


def test_a_failed_cpu_process_ends_the_tool_as_a_failed_run(capsys: pytest.CaptureFixture[str]) -> None:
    """A CPU process that failed: status 2 (a run failed) and what it reported, not status 1."""
    failure = CpuFailure(1, "raised RuntimeError: DELEGATE failed", "Traceback ...", ())
    with pytest.raises(SystemExit) as ended:
        benchlib.check_cpus(RunResult({}, (failure,), False, 0.5))
    assert ended.value.code == benchlib.RUN_FAILED == 2
    assert "DELEGATE failed" in capsys.readouterr().err
    benchlib.check_cpus(RunResult({0: 1}, (), False, 0.5))     # a complete run: no exit



def test_a_failed_measurement_ends_the_tool_as_a_failed_run(capsys: pytest.CaptureFixture[str]) -> None:
    """A measurement that fails its own checks (an exit the loop did not expect, counts that do
    not add up) ends the tool with status 2, not 1, which means a missed target; and no tool
    ends with SystemExit("message"), which Python turns into status 1."""
    with pytest.raises(SystemExit) as ended:
        benchlib.measurement_failed("expected 5 host-call exits, the loop saw 4")
    assert ended.value.code == benchlib.RUN_FAILED == 2
    assert "measurement failed: expected 5 host-call exits" in capsys.readouterr().err
    for path in sorted(TOOLS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "SystemExit" and node.args:
                arg = node.args[0]
                message = isinstance(arg, ast.JoinedStr) or (isinstance(arg, ast.Constant) and isinstance(arg.value, str))
                assert not message, f"{path.name}:{node.lineno}: SystemExit with a message exits 1 (a missed target)"

def test_ctrl_c_during_a_workload_run_ends_bench_run_as_interrupted(monkeypatch: pytest.MonkeyPatch) -> None:
    """bench_run: a run Ctrl-C cut short is "interrupted" (130), not "did not run clean" (2)."""
    monkeypatch.setattr(bench_run, "run_workload", lambda *a, **k: SimpleNamespace(
        interrupted=True, ok=False, failures=(), problems=()))
    with pytest.raises(SystemExit) as ended:
        bench_run._run("quickstart", cpus=1, iterations=1)
    assert ended.value.code == 130


def test_ctrl_c_during_a_stress_run_ends_bench_stress(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stress runner returns a report marked interrupted after Ctrl-C; a hunt took it for
    "not caught yet" and went on from the next seed, and (b) took its steps for a rate."""
    made: list[object] = []

    def interrupted_run(cfg):  # type: ignore[no-untyped-def]
        made.append(cfg)
        return StressReport(cfg, (), "interrupted", 0.5, {}, steps=3, interrupted=True)

    monkeypatch.setattr(bench_stress, "stress_run", interrupted_run)
    name = next(iter(bench_stress.BUGS))
    with pytest.raises(SystemExit) as ended:
        bench_stress.hunt(name, "random", 2, 1000, 60.0, 100)
    assert ended.value.code == 130 and len(made) == 1
    with pytest.raises(SystemExit) as ended:
        bench_stress.step_rate(argparse.Namespace(cpus=2, steps=100))
    assert ended.value.code == 130 and len(made) == 2


def test_a_stress_measurement_with_a_finding_ends_bench_stress_as_a_failed_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """(b) and (c) inject no bug: a run with a finding is a broken measurement, status 2 (it was
    an AssertionError traceback in (c), status 1, a missed target; (b) took its steps for a rate)."""
    made: list[object] = []

    def run_with_a_finding(cfg):  # type: ignore[no-untyped-def]
        made.append(cfg)
        crash = Finding("crash", "cpu-process", "CPU process 1 exited with status 1", cpu=1)
        return StressReport(cfg, (crash,), "aborted", 0.5, {0: 10, 1: 3}, steps=13)

    monkeypatch.setattr(bench_stress, "stress_run", run_with_a_finding)
    for section in (bench_stress.step_rate, bench_stress.slowdown):
        with pytest.raises(SystemExit) as ended:
            section(argparse.Namespace(cpus=2, steps=100, seconds=1.0))
        assert ended.value.code == benchlib.RUN_FAILED and len(made) == 1
        made.clear()


@pytest.mark.parametrize("tool, options", [
    (bench_run, ["--overhead-repeat", "0", "--skip-large"]),
    (bench_run, ["--repeat", "0", "--skip-large"]),
    (bench_run, ["--overhead-cpus", "300", "--skip-large"]),   # more CPUs than the workload's platform
    (bench_run, ["--workload", "no-such-workload", "--skip-large"]),
    (bench_stress, ["--hunts", "0", "--only", "a"]),
    (bench_stress, ["--only", "x"]),
    (bench_stress, ["--only", "a", "--bugs", "no-such-bug"]),
    (bench_stress, ["--only", "b", "--cpus", "1"]),         # a stress run has 2..64 CPUs
    (bench_stress, ["--only", "b", "--cpus", "65"]),
    (bench_stress, ["--only", "b", "--steps", "1"]),        # (b)'s PCT runs need 2 change points
    (bench_stress, ["--only", "c", "--seconds", "90000"]),  # a stress run lasts at most a day
    (bench_stress, ["--only", "c", "--seconds", "nan"]),    # NaN passed "<= 0" and "> a day"
    (bench_stress, ["--only", "a", "--limit", "nan"]),
    (bench_stress, ["--only", "a", "--limit", "1"]),         # a hunt starts no run with 1 s or less left
    (bench_delegate, ["--skip-latency", "--skip-throughput"]),  # both parts skipped: nothing measured, status 0
    (bench_attest, ["--platforms", "fvp,no-such-platform"]),    # a ConfigError traceback after fvp's runs, status 1
    (bench_attest, ["--platforms", ""]),
], ids=["run-overhead-repeat-0", "run-repeat-0", "run-cpus-300", "run-no-such-workload", "stress-hunts-0", "stress-only-x", "stress-unknown-bug",
        "stress-cpus-1", "stress-cpus-65", "stress-pct-steps-1", "stress-seconds-over-a-day", "stress-seconds-nan",
        "stress-limit-nan", "stress-limit-1",
        "delegate-skip-both", "attest-no-such-platform", "attest-no-platform"])
def test_options_that_leave_nothing_to_measure_are_refused(tool, options: list[str]) -> None:  # type: ignore[no-untyped-def]
    """A usage error (status 2) before anything runs, not a median of no runs (StatisticsError),
    a KeyError, a silent run that measured nothing, or the traceback of the first run made with
    a value out of its ranges (bench_run's ConfigError, bench_stress's ValueError)."""
    with pytest.raises(SystemExit) as ended:
        tool.main(options)
    assert ended.value.code == 2


def _refused_before_a_machine(tool, options: list[str],  # type: ignore[no-untyped-def]
                              monkeypatch: pytest.MonkeyPatch) -> None:
    """``tool.main(options)`` ends in a usage error (status 2) without making a machine."""
    class NoMachine:
        @staticmethod
        def create(*args: object, **kwargs: object) -> None:
            raise AssertionError("a machine was made for options that are refused")
    monkeypatch.setattr(tool, "Machine", NoMachine)
    with pytest.raises(SystemExit) as ended:
        tool.main(options)
    assert ended.value.code == 2


@pytest.mark.parametrize("tool, options, shown", [
    (bench_delegate, ["--skip-latency", "--tick", "1e10"], "--tick 1e+10: expected a number of seconds greater than 0 "
                                                          "and at most 86,400"),
    (bench_delegate, ["--skip-latency", "--seconds", "nan"], "--seconds nan: expected a number of seconds greater "
                                                             "than 0"),
    (bench_delegate, ["--skip-latency", "--warmup", "-1"], "--warmup -1: expected a number of seconds at least 0"),
    (bench_realm, ["--warmup", "inf"], "--warmup inf: expected a number of seconds at least 0 and at most 86,400"),
    (bench_realm, ["--seconds", "1e5"], "--seconds 100000: expected a number of seconds greater than 0 and at most"),
], ids=["delegate-tick-past-the-wait-limit", "delegate-seconds-nan", "delegate-warmup-negative", "realm-warmup-inf",
        "realm-seconds-past-a-day"])
def test_a_refused_length_is_named_with_its_value(tool, options: list[str], shown: str,  # type: ignore[no-untyped-def]
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The refusal names the option and the value, as bench_stress's do: it said "--seconds and
    --tick must be positive finite numbers of seconds, --warmup one not negative" whichever was
    wrong. A --tick past 2,147,483 s was taken, and the supervisor's wait raised OverflowError
    after the machine was made."""
    _refused_before_a_machine(tool, options, monkeypatch)
    assert f"error: {shown}" in capsys.readouterr().err


@pytest.mark.parametrize("tool, options", [
    (bench_delegate, ["--skip-latency", "--seconds", "nan"]),
    (bench_delegate, ["--skip-latency", "--seconds", "inf"]),
    (bench_delegate, ["--skip-latency", "--warmup", "nan"]),
    (bench_delegate, ["--skip-latency", "--warmup", "-1"]),
    (bench_delegate, ["--skip-latency", "--tick", "0"]),
    (bench_delegate, ["--skip-latency", "--tick", "nan"]),
    (bench_realm, ["--seconds", "nan"]),
    (bench_realm, ["--seconds", "inf"]),
    (bench_realm, ["--warmup", "nan"]),
    (bench_realm, ["--warmup", "inf"]),
], ids=["delegate-seconds-nan", "delegate-seconds-inf", "delegate-warmup-nan", "delegate-warmup-negative",
        "delegate-tick-0", "delegate-tick-nan", "realm-seconds-nan", "realm-seconds-inf", "realm-warmup-nan",
        "realm-warmup-inf"])
def test_a_length_that_is_no_positive_finite_number_is_refused_before_a_machine_is_made(
        tool, options: list[str], monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """NaN and infinity passed "<= 0" and "< 0": the machine was made and every CPU process
    ended in a ValueError or OverflowError (int(seconds * 1e9)), a failed run (status 2) with
    tracebacks; a negative --warmup or a --tick of 0 was taken. A usage error (status 2) now,
    before any machine is made."""
    _refused_before_a_machine(tool, options, monkeypatch)


def test_bench_recording_ir_needs_two_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """bench_recording_ir's start-up figure is a 1-step run, so --iterations 1 would divide by
    the difference of two identical runs: refused before valgrind is looked for."""
    sys.path.insert(0, str(TOOLS))
    try:
        import bench_recording_ir  # noqa: E402
    finally:
        sys.path.remove(str(TOOLS))
    monkeypatch.setattr(bench_recording_ir.shutil, "which", lambda name: None)
    with pytest.raises(SystemExit) as ended:
        bench_recording_ir.main(["--iterations", "1"])
    assert ended.value.code == 2


def _window(ncpus: int, calls_per_s: float, other_load_cores: float | None) -> dict[str, object]:
    """A throughput window as bench_realm's and bench_delegate's throughput_run return it."""
    return {"cpus": ncpus, "calls_per_s": calls_per_s, "realms_per_s": 1.0, "ms_per_realm": 1.0,
            "per_cpu_calls_per_s": [calls_per_s / ncpus] * ncpus, "per_cpu_busy": [1.0] * ncpus,
            "calls_per_cpu_s": [calls_per_s / ncpus] * ncpus, "window_realms": [1] * ncpus, "preempted": [0] * ncpus,
            "host_idle_pct": None if other_load_cores is None else 0.0,
            "host_steal_pct": None if other_load_cores is None else 0.0,
            "other_load_cores": other_load_cores, "parent_cpu_s": 0.0}


@pytest.mark.parametrize("tool", [bench_realm, bench_delegate], ids=["bench_realm", "bench_delegate"])
def test_a_window_whose_proc_stat_was_not_read_counts_as_loaded(  # type: ignore[no-untyped-def]
        tool, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Two runs each of 1 and 2 CPUs, one window of each with its /proc/stat read and quiet and one
    not read (other_load_cores None, as throughput_run gives when benchlib.host_ticks returns []):
    both tools warn that the load of 2 of 4 windows is unknown and take the quiet-only ratio from
    the read windows alone (190 / 100). bench_realm counted an unread window as loaded (its warning
    said other processes used >= 0.15 cores in it), bench_delegate as quiet (no warning at all)."""
    loads = iter([(100.0, 0.0), (190.0, 0.0), (1000.0, None), (5000.0, None)])
    monkeypatch.setattr(tool, "throughput_run", lambda n, args: _window(n, *next(loads)))
    if tool is bench_realm:
        monkeypatch.setattr(tool, "calls_per_realm", lambda order: {"build": 1, "teardown": 1})
        options = ["--repeat", "2"]
    else:
        options = ["--repeat", "2", "--skip-latency"]
    out = tmp_path / "figures.json"
    tool.main([*options, "--json", str(out)])
    text = capsys.readouterr().out
    assert "WARNING: in 2 of 4 windows /proc/stat could not be read (load unknown)" in text, text
    assert "other processes used" not in text, text
    figures = json.loads(out.read_text(encoding="utf-8"))
    quiet_ratio = figures["quiet_ratio"] if tool is bench_realm else figures["throughput"]["quiet_ratio"]
    assert quiet_ratio == pytest.approx(1.9)


def test_quiet_windows_are_judged_by_one_rule() -> None:
    """benchlib.is_quiet and load_warning: quiet below QUIET_CORES of other load; unread (None) is loaded."""
    assert benchlib.is_quiet(0.0) and benchlib.is_quiet(-0.1) and not benchlib.is_quiet(benchlib.QUIET_CORES)
    assert not benchlib.is_quiet(None)
    assert benchlib.load_warning([0.0, 0.1]) is None
    assert benchlib.load_warning([0.0, 0.4, None]) == ("in 1 of 3 windows other processes used >= 0.15 cores "
                                                       "(up to 0.40); in 1 of 3 windows /proc/stat could not be "
                                                       "read (load unknown)")


def test_split_cost_compares_the_sampled_calls_with_the_others() -> None:
    """bench_delegate's split cost from a trace ring: per RMI slot, the p50 of the calls whose t0 is
    a multiple of SPLIT_EVERY ns (EL3 / RMM split sampled) less the p50 of the others; records of
    other kinds are ignored, and a slot without calls of both kinds has None."""
    from rmm_mp.el3.monitor import SPLIT_EVERY
    from rmm_mp.hw import trace
    rmi, rsi = trace.KIND_RMI, trace.KIND_RSI
    records = [(SPLIT_EVERY * 10, 2300, rmi, 4, 0), (SPLIT_EVERY * 20, 2500, rmi, 4, 0),
               (SPLIT_EVERY * 30 + 1, 2000, rmi, 4, 0), (SPLIT_EVERY * 40 + 7, 2100, rmi, 4, 0),
               (SPLIT_EVERY * 50 + 3, 9000, rmi, 4, 0), (SPLIT_EVERY * 60, 99_999, rsi, 4, 0),
               (SPLIT_EVERY * 70 + 1, 3000, rmi, 5, 0)]
    assert bench_delegate._split_cost(records) == {4: 2400 - 2100, 5: None}


def test_a_reader_that_leaves_early_leaves_the_tool_its_verdict(tmp_path: Path) -> None:
    """bench_lock.py with tiny options whose standard output is a pipe the reader has already
    closed (`| head -0`): no BrokenPipeError traceback, its own exit status (0 or 1, not 1 for
    the pipe: its JSON's verdict says which) and its JSON still written."""
    out = tmp_path / "figures.json"
    proc = subprocess.Popen([sys.executable, str(TOOLS / "bench_lock.py"), "--runs", "1", "--pairs", "2000",
                             "--json", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()                 # the reader leaves before the first line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) in (0, 1), err
    assert "Traceback" not in err, err
    figures = json.loads(out.read_text(encoding="utf-8"))
    assert "lock_unlock" in figures


def test_every_tool_runs_its_main_through_tool_main() -> None:
    """Every bench_*.py in tools/ ends `if __name__ == "__main__": tool_main(main)`, so that each
    gets benchlib.tool_main's quiet end when its reader leaves early."""
    for tool in sorted(TOOLS.glob("bench_*.py")):
        tail = tool.read_text(encoding="utf-8").rstrip().splitlines()[-2:]
        assert tail == ['if __name__ == "__main__":', "    tool_main(main)"], (tool.name, tail)


def _help_of(tool: str, capsys: pytest.CaptureFixture[str]) -> str:
    """What ``tools/<tool>.py --help`` writes (it must exit 0)."""
    sys.path.insert(0, str(TOOLS))
    try:
        module = importlib.import_module(tool)
    finally:
        sys.path.remove(str(TOOLS))
    with pytest.raises(SystemExit) as ended:
        module.main(["--help"])
    assert ended.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("tool", sorted(p.stem for p in TOOLS.glob("bench_*.py")))
def test_a_tools_help_writes_its_defaults_digits_grouped(tool: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A benchmark's --help writes each option's default as rmm-mp's own --help does, digits
    grouped ("(default 200,000)") and not in an exponent ("1e6"): bench_lock said 200000,
    bench_delegate 20000, bench_run 8000, bench_attest 4096 and bench_rec 1e6."""
    text = " ".join(_help_of(tool, capsys).split())      # argparse wraps a help line anywhere
    defaults = re.findall(r"\(default[^)]*\)", text)
    assert defaults, text
    assert [d for d in defaults if re.search(r"(?<![\d.,])\d{4,}|\de\d", d)] == []


@pytest.mark.parametrize("tool", sorted(p.stem for p in TOOLS.glob("bench_*.py")))
def test_a_tools_help_fits_an_80_column_terminal(tool: str, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A benchmark's --help, on an 80-column terminal, keeps to 80 columns, as every rmm-mp
    command's does (tests/cli/test_cli.py): bench_run printed its module docstring as written,
    in lines of up to 113 columns (argparse rewraps no raw description)."""
    monkeypatch.setenv("COLUMNS", "80")     # argparse's width (shutil.get_terminal_size)
    wide = [line for line in _help_of(tool, capsys).splitlines() if len(line) > 80]
    assert wide == [], (tool, wide)


def test_rec_profile_counts_the_run_loops_rmm_entry() -> None:
    """bench_rec's profile splits a round trip into the RMM's REC_ENTER and the host's part by the
    time inside the CPU handle's entry: the run loop enters through Cpu.smc_u64, not Cpu.smc, so
    that entry must be counted, or the whole round trip is shown as the host's."""
    rows, rmm_us, total_us = bench_rec.profile(30)
    assert 0 < rmm_us < total_us, (rmm_us, total_us)
    assert any(where.endswith("cpu_handle.py:smc_u64") for where, _, _ in rows)


def test_bench_recording_ir_writes_its_json_as_the_other_tools_do(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """bench_recording_ir (valgrind and its runs replaced by fixed figures) writes its --json as
    every other bench tool does: indented by 2, a final newline, and a "benchmark" key naming the
    tool. It had no "benchmark" key, the only tool without one, and no smoke case checked its file."""
    sys.path.insert(0, str(TOOLS))
    try:
        import bench_recording_ir  # noqa: E402
    finally:
        sys.path.remove(str(TOOLS))
    monkeypatch.setattr(bench_recording_ir.shutil, "which", lambda name: "/usr/bin/valgrind")
    monkeypatch.setattr(bench_recording_ir, "measure", lambda variant, args, site, iterations=None: {
        "ir": 1_000 if iterations == 1 else 11_000 + 100 * (variant != "off"), "counters": {"0": 1}})
    out = tmp_path / "figures.json"
    assert bench_recording_ir.main(["--iterations", "2", "--variants", "on", "--json", str(out)]) == 0
    written = out.read_text(encoding="utf-8")
    figures = json.loads(written)
    assert written == json.dumps(figures, indent=2) + "\n"
    assert figures["benchmark"] == "bench_recording_ir"
    # The options it ran with, as every tool writes them (it wrote only some of them).
    assert figures["options"]["iterations"] == 2 and figures["options"]["variants"] == "on", figures.get("options")
    assert figures["variants"]["on"]["over_off_pct"] == 1.0


@pytest.mark.parametrize("tool, options", [*((c[0], c[1]) for c in CASES),
                                           ("bench_recording_ir.py", ["--iterations", "2"])],
                         ids=[*(c[0] for c in CASES), "bench_recording_ir.py"])
def test_a_json_path_of_dash_is_refused_before_anything_is_measured(tool: str, options: list[str],
                                                                     tmp_path: Path) -> None:
    """`--json -` is a usage error (exit 2) naming '-' as `rmm-mp run --json -` is
    (outpaths.check_output), given before the tool measures anything: every tool ran its
    benchmark and then wrote its figures to a file named '-' in the working directory."""
    proc = subprocess.run([sys.executable, str(TOOLS / tool), *options, "--json", "-"],
                          capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "--json = '-': expected a file path; '-' is not standard output here" in proc.stderr, proc.stderr
    assert proc.stdout == "" and not (tmp_path / "-").exists()


def test_an_unwritable_json_path_is_refused_before_anything_is_measured(tmp_path: Path) -> None:
    """A --json path in no directory is a usage error before the run, not a FileNotFoundError
    traceback once the figures of a run of minutes are in (and lost)."""
    out = tmp_path / "no" / "figures.json"
    proc = subprocess.run([sys.executable, str(TOOLS / "bench_lock.py"), "--runs", "1", "--pairs", "2000", "--json",
                           str(out)], capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"--json = '{out}': expected a file that can be written (No such file or directory)" in proc.stderr
    assert proc.stdout == ""


def _records(slots: dict[int, int]) -> dict[int, Any]:
    """{slot: a CallStats of ``n`` records} (count only: what bench_run's figures read)."""
    return {slot: SimpleNamespace(count=n) for slot, n in slots.items()}


def test_bench_run_counts_records_as_records_and_progress_by_calls(monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """(b) labels its figure records/s: total_calls counts REC runs and host steps too, and read
    "calls" it claimed some 30 % more calls than were made. (c) counts a CPU's calls (RMI, RSI,
    PSCI) for progress: CPU 1 only polled an empty run queue (host steps, no call), and counted
    as progress while the figure was every record."""
    from rmm_mp.stats import calls
    stats = {0: _records({0: 10, calls.RSI_BASE: 4, calls.EXIT_BASE: 3, calls.HOST_BASE: 5}),
             1: _records({calls.HOST_BASE: 7})}
    monkeypatch.setattr(bench_run, "_run", lambda *a, **k: SimpleNamespace(total_calls=29, elapsed_s=1.0,
                                                                          stats=stats))
    bench_run.throughput(1.0, 1, 1)
    shown = capsys.readouterr().out
    assert "29 records (calls, REC runs and host steps) in 1.00 s = 29 records/s" in shown, shown
    assert "calls/s" not in shown
    large = bench_run.large(1.0, 1)
    assert (large["min_calls_per_cpu"], large["max_calls_per_cpu"], large["idle_cpus"], large["progress"]) == \
        (0, 14, [1], False)
    assert "calls (RMI, RSI, PSCI) per CPU min 0 max 14; CPUs without a call: [1]" in capsys.readouterr().out
