"""Bad input to `rmm-mp stress`: a tampered schedule file, a malformed --checkers list, a
StressConfig given a wrong type. Each is a usage error (exit 2) naming the field, the value and
what was expected, before any machine is created; none ends in a traceback. No test here starts
a CPU process: the run itself is replaced by one that fails the test if it is reached."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from rmm_mp.stress import StressConfig
from rmm_mp.stress import cli as stress_cli
from rmm_mp.stress import schedule as schedule_file
from rmm_mp.stress.cli import stress

U64 = 2**64 - 1
VALID: dict[str, Any] = {
    "format": "rmm-mp-schedule", "version": 1,
    "config": {"workload": "tables", "cpus": 2, "seed": 1, "steps": 6000, "pct_depth": 3, "time_slice": 400,
               "quiescent_every": 2000, "guests": True, "strategy": "random", "inject": ["lock-two-unordered"],
               "checkers": ["lockdep", "ownership", "invariants", "watchdog"]},
    "switches": [[0, 0], [3, 1], [4, 0], [6, 1]],
    "result": {"steps": 110, "preemptions": 18, "findings": [
        {"checker": "lockdep", "rule": "rule 2", "message": "RD 0x8008f000 taken while holding DELEGATED 0x82000000",
         "cpu": 1, "call": "RMI_RTT_CREATE(0x8008f000, 0x82000000, 0x40200000, 0x3)",
         "site": "rmm_mp/stress/bugs_rmi.py:74 (lock_two_unordered)", "details": ["holding DELEGATED 0x82000000"],
         "step": 17}]},
}
"""The file `rmm-mp stress tables --inject lock-two-unordered --schedule random --steps 6000 --seed
1 --save-schedule F` writes, its switches cut short."""

DELETE = object()
"""Stands for "remove this key" in a tampering."""


@pytest.fixture(autouse=True)
def no_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reaching the run means the input got past validation: fail at once (on the old code these
    would have started, or crashed in, a run)."""
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a run started: the input was not refused before it")
    monkeypatch.setattr(stress_cli, "run", refuse)


def _tampered(path: tuple[str | int, ...], value: object) -> dict[str, Any]:
    data = copy.deepcopy(VALID)
    here: Any = data
    for key in path[:-1]:
        here = here[key]
    if value is DELETE:
        del here[path[-1]]
    else:
        here[path[-1]] = value
    return data


def test_the_untampered_file_loads() -> None:
    """The base the tamperings start from is a good file (so each refusal below is the
    tampering's): its configuration replays, its findings are the recorded ones."""
    loaded = schedule_file.parse(copy.deepcopy(VALID), "f.json")
    assert loaded.config.schedule == "replay" and loaded.strategy == "random"
    assert (loaded.config.seed, loaded.config.cpus, loaded.config.steps) == (1, 2, 6000)
    assert loaded.config.inject == ("lock-two-unordered",) and loaded.config.switches[1] == (3, 1)
    assert [f.to_json() for f in loaded.findings] == VALID["result"]["findings"]
    assert schedule_file.replay_config(VALID, seconds=5.0).seconds == 5.0


