"""Odd values for every numeric and path option of each subcommand: 0, -1, past 64 bits, not a
number, an empty string, a directory, a path in a place nothing can be written (/proc) and one
that does not exist. Each is a usage error (exit 2) naming the option and the value as typed,
with no traceback, no shared memory and no file left behind. test_run.py, test_cli.py,
stresstool/test_stress_cli.py and attest/test_attest_cli.py test the values each option has a
story for; this is the sweep over the classes of bad value, in-process (click's runner), none
of which may reach a CPU."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from rmm_mp.cli import main
from rmm_mp.hw import segment

U64 = 2**64 - 1
RUN = ["run", "quickstart", "--cpus", "1", "--iterations", "3", "--no-progress"]
SHOW = ["workloads", "show", "quickstart"]
STRESS = ["stress", "lifecycle", "--schedule", "random", "--steps", "50"]

# (id, arguments, what the message must hold: the option and the value as typed)
CASES = [
    # run and workloads show: numbers out of range, past 64 bits, and not numbers at all
    ("run-cpus-0", [*RUN, "--cpus", "0"], "--cpus = 0: expected"),
    ("run-cpus-minus-1", [*RUN, "--cpus", "-1"], "--cpus = -1: expected"),
    # --seconds as typed: 0, -1 and 1e400 were shown as the floats made of them (0.0, -1.0, inf).
    ("run-seconds-0", ["run", "quickstart", "--seconds", "0"], "--seconds = 0: expected"),
    ("run-seconds-minus-1", ["run", "quickstart", "--seconds", "-1"], "--seconds = -1: expected"),
    ("run-seconds-inf", ["run", "quickstart", "--seconds", "inf"], "--seconds = inf: expected"),
    ("run-seconds-past-a-float", ["run", "quickstart", "--seconds", "1e400"], "--seconds = 1e400: expected"),
    ("run-seconds-with-a-trailing-zero", ["run", "quickstart", "--seconds", "-0.50"], "--seconds = -0.50: expected"),
    ("run-iterations-0", ["run", "quickstart", "--iterations", "0"], "--iterations = 0: expected"),
    ("run-iterations-past-u64", ["run", "quickstart", "--iterations", str(U64 + 1)],
     f"--iterations = {U64 + 1} (0x10000000000000000): expected"),
    ("run-seed-minus-1", [*RUN, "--seed", "-1"], "--seed = -1: expected"),
    ("run-seed-past-u64", [*RUN, "--seed", str(U64 + 1)], f"--seed = {U64 + 1} (0x10000000000000000): expected"),
    ("run-cpus-not-a-number", [*RUN, "--cpus", "four"], "Invalid value for '--cpus': 'four' is not a valid integer"),
    ("run-seed-empty", [*RUN, "--seed", ""], "Invalid value for '--seed': '' is not a valid integer"),
    ("run-seconds-hex", ["run", "quickstart", "--seconds", "0x10"], "Invalid value for '--seconds': '0x10'"),
    ("show-iterations-minus-1", [*SHOW, "--iterations", "-1"], "--iterations = -1: expected"),
    ("show-seconds-0", [*SHOW, "--seconds", "0"], "--seconds = 0: expected"),
    # Under a nanosecond, the step a run's time is counted in: 1e-316 (a subnormal) ran with no call
    # made; 1e-9 split over churn's four phases left each none.
    ("run-seconds-subnormal", ["run", "quickstart", "--seconds", "1e-316"],
     "--seconds = 1e-316: expected a duration in seconds (a run counts whole nanoseconds), a number of at least "
     "0.000000001 and at most 604,800"),
    ("show-seconds-under-a-nanosecond", [*SHOW, "--seconds", "0.0000000009"],
     "--seconds = 0.0000000009: expected a duration in seconds"),
    ("run-seconds-a-phase-under-a-nanosecond", ["run", "churn", "--seconds", "2e-9"],
     "--seconds = 2e-9: expected a duration in seconds (a run counts whole nanoseconds) that gives each of the "
     "file's 4 phases at least 0.000000001 s (phase[0] 'tables' would last 6e-10 s)"),
    ("show-cpus-past-u64", [*SHOW, "--cpus", str(U64 + 1)], f"--cpus = {U64 + 1} (0x10000000000000000): expected"),
    # numbers in digits other than ASCII's, which Python's int() and float() read (U+FF14 is a
    # full-width 4, U+0663 an Arabic-Indic 3, U+0967 a Devanagari 1): `--cpus ４` ran on 4 CPUs
    ("run-cpus-full-width", [*RUN, "--cpus", "\uff14"], "Invalid value for '--cpus': '\uff14': expected an integer "
                                                         "in ASCII (digits 0-9), but '\uff14' (U+FF14 FULLWIDTH DIGIT "
                                                         "FOUR) is not ASCII"),
    ("run-seed-arabic-indic", [*RUN, "--seed", "\u0663"], "Invalid value for '--seed': '\u0663': expected an integer"),
    ("run-iterations-devanagari", ["run", "quickstart", "--iterations", "1\u0967"],
     "Invalid value for '--iterations': '1\u0967': expected an integer"),
    ("run-cpus-no-break-space", [*RUN, "--cpus", "\u00a02"], "Invalid value for '--cpus': '\\xa02': expected an "
                                                              "integer in ASCII (digits 0-9), but '\\xa0' (U+00A0 "
                                                              "NO-BREAK SPACE) is not ASCII"),
    ("run-seconds-full-width", ["run", "quickstart", "--seconds", "\uff17"],
     "Invalid value for '--seconds': '\uff17': expected a number in ASCII"),
    ("show-cpus-full-width", [*SHOW, "--cpus", "\uff12"], "Invalid value for '--cpus': '\uff12': expected an integer"),
    ("show-seconds-arabic-indic", [*SHOW, "--seconds", "\u0663.5"], "Invalid value for '--seconds': '\u0663.5'"),
    ("stress-cpus-full-width", [*STRESS, "--cpus", "\uff14"], "Invalid value for '--cpus': '\uff14': expected an "
                                                                "integer in ASCII"),
    ("stress-seed-arabic-indic", [*STRESS, "--seed", "\u0663"], "Invalid value for '--seed': '\u0663': expected an "
                                                                  "integer in ASCII"),
    ("stress-steps-devanagari", [*STRESS, "--steps", "1\u0967"], "Invalid value for '--steps': '1\u0967': expected "
                                                                  "an integer in ASCII"),
    ("stress-pct-depth-full-width", [*STRESS, "--pct-depth", "\uff13"], "Invalid value for '--pct-depth': '\uff13': "
                                                                       "expected an integer in ASCII"),
    ("stress-quiescent-every-full-width", [*STRESS, "--quiescent-every", "\uff15"],
     "Invalid value for '--quiescent-every': '\uff15': expected a number in ASCII"),
    ("check-wait-full-width", ["check", "rmm-mp-1-0badc0de", "--wait", "\uff14"],
     "Invalid value for '--wait': '\uff14': expected a number in ASCII"),
    ("explore-timeout-arabic-indic", ["explore", "--timeout", "\u0663"],
     "Invalid value for '--timeout': '\u0663': expected a number in ASCII"),
    # numbers with an underscore, which Python's int() and float() skip between two digits:
    # `--cpus 1_0` ran on 10 CPUs, and `--quiescent-every 1_0` was a float where `10` was steps
    ("run-cpus-underscore", [*RUN, "--cpus", "1_0"], "Invalid value for '--cpus': '1_0': expected an integer in "
                                                     "digits without '_' (write 10)"),
    ("show-seconds-underscore", [*SHOW, "--seconds", "1_0.5"], "Invalid value for '--seconds': '1_0.5': expected a "
                                                              "number in digits without '_' (write 10.5)"),
    ("stress-steps-underscore", [*STRESS, "--steps", "20_000"], "Invalid value for '--steps': '20_000': expected an "
                                                               "integer in digits without '_' (write 20000)"),
    ("stress-quiescent-every-underscore", [*STRESS, "--quiescent-every", "1_0"],
     "Invalid value for '--quiescent-every': '1_0': expected a number in digits without '_'"),
    ("check-wait-underscore", ["check", "rmm-mp-1-0badc0de", "--wait", "1_0"],
     "Invalid value for '--wait': '1_0': expected a number in digits without '_'"),
    ("explore-timeout-underscore", ["explore", "--timeout", "1_0"],
     "Invalid value for '--timeout': '1_0': expected a number in digits without '_'"),
    # numbers of 5,000 digits: past the 4,300 Python's int() converts, refused as an integer was
    # ("'999...' is not a valid integer", all 5,000 digits shown), and a float's shown whole
    ("run-seed-5000-digits", [*RUN, "--seed", "9" * 5000], "Invalid value for '--seed': " + "9" * 120 + "... (5,000 "
                                                           "characters in all): expected an integer of at most 4300 "
                                                           "digits"),
    ("stress-cpus-5000-digits", [*STRESS, "--cpus", "9" * 5000], "Invalid value for '--cpus': " + "9" * 120 + "... "
                                                                 "(5,000 characters in all): expected an integer of at "
                                                                 "most 4300 digits"),
    ("stress-seconds-5000-digits", [*STRESS, "--seconds", "9" * 5000],
     "Invalid value for '--seconds': " + "9" * 120 + "... (5,000 characters in all) is not in the range 0.000000001..86,400"),
    ("stress-quiescent-every-5000-digits", [*STRESS, "--quiescent-every", "9" * 5000],
     "--quiescent-every = " + "9" * 120 + "... (5,000 characters in all): expected a finite number >= 0"),
    # run: paths that are empty, a directory, unwritable or missing
    ("run-json-empty", [*RUN, "--json", ""], "--json = '': expected a file that can be written"),
    ("run-csv-directory", [*RUN, "--csv", "{tmp}"], "Invalid value for '--csv': File '{tmp}' is a directory"),
    ("run-plot-in-proc", [*RUN, "--plot", "/proc/rmm-mp.png"], "--plot = '/proc/rmm-mp.png': expected a file that "
                                                               "can be written"),
    ("run-trace-empty", [*RUN, "--trace", ""], "--trace = '': expected a file that can be written"),
    ("run-save-tokens-empty", [*RUN, "--save-tokens", ""], "--save-tokens = '': expected a directory that exists or "
                                                           "can be created"),
    ("run-save-tokens-in-proc", [*RUN, "--save-tokens", "/proc/rmm-mp-tokens"],
     "--save-tokens = '/proc/rmm-mp-tokens': expected a directory that exists or can be created"),
    ("run-save-tokens-a-file", [*RUN, "--save-tokens", "/dev/null"],
     "--save-tokens = '/dev/null': expected a directory that exists or can be created"),
    ("run-platform-empty", [*RUN, "--platform", ""], "--platform = '': expected a bundled platform"),
    ("run-platform-directory", [*RUN, "--platform", "{tmp}"], "--platform = '{tmp}': expected a regular platform file "
                                                              "that exists (it is a directory)"),
    ("run-platform-missing", [*RUN, "--platform", "{tmp}/no.toml"], "--platform = '{tmp}/no.toml': expected a regular "
                                                                    "platform file that exists (no such file)"),
    ("show-workload-empty", ["workloads", "show", ""], "WORKLOAD = '': expected a bundled workload"),
    ("platform-show-empty", ["platform", "show", ""], "NAME = '': expected a bundled platform"),
    ("platform-show-missing", ["platform", "show", "/proc/no.toml"], "NAME = '/proc/no.toml': expected a regular "
                                                                     "platform file that exists (no such file)"),
    # stress: numbers below, above and past 64 bits, and paths
    ("stress-cpus-0", [*STRESS, "--cpus", "0"], "Invalid value for '--cpus': 0 is not in the range 2..64"),
    ("stress-seed-past-u64", [*STRESS, "--seed", str(U64 + 1)],
     f"Invalid value for '--seed': {U64 + 1} is not in the range 0..{U64:,}"),
    ("stress-steps-0", ["stress", "lifecycle", "--schedule", "random", "--steps", "0"],
     "Invalid value for '--steps': 0 is not in the range 1..100,000,000"),
    ("stress-steps-not-a-number", ["stress", "lifecycle", "--schedule", "random", "--steps", "1.5"],
     "Invalid value for '--steps': '1.5': expected an integer in digits"),
    # a float where an integer is taken: click said "'1e5' is not a valid integer", naming nothing to write
    ("stress-steps-exponent", ["stress", "lifecycle", "--schedule", "random", "--steps", "1e5"],
     "Invalid value for '--steps': '1e5': expected an integer in digits (write 100000)"),
    ("run-iterations-exponent", ["run", "quickstart", "--iterations", "1e5"],
     "Invalid value for '--iterations': '1e5': expected an integer in digits (write 100000)"),
    # run's integers have their range checked by the command; a float's hint still names none below it
    ("run-cpus-negative-exponent", [*RUN, "--cpus", "-1e3"], "Invalid value for '--cpus': '-1e3': expected an "
                                                             "integer in digits (it is -1000, outside 1..64)"),
    ("run-cpus-exponent-past-any-platform", [*RUN, "--cpus", "1e3"], "Invalid value for '--cpus': '1e3': expected "
                                                                     "an integer in digits (it is 1000, outside 1..64)"),
    ("run-cpus-underscore-zero", [*RUN, "--cpus", "0_0"], "Invalid value for '--cpus': '0_0': expected an integer "
                                                          "in digits without '_' (it is 0, outside 1..64)"),
    # an underscore and more digits than int() converts: int() raised out of the hint (a traceback)
    ("run-cpus-underscore-past-int-digits", [*RUN, "--cpus", "1_" + "0" * 5000], "expected an integer in digits "
                                                                                  "without '_'"),
    ("stress-steps-underscore-past-int-digits", [*STRESS, "--steps", "1_" + "0" * 5000], "expected an integer in "
                                                                                         "digits without '_'"),
    ("run-seed-zero-exponent", [*RUN, "--seed", "0e0"], "Invalid value for '--seed': '0e0': expected an integer in "
                                                        "digits (write 0)"),
    ("run-cpus-point-zero", [*RUN, "--cpus", "2.0"], "Invalid value for '--cpus': '2.0': expected an integer in "
                                                     "digits (write 2)"),
    ("run-seed-past-u64-exponent", [*RUN, "--seed", "1e30"], "Invalid value for '--seed': '1e30': expected an "
                                                              "integer in digits\n"),
    # the integer named is one the option takes, or it is said to be outside the range: "write -1000" for --steps
    # and "write 10.0" for 1_0.0 named a number refused in turn
    ("stress-cpus-exponent-outside", ["stress", "lifecycle", "--schedule", "random", "--cpus", "1e5"],
     "Invalid value for '--cpus': '1e5': expected an integer in digits (it is 100000, outside 2..64)\n"),
    ("stress-steps-negative-exponent", ["stress", "lifecycle", "--schedule", "random", "--steps", "-1e3"],
     "Invalid value for '--steps': '-1e3': expected an integer in digits (it is -1000, outside 1..100,000,000)\n"),
    ("stress-pct-depth-underscore-outside", ["stress", "lifecycle", "--schedule", "pct", "--pct-depth", "1_000"],
     "Invalid value for '--pct-depth': '1_000': expected an integer in digits without '_' (it is 1000, outside "
     "1..64)\n"),
    ("run-cpus-underscore-float", [*RUN, "--cpus", "1_0.0"], "Invalid value for '--cpus': '1_0.0': expected an "
                                                             "integer in digits without '_' (write 10)\n"),
    # 1e400 is a number, past a float's range: not click's "is not a valid integer range"
    ("stress-seed-exponent-past-float", ["stress", "lifecycle", "--schedule", "random", "--seed", "1e400"],
     "Invalid value for '--seed': '1e400': expected an integer in digits\n"),
    ("stress-pct-depth-0", ["stress", "lifecycle", "--schedule", "pct", "--pct-depth", "0"],
     "Invalid value for '--pct-depth': 0 is not in the range 1..64"),
    ("stress-seconds-minus-1", ["stress", "lifecycle", "--seconds", "-1"],
     "Invalid value for '--seconds': -1 is not in the range 0.000000001..86,400"),
    ("stress-seconds-empty", ["stress", "lifecycle", "--seconds", ""], "Invalid value for '--seconds': ''"),
    ("stress-replay-directory", ["stress", "--replay", "{tmp}"], "Invalid value for '--replay': File '{tmp}' is a "
                                                                 "directory"),
    ("stress-replay-missing", ["stress", "--replay", "{tmp}/no.json"], "Invalid value for '--replay': File "
                                                                       "'{tmp}/no.json' does not exist"),
    ("stress-json-in-proc", [*STRESS, "--json", "/proc/rmm-mp.json"], "--json = '/proc/rmm-mp.json': expected a file "
                                                                      "that can be written"),
    ("stress-trace-empty", [*STRESS, "--trace", ""], "--trace = '': expected a file that can be written"),
    ("stress-save-schedule-directory", [*STRESS, "--save-schedule", "{tmp}"],
     "Invalid value for '--save-schedule': File '{tmp}' is a directory"),
    # check, explore: seconds out of range, and their JSON paths
    ("check-wait-minus-1", ["check", "rmm-mp-1-0badc0de", "--wait", "-1"],
     "Invalid value for '--wait': -1 is not in the range x>=0"),
    ("check-json-in-proc", ["check", "rmm-mp-1-0badc0de", "--json", "/proc/rmm-mp.json"],
     "--json = '/proc/rmm-mp.json': expected a file that can be written"),
    ("check-json-directory", ["check", "rmm-mp-1-0badc0de", "--json", "{tmp}"],
     "Invalid value for '--json': File '{tmp}' is a directory"),
    ("explore-timeout-0", ["explore", "--timeout", "0"], "Invalid value for '--timeout': 0 is not in the range "
                                                         "0.1..3,600"),
    ("explore-timeout-past-a-float", ["explore", "--timeout", "1e400"], "Invalid value for '--timeout': 1e400 is not "
                                                                        "in the range 0.1..3,600"),
    ("explore-json-empty", ["explore", "--json", ""], "--json = '': expected a file that can be written"),
    # '-', which click's convention reads as standard output: these options take paths, and '-' was
    # written as a file (or directory) named '-' in the working directory, so that `--json - |
    # python -m json.tool` got the text report and the JSON went to a file nobody looked for
    ("run-json-dash", [*RUN, "--json", "-"], "--json = '-': expected a file path; '-' is not standard output here"),
    ("run-csv-dash", [*RUN, "--csv", "-"], "--csv = '-': expected a file path; '-' is not standard output here"),
    ("run-save-tokens-dash", [*RUN, "--save-tokens", "-"], "--save-tokens = '-': expected a directory path; '-' is "
                                                           "not standard output here"),
    ("stress-json-dash", [*STRESS, "--json", "-"], "--json = '-': expected a file path; '-' is not standard output"),
    ("stress-save-schedule-dash", [*STRESS, "--save-schedule", "-"], "--save-schedule = '-': expected a file path"),
    ("check-json-dash", ["check", "rmm-mp-1-0badc0de", "--json", "-"], "--json = '-': expected a file path"),
    ("explore-json-dash", ["explore", "--json", "-"], "--json = '-': expected a file path"),
    # '-' twice: compared as paths first, it was "--csv = '-': expected a file of its own (--json
    # writes it too)", which said nothing of '-'; and /dev/stdout puts the JSON among the text
    # (`run` writes its files before its report), not "after the text" as the message said
    ("run-json-csv-dash", [*RUN, "--json", "-", "--csv", "-"],
     "--json = '-': expected a file path; '-' is not standard output here (name /dev/stdout to write it to "
     "standard output too, with the text report, or ./- for a file named '-')"),
    ("stress-trace-json-dash", [*STRESS, "--trace", "-", "--json", "-"], "--trace = '-': expected a file path"),
    # attest: a directory or nothing for a file, an empty hex value
    ("attest-token-directory", ["attest", "inspect", "{tmp}"], "Invalid value for 'TOKEN': File '{tmp}' is a "
                                                               "directory"),
    ("attest-token-empty", ["attest", "verify", ""], "Invalid value for 'TOKEN': File '' does not exist"),
    ("attest-key-directory", ["attest", "verify", "/etc/hostname", "--platform-key", "{tmp}"],
     "Invalid value for '--platform-key': File '{tmp}' is a directory"),
    ("attest-challenge-empty", ["attest", "verify", "/etc/hostname", "--challenge", ""],
     "Invalid value for '--challenge': '' is empty; expected"),
]


def _no_segments_of(pid: int) -> bool:
    return not [m for m in segment.list_machines() if m.creator_pid == pid]


@pytest.mark.parametrize("args, shown", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_an_odd_option_value_is_a_usage_error_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       args: list[str], shown: str) -> None:
    """One odd value (0, -1, past 64 bits, not a number, empty, a directory, a path under /proc
    or one that does not exist) for one option: exit 2, the message names the option and the
    value as typed, no traceback; nothing is created in the working directory and no shared
    memory is left."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, (result.output, result.exception)
    assert shown.replace("{tmp}", str(tmp_path)) in result.output, result.output
    assert "Traceback" not in result.output
    assert list(work.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["work"]
    assert _no_segments_of(os.getpid())


LONG = "x" * 5000


@pytest.mark.parametrize("args", [
    ["stress", LONG], ["stress", "--schedule", LONG], ["stress", "--inject", LONG], ["stress", "--checkers", LONG],
    ["explore", LONG], ["explore", "--inject", LONG], ["check", LONG], ["check", "rmm-mp-" + LONG],
    ["check", "rmm-mp-" + "1" * 5000 + "-0a1b2c3d.ctl"], [LONG], ["platform", LONG], ["attest", LONG],
    ["workloads", LONG], ["stress", "--" + LONG], ["--" + LONG], ["attest", "--" + LONG + "=1"],
    ["platform", "show", "fvp", LONG], ["attest", "inspect", "/tmp/" + LONG], ["stress", "--replay", "/tmp/" + LONG],
    ["check", "rmm-mp-1-0badc0de", "--json", "/" + LONG], ["run", "quickstart", "--cpus", LONG],
    ["run", "--seed=" + LONG, "quickstart"], ["stress", "--cpus", LONG], ["explore", "--timeout", LONG]],
    ids=["stress-workload", "stress-schedule", "stress-inject", "stress-checkers", "explore-pair", "explore-inject",
         "check-name", "check-prefixed-name", "check-segment-file-name", "command", "platform-command",
         "attest-command", "workloads-command", "stress-unknown-option", "rmm-mp-unknown-option",
         "attest-unknown-option-with-a-value", "platform-show-extra-argument", "attest-inspect-missing-token",
         "stress-replay-missing", "check-json-in-a-missing-directory", "run-cpus-not-an-integer",
         "run-seed-not-an-integer-after-equals", "stress-cpus-not-an-integer", "explore-timeout-not-a-number"])
def test_a_long_word_is_refused_abbreviated(args: list[str]) -> None:
    """A 5,000-character word where a name is expected (a stress workload, schedule, bug or
    checker, an explore pair, a machine name, a segment's file name given as one, whose refusal
    names the machine too, a command of rmm-mp or of one of its groups) is refused with exit 2
    showing its start and its length, as a long number or a file's long value is: these
    refusals printed it whole (5,000 characters, twice for --checkers and for the segment's
    file name, whose machine name was still shown whole; click's "No such command"). So is
    such a word as an unknown option (of a command or a group, alone or with `=value`), an extra
    argument, a path click.Path refuses, or a value click's INT or FLOAT refuses (as --NAME or
    --NAME=VALUE): click's own messages named it whole (clitypes.Command)."""
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "characters in all)" in result.output, result.output[-400:]
    assert len(result.output) < 1500, len(result.output)


@pytest.mark.parametrize("args, shown", [
    (["stress", "lifecycle", "a\x1bcb"], 'Got unexpected extra argument ("a\\u001Bcb")'),
    (["platform", "show", "fvp", "a", "\r\x1bc"], 'Got unexpected extra arguments (a "\\r\\u001Bc")'),
    (["stress", "--a\x1bc"], '"--a\\u001Bc"'),
    (["-\x1bc"], '"-\\u001B"'),
    (["attest", "inspect", "/tmp/no\x1bc"], 'File "/tmp/no\\u001Bc" does not exist'),
    (["stress", "--replay", "/tmp/no\x1bc\udcff"], 'File "/tmp/no\\u001Bc\\uDCFF" does not exist')],
    ids=["stress-extra-argument", "platform-show-extra-arguments", "stress-unknown-option", "rmm-mp-unknown-option",
         "attest-inspect-missing-token", "stress-replay-missing-with-an-undecodable-byte"])
def test_a_word_with_control_characters_is_refused_escaped(args: list[str], shown: str) -> None:
    """A word holding ESC c (a terminal reset) or CR that click refuses, as an extra argument, an
    unknown option or a path that does not exist (one with a byte that is not UTF-8, as Python
    gives it, surrogate-escaped), is named with TOML's escapes (exit 2) and no ESC reaches the
    output: click printed an extra argument and, before 8.2, an unknown option raw. color=True:
    CliRunner otherwise strips ANSI sequences, and the ESC check could not fail."""
    result = CliRunner().invoke(main, args, color=True)
    assert result.exit_code == 2, result.output
    assert "\x1b" not in result.output and "\r" not in result.output, repr(result.output)
    assert shown in result.output, result.output


def test_every_command_refuses_its_command_line_as_clitypes_command() -> None:
    """Every command and group rmm-mp has, however deep, is a clitypes.Command (a Group is one),
    whose parse_args shows a refused word abbreviated and escaped: a command declared with
    click's own class would print a long or unprintable word whole again."""
    import click

    from rmm_mp.clitypes import Command

    def walk(group: click.Group, path: str) -> list[tuple[str, click.Command]]:
        ctx = click.Context(group)
        found: list[tuple[str, click.Command]] = []
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            assert command is not None, f"{path} {name}"
            found.append((f"{path} {name}", command))
            if isinstance(command, click.Group):
                found += walk(command, f"{path} {name}")
        return found

    commands = [("rmm-mp", main), *walk(main, "rmm-mp")]
    assert len(commands) >= 15, [path for path, _ in commands]
    assert [path for path, command in commands if not isinstance(command, Command)] == []


def test_a_group_declared_in_rmm_mps_group_is_a_plain_group() -> None:
    """A group declared with ``@main.group()`` (no cls) is a clitypes.Group with no commands of
    its own: Group's group_class = type made it a cli._Commands, which imports and lists
    rmm-mp's own subcommands (run, stress, ...) as its own, so `rmm-mp GROUP run` would run."""
    import click

    from rmm_mp.cli import _Commands
    from rmm_mp.clitypes import Group

    top = _Commands(name="rmm-mp")

    @top.group(name="sub")
    def sub() -> None:
        """A new group."""

    assert type(sub) is Group
    assert sub.list_commands(click.Context(sub)) == []
    assert sub.get_command(click.Context(sub), "run") is None
