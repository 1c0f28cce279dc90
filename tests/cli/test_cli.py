"""The rmm-mp command: smoke tests of every subcommand, in-process (click) and as a process
(`run` and `workloads` are tested in test_run.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from rmm_mp import __version__
from rmm_mp.cli import SUBCOMMANDS, main
from rmm_mp.clitypes import FloatRange, IntRange, TypedFloat
from rmm_mp.hw import platform as platforms
from rmm_mp.printable import basic_string

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
    assert "lpa2 false, sve false," in shown.output and "False" not in shown.output and "True" not in shown.output and "max_recs_order 10 (MAX_RECS 1023)" in shown.output
    fvp = runner.invoke(main, ["platform", "show", "fvp"])   # SVE_VL 15 in the register: 2048-bit vectors
    assert "0x000002bffcf3fe30" in fvp.output and "sve true (vectors up to 2048 bits)" in fvp.output
    assert runner.invoke(main, ["platform", "show", "nope"]).exit_code == 2


@pytest.mark.parametrize("name, expected", [
    ("hots", "command line: NAME = 'hots': expected a bundled platform (fvp, host, large) (did you mean \"host\"?)"),
    ("missing.toml", "command line: NAME = 'missing.toml': expected a regular platform file that exists (no such file)"),
])
def test_platform_show_of_a_bad_name_names_the_argument(name: str, expected: str) -> None:
    """`platform show NAME` of an unknown name or a missing file says `command line: NAME =
    ...`, as `run --platform` names its option (it said `platform: platform = ...`)."""
    result = CliRunner().invoke(main, ["platform", "show", name])
    assert result.exit_code == 2 and expected in result.output, result.output


@pytest.mark.parametrize("command", [["workloads", "show"], ["workloads", "validate"]], ids=["show", "validate"])
def test_workloads_show_and_validate_call_their_argument_what_their_errors_call_it(command: list[str]) -> None:
    """`workloads show` and `workloads validate` of a misspelt name: the error says `command
    line: WORKLOAD = 'quickstrt'`, and the usage line (--help, and show's usage error above the
    message) calls the argument WORKLOAD too, as `rmm-mp run` does. It said NAME|FILE (show) and
    FILE... (validate), a name the error never used."""
    runner = CliRunner()
    result = runner.invoke(main, [*command, "quickstrt"])
    assert result.exit_code == 2, result.output
    assert "command line: WORKLOAD = 'quickstrt': expected a bundled workload" in result.output, result.output
    usage = runner.invoke(main, [*command, "--help"]).output.splitlines()[0]
    assert usage.split("[OPTIONS] ")[1] in ("WORKLOAD", "WORKLOAD..."), usage


def test_validate_of_a_file_with_more_cpus_than_its_platform_names_the_command_that_runs_it_on_fewer(
        tmp_path: Path) -> None:
    """`workloads validate` of a file whose cpus exceed its platform's: the error's hint names
    `rmm-mp run --cpus N`, not a bare --cpus N, an option validate does not take ("No such
    option: --cpus" for the user who followed it)."""
    path = tmp_path / "w.toml"
    path.write_text('platform = "host"\ncpus = 8\niterations = 10\nactivities = { run = 1 }\n'
                    '[[realm]]\nname = "r"\nguest = "hello"\n')
    result = CliRunner().invoke(main, ["workloads", "validate", str(path)])
    assert result.exit_code == 2, result.output
    assert "cpus = 8: expected an integer in 1..4 (platform 'host' has 4 CPUs); `rmm-mp run --cpus N` runs it on " \
           "fewer" in result.output, result.output
    validate = CliRunner().invoke(main, ["workloads", "validate", "--help"]).output
    assert "--cpus" not in validate, validate


def test_platform_show_decodes_the_register(tmp_path: Path) -> None:
    """`platform show` reports what RMI_FEATURES index 0 says, not the file's raw keys: with
    pmu = false the register has PMU_EN 0 and PMU_NUM_CTRS 0 (REALM_CREATE refuses a PMU), so
    no counters are shown (a file's pmu_counters = 5 beside pmu = false, once shown as 5
    counters, is now refused: tests/hw/test_platform.py); and it names the VMID width, which
    decides REALM_CREATE's vmid_valid but is in no feature register, their range grouped as the
    tool's other numbers are (fvp: VMIDs 0..65,535)."""
    text = (ROOT / "platform" / "host.toml").read_text()
    for old, new in (("pmu = true", "pmu = false"), ("pmu_counters = 31", "pmu_counters = 0")):
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / "nopmu.toml"
    path.write_text(text)
    shown = CliRunner().invoke(main, ["platform", "show", str(path)])
    assert shown.exit_code == 0, shown.output
    assert "= 0x0000028f00314030:" in shown.output   # host's 0x28ffc314030 without bits 31:26
    assert "pmu false," in shown.output and "counters" not in shown.output
    assert "vmid_bits 8 (VMIDs 0..255)" in shown.output
    fvp = CliRunner().invoke(main, ["platform", "show", "fvp"]).output
    assert "vmid_bits 16 (VMIDs 0..65,535)" in fvp, fvp
    host = CliRunner().invoke(main, ["platform", "show", "host"]).output.replace("\n    ", " ")  # lines read together
    assert "pmu true (31 counters)" in host and "6 breakpoints, 4 watchpoints" in host
    assert "4 GIC list registers" in host


def test_platform_show_says_one_in_the_singular_and_no_colon_without_a_description(tmp_path: Path) -> None:
    """A platform with one PMU counter and one GIC list register, and no description: `platform
    show` read "pmu true (1 counters)", "1 GIC list registers" and began "NAME: " with nothing after."""
    text = (ROOT / "platform" / "host.toml").read_text()
    for old, new in (("pmu_counters = 31", "pmu_counters = 1"), ("gic_list_registers = 4", "gic_list_registers = 1")):
        assert old in text
        text = text.replace(old, new)
    text = "\n".join(line for line in text.splitlines() if not line.startswith("description ="))
    path = tmp_path / "single.toml"
    path.write_text(text + "\n")
    shown = CliRunner().invoke(main, ["platform", "show", str(path)])
    assert shown.exit_code == 0, shown.output
    assert "pmu true (1 counter)," in shown.output and ", 1 GIC list register," in shown.output, shown.output
    assert shown.output.splitlines()[0] == "host", shown.output    # the file's name key


def _odd_host(tmp_path: Path) -> Path:
    """host.toml with 4,097 granules of DRAM (16 MiB + 4 KiB), rec_time_slice 1234 and a
    second, named MMIO range, as platform/odd.toml under tmp_path."""
    text = (ROOT / "platform" / "host.toml").read_text()
    for old, new in (('size = "64 MiB"', f"size = {4097 * 4096}"), ("rec_time_slice = 10000", "rec_time_slice = 1234"),
                     ("base = 0x83F0_0000", "base = 0x80F0_0000"),
                     ("[[secure]]", '[[mmio]]\nname = "gic-dist"\nbase = 0x2F00_0000\nsize = "64 KiB"\n\n[[secure]]'),
                     ('name = "host"', 'name = "odd"')):
        assert old in text
        text = text.replace(old, new, 1)
    (tmp_path / "platform").mkdir()
    path = tmp_path / "platform" / "odd.toml"
    path.write_text(text)
    return path


def test_platform_show_prints_every_key_and_list_exact_sizes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`platform show` of a file with a DRAM of 4,097 granules, rec_time_slice 1234, named
    MMIO and Secure ranges and attestation seeds prints each of them (region names, the time
    slice and the seeds were dropped); `platform list` of it (its directory as the bundled
    one) gives the DRAM size exactly, 16,388 KiB, where it read a rounded "16 MiB"."""
    path = _odd_host(tmp_path)
    shown = CliRunner().invoke(main, ["platform", "show", str(path)])
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert "cpus 4, pa_bits 48, rec_time_slice 1,234 guest instructions" in lines
    assert "dram [0x80000000, 0x81001000) = 16,388 KiB, 4,097 granules" in lines
    assert "mmio uart [0x1c090000, 0x1c0a0000) = 64 KiB, 16 granules" in lines
    assert "mmio gic-dist [0x2f000000, 0x2f010000) = 64 KiB, 16 granules" in lines
    assert "secure tzc-carveout [0x80f00000, 0x81000000) = 1 MiB, 256 granules" in lines
    assert ("attestation keys: seeds (rak_seed 'rmm-mp host platform realm attestation key',\n"
            "    platform_key_seed 'rmm-mp host platform CCA platform attestation key')") in shown.output
    monkeypatch.setattr(platforms, "platform_dir", lambda: tmp_path / "platform")
    listed = CliRunner().invoke(main, ["platform", "list"])
    assert listed.exit_code == 0, listed.output
    assert listed.output.startswith("odd        4 CPUs    16,388 KiB  Small test platform"), listed.output


@pytest.mark.parametrize("name", ["host", "fvp", "large"])
def test_platform_show_keeps_its_lines_within_118_columns(name: str) -> None:
    """`platform show` wraps its lines at 118 columns between phrases, later lines indented by 4,
    as `workloads show` does: the feature register's line ran to some 210 columns and the
    attestation seeds' to 131, which a narrow terminal folded mid-word (found by a new user's
    pass). Read together, the pieces give the line it was."""
    shown = CliRunner().invoke(main, ["platform", "show", name])
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert max(len(line) for line in lines) <= 118, shown.output
    register = shown.output.split("RMI_FEATURES register 0 = ")[1].split("\nvmid_bits")[0]
    assert "\n    " in register and ", max_recs_order 10 (MAX_RECS 1023)" in register.replace("\n    ", " ")


def test_platform_show_counts_one_granule_in_the_singular(tmp_path: Path) -> None:
    """`platform show` of host.toml with a 4 KiB MMIO range says "1 granule": it printed "4 KiB,
    1 granules" (found by a docs audit showing platforms with small ranges)."""
    path = tmp_path / "one.toml"
    path.write_text((ROOT / "platform" / "host.toml").read_text().replace('size = "64 KiB"', 'size = "4 KiB"', 1))
    shown = CliRunner().invoke(main, ["platform", "show", str(path)])
    assert shown.exit_code == 0, shown.output
    assert "mmio uart [0x1c090000, 0x1c091000) = 4 KiB, 1 granule" in shown.output.splitlines()