TAMPERED = [
    # Shape: a missing, wrongly typed or unknown part used to crash (KeyError, AttributeError,
    # TypeError) with a traceback and exit 1.
    (("config",), DELETE, "config = (missing): expected a value: the key is required"),
    (("config",), [1], "config = [1]: expected a JSON object with the keys workload, cpus, seed"),
    (("result",), "x", "result = 'x': expected a JSON object with the keys steps, preemptions, findings"),
    (("result", "findings"), [{"x": 1}], "result.findings[0].x = 1: expected no such key; keys here: checker, rule"),
    (("result", "findings"), "abc", "result.findings = 'abc': expected a list of findings"),
    (("result", "findings", 0, "cpu"), 7, "result.findings[0].cpu = 7: expected the CPU it was seen on (or null), "
                                          "an integer in 0..1"),
    (("config", "sed"), 1, 'config.sed = 1: expected no such key (did you mean "seed"?)'),
    # A missing required key is an error, not a default (no seed used to replay seed 0).
    (("config", "seed"), DELETE, "config.seed = (missing): expected a value: the key is required"),
    # Types: these raised TypeError in config.py, or failed in the run after the machine was made.
    (("config", "steps"), None, "config.steps = null: expected a step budget, an integer in 1..100,000,000"),
    (("config", "pct_depth"), "3", "config.pct_depth = '3': expected a PCT bug depth, an integer in 1..64"),
    (("config", "quiescent_every"), "x", "config.quiescent_every = 'x': expected a whole number of steps >= 0"),
    (("config", "quiescent_every"), 0.5, "config.quiescent_every = 0.5: expected a whole number of steps >= 0"),
    (("config", "quiescent_every"), float("nan"), "config.quiescent_every = nan: expected a whole number"),
    # Past a u64 (the machine's field) or a float: OverflowError once the machine existed, or in the check.
    (("config", "quiescent_every"), 2**64, "config.quiescent_every = 18446744073709551616 (0x10000000000000000): "
                                           "expected a whole number of steps >= 0"),
    (("config", "quiescent_every"), 10**400, "config.quiescent_every = 0x1b4ec7f9...0000 (an integer of 1329 bits): "
                                             "expected a whole number of steps >= 0"),
    (("config", "inject"), None, "config.inject = null: expected a list of bug names"),
    (("config", "guests"), 1, "config.guests = 1: expected true or false"),
    (("config", "time_slice"), 0, "config.time_slice = 0: expected a number of guest instructions per REC entry, "
                                  "an integer in 1..1,000,000,000"),
    (("config", "time_slice"), -1, "config.time_slice = -1: expected a number of guest instructions"),
    (("config", "time_slice"), "400", "config.time_slice = '400': expected a number of guest instructions"),
    (("config", "seed"), "1", f"config.seed = '1': expected a seed, an integer in 0..{U64:,}"),
    (("config", "seed"), 1.0, f"config.seed = 1.0: expected a seed, an integer in 0..{U64:,}"),
    (("config", "seed"), True, f"config.seed = true: expected a seed, an integer in 0..{U64:,}"),
    # Values that used to be accepted silently.
    (("config", "seed"), -5, f"config.seed = -5: expected a seed, an integer in 0..{U64:,}"),
    (("config", "seed"), 2**70, f"config.seed = {2**70} ({2**70:#x}): expected a seed, an integer in 0..{U64:,}"),
    (("config", "strategy"), "xyz", "config.strategy = 'xyz': expected one of 'random', 'pct' or 'replay' (a replay "
                                    "follows the switches of a deterministic run)"),
    (("config", "strategy"), "free", "config.strategy = 'free': expected one of 'random', 'pct' or 'replay'"),
    (("config", "workload"), "table", "config.workload = 'table': expected one of 'mixed', 'tables', 'rtts', "
                                      "'realms', 'lifecycle' or 'running' (did you mean \"tables\"?)"),
    (("config", "cpus"), 65, "config.cpus = 65: expected a number of CPU processes, an integer in 2..64"),
    # A string is not a list of one name: it was read letter by letter ("unknown l, o, c, ...").
    (("config", "inject"), "lock-two-unordered", 'config.inject = \'lock-two-unordered\': expected a list of bug '
                                                 'names, such as ["lock-two-unordered"]'),
    (("config", "checkers"), "lockdep", 'config.checkers = \'lockdep\': expected a list of checker names, such as '
                                        '["lockdep"]'),
    (("config", "inject"), ["lock-two"], "config.inject[0] = 'lock-two': expected a catalogued bug"),
    # Both swap lock_two: only the second would have been on, the first reported as injected.
    (("config", "inject"), ["lock-two-unordered", "lock-two-check-late"],
     "config.inject = ['lock-two-unordered', 'lock-two-check-late']: expected bugs that replace different code "
     "(run these one at a time) (lock-two-unordered and lock-two-check-late both replace GranuleTable.lock_two"),
    (("config", "inject"), ["lock-two-unordered", "lock-two-unordered"],
     "config.inject = ['lock-two-unordered', 'lock-two-unordered']: expected each bug at most once"),
    (("config", "checkers"), ["lockdep", "bogus"], "config.checkers[1] = 'bogus': expected a checker: one of "
                                                   "'lockdep', 'ownership', 'invariants' or 'watchdog'"),
    # Switches: CPUs the run does not have, negative, fractional or string entries, steps out of order.
    (("switches",), [[0, 5]], "switches[0] = [0, 5]: expected a [step, cpu] pair whose cpu is one of the run's: an "
                              "integer in 0..1 (config.cpus = 2)"),
    (("switches",), [[0, 0], [3, -1]], "switches[1] = [3, -1]: expected a [step, cpu] pair whose cpu is one of "
                                       "the run's"),
    (("switches",), [[-1, 0]], "switches[0] = [-1, 0]: expected a [step, cpu] pair whose step is an integer >= 0"),
    (("switches",), [[0.5, 0]], "switches[0] = [0.5, 0]: expected a [step, cpu] pair whose step is an integer >= 0"),
    (("switches",), [["0", "0"]], "switches[0] = ['0', '0']: expected a [step, cpu] pair whose step is an integer"),
    (("switches",), [[0, 0], [4, 1], [3, 0]], "switches[2] = [3, 0]: expected a [step, cpu] pair whose step is "
                                              "greater than the previous pair's (4)"),
    (("switches",), [[0, 0, 1]], "switches[0] = [0, 0, 1]: expected a [step, cpu] pair"),
    (("switches",), [], "switches = []: expected a non-empty list of [step, cpu] pairs"),
]


