"""`rmm-mp run`'s figures when CPUs never started: a Ctrl-C or SIGTERM in the CPU processes'
start-up kills those not yet given their go (RunResult.not_started). The parent's own realm
build on CPU 0 must not pass for CPU 0's figures, and a report of CPUs none of which ran says
that it has no figures, not that no call was made."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rmm_mp.cpu_outcome import RunResult
from rmm_mp.hw.granule import CLASSES
from rmm_mp.machine import Machine
from rmm_mp.workload import render, run, spec
from rmm_mp.workload.report import RunReport
from rmm_mp.workload.resolve import resolve
from rmm_mp.workload.run import RunOptions, run_workload

WORKLOAD = ('seconds = 10\ncpus = 2\nactivities = { run = 1 }\n'
            '[[realm]]\nname = "vm"\nguest = "hello"\n')
"""Two CPUs and one realm the parent builds on CPU 0 before the CPUs start (taking granule locks)."""


def _run_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, not_started: tuple[int, ...],
              seen: dict[int, list[tuple[int, int, int, int]]] | None = None, workload: str = WORKLOAD) -> RunReport:
    """``workload`` run with run_cpus replaced by one that starts no process and returns what a
    Ctrl-C in the start-up of CPUs ``not_started`` returns; it first notes every CPU's published
    lock figures in ``seen`` (what the CPU processes would have found in their areas)."""
    def interrupted(machine: Machine, *_: Any, **__: Any) -> RunResult:
        for cpu in range(machine.cpus):
            area = machine.cpu_area(cpu)
            try:
                if seen is not None:
                    seen[cpu] = area.lock_class_stats(CLASSES)
            finally:
                area.release()
        return RunResult({}, (), True, 0.1, "interrupted (Ctrl-C)", interrupted_by="Ctrl-C", not_started=not_started)

    monkeypatch.setattr(run, "run_cpus", interrupted)
    path = tmp_path / "w.toml"
    path.write_text(workload)
    return run_workload(resolve(spec.load(str(path))), RunOptions(progress=False))


def test_the_parent_s_build_leaves_no_lock_figures_in_cpu_0_s_area(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The parent builds realm vm on CPU 0 (latency recording off), then the CPU processes would
    start: CPU 0's area holds no lock acquisition by then. It used to hold the build's (closing
    the parent's handle published them), which CPU 0's row of the lock table showed as its own
    when its process died before its first flush, or bound no CPU at all."""
    seen: dict[int, list[tuple[int, int, int, int]]] = {}
    _run_with(tmp_path, monkeypatch, (0, 1), seen)
    assert seen[0] == [(0, 0, 0, 0)] * CLASSES, seen[0]