def test_workloads_list_clean_version_and_help() -> None:
    """`workloads list`, `clean --dry-run`, `--version` and `--help` work; help names the
    subcommands."""
    runner = CliRunner()
    assert "delegate-churn" in runner.invoke(main, ["workloads", "list"]).output
    cleaned = runner.invoke(main, ["clean", "--dry-run"])
    assert cleaned.exit_code == 0
    assert __version__ in runner.invoke(main, ["--version"]).output
    helped = runner.invoke(main, ["--help"])
    # The command names in the Commands section, not words anywhere: "run" and "workloads" are
    # also in the description ("run multi-realm workloads"), so a missing command went unseen.
    listed = [line.split()[0] for line in helped.output.split("\nCommands:\n")[1].splitlines() if line.strip()]
    assert listed == ["attest", "check", "clean", "explore", "platform", "run", "stress", "workloads"], helped.output


def test_importing_the_command_line_leaves_the_subcommands_unimported() -> None:
    """Every CPU process of a run started from the rmm-mp console script imports rmm_mp.cli (a
    multiprocessing spawn child runs its parent's main module again, as __mp_main__): importing
    it must not import the modules of the subcommands defined elsewhere (the workload engine,
    the stress tool's explorer and shrinker, the attestation verifier), which used to cost each
    CPU process about 0.1 s of CPU. Each is still reached by its name, as the command it is."""
    modules = sorted({module for module, _ in SUBCOMMANDS.values()})
    probe = f"import sys, rmm_mp.cli; print([m for m in {modules!r} if m in sys.modules])"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr
    with click.Context(main) as ctx:
        for name in SUBCOMMANDS:
            command = main.get_command(ctx, name)
            assert command is not None and command.name == name, (name, command)