@pytest.mark.parametrize("path, value, message", TAMPERED,
                         ids=[f"{'.'.join(map(str, p))}={'DELETE' if v is DELETE else v!r}" for p, v, _ in TAMPERED])
def test_a_tampered_schedule_file_is_a_usage_error(tmp_path: Path, path: tuple[str | int, ...], value: object,
                                                   message: str) -> None:
    """--replay of a schedule file with one value tampered: exit 2 with `FILE: field = value:
    expected ...` alone, without click's usage block (the invocation was right, the file's
    content was not, as for a bad workload or platform file), no traceback, and no run (so no
    machine)."""
    sched = tmp_path / "s.json"
    sched.write_text(json.dumps(_tampered(path, value)))
    res = CliRunner().invoke(stress, ["--replay", str(sched), "--seconds", "20"])
    assert res.exit_code == 2, (res.output, res.exception)
    assert res.output.startswith(f"Error: {sched}: {message}"), res.output
    assert "Traceback" not in res.output and "machine rmm-mp" not in res.output


@pytest.mark.parametrize("text, message", [
    ("{", "not a readable schedule file (Expecting property name"),
    ('{"format": "other"}', "not an rmm-mp-schedule file"),
], ids=["not-json", "not-a-schedule"])
def test_a_replay_file_that_is_no_schedule_file_is_an_error_without_the_usage_block(
        tmp_path: Path, text: str, message: str) -> None:
    """--replay of a file that is no JSON, or JSON of another format: exit 2 with the error
    naming the file alone. It came after click's usage block ("Usage: ... Try '... --help'"),
    which tells of a wrong invocation, where `rmm-mp run` of a bad workload file prints none.
    An option the replay would not use is still a usage error, with the block."""
    sched = tmp_path / "s.json"
    sched.write_text(text)
    res = CliRunner().invoke(stress, ["--replay", str(sched), "--seconds", "20"])
    assert res.exit_code == 2, (res.output, res.exception)
    assert res.output.startswith(f"Error: {sched}: {message}"), res.output
    sched.write_text(json.dumps(VALID))
    res = CliRunner().invoke(stress, ["--replay", str(sched), "--cpus", "3"])
    assert res.exit_code == 2 and res.output.startswith("Usage: "), res.output


def test_schedule_values_are_shown_briefly(tmp_path: Path) -> None:
    """A long list in an error is cut short rather than flooding the message."""
    with pytest.raises(ValueError) as caught:
        schedule_file.parse(_tampered(("switches",), {str(i): i for i in range(100)}), "f.json")
    shown = str(caught.value).split(": expected")[0]
    assert shown.startswith("f.json: switches = {'0': 0, '1': 1, ") and shown.endswith(" ...") and len(shown) < 110