def test_a_run_whose_cpus_never_started_has_no_figures_and_says_why(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Both CPUs were killed in their start-up (never started): the report has no lock or latency
    figures of theirs (no empty row per CPU, and no time split: not one "all" row of zeros, as
    with --no-latency), the JSON lists them in not_started, and the text's
    latency and lock sections say that there are no figures and why, naming the CPUs never
    started, where they said "No calls were made." and "no granule lock was taken"."""
    report = _run_with(tmp_path, monkeypatch, (0, 1))
    assert report.not_started == (0, 1)
    assert report.locks == {} and report.stats == {}, (report.locks, report.stats)
    text = render.format_report(report)
    assert "Latency: no figures (CPUs 0 and 1 (2) were never started: " in text, text
    assert "Lock contention: no figures (CPUs 0 and 1 (2) were never started: " in text, text
    assert "No calls were made" not in text and "no granule lock was taken" not in text, text
    sections = text[text.index("Latency: "):text.index("Realms: ")]
    assert max(len(line) for line in sections.splitlines()) <= 118, sections
    doc = render.to_json(report)
    assert doc["locks"] == [] and doc["latency"] == [] and doc["time_split"] == [], doc
    assert doc["not_started"] == [0, 1], doc["not_started"]


def test_cpus_that_ran_keep_their_figures_beside_one_never_started(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Of 2 CPUs, CPU 1 never started (CPU 0, as stood in for here, returned nothing): the
    figures are read of CPU 0 alone, and the latency and lock sections do not claim that there
    were no figures (CPU 0 ran)."""
    report = _run_with(tmp_path, monkeypatch, (1,))
    assert list(report.stats) == [0] and list(report.locks) == [0], (report.stats, report.locks)
    text = render.format_report(report)
    assert "No calls were made." in text and "Lock contention: no granule lock was taken." in text, text
    assert render.to_json(report)["not_started"] == [1]


@pytest.mark.parametrize("not_started, warned", [
    ((0, 1, 2), ""),
    ((2,), "2 simulated CPUs (of 3; 1 never started) on 1 host core: latency includes time"),
], ids=["none-started", "two-of-three"])
def test_only_the_cpus_started_count_for_the_oversubscription_warning(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, not_started: tuple[int, ...], warned: str) -> None:
    """3 CPUs on a host of one core, some never started (killed in their start-up): the
    oversubscription warning counts the CPUs started only. None started: no warning (no CPU ran,
    yet it warned of 3 CPUs on 1 core); two started: a warning naming those two of the 3."""
    monkeypatch.setattr(run, "host_cores", lambda: [0])
    report = _run_with(tmp_path, monkeypatch, not_started, workload=WORKLOAD.replace("cpus = 2", "cpus = 3"))
    assert report.oversubscribed == bool(warned)
    shown = [w for w in render.warnings(report) if "host core" in w]
    assert [w[:len(warned)] for w in shown] == ([warned] if warned else []), shown


def test_a_run_whose_cpus_never_started_is_said_to_have_stopped_before_they_started(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both CPUs were killed in their start-up: the header says that the run stopped before the
    CPUs started, as for an interrupt during the realms' build, where it said "the run was
    stopped before its end", as of a run cut short."""
    text = render.format_report(_run_with(tmp_path, monkeypatch, (0, 1)))
    assert "INTERRUPTED: stopped before the CPUs started (Ctrl-C): see 'Not done' below" in text, text
    assert "stopped before its end" not in text, text


def test_the_never_started_line_of_not_done_is_wrapped_to_the_report_s_width(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both CPUs were killed in their start-up: every line of the text report, the "Not done"
    line naming them included (some 150 columns in one line before), stays within the width
    of 118 columns, a wrapped line indented under its first."""
    text = render.format_report(_run_with(tmp_path, monkeypatch, (0, 1)))
    assert max(len(line) for line in text.splitlines()) <= 118, text
    assert "\n  CPUs 0 and 1 (2) were never started: the run was interrupted (Ctrl-C) during their start-up, before they bound to\n" \
           "    the machine, so none made a call\n" in text, text


def test_a_run_whose_cpus_never_started_says_so_in_its_header_and_realm_rows(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both CPUs were killed in their start-up: the header says the CPUs never ran, where it said
    "ran 0.10 s" (the start-up's time, read as a run's length) and "latency recorded: yes (0 calls
    ...)"; realm vm's row says it was not run, where it said "running when the run ended (0 REC
    entries)", as of a realm the CPUs had left waiting."""
    report = _run_with(tmp_path, monkeypatch, (0, 1))
    text = render.format_report(report)
    assert ", not run: the CPUs never started (limit 10 s)" in text.splitlines()[1], text
    assert "latency recorded: asked, but no CPU ran: no calls" in text, text
    assert " ran 0." not in text and "0 calls" not in text, text
    (vm,) = report.realms
    assert vm.ok and vm.detail == "not run: the CPUs never started", vm


def test_a_realm_kept_to_a_cpu_never_started_says_it_was_not_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Of 2 CPUs, CPU 1 was killed in its start-up: realm kept (cpus = [1]) says it was not run,
    naming CPU 1; realm any, which CPU 0 could have run, is still "running when the run ended",
    and the header gives the run's time, as a CPU did run."""
    workload = WORKLOAD + '[[realm]]\nname = "kept"\nguest = "hello"\ncpus = [1]\n'
    report = _run_with(tmp_path, monkeypatch, (1,), workload=workload)
    details = {r.name: r.detail for r in report.realms}
    assert details == {"vm": "running when the run ended (0 REC entries)",
                       "kept": "not run: CPU 1, the only one to run its vCPUs, never started"}, details
    assert ", ran 0.10 s (limit 10 s)" in render.format_report(report), report


def test_a_run_whose_cpus_never_started_claims_no_load_as_they_started(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both CPUs were killed in their start-up (the header says "not run"): the text has no host
    load line, which said "... as the CPUs started, ... as they ended" of CPUs that never started
    or ended. The JSON keeps the two averages (measured, and documented as present then); one CPU
    of two started: the line is there."""
    monkeypatch.setattr(run.os, "getloadavg", lambda: (0.5, 0.25, 0.125))
    report = _run_with(tmp_path, monkeypatch, (0, 1))
    assert report.host["load_start"] == [0.5, 0.25, 0.12], report.host
    text = render.format_report(report)
    assert "not run: the CPUs never started" in text and "host load" not in text, text
    one_ran = render.format_report(_run_with(tmp_path, monkeypatch, (1,)))
    assert "host load (1, 5, 15-minute averages): 0.50 0.25 0.12 as the CPUs started" in one_ran, one_ran