def test_python_dash_m_is_the_command() -> None:
    """`python -m rmm_mp --version` runs the same command line."""
    proc = subprocess.run([sys.executable, "-m", "rmm_mp", "--version"], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0 and proc.stdout.strip() == f"rmm-mp, version {__version__}"


def _with_a_reader_gone(stream: str, args: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess[str], str]:
    """`python -m rmm_mp ARGS` with ``stream`` ("stdout" or "stderr") a pipe whose reader left
    before the first line (`| head -0`): (the process, the other stream's text)."""
    reader, writer = os.pipe()
    os.close(reader)
    other = "stderr" if stream == "stdout" else "stdout"
    try:
        proc = subprocess.run([sys.executable, "-m", "rmm_mp", *args], **{stream: writer, other: subprocess.PIPE},
                              text=True, cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    finally:
        os.close(writer)
    return proc, getattr(proc, other)


@pytest.mark.parametrize("args, status", [
    (["stress", "--list-bugs"], 0), (["workloads", "list"], 0), (["workloads", "show", "quickstart"], 0),
    (["platform", "show", "host"], 0), (["--help"], 0), (["--version"], 0), (["platform", "show", "nosuch"], 2),
], ids=lambda v: " ".join(v) if isinstance(v, list) else str(v))
def test_a_listing_keeps_its_status_when_its_reader_has_gone(tmp_path: Path, args: list[str], status: int) -> None:
    """A listing or --help piped into a reader that has gone (`rmm-mp workloads list | head
    -0`): the exit status is the command's own (0; 2 for a platform that does not exist) and
    stderr says nothing of the pipe. Only `run`, `stress`, `check`, `explore` and `workloads
    validate` printed through outpaths.echo; every other command's write raised BrokenPipeError,
    which click turned into exit status 1 (found by a review of the exit-status contract)."""
    proc, err = _with_a_reader_gone("stdout", args, tmp_path)
    assert proc.returncode == status, err
    assert "Traceback" not in err and "Broken pipe" not in err and "Exception ignored" not in err, err


@pytest.mark.parametrize("args", [["stress", "--bogus"], ["attest", "inspect", "no-such-token.cbor"]],
                         ids=["stress", "attest"])
def test_a_usage_error_exits_2_when_the_reader_of_errors_has_gone(tmp_path: Path, args: list[str]) -> None:
    """Standard error a pipe whose reader has gone (`2>&1 >out | head -0`, a log reader that
    died) and a usage error: still exit status 2. Click's message to stderr raised
    BrokenPipeError, and the process ended with an uncaught exception: exit status 1."""
    proc, out = _with_a_reader_gone("stderr", args, tmp_path)
    assert proc.returncode == 2, out


@pytest.mark.multiprocess
def test_a_run_keeps_its_report_and_status_when_the_reader_of_its_errors_has_gone(tmp_path: Path) -> None:
    """`rmm-mp run` with standard error a pipe whose reader has gone: the line naming the machine
    (written to stderr before the run) raised BrokenPipeError, so nothing ran and the exit
    status was 1. Now the run's report is printed with its verdict, exit status 0."""
    proc, out = _with_a_reader_gone("stderr", ["run", "delegate-churn", "--cpus", "1", "--iterations", "5",
                                               "--no-progress"], tmp_path)
    assert proc.returncode == 0, out
    assert out.rstrip().endswith("result: OK"), out


def _never_a_pid() -> int:
    with open("/proc/sys/kernel/pid_max") as f:
        return int(f.read())       # pids are below pid_max: no process has this one


def test_clean_and_create_get_past_an_orphan_that_cannot_be_removed(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry of the segment directory that has a segment's name but cannot be unlinked (here
    a directory; in a shared /dev/shm, another user's segment) of a dead creator: `rmm-mp
    clean` removes the other orphans, names that one with the reason on stderr and exits 1,
    without a traceback; Machine.create, which sweeps orphans too, is not stopped by it."""
    from rmm_mp.hw import segment
    from rmm_mp.machine import Machine
    monkeypatch.setattr(segment, "SHM_DIR", str(tmp_path))
    dead = _never_a_pid()
    stuck = tmp_path / f"rmm-mp-{dead}-0000abcf.ctl"
    stuck.mkdir()
    plain = tmp_path / f"rmm-mp-{dead}-0000abce.ctl"
    plain.write_bytes(b"left by a SIGKILLed creator")
    # The dry run says what the real one does, status included: it said "would remove" the
    # directory with exit status 0, where the clean below fails on it with 1 (found in review).
    dry = CliRunner().invoke(main, ["clean", "--dry-run"])
    assert isinstance(dry.exception, SystemExit) and dry.exit_code == 1, dry.output
    assert dry.stdout == f"would remove rmm-mp-{dead}-0000abce (creator pid {dead}, 1 segment)\n", dry.output
    assert dry.stderr == (f"Error: would not be able to remove rmm-mp-{dead}-0000abcf (creator pid {dead}): "
                          f"{stuck}: Is a directory\n"), dry.output
    assert plain.exists() and stuck.is_dir()
    done = CliRunner().invoke(main, ["clean"])
    assert isinstance(done.exception, SystemExit) and done.exit_code == 1, done.output
    assert f"removed rmm-mp-{dead}-0000abce (creator pid {dead}, 1 segment)\n" in done.stdout
    assert f"Error: could not remove rmm-mp-{dead}-0000abcf (creator pid {dead}): {stuck}: Is a directory" \
        in done.stderr
    assert not plain.exists() and stuck.is_dir()
    with Machine.create("host", cpus=1) as m:
        assert m.name.startswith(f"rmm-mp-{os.getpid()}-")
    assert sorted(p.name for p in tmp_path.iterdir()) == [stuck.name]


def test_clean_and_its_dry_run_judge_orphans_alike(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`clean --dry-run` lists what `clean` removes (orphans.orphaned_machines serves both; the dry
    run had a copy of the filter): never this process's own machine, even one is_orphan would
    take for an orphan (a start time that no longer matches), and every other orphan."""
    from rmm_mp.hw import orphans, segment
    monkeypatch.setattr(segment, "SHM_DIR", str(tmp_path))
    monkeypatch.setattr(orphans, "is_orphan", lambda machine: True)
    dead = _never_a_pid()
    own = tmp_path / f"rmm-mp-{os.getpid()}-0000abcd.ctl"
    orphan = tmp_path / f"rmm-mp-{dead}-0000abce.ctl"
    for path in (own, orphan):
        path.write_bytes(b"a segment")
    dry = CliRunner().invoke(main, ["clean", "--dry-run"])
    assert dry.exit_code == 0 and dry.stdout == f"would remove rmm-mp-{dead}-0000abce (creator pid {dead}, 1 segment)\n", \
        dry.output
    done = CliRunner().invoke(main, ["clean"])
    assert done.exit_code == 0 and done.stdout == f"removed rmm-mp-{dead}-0000abce (creator pid {dead}, 1 segment)\n", \
        done.output
    assert own.exists() and not orphan.exists()


def test_clean_and_create_leave_files_that_only_look_like_segments(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Files in the segment directory named like a dead creator's segments but with a part no
    machine has (`rmm-mp-<pid>-<8 hex>.txt`: a user's notes, another tool's file) are not rmm-mp's:
    `rmm-mp clean` neither lists nor removes them, and Machine.create (which sweeps orphans
    too) leaves them, while a real orphan's `.ctl` beside them goes. Before, any lower-case part
    matched, so every `rmm-mp run` silently deleted such a file (found by a CLI audit)."""
    from rmm_mp.hw import segment
    from rmm_mp.machine import Machine
    monkeypatch.setattr(segment, "SHM_DIR", str(tmp_path))
    dead = _never_a_pid()
    foreign = [tmp_path / f"rmm-mp-{dead}-0000abcd.txt", tmp_path / f"rmm-mp-{dead}-0000abcd.backup"]
    for path in foreign:
        path.write_bytes(b"not a segment")
    orphan = tmp_path / f"rmm-mp-{dead}-0000abce.ctl"
    orphan.write_bytes(b"left by a SIGKILLed creator")
    dry = CliRunner().invoke(main, ["clean", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "0000abcd" not in dry.output and f"would remove rmm-mp-{dead}-0000abce" in dry.output
    done = CliRunner().invoke(main, ["clean"])
    assert done.exit_code == 0, done.output
    assert "0000abcd" not in done.output and not orphan.exists()
    assert f"removed rmm-mp-{dead}-0000abce (creator pid {dead}, 1 segment)\n" in done.stdout
    assert all(path.exists() for path in foreign), sorted(p.name for p in tmp_path.iterdir())
    with Machine.create("host", cpus=1):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in foreign)


def test_clean_takes_only_the_machine_names_check_takes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine name is the one segment.is_machine_name takes, for `rmm-mp clean` as for
    `rmm-mp check`: files named with a pid written with a leading 0 or in non-ASCII digits are
    no machine's (machine_prefix never makes them), so clean leaves them. Before, its \\d+ took
    both (int() reads them) and removed them as the orphans of a dead pid, while check (which
    refuses them now) looked for upper-case hex that clean never listed."""
    from rmm_mp.hw import segment
    monkeypatch.setattr(segment, "SHM_DIR", str(tmp_path))
    dead = _never_a_pid()
    odd = [tmp_path / f"rmm-mp-0{dead}-0000abcd.ctl", tmp_path / f"rmm-mp-{str(dead).translate(_ARABIC)}-0000abcd.ctl",
           tmp_path / f"rmm-mp-{dead}-0000ABCD.ctl"]
    for path in odd:
        path.write_bytes(b"no machine's")
        assert not segment.is_machine_name(path.name.removesuffix(".ctl"))
    done = CliRunner().invoke(main, ["clean"])
    assert done.exit_code == 0 and done.stdout == "no orphaned rmm-mp shared memory\n", done.output
    assert all(path.exists() for path in odd), sorted(p.name for p in tmp_path.iterdir())


_ARABIC = str.maketrans("0123456789", "\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669")


def test_closing_a_machine_leaves_a_report_written_beside_its_segments(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """`rmm-mp check NAME --json <segment directory>/NAME.json` of a live machine: the path is
    no segment's (json is no part), so the check writes its report there. The machine's close,
    which unlinks its segments and those made under its name (a stress segment here), leaves
    the report. Before, the close unlinked every entry named NAME.*, the user's report too,
    though `rmm-mp clean` leaves such files as not rmm-mp's."""
    from rmm_mp.hw import segment
    from rmm_mp.machine import Machine
    from rmm_mp.stress.shared import StressSegment
    monkeypatch.setattr(segment, "SHM_DIR", str(tmp_path))
    with Machine.create("host", cpus=1) as machine:
        stress = StressSegment.create(machine.name, 1, 0, 0, 0, 0)
        stress.view.close()
        stress.segment.close()      # not unlinked: left for the machine's close, as after a SIGTERM
        report = tmp_path / f"{machine.name}.json"
        res = CliRunner().invoke(main, ["check", machine.name, "--json", str(report)])
        assert res.exit_code == 0 and report.exists(), res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == [report.name]


def test_a_segment_part_not_in_the_list_is_refused() -> None:
    """Segment.create of a part not in segment.PARTS raises a ValueError naming the part and the
    parts expected, and creates nothing: a part that clean does not know would be left behind
    by a SIGKILLed creator."""
    from rmm_mp.hw import segment
    prefix = segment.machine_prefix(os.getpid(), "0badf00d")
    try:
        with pytest.raises(ValueError, match=r"part = 'notes': expected one of ctl, granules, .*stress"):
            segment.Segment.create(prefix, "notes", 4096).close()
        assert not os.path.exists(segment.segment_path(prefix, "notes"))
    finally:
        segment.unlink_parts(prefix)


@pytest.mark.parametrize("kind", ["missing", "file", "read-only", "unreadable", "dangling", "link-to-file", "loop",
                                  "loop-above"])
@pytest.mark.parametrize("command", [["run", "quickstart", "--cpus", "1", "--seconds", "1"],
                                     ["stress", "--cpus", "2", "--seconds", "1"]])
def test_an_unusable_segment_directory_is_named_without_a_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   kind: str, command: list[str]) -> None:
    """RMM_MP_SHM_DIR naming nothing, a file, or a directory the user cannot write: `run` and
    `stress` exit 1 with one line naming the directory and what was expected, before any CPU
    starts (before: FileNotFoundError / NotADirectoryError tracebacks, and for stress a
    MachineError traceback). A directory this user cannot list (mode 0300; the sweep of orphans
    lists it) is refused as one it cannot write is (it was let through to a PermissionError
    traceback: found in review); a symbolic link is named as one, with where it points. A path
    through a loop of links above it ('loop-above') is said not to be followable: it read "found
    nothing", as if the path led somewhere with nothing there (found in review)."""
    from rmm_mp.hw import segment
    where = tmp_path / "shm"
    if kind == "loop-above":
        (tmp_path / "up").symlink_to(tmp_path / "up")
        where = tmp_path / "up" / "shm"
    if kind == "file":
        where.write_bytes(b"")
    elif kind == "dangling":
        where.symlink_to(tmp_path / "gone")
    elif kind == "loop":
        where.symlink_to(where)
    elif kind == "link-to-file":
        (tmp_path / "f").write_bytes(b"")
        where.symlink_to(tmp_path / "f")
    elif kind in ("read-only", "unreadable"):
        where.mkdir()
        # root may write and list any directory, so the permission is what access(2) says for this one
        real_access = os.access
        denied = os.W_OK if kind == "read-only" else os.R_OK
        monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if Path(path) == where and mode & denied
                            else real_access(path, mode, **kw))
    monkeypatch.setattr(segment, "SHM_DIR", str(where))
    monkeypatch.setenv("RMM_MP_SHM_DIR", str(where))
    result = CliRunner().invoke(main, command)
    assert isinstance(result.exception, SystemExit) and result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    expected = {"missing": "found nothing, expected a directory",
                "file": "found something that is not a directory",
                "dangling": f"found a symbolic link to {tmp_path / 'gone'}, which names nothing, expected a directory",
                "link-to-file": f"found a symbolic link to {tmp_path / 'f'}, which is not a directory, expected",
                "loop": f"found a symbolic link to {where}, which cannot be followed (Too many levels of symbolic "
                        "links), expected a directory",
                "loop-above": "found a path that cannot be followed (Too many levels of symbolic links), expected a "
                              "directory",
                "read-only": "expected a directory this user can list and create files in",
                "unreadable": "expected a directory this user can list and create files in"}[kind]
    assert f"shared memory cannot be made in {where} (RMM_MP_SHM_DIR)" in result.stderr
    assert expected in result.stderr
    if kind in ("read-only", "unreadable"):
        assert list(where.iterdir()) == []


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]], ids=["clean", "dry-run"])
@pytest.mark.parametrize("kind", ["missing", "file"])
def test_clean_with_no_segment_directory_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  kind: str, dry_run: list[str]) -> None:
    """`rmm-mp clean` with RMM_MP_SHM_DIR naming nothing or a file: it cannot look for segments
    there, and says so as `rmm-mp run` does (one line naming the directory and what was
    expected, exit 1, no traceback). It said "no orphaned rmm-mp shared memory" and exited 0,
    as if it had looked (found by a docs audit; a file gave a NotADirectoryError traceback
    before that)."""
    from rmm_mp.hw import segment
    where = tmp_path / "shm"
    if kind == "file":
        where.write_bytes(b"not a directory")
    monkeypatch.setattr(segment, "SHM_DIR", str(where))
    monkeypatch.setenv("RMM_MP_SHM_DIR", str(where))
    result = CliRunner().invoke(main, ["clean", *dry_run])
    assert isinstance(result.exception, SystemExit) and result.exit_code == 1, result.output
    assert "no orphaned" not in result.stdout and "Traceback" not in result.output
    found = "nothing" if kind == "missing" else "something that is not a directory"
    assert (f"Error: MachineError: shared memory cannot be looked for in {where} (RMM_MP_SHM_DIR): found {found}, "
            "expected a directory") in result.stderr, result.output


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]], ids=["clean", "dry-run"])
def test_clean_in_an_unreadable_segment_directory_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           dry_run: list[str]) -> None:
    """A segment directory this user cannot list (mode 0300 for a user who is not root; root
    can list anything, so the refusal is simulated): `rmm-mp clean` says it cannot look there,
    one line, exit 1, as for a missing one. It ended in a PermissionError traceback (found in
    review)."""
    from rmm_mp.hw import segment
    monkeypatch.setattr(segment, "SHM_DIR", str(tmp_path))
    monkeypatch.setenv("RMM_MP_SHM_DIR", str(tmp_path))
    listdir = os.listdir

    def refused(path: object = ".") -> list[str]:
        if str(path) == str(tmp_path):
            raise PermissionError(13, "Permission denied", str(path))
        return listdir(path)    # type: ignore[arg-type]
    monkeypatch.setattr(os, "listdir", refused)
    result = CliRunner().invoke(main, ["clean", *dry_run])
    assert isinstance(result.exception, SystemExit) and result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "no orphaned" not in result.stdout
    assert result.stderr == (f"Error: MachineError: shared memory cannot be looked for in {tmp_path} (RMM_MP_SHM_DIR): "
                             "Permission denied, expected a directory this user can read\n"), result.output


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_check_with_no_segment_directory_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    """`rmm-mp check NAME` with RMM_MP_SHM_DIR naming nothing or a file: no machine can be looked
    for there, and it says so as `rmm-mp clean` does (exit 2, as for no such machine). It said "no
    machine named NAME in DIR (it was closed, or never existed)", blaming the name or the run
    for a mistyped directory (found by a lock-protocol reviewer's probe); then "Error: shared
    memory ...", where clean, run and explore print "Error: MachineError: shared memory ..."."""
    from rmm_mp.hw import segment
    where = tmp_path / "shm"
    if kind == "file":
        where.write_bytes(b"not a directory")
    monkeypatch.setattr(segment, "SHM_DIR", str(where))
    monkeypatch.setenv("RMM_MP_SHM_DIR", str(where))
    result = CliRunner().invoke(main, ["check", "rmm-mp-1-0badc0de"])
    assert isinstance(result.exception, SystemExit) and result.exit_code == 2, result.output
    assert "no machine named" not in result.output and "Traceback" not in result.output
    found = "nothing" if kind == "missing" else "something that is not a directory"
    assert result.stderr == (f"Error: MachineError: shared memory cannot be looked for in {where} (RMM_MP_SHM_DIR): "
                             f"found {found}, "
                             "expected a directory (a tmpfs such as /dev/shm keeps the machine in memory)\n"), \
        result.output


@pytest.mark.parametrize("command", [["clean"], ["clean", "--dry-run"], ["run", "quickstart"]],
                         ids=["clean", "dry-run", "run"])
def test_an_empty_segment_directory_is_shown_as_empty(monkeypatch: pytest.MonkeyPatch, command: list[str]) -> None:
    """RMM_MP_SHM_DIR set to an empty string: `clean` and `run` refuse it (exit 1) with the
    value shown as '' and said to be empty. The message read "cannot be looked for in
    (RMM_MP_SHM_DIR)", the value an invisible gap between two spaces."""
    from rmm_mp.hw import segment
    monkeypatch.setattr(segment, "SHM_DIR", "")
    monkeypatch.setenv("RMM_MP_SHM_DIR", "")
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 1, result.output
    assert "in '' (RMM_MP_SHM_DIR, set to an empty string): found nothing, expected a directory" in result.stderr, \
        result.output


@pytest.mark.parametrize("command", [["clean"], ["run", "quickstart"], ["check", "rmm-mp-1-0badc0de"],
                                     ["check", "rmm-mp-1-0badc0de", "--json", "{shm}/rmm-mp-1-0badc0de.ctl"]],
                         ids=["clean", "run", "check", "check-json"])
def test_a_segment_directory_with_control_characters_is_shown_escaped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     command: list[str]) -> None:
    """RMM_MP_SHM_DIR holding an ESC sequence and a newline: every message naming it (`clean`
    and `run` with no such directory, `check` of a machine not there, a --json path naming a
    segment) shows it escaped, as every other user-supplied path is (printable.shown_path),
    and nothing reaches the terminal raw. They printed it as it was."""
    from rmm_mp.hw import segment
    where = tmp_path / "shm\x1b[2J\nx"
    if command[0] == "check":
        where.mkdir()
    monkeypatch.setattr(segment, "SHM_DIR", str(where))
    monkeypatch.setenv("RMM_MP_SHM_DIR", str(where))
    # color=True: CliRunner otherwise strips ANSI sequences, and the ESC check below could not fail
    result = CliRunner().invoke(main, [arg.replace("{shm}", str(where)) for arg in command], color=True)
    assert result.exit_code in (1, 2), result.output
    assert "\x1b" not in result.stderr, result.stderr
    assert basic_string(str(where)) in result.stderr, result.stderr


def test_an_orphan_that_cannot_be_removed_is_named_escaped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """RMM_MP_SHM_DIR holding an ESC sequence and a newline, with a dead creator's entry there
    that cannot be unlinked (a directory with a segment's name): `rmm-mp clean`'s "could not
    remove" line names the entry escaped, as every message naming the segment directory does
    (printable.shown_path), and prints no ESC. It named the entry's path raw."""
    from rmm_mp.hw import segment
    where = tmp_path / "shm\x1b[2J\nx"
    where.mkdir()
    monkeypatch.setattr(segment, "SHM_DIR", str(where))
    monkeypatch.setenv("RMM_MP_SHM_DIR", str(where))
    dead = _never_a_pid()
    stuck = where / f"rmm-mp-{dead}-0000abcf.ctl"
    stuck.mkdir()
    result = CliRunner().invoke(main, ["clean"], color=True)    # color: ANSI kept, see above
    assert result.exit_code == 1, result.output
    assert "\x1b" not in result.stderr, result.stderr
    assert f"{basic_string(str(stuck))}: Is a directory" in result.stderr, result.stderr
    assert stuck.is_dir()


@pytest.mark.parametrize("command", ["check", "explore"])
def test_a_report_is_not_written_over_a_live_machines_segment(command: str) -> None:
    """`check NAME --json <segment dir>/NAME.ctl` (or explore's --json there) is a usage error
    naming --json, the path and what was expected (exit 2), and the live machine's control
    block is left as it was. Before, the check ran and its JSON replaced the file by that name:
    the run went on in its old mapping, but every later `rmm-mp check` of it said "not an
    rmm-mp machine: its control block starts with b'{...'" (found by a CLI audit)."""
    from rmm_mp.hw import segment
    from rmm_mp.hw.control import MAGIC
    from rmm_mp.machine import Machine
    with Machine.create("host", cpus=1) as m:
        ctl = segment.segment_path(m.name, "ctl")
        args = ["check", m.name] if command == "check" else ["explore", "rtt-create-vs-rtt-create"]
        result = CliRunner().invoke(main, [*args, "--json", ctl])
        assert result.exit_code == 2, result.output
        assert f"--json = {ctl!r}: expected a path that is not an rmm-mp machine's shared memory segment" \
            in result.output, result.output
        with open(ctl, "rb") as f:
            assert f.read(len(MAGIC)) == MAGIC
        assert CliRunner().invoke(main, ["check", m.name]).exit_code == 0


def test_check_of_a_segments_file_name_names_the_machine() -> None:
    """`rmm-mp check rmm-mp-P-T.ctl` (a name copied from `ls /dev/shm`) of a live machine exits 2
    saying that is a segment's file name and giving the machine's name. Before, it said "no
    machine named 'rmm-mp-P-T.ctl' in /dev/shm (it was closed, or never existed)" while the
    machine ran (found by a CLI audit)."""
    from rmm_mp.machine import Machine
    with Machine.create("host", cpus=1) as m:
        result = CliRunner().invoke(main, ["check", f"{m.name}.ctl"])
        assert result.exit_code == 2, result.output
        assert (f"Error: command line: MACHINE_NAME = '{m.name}.ctl': expected a machine name, not the file name "
                f"of one of its segments (its .ctl): '{m.name}'") in result.stderr, result.output
        assert "no machine named" not in result.output


_NAME_EXPECTED = ("expected a machine name such as 'rmm-mp-1234-0a1b2c3d' (rmm-mp-, its creator's pid (no leading 0), "
                  "'-' and 8 lower-case hex digits, as machines are named and `rmm-mp clean` lists them)")


@pytest.mark.parametrize("name, expected", [
    ("BADNAME", _NAME_EXPECTED),
    ("rmm-mp-1/x", _NAME_EXPECTED),
    # Names `rmm-mp clean` never lists: they were looked for ("no machine named ...", not a usage
    # error), and a machine made by hand under one was checked.
    ("rmm-mp-01-0badc0de", _NAME_EXPECTED),
    ("rmm-mp-1-0BADC0DE", _NAME_EXPECTED),
    ("rmm-mp-1-0badc0de0", _NAME_EXPECTED),
    ("rmm-mp-\u0661-0badc0de", _NAME_EXPECTED),
    ("rmm-mp-1-0badc0de.txt", _NAME_EXPECTED),
])
def test_check_of_a_word_that_is_no_machine_name_is_a_usage_error(name: str, expected: str) -> None:
    """`rmm-mp check BADNAME` is refused as the command line's MACHINE_NAME, after the usage
    block, as `rmm-mp run BADNAME` names its WORKLOAD: it said "Error: name = 'BADNAME': ..."
    (Machine.attach's own wording) with no usage block."""
    result = CliRunner().invoke(main, ["check", name])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("Usage: ") and " check [OPTIONS] MACHINE_NAME\n" in result.stderr, result.stderr
    assert result.stderr.rstrip().splitlines()[-1] == f"Error: command line: MACHINE_NAME = {name!r}: {expected}", \
        result.stderr


def test_check_error_lines_are_worded_as_every_other_commands() -> None:
    """`rmm-mp check` of no such machine says "Error: ..." as click says a usage error of any
    command (`check --wait x`): it said "error: ..." in lower case, alone of the commands."""
    missing = CliRunner().invoke(main, ["check", "rmm-mp-1-0badc0de"])
    usage = CliRunner().invoke(main, ["check", "rmm-mp-1-0badc0de", "--wait", "x"])
    assert missing.exit_code == usage.exit_code == 2, missing.output
    assert missing.stderr.startswith("Error: MachineError: no machine named 'rmm-mp-1-0badc0de'"), missing.stderr
    assert "\nError: Invalid value for '--wait'" in usage.stderr, usage.stderr


def test_check_refuses_wait_beside_no_pause() -> None:
    """`rmm-mp check NAME --no-pause --wait 10` is a usage error (exit 2, before looking for the
    machine): with no pause there is nothing to wait for, and --wait was silently ignored (found
    by a lock-protocol reviewer's probe)."""
    result = CliRunner().invoke(main, ["check", "rmm-mp-1-0badc0de", "--no-pause", "--wait", "10"])
    assert result.exit_code == 2, result.output
    assert result.stderr.rstrip().splitlines()[-1] == (
        "Error: --wait = 10: there is nothing to wait for with --no-pause; expected one of the two"), result.stderr
    assert "no machine named" not in result.output


@pytest.mark.parametrize("args", [["check", "rmm-mp-1-0badc0de", "--wait"], ["explore", "--timeout"]],
                         ids=["check-wait", "explore-timeout"])
def test_seconds_that_are_not_a_number_are_refused(args: list[str]) -> None:
    """`check --wait nan` and `explore --timeout nan` are bad options (exit 2), as values out of
    their range are. Before, click's FloatRange let NaN through (no comparison with it is true):
    Pause.wait, never reaching a NaN deadline, waited until every CPU parked or the run stopped,
    and the explorer ran with no time limit on a call."""
    result = CliRunner().invoke(main, [*args, "nan"])
    assert result.exit_code == 2, result.output
    assert f"{args[-1]}" in result.output and "'nan' is not a number of seconds" in result.output
    assert "no machine named" not in result.output      # refused before looking for the machine


@pytest.mark.parametrize("args, typed, message", [
    (["explore", "--timeout"], "0", "0 is not in the range 0.1..3,600."),
    (["explore", "--timeout"], "1e400", "1e400 is not in the range 0.1..3,600."),
    (["explore", "--timeout"], "abc", "'abc' is not a number of seconds; expected 0.1..3,600"),
    (["stress", "--seconds"], "-1", "-1 is not in the range 0.000000001..86,400."),
    (["check", "rmm-mp-1-0badc0de", "--wait"], "-2.50", "-2.50 is not in the range x>=0.")],
    ids=["explore-timeout-0", "explore-timeout-1e400", "explore-timeout-word", "stress-seconds", "check-wait"])
def test_seconds_out_of_range_are_refused_as_typed(args: list[str], typed: str, message: str) -> None:
    """`explore --timeout 0`, `stress --seconds -1`, `check --wait -2.50` and a word: exit 2, the
    value shown as typed, as --quiescent-every's errors show it. click's FloatRange showed the
    float it made of it (0.0, -1.0, inf for 1e400, -2.5) and called a word "not a valid float
    range"."""
    result = CliRunner().invoke(main, [*args, typed])
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{args[-1]}': {message}" in result.output, result.output


@pytest.mark.parametrize("args, typed, message", [
    (["run", "quickstart", "--seconds"], "5s", "'5s' is not a number of seconds (without a unit: write 5)"),
    (["run", "quickstart", "--seconds"], "500ms", "'500ms' is not a number of seconds (without a unit: write 0.5)"),
    (["workloads", "show", "quickstart", "--seconds"], "2min", "'2min' is not a number of seconds (without a unit: "
                                                               "write 120)"),
    (["run", "quickstart", "--seconds"], "ten", "'ten' is not a number of seconds"),
    (["stress", "--seconds"], "1.5s", "'1.5s' is not a number of seconds (without a unit: write 1.5); expected "
                                      "0.000000001..86,400"),
    (["explore", "--timeout"], "1h", "'1h' is not a number of seconds (without a unit: write 3600); expected "
                                     "0.1..3,600"),
    (["check", "rmm-mp-1-0badc0de", "--wait"], "250 ms", "'250 ms' is not a number of seconds (without a unit: "
                                                         "write 0.25)")],
    ids=["run-s", "run-ms", "show-min", "run-word", "stress-s", "explore-h", "check-ms"])
def test_seconds_typed_with_a_unit_are_refused_naming_the_number_to_write(args: list[str], typed: str,
                                                                          message: str) -> None:
    """A time option given a unit, as a user used to other tools types it (`--seconds 5s`,
    `--wait 250ms`): exit 2, saying the option takes seconds without a unit and which number to
    write. `run --seconds 5s` said only "'5s' is not a valid float.", and the others named no
    number to write."""
    result = CliRunner().invoke(main, [*args, typed])
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{args[-1]}': {message}" in result.output, result.output


@pytest.mark.parametrize("args, typed, message", [
    (["explore", "--timeout"], "2h", "'2h' is not a number of seconds (without a unit it is 7200, outside the range); "
                                     "expected 0.1..3,600"),
    (["explore", "--timeout"], "1ms", "'1ms' is not a number of seconds (without a unit it is 0.001, outside the range); "
                                      "expected 0.1..3,600"),
    (["stress", "--seconds"], "2000000s", "'2000000s' is not a number of seconds (without a unit it is 2000000, outside "
                                          "the range); expected 0.000000001..86,400"),
    (["run", "quickstart", "--seconds"], "200h", "'200h' is not a number of seconds (without a unit it is 720000, "
                                                 "outside the range); expected 0.000000001..604,800"),
    (["workloads", "show", "quickstart", "--seconds"], "0s", "'0s' is not a number of seconds (without a unit it is 0, "
                                                             "outside the range); expected 0.000000001..604,800"),
    (["run", "quickstart", "--seconds"], "5.s", "'5.s' is not a number of seconds (without a unit: write 5);"),
    (["run", "quickstart", "--seconds"], "10080.0000000001min", "'10080.0000000001min' is not a number of seconds "
                                                                "(without a unit it is 604800.000000006, outside the "
                                                                "range)"),
    (["run", "quickstart", "--seconds"], "1e2min", "'1e2min' is not a number of seconds (without a unit: write 6000);"),
    (["check", "rmm-mp-1-0badc0de", "--wait"], "5M", "'5M' is not a number of seconds; expected x>=0"),
    (["check", "rmm-mp-1-0badc0de", "--wait"], "5MS", "'5MS' is not a number of seconds; expected x>=0"),
    (["check", "rmm-mp-1-0badc0de", "--wait"], "5S", "'5S' is not a number of seconds (without a unit: write 5); "),
    (["stress", "--quiescent-every"], "5s", "'5s' is not a number (as a free-running run's seconds, without a unit: "
                                            "write 5): expected N steps or SECONDS, x>=0")],
    ids=["explore-2h", "explore-1ms", "stress-past-a-day", "run-past-a-week", "show-0s", "run-trailing-point", "run-just-past-a-week",
         "run-exponent",
         "check-capital-m", "check-capital-ms", "check-capital-s", "stress-quiescent-every"])
def test_a_unit_hint_names_no_number_the_option_refuses(args: list[str], typed: str, message: str) -> None:
    """The number a time typed with a unit stands for is offered as the one to write only when
    the option takes it: `explore --timeout 2h` said "write 7200" and then "expected 0.1..3,600",
    and `--seconds 0s` "write 0", which is refused in turn. A unit whose case changes its meaning
    (M: minutes or mega; MS: milliseconds or megaseconds) gets no hint: "5MS" was "write 0.005".
    "5.s" is "write 5", not "write 5." (a point that read as the sentence's); --quiescent-every,
    seconds in a free-running run, had no hint at all (and its hint says so: 5 in a deterministic
    run is 5 steps). A number with an exponent ("1e2min") gets one too: the unit pattern took none."""
    result = CliRunner().invoke(main, [*args, typed])
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{args[-1]}': {message}" in result.output, result.output


def test_a_unit_hint_does_not_repeat_a_number_of_hundreds_of_digits() -> None:
    """The refusal shows a 303-character `--seconds` value shortened; its unit hint repeated all
    300 digits ("without a unit it is 111...111, outside the range"). A number of more than 40
    characters gets no hint; one of 40 still does."""
    result = CliRunner().invoke(main, ["run", "quickstart", "--seconds", "1" * 300 + "s"])
    assert result.exit_code == 2, result.output
    assert "is not a number of seconds; expected" in result.output, result.output
    assert "1" * 200 not in result.output, result.output
    forty = "0." + "0" * 37 + "1"
    result = CliRunner().invoke(main, ["run", "quickstart", "--seconds", forty + "s"])
    assert f"(without a unit it is {forty}, outside the range)" in result.output, result.output
    # 40 characters typed, more to write: 46 in seconds for microseconds, 42 for 38 nines of hours.
    for value in (forty + "us", "9" * 38 + "h"):
        result = CliRunner().invoke(main, ["run", "quickstart", "--seconds", value])
        assert result.exit_code == 2, result.output
        assert f"{value!r} is not a number of seconds; expected" in result.output, result.output


@pytest.mark.parametrize("bounds", [dict(min=0), dict(min=0.1, max=3600), dict(max=5),
                                    dict(min=0, max=1, min_open=True, max_open=True), dict(min=0, min_open=True)])
def test_nan_refusal_writes_the_range_as_integer_ranges_are(bounds: dict[str, Any]) -> None:
    """clitypes.FloatRange's NaN refusal names the range as an integer range is named ('0.1..3,600'
    when closed; else click's notation: 'x>=0', '0<x<1'), written by rmm-mp rather than by a
    private click helper."""
    expected = {"{'min': 0}": "x>=0", "{'min': 0.1, 'max': 3600}": "0.1..3,600", "{'max': 5}": "x<=5",
                "{'min': 0, 'max': 1, 'min_open': True, 'max_open': True}": "0<x<1",
                "{'min': 0, 'min_open': True}": "x>0"}[str(bounds)]
    with pytest.raises(click.BadParameter, match=rf"'nan' is not a number of seconds; expected {re.escape(expected)}$"):
        FloatRange(**bounds).convert("nan", None, None)


@pytest.mark.parametrize("args, option, shown", [
    (["stress"], "--seconds", "0.000000001..86,400"),
    (["explore"], "--timeout", "0.1..3,600"),
    (["check"], "--wait", "x>=0")], ids=["stress-seconds", "explore-timeout", "check-wait"])
def test_float_ranges_read_as_integer_ranges_in_help(args: list[str], option: str, shown: str) -> None:
    """Each float-range option's --help shows its range as the integer options beside it do
    (`--cpus ... [default: 2; 2..64]`): a closed range with '..', digits grouped. click wrote
    '0<x<=86400' and '0.1<=x<=3600' there, unlike every integer range."""
    result = CliRunner().invoke(main, [*args, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.lstrip().startswith(option))
    assert line.rstrip().endswith(f"{shown}]"), line


@pytest.mark.parametrize("kind, bounds, expected", [
    (IntRange, dict(min=10_000), "x>=10,000"),
    (IntRange, dict(min=0, max=100_000, max_open=True), "0<=x<100,000"),
    (FloatRange, dict(min=0, max=86_400, min_open=True), "0<x<=86,400"),
    (FloatRange, dict(min=0.5, max=12_345.25), "0.5..12,345.25"),
    (FloatRange, dict(max=1e6), "x<=1,000,000"),
    # In decimals, as the workload's seconds error writes a nanosecond, not Python's 1e-09.
    (FloatRange, dict(min=1e-9, max=86_400), "0.000000001..86,400")])
def test_open_and_float_ranges_group_their_digits(kind: type[click.ParamType], bounds: dict[str, Any],
                                                  expected: str) -> None:
    """An open or endless range, integer or float, groups its digits as a closed integer range
    does (click's notation kept only where '..' cannot say an end is left out); IntRange left an
    open range to click ('x>=10000')."""
    with pytest.raises(click.BadParameter, match=rf"is not in the range {re.escape(expected)}\.?$"):
        kind(**bounds).convert("-99999999" if "min" in bounds else "99999999", None, None)


def _every_command(group: click.Group, path: list[str]) -> list[list[str]]:
    """The command paths under ``group`` (["stress"], ["attest", "verify"], ...), its own included."""
    paths = [path]
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if isinstance(command, click.Group):
            paths += _every_command(command, [*path, name])
        else:
            paths.append([*path, name])
    return paths


def test_help_shows_numeric_defaults_grouped() -> None:
    """Every command's --help shows each default with its digits grouped, as the ranges beside
    them are: `stress --steps` read "[default: 20000; 1..100,000,000]" and `explore --timeout`
    "[default: 20.0; ...]"; the sweep covers every command, so an option added with
    show_default=True but without clitypes.Option is caught."""
    shown = {}
    for path in _every_command(main, []):
        result = CliRunner().invoke(main, [*path, "--help"], terminal_width=400)
        assert result.exit_code == 0, (path, result.output)
        for default in re.findall(r"\[default: ([^;\]]*)", result.output):
            assert not re.search(r"[0-9]{4}|\.0\b", default), (path, default)
            shown[" ".join(path)] = default
    assert "[default: 20,000; 1..100,000,000]" in CliRunner().invoke(main, ["stress", "--help"],
                                                                     terminal_width=400).output
    assert len(shown) >= 3, shown       # the sweep saw the stress, explore and check defaults


def test_help_fits_an_80_column_terminal() -> None:
    """Every command's --help, on an 80-column terminal, keeps to 80 columns: click wraps the
    prose, but not a block marked \\b, and `attest verify`'s exit statuses ran to 87 columns,
    each wrapping in the middle of a word. (The tools' --help: tests/test_bench_tools.py.)"""
    for path in _every_command(main, []):
        result = CliRunner().invoke(main, [*path, "--help"], terminal_width=80)
        assert result.exit_code == 0, (path, result.output)
        wide = [line for line in result.output.splitlines() if len(line) > 80]
        assert wide == [], (path, wide)


_WRITE_AFTER_A_REPORT = ("import sys\nfrom rmm_mp.outpaths import write_json\n"
                         "print('the report', flush=True)\nwrite_json({'ok': True}, sys.argv[1])\n")


@pytest.mark.parametrize("into", ["pipe", "file"])
def test_a_json_report_to_dev_stdout_follows_the_text_report(tmp_path: Path, into: str) -> None:
    """A report written to /dev/stdout (`--json /dev/stdout`) after the text report, standard
    output a pipe (`| jq`) or a file (`> out.txt`): the output is the text and then the JSON.
    With a pipe the write failed ("No such file or directory": realpath made /dev/stdout
    /proc/PID/fd/pipe:[N], no such path, and a temporary file was made there); with a file the
    JSON was renamed over it, and the text written before was lost."""
    out = tmp_path / "out.txt"
    command = [sys.executable, "-c", _WRITE_AFTER_A_REPORT, "/dev/stdout"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if into == "pipe":
        proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
        text = proc.stdout
    else:
        with out.open("w") as stdout:
            proc = subprocess.run(command, stdout=stdout, stderr=subprocess.PIPE, text=True, env=env, timeout=60)
        text = out.read_text()
    assert proc.returncode == 0, proc.stderr
    assert text == 'the report\n{\n "ok": true\n}\n', text
    assert sorted(p.name for p in tmp_path.iterdir()) == (["out.txt"] if into == "file" else [])


def test_a_json_report_to_dev_stdout_whose_reader_left_ends_quietly() -> None:
    """`--json /dev/stdout | head -1`: standard output is a pipe whose reader has gone when the
    report (bigger than a pipe's buffer) is written to /dev/stdout. The write ends quietly, as
    the printing does, and the command goes on: exit status 0, nothing on stderr, and a line
    printed afterwards is dropped too. The write raised BrokenPipeError ("could not write the
    json report to /dev/stdout: Broken pipe", exit status 1, in `rmm-mp run`)."""
    script = ("import sys\nfrom rmm_mp.outpaths import write_json\n"
              "write_json({'filler': 'x' * 200_000}, '/dev/stdout')\nprint('result: OK')\n")
    reader, writer = os.pipe()
    os.close(reader)            # a reader that left before the first byte
    try:
        proc = subprocess.run([sys.executable, "-c", script], stdout=writer, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    finally:
        os.close(writer)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_a_json_report_to_dev_stdout_after_unflushed_text_whose_reader_left_ends_quietly() -> None:
    """As above, but a line was printed before the report and still sits in the block-buffered
    standard output (a library caller of write_json, without the rmm-mp program's stream
    wrapper): flushing it before the report meets the gone reader. The write still ends quietly:
    exit status 0, nothing on stderr. The flush's BrokenPipeError was caught before the
    context manager had yielded, so write_json failed "generator didn't yield" (exit status 1)."""
    script = ("import sys\nfrom rmm_mp.outpaths import write_json\nprint('a line before the report')\n"
              "write_json({'filler': 'x' * 200_000}, '/dev/stdout')\nprint('result: OK')\n")
    reader, writer = os.pipe()
    os.close(reader)            # a reader that left before the first byte
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}   # the line stays buffered
    try:
        proc = subprocess.run([sys.executable, "-c", script], stdout=writer, stderr=subprocess.PIPE, text=True,
                              env={**env, "PYTHONPATH": str(ROOT)}, timeout=60)
    finally:
        os.close(writer)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_text_printed_after_a_json_report_to_a_redirected_stdout_follows_it(tmp_path: Path) -> None:
    """A report written to /dev/stdout with standard output redirected to a file without
    O_APPEND (`--json /dev/stdout > out.txt`), and a line printed after it, as `rmm-mp run`
    prints "Written: ..." and "result: ...": the file holds the line before, the JSON, and the
    line after. The JSON was appended through a descriptor of its own, which left standard
    output's offset at the end of the first line, so the line after was written over the
    start of the JSON."""
    out = tmp_path / "out.txt"
    script = _WRITE_AFTER_A_REPORT + "print('result: OK', flush=True)\n"
    with out.open("w") as stdout:       # "w": O_TRUNC, not O_APPEND, as the shell's `>`
        proc = subprocess.run([sys.executable, "-c", script, "/dev/stdout"], stdout=stdout, stderr=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert out.read_text() == 'the report\n{\n "ok": true\n}\nresult: OK\n', out.read_text()


@pytest.mark.parametrize("args", [["explore", "no-such-pair"], ["workloads", "show", "no-such-workload"]],
                         ids=["explore", "workloads-show"])
def test_a_usage_error_with_stderr_closed_is_not_written_to_stdout(args: list[str]) -> None:
    """A usage error of the rmm-mp program started with standard error closed (`2>&-`): exit
    status 2 and nothing on standard output. Python made sys.stderr None, and click, given no
    stream, wrote "Usage: ... Error: ..." to standard output, into what a script reads there."""
    proc = subprocess.run([sys.executable, "-m", "rmm_mp", *args], stdout=subprocess.PIPE, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60,
                          preexec_fn=lambda: os.close(2))
    assert proc.returncode == 2 and proc.stdout == "", proc.stdout


@pytest.mark.parametrize("args", [["+x"], ["+"], ["platform", "+x"], ["attest", "++"], ["workloads", "+x", "y"]])
def test_a_command_that_looks_like_an_option_is_no_such_command(args: list[str]) -> None:
    """`rmm-mp +x` (a word the groups' parsers, which know '-' only, take for a command name):
    exit 2, "No such command '+x'.", as click 8.2 and later say. Under click 8.1, which the
    package allows, it printed the group's help and exited 0 (click parsed the arguments after
    the word again, none, as a group with no arguments)."""
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    word = next(arg for arg in args if arg.startswith("+"))
    assert f"Error: No such command '{word}'." in result.output, result.output
    assert "Commands:" not in result.output, result.output


@pytest.mark.parametrize("typed, meant", [("exlpore", "explore"), ("stres", "stress"), ("wokrloads", "workloads"),
                                          ("clen", "clean"), ("xyz", None)])
def test_a_misspelt_command_is_named_with_the_command_meant(typed: str, meant: str | None) -> None:
    """`rmm-mp exlpore`: exit 2 and "Did you mean 'explore'?", once, for a command of another
    module (SUBCOMMANDS) as for one defined in cli.py (`clen`); a word close to none, no hint.
    click offered only the commands it had loaded, so the subcommands imported on demand
    (explore, stress, check, run, workloads, attest) were never suggested."""
    result = CliRunner().invoke(main, [typed])
    assert result.exit_code == 2, result.output
    assert f"No such command '{typed}'." in result.output, result.output
    if meant is None:
        assert "Did you mean" not in result.output, result.output
    else:
        assert result.output.count(f"Did you mean '{meant}'?") == 1, result.output


def test_a_typed_float_survives_pickling_and_copying() -> None:
    """A TypedFloat (`--seconds 1.50` as typed) pickled, as a spawned CPU process's arguments
    are, and copied (copy.copy, copy.deepcopy, as dataclasses and configs are): the same number
    and the same text. Its __new__ requires the text, and float's pickling gives the number
    alone, so each raised TypeError."""
    import copy
    import pickle
    typed = TypedFloat(1.5, "1.50")
    for made in (pickle.loads(pickle.dumps(typed)), copy.copy(typed), copy.deepcopy(typed)):
        assert type(made) is TypedFloat and made == 1.5 and repr(made) == "1.50", repr(made)


BAD_PLATFORM = 'name = "x"\ncpus = 0\n'
"""A platform file missing its attestation table (the first error the loader names)."""


@pytest.mark.parametrize("make_args", [
    lambda bad, wl: ["platform", "show", bad],
    lambda bad, wl: ["workloads", "show", "quickstart", "--platform", bad],
    lambda bad, wl: ["workloads", "show", wl],
    lambda bad, wl: ["run", wl],
], ids=["platform-show", "workloads-show-platform", "workloads-show-file", "run-file"])
def test_a_bad_input_file_is_an_error_line_without_the_usage_block(tmp_path: Path, make_args: Any) -> None:
    """A bad platform file, named by `platform show`, by `--platform` or by a workload file's
    platform key, and a workload file with a TOML syntax error: exit status 2 and the error
    naming the file, the key, the value and what was expected, with no click usage block
    ("Usage: ... Try '... --help'"): the invocation was right, the file's content was not. Every
    one of these printed the usage block before the error."""
    bad = tmp_path / "bad.toml"
    bad.write_text(BAD_PLATFORM)
    wl = tmp_path / "w.toml"
    wl.write_text(f'seconds = 1\nplatform = "{bad}"\nactivities = {{ run = 1 }}\n'
                  '[[realm]]\nname = "vm"\nguest = "hello"\n')
    result = CliRunner().invoke(main, make_args(str(bad), str(wl)))
    assert result.exit_code == 2, result.output
    assert result.output == f"Error: {bad}: attestation = (missing): expected a value: the key is required\n", \
        result.output
    wl.write_text("x = [1\n")
    syntax = CliRunner().invoke(main, ["workloads", "show", str(wl)])
    assert syntax.exit_code == 2 and syntax.output.startswith(f"Error: {wl}:1: "), syntax.output


@pytest.mark.parametrize("args", [["platform", "show", "no-such-platform"], ["run", "quickstart", "--cpus", "999"]],
                         ids=["platform-name", "run-cpus"])
def test_a_bad_argument_or_option_keeps_the_usage_block(args: list[str]) -> None:
    """A bad argument or option (no such platform name, more CPUs than the platform has) is an
    error of the invocation: exit status 2 with click's usage block before the error, whose
    source is "command line"."""
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert result.output.startswith("Usage: ") and "Error: command line: " in result.output, result.output


@pytest.mark.parametrize("command", [["run"], ["workloads", "show"]])
@pytest.mark.parametrize("workload_first", [True, False], ids=["workload-first", "option-first"])
def test_a_unit_hint_knows_the_workloads_phases(command: list[str], workload_first: bool) -> None:
    """`--seconds 2e-9s` with churn (4 phases) said "write 0.000000002", which the file's phases
    refuse in turn (phase[0] would last 0.6 ns, less than the nanosecond a phase needs). The hint
    now says so, wherever WORKLOAD is typed; a number the phases take is still offered
    (1e-8s: write 0.00000001, which `workloads show churn` then accepts)."""
    words = ["churn", "--seconds", "2e-9s"] if workload_first else ["--seconds", "2e-9s", "churn"]
    result = CliRunner().invoke(main, [*command, *words])
    assert result.exit_code == 2, result.output
    assert ("'2e-9s' is not a number of seconds (without a unit it is 0.000000002, too short for the file's 4 "
            "phases: phase[0] 'tables' would last 6e-10 s, less than 0.000000001 s); expected") in result.output, \
        result.output
    plain = CliRunner().invoke(main, ["workloads", "show", "churn", "--seconds", "0.000000002"])
    assert plain.exit_code != 0 and "gives each of the file's 4 phases" in plain.output, plain.output
    fits = CliRunner().invoke(main, [*command, "churn", "--seconds", "1e-8s"])
    assert "(without a unit: write 0.00000001)" in fits.output, fits.output
    assert CliRunner().invoke(main, ["workloads", "show", "churn", "--seconds", "0.00000001"]).exit_code == 0
    # A file without phases takes any number in the range: the hint is as it was.
    single = CliRunner().invoke(main, [*command, "quickstart", "--seconds", "2e-9s"])
    assert "(without a unit: write 0.000000002)" in single.output, single.output


@pytest.mark.parametrize("command", [["run"], ["workloads", "show"]])
@pytest.mark.parametrize("words, refused", [
    (["--seconds", "5s"], "'5s' is not a number of seconds (without a unit: write 5); expected"),
    (["--seconds", "abc"], "'abc' is not a number of seconds; expected"),
    (["--cpus", "x"], "'x' is not a valid integer"),
])
def test_a_bad_option_is_refused_before_a_missing_workload(command: list[str], words: list[str], refused: str) -> None:
    """With WORKLOAD left out, a refused option is told first, as it was before the unit hint
    came to know the workload's phases: making WORKLOAD an eager argument (to know it wherever it
    is typed) had "Missing argument 'WORKLOAD'" hide the option's own refusal."""
    result = CliRunner().invoke(main, [*command, *words])
    assert result.exit_code == 2, result.output
    assert refused in result.output and "Missing argument" not in result.output, result.output
    missing = CliRunner().invoke(main, [*command, "--seconds", "5"])
    assert missing.exit_code == 2 and "Missing argument 'WORKLOAD'" in missing.output, missing.output


def test_platform_show_names_a_directory_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`rmm-mp platform show d`, d a directory, said only "expected a bundled platform ... or a
    path to a .toml file", where `run d` is told "('d' is a directory)"."""
    (tmp_path / "d").mkdir()
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["platform", "show", "d"])
    assert result.exit_code == 2, result.output
    assert "or a path to a .toml file ('d' is a directory)" in result.output, result.output


@pytest.mark.parametrize("typed, named", [("1e39s", "1e39"), ("1.e39s", "1e39"), ("1e-39s", "1e-39"),
                                          ("1e39min", "6e40"), ("1e+39s", "1e39"), ("1e40us", "1e34")],
                         ids=["e39", "point-e39", "e-39", "minutes", "plus-e39", "microseconds"])
def test_a_unit_hint_names_a_number_written_with_an_exponent_with_one(tmp_path: Path, typed: str,
                                                                       named: str) -> None:
    """`--seconds 1e39s` (and a workload's `seconds = "1e39s"`) was "without a unit it is
    1000000000000000000000000000000000000000, outside the range": a 40-digit number nobody wrote.
    It is named as written, with its exponent (another unit's product with one), in one form
    for every unit: "1e39min" was named "6e+40" where "1e39s" was "1e39"."""
    result = CliRunner().invoke(main, ["run", "quickstart", "--seconds", typed])
    assert result.exit_code == 2, result.output
    assert f"(without a unit it is {named}, outside the range)" in result.output, result.output
    (tmp_path / "w.toml").write_text(f'seconds = "{typed}"\n[[realm]]\nname = "vm"\nguest = "hello"\n')
    result = CliRunner().invoke(main, ["workloads", "validate", str(tmp_path / "w.toml")])
    assert result.exit_code == 2, result.output
    assert f"(without a unit it is {named}, outside the range)" in result.output, result.output