def test_a_number_too_long_to_read_is_refused_with_the_file_named(tmp_path: Path) -> None:
    """An integer of more digits than Python converts is a ValueError of the JSON reader, not
    one of its decode errors: it is still an unreadable file, named."""
    sched = tmp_path / "s.json"
    sched.write_text(json.dumps(VALID).replace('"seed": 1', '"seed": ' + "9" * 5000))
    with pytest.raises(ValueError, match=re.escape(f"{sched}: not a readable schedule file (Exceeds the limit")):
        schedule_file.read(sched)


@pytest.mark.parametrize("value, message", [
    # An empty item used to be skipped: the run checked less than was asked for.
    ("lockdep,,ownership", "--checkers = 'lockdep,,ownership': expected a comma-separated subset of lockdep, "
                           "ownership, invariants, watchdog, 'all' or 'none' (item 2 is empty)"),
    ("lockdep,", "--checkers = 'lockdep,': expected a comma-separated subset"),
    # 'all' and 'none' are valid alone: combined, they used to be "unknown all, none".
    ("all,none", "--checkers = 'all,none': 'all' stands alone and cannot be combined with other names; expected a "
                 "comma-separated subset of lockdep, ownership, invariants, watchdog, 'all' or 'none'"),
    ("lockdep,none", "--checkers = 'lockdep,none': 'none' stands alone and cannot be combined with other names"),
    ("lockdep,bogus", "--checkers = 'lockdep,bogus': unknown bogus; expected a comma-separated subset"),
])
def test_bad_checkers_lists_are_usage_errors(value: str, message: str) -> None:
    """--checkers with an empty item, 'all' or 'none' among other names, or an unknown name:
    exit 2 naming the option and the value as typed, before any run."""
    res = CliRunner().invoke(stress, ["--checkers", value, "--seconds", "1"])
    assert res.exit_code == 2 and message in res.output, (res.output, res.exception)


@pytest.mark.parametrize("value", ["all", " all ", "none", " lockdep , ownership "])
def test_good_checkers_lists_get_to_the_run(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """What stays valid reaches the run with the checkers it names (spaces around names are fine)."""
    seen: list[tuple[str, ...]] = []

    def record(config: StressConfig, **kwargs: object) -> None:
        seen.append(config.checkers)
        raise SystemExit(0)
    monkeypatch.setattr(stress_cli, "run", record)
    res = CliRunner().invoke(stress, ["--checkers", value, "--seconds", "1"])
    assert res.exit_code == 0, res.output
    expected = {"all": ("lockdep", "ownership", "invariants", "watchdog"), "none": ()}
    assert seen == [expected.get(value.strip(), ("lockdep", "ownership"))]


@pytest.mark.parametrize("field, value, message", [
    ("seed", "1", f"seed = '1': expected a seed, an integer in 0..{U64:,}"),
    ("seed", -1, "seed = -1: expected a seed"),
    ("time_slice", 0, "time_slice = 0: expected a number of guest instructions per REC entry, an integer in "
                      "1..1,000,000,000"),
    ("steps", None, "steps = None: expected a step budget, an integer in 1..100,000,000"),
    ("cpus", True, "cpus = True: expected a number of CPU processes"),
    ("inject", "lock-two-unordered", "inject = 'lock-two-unordered': expected a tuple of bug names"),
    ("inject", ("lock-two-check-late", "lock-two-unordered"), "inject = ('lock-two-check-late', "
     "'lock-two-unordered'): lock-two-check-late and lock-two-unordered both replace GranuleTable.lock_two"),
    ("checkers", "lockdep", "checkers = 'lockdep': expected a tuple of checker names"),
    ("quiescent_every", "x", "quiescent_every = 'x': expected a number >= 0"),
    ("seconds", float("inf"), "seconds = inf: expected a duration in seconds, 0.000000001..86,400"),
    # At least a nanosecond, as `rmm-mp run`'s length (workload.spec.MIN_SECONDS); 0 < 1e-316 passed.
    ("seconds", 1e-316, "seconds = 1e-316: expected a duration in seconds, 0.000000001..86,400"),
    ("workload", ["tables"], "workload = ['tables']: expected one of mixed"),
    ("guests", "yes", "guests = 'yes': expected True or False"),
])
def test_stress_config_refuses_wrong_types(field: str, value: object, message: str) -> None:
    """StressConfig, what rmm_mp.stress.run takes, checks types as well as ranges: a wrong type
    used to get through and fail in the run after the machine was created (a seed of "1"), or
    raise a TypeError."""
    with pytest.raises(ValueError, match=re.escape(message)):
        StressConfig(**{field: value})


def test_a_nanosecond_is_the_shortest_stress_run() -> None:
    """The bound itself is a length StressConfig and --seconds take, as `rmm-mp run` takes it."""
    assert StressConfig(seconds=1e-9).seconds == 1e-9
    res = CliRunner().invoke(stress, ["--seconds", "0.000000001", "--list-bugs"])
    assert "is not in the range" not in res.output and "--list-bugs lists the catalog" in res.output, res.output


def test_an_unwritable_default_schedule_path_is_a_usage_error_before_the_run(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A deterministic run without --save-schedule writes its schedule, when it finds something,
    to stress-WORKLOAD-SCHEDULE-SEED-BUGS.schedule.json in the current directory: a path that cannot be
    written there (here a directory of that name) is refused before the run, as --save-schedule
    is, rather than a traceback after it with the schedule lost."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "stress-tables-random-0-lock-two-unordered.schedule.json").mkdir()
    res = CliRunner().invoke(stress, ["--inject", "lock-two-unordered", "--schedule", "random"])
    assert res.exit_code == 2, res.output
    assert "the schedule file (--save-schedule's default) = 'stress-tables-random-0-lock-two-unordered" \
           ".schedule.json': expected a file that can be written (it is a directory); name another with " \
           "--save-schedule" in res.output
    # Named with --save-schedule, or a free-running run (no schedule), the default is not used.
    res = CliRunner().invoke(stress, ["--inject", "lock-two-unordered", "--schedule", "random",
                                      "--save-schedule", "s.json"])
    assert "a run started" in str(res.exception), res.output
    res = CliRunner().invoke(stress, ["--inject", "lock-two-unordered"])
    assert "a run started" in str(res.exception), res.output


@pytest.mark.parametrize("option", ["--json", "--trace"])
def test_an_output_naming_the_replay_file_or_the_default_schedule_is_a_usage_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, option: str) -> None:
    """--json or --trace naming the --replay file would overwrite the recording with a report;
    naming the default schedule path, the schedule (or the report) would be lost when the run
    finds something. Both are refused before the run and the file is left as it was."""
    monkeypatch.chdir(tmp_path)
    sched = tmp_path / "s.json"
    sched.write_text(json.dumps(VALID))
    res = CliRunner().invoke(stress, ["--replay", str(sched), option, "./s.json"])
    assert res.exit_code == 2, res.output
    assert f"{option} = './s.json': expected a file of its own (it is the --replay file, which the run reads)" \
           in res.output
    assert json.loads(sched.read_text()) == VALID
    res = CliRunner().invoke(stress, ["--schedule", "random", "--seed", "3", option,
                                      "stress-mixed-random-3.schedule.json"])
    assert res.exit_code == 2, res.output
    assert f"{option} = 'stress-mixed-random-3.schedule.json': expected a file of its own (a run that finds " \
           "something writes its schedule there; name another with --save-schedule)" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json"]


def test_a_pct_depth_beyond_the_step_budget_is_refused() -> None:
    """PCT draws d - 1 distinct change points among the budget's steps: `--schedule pct
    --steps 1 --pct-depth 3` used to draw forever, with the machine created and Ctrl-C
    ignored. Refused before the run (exit 2), and by StressConfig; d - 1 == steps is fine."""
    res = CliRunner().invoke(stress, ["--schedule", "pct", "--steps", "1", "--pct-depth", "3"])
    assert res.exit_code == 2, res.output
    assert "--pct-depth = 3 with --steps = 1: PCT needs d - 1 = 2 distinct priority change points among the 1 " \
           "step(s) of the budget; expected a depth of at most steps + 1 (2)" in res.output
    with pytest.raises(ValueError, match=re.escape("pct_depth = 5: PCT needs d - 1 = 4")):
        StressConfig(schedule="pct", steps=3, pct_depth=5)
    StressConfig(schedule="pct", steps=2, pct_depth=3)
    StressConfig(schedule="random", steps=1, pct_depth=64)       # the depth is PCT's alone


@pytest.mark.parametrize("value, message", [
    ("inf", "--quiescent-every = inf: expected a finite number >= 0 (0 for no checks)"),
    ("nan", "--quiescent-every = nan: expected a finite number >= 0 (0 for no checks)"),
    ("1e20", "--quiescent-every = 1e20: a deterministic run checks every N steps; expected at most "
             f"{U64} steps (0 for no checks)"),
])
def test_a_quiescent_interval_past_a_u64_is_refused(value: str, message: str) -> None:
    """A deterministic run's interval goes to a u64 of the machine: 1e20 raised OverflowError
    there (a traceback, with the machine created), inf raised it in the check, and nan's error
    did not name the option. Each is a usage error now; StressConfig refuses them as well."""
    res = CliRunner().invoke(stress, ["--schedule", "random", "--steps", "50", "--quiescent-every", value])
    assert res.exit_code == 2, (res.output, res.exception)
    assert f"Error: {message}" in res.output, res.output
    with pytest.raises(ValueError, match="quiescent_every"):
        StressConfig(schedule="random", quiescent_every=float(value))
    StressConfig(schedule="random", quiescent_every=U64)


@pytest.mark.parametrize("value, steps", [(str(U64), U64), ("9007199254740993", 2**53 + 1), (" 2001 ", 2001),
                                          ("+7", 7)])
def test_a_quiescent_interval_in_steps_is_read_exactly(monkeypatch: pytest.MonkeyPatch, value: str, steps: int) -> None:
    """A deterministic run's interval is a whole number of steps, up to a u64: typed as an
    integer it reaches the run as that integer. It was read as a float, so the largest one the
    error names (2^64 - 1) was refused ("--quiescent-every = 1.84467e+19: ... expected at most
    18446744073709551615 steps"), and 2^53 + 1 became 2^53 without a word."""
    seen: list[float] = []

    def record(config: StressConfig, **kwargs: object) -> None:
        seen.append(config.quiescent_every)
        raise SystemExit(0)
    monkeypatch.setattr(stress_cli, "run", record)
    res = CliRunner().invoke(stress, ["--schedule", "random", "--steps", "50", "--quiescent-every", value])
    assert res.exit_code == 0, (res.output, res.exception)
    assert seen == [steps] and type(seen[0]) is int


def test_a_quiescent_interval_past_a_u64_is_named_as_typed() -> None:
    """2^64 steps typed as an integer is refused showing that integer, not its float
    (1.84467e+19, which reads as the largest value the same message allows)."""
    res = CliRunner().invoke(stress, ["--schedule", "random", "--steps", "50", "--quiescent-every", str(U64 + 1)])
    assert res.exit_code == 2, (res.output, res.exception)
    assert (f"Error: --quiescent-every = {U64 + 1}: a deterministic run checks every N steps; expected at most "
            f"{U64} steps (0 for no checks)") in res.output, res.output


@pytest.mark.parametrize("args, message", [
    (["--seconds", "0"], "Invalid value for '--seconds': 0 is not in the range 0.000000001..86,400."),
    (["--seconds", "1e-400"], "Invalid value for '--seconds': 1e-400 is not in the range 0.000000001..86,400."),
    # Under a nanosecond, the shortest `rmm-mp run --seconds` takes too: it was accepted.
    (["--seconds", "1e-316"], "Invalid value for '--seconds': 1e-316 is not in the range 0.000000001..86,400."),
    (["--seconds", "9.99e-10"], "Invalid value for '--seconds': 9.99e-10 is not in the range 0.000000001..86,400."),
    (["--seconds", "1e999"], "Invalid value for '--seconds': 1e999 is not in the range 0.000000001..86,400."),
    (["--seconds", "ten"], "Invalid value for '--seconds': 'ten' is not a number of seconds; expected 0.000000001..86,400"),
    (["--quiescent-every", "1e999"], "--quiescent-every = 1e999: expected a finite number >= 0 (0 for no checks)"),
    (["--schedule", "random", "--quiescent-every", "2.50"],
     "--quiescent-every = 2.50: a deterministic run checks every N steps; expected a whole number of steps"),
])
def test_a_refused_duration_or_interval_is_named_as_typed(args: list[str], message: str) -> None:
    """--seconds and --quiescent-every refused: the message names the option, the value as
    typed and what was expected. click's FloatRange showed the float it made of the text
    (`--seconds 0` as "0.0", `1e-400` as "0.0", `1e999` as "inf"), and a value that is no number
    as "not a valid float range" with no range; the configuration's check showed
    `--quiescent-every 1e999` as "inf" (and, in a deterministic run, `1e20` as "1e+20":
    test_a_quiescent_interval_past_a_u64_is_refused)."""
    res = CliRunner().invoke(stress, args)
    assert res.exit_code == 2, (res.output, res.exception)
    assert f"Error: {message}" in " ".join(res.output.split()), res.output
    assert "machine rmm-mp" not in res.output


@pytest.mark.parametrize("args", [["--seconds", "nan"], ["--schedule", "random", "--seconds", "nan"]])
def test_a_nan_duration_is_refused_naming_the_option(args: list[str]) -> None:
    """click's FloatRange lets `--seconds nan` through (no comparison with nan is true):
    StressConfig refused it, but as "seconds = nan", not the option typed. It is a usage error
    naming --seconds, its value and the range expected, before a machine is created, worded as
    for the other NaN-refusing options (clitypes.FloatRange: check --wait, explore --timeout)."""
    res = CliRunner().invoke(stress, args)
    assert res.exit_code == 2, (res.output, res.exception)
    assert "Invalid value for '--seconds': 'nan' is not a number of seconds; expected 0.000000001..86,400" in res.output, \
        res.output
    assert "machine rmm-mp" not in res.output


def test_a_schedule_file_over_its_bound_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    """A --replay file of more than schedule.MAX_FILE (64 MiB) bytes is a usage error naming the
    file and the bound, read no further (a sparse file makes it cheap); one of exactly the bound
    (a valid schedule padded with JSON whitespace) is read."""
    sched = tmp_path / "s.json"
    with open(sched, "wb") as big:
        big.truncate(schedule_file.MAX_FILE + 1)
    res = CliRunner().invoke(stress, ["--replay", str(sched), "--seconds", "20"])
    assert res.exit_code == 2, (res.output, res.exception)
    assert res.output.startswith(f"Error: {sched}: (file) = 'more than 67,108,864 bytes': expected a schedule file "
                                 "of at most 67,108,864 bytes (64 MiB)"), res.output
    assert "Traceback" not in res.output and "machine rmm-mp" not in res.output
    text = json.dumps(VALID)
    sched.write_text(text + " " * (schedule_file.MAX_FILE - len(text)))
    assert schedule_file.read(sched).steps == VALID["result"]["steps"]


def test_a_schedule_a_replay_would_refuse_is_not_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """schedule.write refuses a schedule larger than a replay reads (MAX_FILE, lowered here to
    the size of a small run's file and one byte less): the file it writes at the bound reads
    back, and one byte over it is a ValueError ("not written", which `stress` lists among the
    files not written) and no file."""
    from rmm_mp.stress.report import StressReport
    report = StressReport(StressConfig(schedule="random", steps=10), (), "budget", 0.1, {0: 2, 1: 2}, steps=4,
                          switches=2, schedule=((0, 0), (3, 1)))
    size = len(json.dumps(schedule_file.to_json(report), indent=1)) + 1
    monkeypatch.setattr(schedule_file, "MAX_FILE", size)
    path = schedule_file.write(report, tmp_path / "fits.json")
    assert path.stat().st_size == size and schedule_file.read(path).steps == 4
    monkeypatch.setattr(schedule_file, "MAX_FILE", size - 1)
    with pytest.raises(ValueError, match=f"^not written: {size:,} bytes, more than the {size - 1:,} "):
        schedule_file.write(report, tmp_path / "over.json")
    assert not (tmp_path / "over.json").exists()


def test_runs_that_differ_in_schedule_kind_or_bugs_save_their_schedules_apart() -> None:
    """Deterministic runs of one workload and seed that differ in their schedule kind or in the
    bugs injected write their schedules to different default files. Named by workload and seed
    alone, a pct run overwrote the random run's schedule, and one bug's run another's, with no
    word said."""
    from rmm_mp.stress.cli import default_schedule_path
    made = [StressConfig(workload="tables", schedule=kind, seed=0, inject=bugs)
            for kind in ("random", "pct") for bugs in ((), ("lock-two-unordered",), ("walk-unlock-parent-first",))]
    names = [default_schedule_path(config) for config in made]
    assert len(set(names)) == len(names), names
    assert names[1] == "stress-tables-random-0-lock-two-unordered.schedule.json"


def test_the_default_schedule_file_of_many_bugs_has_a_name_a_file_system_takes(tmp_path: Path) -> None:
    """Nine bugs that replace different code, injected together: their names joined passed a
    file name's 255 bytes, and the run was refused before it started ("File name too long";
    name another with --save-schedule). The default name now holds their count and a digest
    of their names instead: short enough to create, and apart from another set's."""
    from rmm_mp.stress.cli import default_schedule_path
    combinable = ("rtt-create-parent-released-early", "rtt-destroy-refcount-unlocked", "data-destroy-wipe-after-rtt",
                  "map-unprotected-leaks-lock", "delegate-state-before-pas", "data-create-copy-under-rd",
                  "data-create-rtt-before-rd", "rec-destroy-aux-after-rec", "walk-unlock-parent-first")
    nine = default_schedule_path(StressConfig(workload="tables", schedule="random", seed=0, inject=combinable))
    eight = default_schedule_path(StressConfig(workload="tables", schedule="random", seed=0, inject=combinable[1:]))
    assert len(nine.encode()) <= 255 and nine != eight, (nine, eight)
    assert nine.startswith("stress-tables-random-0-9-bugs-") and nine.endswith(".schedule.json"), nine
    (tmp_path / nine).write_text("{}")


@pytest.mark.parametrize("command", ["stress", "explore"])
def test_a_misspelt_bug_is_offered_the_bug_meant(command: str) -> None:
    """`--inject lock-two-unorderd` is refused naming the bug closest to it and where the
    catalog is listed, and --help shows `--inject BUG`: click listed all 15 names in the error
    and on one 600-column line of --help."""
    from rmm_mp.cli import main
    res = CliRunner().invoke(main, [command, "--inject", "lock-two-unorderd"])
    assert res.exit_code == 2, res.output
    assert "'lock-two-unorderd' is no catalogued bug; did you mean 'lock-two-unordered'? " \
           "`rmm-mp stress --list-bugs` lists them" in res.output
    assert "walk-unlock-parent-first" not in res.output
    shown = CliRunner().invoke(main, [command, "--help"], terminal_width=80)
    assert "--inject BUG" in shown.output and "walk-unlock-parent-first" not in shown.output
    assert CliRunner().invoke(main, [command, "--inject", "zzz"]).output.count("did you mean") == 0


def test_a_bug_typed_in_capitals_is_refused_with_its_name() -> None:
    """`--inject LOCK-TWO-UNORDERED`: refused, as click.Choice refused it (names match exactly),
    but offered 'lock-two-unordered'. The suggestion compared the name as typed, close to none,
    so the error named no bug at all, where click.Choice's had listed them all."""
    from rmm_mp.cli import main
    res = CliRunner().invoke(main, ["stress", "--inject", "LOCK-TWO-UNORDERED"])
    assert res.exit_code == 2, res.output
    assert "'LOCK-TWO-UNORDERED' is no catalogued bug; did you mean 'lock-two-unordered'?" in res.output, res.output
