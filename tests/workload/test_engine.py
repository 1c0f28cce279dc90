"""The workload engine end to end on CPU processes (rmm_mp.workload.run / engine / activities):
the report's per-call counts equal the calls the activities counted; a run is reproducible for
one seed; a realm whose guest reports failure, a vCPU the host cannot continue and a broken
invariant each make the report fail; everything is torn down afterwards.

Each test runs a small workload for a fixed number of steps per CPU (no timing assertion).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from realm_guests import PRELUDE, REPORT_TAIL, failing_guest
from rmm_mp import Machine
from rmm_mp.check import InvariantReport, Violation, invariants
from rmm_mp.hw.quiesce import Pause
from rmm_mp.workload import render, run, spec
from rmm_mp.workload.report import RunReport
from rmm_mp.workload.resolve import resolve
from rmm_mp.workload.run import RunOptions, run_workload

pytestmark = pytest.mark.multiprocess

JUMP_TO_UNBACKED_RAM = """
start:
    mov x0, =0x80100000             // RIPAS RAM, never populated: an instruction abort for the host
    br x0
"""


def go(tmp_path: Path, text: str, **options: object) -> RunReport:
    path = tmp_path / "w.toml"
    path.write_text(text)
    return run_workload(resolve(spec.load(str(path)), **options), RunOptions(progress=False))  # type: ignore[arg-type]


def records(report: RunReport) -> dict[tuple[object, str], int]:
    return {(r["cpu"], r["call"]): r["count"] for r in render.to_json(report)["latency"]}


def test_delegate_churn_counts_match_the_calls(tmp_path: Path) -> None:
    """delegate-churn, 2 CPUs x 400 steps: per CPU the JSON's DELEGATE count is the private
    rounds plus the shared DELEGATE wins and losses (UNDELEGATE likewise), the error count is
    the losses, total_calls sums the records, and the balance check and teardown leave no problem."""
    report = go(tmp_path, "iterations = 400\ncpus = 2\nactivities = { delegate-churn = 1 }\n")
    assert report.ok, (report.problems, report.failures)
    doc = render.to_json(report)
    counts = records(report)
    errors = {(r["cpu"], r["call"]): r["errors"] for r in doc["latency"]}
    for cpu in (0, 1):
        c = report.counters[cpu]
        assert c["delegate-churn steps"] == 400
        # Each step is a private round or one shared DELEGATE or UNDELEGATE, won or lost.
        assert c["private rounds"] + c["shared delegated"] + c["shared delegate lost"] + c["shared undelegated"] \
            + c["shared undelegate lost"] == 400
        assert counts[(cpu, "RMI_GRANULE_DELEGATE")] == c["private rounds"] + c["shared delegated"] + c["shared delegate lost"]
        assert counts[(cpu, "RMI_GRANULE_UNDELEGATE")] == \
            c["private rounds"] + c["shared undelegated"] + c["shared undelegate lost"]
        assert errors[(cpu, "RMI_GRANULE_DELEGATE")] == c["shared delegate lost"]
    assert doc["total_calls"] == sum(n for (cpu, _), n in counts.items() if cpu != "all")
    assert (doc["seed"], doc["iterations"], doc["cpus"]) == (0, 400, 2)
    # Each CPU's CPU time over its window: spent, and no more than the window lasted.
    assert set(report.window_cpu_s) == {0, 1}
    assert all(0 < used <= report.elapsed_s + 0.01 for used in report.window_cpu_s.values()), report.window_cpu_s


def test_run_counts_every_rec_entry_and_exit(tmp_path: Path) -> None:
    """A resident ripas-loop realm (2 RECs) run by 2 CPUs for 150 steps each: per CPU, REC_ENTER
    calls = the REC entries the run steps made = the REC exits by reason; run steps = entries +
    empty-queue polls. The realm is still running at the end: ok, and torn down afterwards."""
    report = go(tmp_path, 'iterations = 150\ncpus = 2\nactivities = { run = 1 }\n'
                          '[[realm]]\nname = "loop"\nguest = "ripas-loop"\nrecs = 2\n')
    assert report.ok, (report.problems, report.failures, report.realms)
    counts = records(report)
    for cpu in (0, 1):
        c = report.counters[cpu]
        exits = sum(n for (who, call), n in counts.items() if who == cpu and call.startswith("EXIT_"))
        assert counts.get((cpu, "RMI_REC_ENTER"), 0) == c.get("REC entries", 0) == exits
        assert c["run steps"] == 150 == c.get("REC entries", 0) + c.get("queue empty", 0)
    (loop,) = report.realms
    assert loop.ok and loop.name == "loop" and "running when the run ended" in loop.detail
    assert loop.counters["entries"] == sum(report.counters[c].get("REC entries", 0) for c in (0, 1))


def test_ripas_churn_enters_its_own_realm(tmp_path: Path) -> None:
    """ripas-churn on 1 CPU for 60 steps: 60 REC_ENTERs of the CPU's private ripas-loop realm,
    whose RIPAS changes the host answers with RTT_SET_RIPAS; the realm is reported ok."""
    report = go(tmp_path, "iterations = 60\ncpus = 1\nactivities = { ripas-churn = 1 }\n")
    assert report.ok, (report.problems, report.failures, report.realms)
    counts = records(report)
    assert counts[(0, "RMI_REC_ENTER")] == report.counters[0]["ripas-churn entries"] == 60
    assert counts[(0, "RMI_RTT_SET_RIPAS")] >= 2 and counts[(0, "EXIT_RIPAS_CHANGE")] >= 2
    (realm,) = report.realms
    assert realm.ok and realm.name == "ripas-churn.cpu0" and realm.counters["ripas_changes"] >= 2


def test_a_realm_turned_off_by_the_lifecycle_says_so_when_the_run_ends_first(tmp_path: Path) -> None:
    """A lifecycle ripas-loop realm with lifetime 1 on 1 CPU: step 1 runs its vCPU, step 2 turns
    it off (the REC entry reached its lifetime), step 3 drains its vCPU, step 4 tears it down. A
    run that ends after step 2 or 3 leaves it alive but turned off by the lifecycle: its outcome
    says so (not "running when the run ended", nor "turned itself off": ripas-loop never does)."""
    text = ('cpus = 1\nactivities = { lifecycle = 1 }\n'
            '[[realm]]\nname = "vm"\nguest = "ripas-loop"\nlifecycle = true\nlifetime = 1\n')
    for steps in (2, 3):
        report = go(tmp_path, text, iterations=steps)
        assert report.ok, (report.problems, report.failures, report.realms)
        assert report.counters[0]["realms turned off"] == 1
        (vm,) = report.realms
        assert vm.name == "vm#0" and vm.detail == "turned off by the lifecycle after 1 REC entry", (steps, vm)


def test_phase_step_counters_whenever_the_file_has_phases(tmp_path: Path) -> None:
    """`phase NAME steps` is counted when the file has [[phase]] entries, a single one too
    (docs/workloads.md), and not for a file without phases (its one phase is the engine's)."""
    one = go(tmp_path, 'cpus = 1\n[[phase]]\nname = "only"\niterations = 20\nactivities = { delegate-churn = 1 }\n')
    assert one.ok, (one.problems, one.failures)
    assert one.counters[0]["phase only steps"] == 20 == one.counters[0]["delegate-churn steps"]
    none = go(tmp_path, "iterations = 20\nactivities = { delegate-churn = 1 }\n", cpus=1)
    assert none.ok and not any(k.startswith("phase ") for k in none.counters[0]), none.counters


def test_one_cpu_run_is_reproducible_for_a_seed(tmp_path: Path) -> None:
    """On one CPU nothing races, so a seed fixes everything: the same counters twice for seed 3
    (rtt-churn, map-shared and delegate-churn on a resident realm), other counters for seed 4."""
    text = ('iterations = 300\ncpus = 1\nactivities = { rtt-churn = 2, map-shared = 1, delegate-churn = 1 }\n'
            '[[realm]]\nname = "r"\nguest = "hello"\n')
    first, second, other = (go(tmp_path, text, seed=s) for s in (3, 3, 4))
    assert first.ok and second.ok and other.ok, (first.problems, second.problems, other.problems)
    assert first.counters == second.counters
    assert other.counters != first.counters
    assert first.seed == 3 and render.to_json(first)["seed"] == 3


def test_recording_does_not_change_a_one_cpu_run(tmp_path: Path) -> None:
    """With latency recording off (`--no-latency`) a 1-CPU run does the same work as with it on
    (tools/bench_run.py compares the two and relies on this), and records nothing."""
    path = tmp_path / "w.toml"
    path.write_text('iterations = 200\ncpus = 1\nactivities = { run = 2, rtt-churn = 1 }\n'
                    '[[realm]]\nname = "r"\nguest = "ripas-loop"\n')
    on, off = (run_workload(resolve(spec.load(str(path))), RunOptions(progress=False, recording=recording))
               for recording in (True, False))
    assert on.ok and off.ok, (on.problems, off.problems)
    assert on.counters == off.counters and on.counters[0]["REC entries"] > 0
    assert on.total_calls > 0 and off.total_calls == 0


def test_every_step_is_recorded_as_its_activity(tmp_path: Path) -> None:
    """docs/latency.md's HOST kind: each step is one record in its activity's slot (HOST_RUN,
    HOST_RTT_CHURN ...), so per CPU a HOST record counts exactly the steps the counters report."""
    report = go(tmp_path, 'iterations = 120\ncpus = 2\nactivities = { run = 2, rtt-churn = 1, map-shared = 1 }\n'
                          '[[realm]]\nname = "r"\nguest = "ripas-loop"\nrecs = 2\n')
    assert report.ok, (report.problems, report.failures)
    counts = records(report)
    for cpu in (0, 1):
        steps = {k.removesuffix(" steps"): v for k, v in report.counters[cpu].items() if k.endswith(" steps")}
        host = {call.removeprefix("HOST_").lower().replace("_", "-"): n for (c, call), n in counts.items()
                if c == cpu and call.startswith("HOST_")}
        assert host == steps and sum(host.values()) == 120, (host, steps)
    doc = render.to_json(report)
    kinds = {r["call"]: r["kind"] for r in doc["latency"]}
    assert kinds["HOST_RUN"] == "HOST" and "Host activities" in render.format_report(report)


def test_host_steps_have_no_el3_or_lock_wait_part(tmp_path: Path) -> None:
    """A HOST record is a host-side step, not an SMC: like RSI, PSCI and EXIT records, its whole
    time is RMM (handler) time and its el3_mean and lock_wait_mean are 0 (docs/report-schema.json:
    "0 except for RMI"); the EL3 estimate of RMI slots with no sampled call must not reach it."""
    report = go(tmp_path, 'iterations = 60\ncpus = 1\nactivities = { run = 1 }\n'
                          '[[realm]]\nname = "r"\nguest = "ripas-loop"\n')
    assert report.ok, (report.problems, report.failures)
    doc = render.to_json(report)
    host = [r for r in doc["latency"] if r["kind"] == "HOST"]
    assert host and any(r["kind"] == "RMI" and r["el3_mean"] > 0 for r in doc["latency"])
    for r in host:
        assert (r["el3_mean"], r["lock_wait_mean"], r["rmm_mean"]) == (0, 0, r["mean"]), r


def test_trace_names_a_lifecycle_realm_only_on_its_own_calls(tmp_path: Path) -> None:
    """A lifecycle realm rebuilt on the same granules: the trace names the generation alive at
    the end only on records made after it was built, so no more RMI_REC_ENTER and REC runs carry
    its name than the REC entries it had (earlier generations' entries are not its own)."""
    path = tmp_path / "w.toml"
    path.write_text('iterations = 150\ncpus = 1\nactivities = { run = 2, lifecycle = 1 }\n'
                    '[[realm]]\nname = "boot"\nguest = "ripas-flip"\nlifecycle = true\n')
    trace_path = tmp_path / "t.json"
    report = run_workload(resolve(spec.load(str(path))), RunOptions(progress=False, trace_path=str(trace_path)))
    assert report.ok, (report.problems, report.failures)
    last = report.realms[-1]
    assert last.name != "boot#0" and last.detail.startswith("running"), report.realms  # a rebuilt one is alive
    events = [e for e in json.loads(trace_path.read_text())["traceEvents"] if e["ph"] == "X"]
    for name in ("RMI_REC_ENTER", "REC run"):
        labelled = [e for e in events if e["name"].startswith(name) and e["args"].get("realm", "").startswith(last.name)]
        assert len(labelled) == last.counters.get("entries", 0), (name, len(labelled), last)


@pytest.mark.parametrize("capacity", [64, 1 << 16])
def test_a_trace_ring_that_overflowed_is_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capacity: int) -> None:
    """A trace whose ring kept only the newest records of a CPU says so in the report's warnings,
    with the records lost, as the file's otherData.dropped counts them (the report was silent and
    only the file showed that its timeline starts late), and what to do about it (the warning said only
    what was lost); a trace that kept every record does not."""
    monkeypatch.setattr(run, "TRACE_CAPACITY", capacity)
    path = tmp_path / "w.toml"
    path.write_text('iterations = 200\ncpus = 1\nactivities = { run = 1 }\n[[realm]]\nname = "r"\nguest = "ripas-loop"\n')
    trace_path = tmp_path / "t.json"
    report = run_workload(resolve(spec.load(str(path))), RunOptions(progress=False, trace_path=str(trace_path)))
    assert report.ok, (report.problems, report.failures)
    lost = json.loads(trace_path.read_text())["otherData"]["dropped"]["0"]
    about_trace = [w for w in render.warnings(report) if "trace" in w]
    if capacity == 64:
        assert lost > 0 and report.trace_dropped == {0: lost}
        assert about_trace == [f"the trace holds only the newest 64 records of each CPU, so its timeline starts "
                               f"late; older records were overwritten (CPU 0 {lost:,}; the file's otherData.dropped); "
                               f"to trace a run from its start, make it shorter (--seconds or --iterations)"]
        assert f"WARNING: {about_trace[0]}" in render.format_report(report).replace("\n    ", " ")  # wrapped
        assert about_trace[0] in render.to_json(report)["warnings"]
    else:
        assert lost == 0 and report.trace_dropped == {} and about_trace == []


def test_a_realm_reporting_failure_fails_the_run(tmp_path: Path) -> None:
    """A guest (a .s file next to the workload) that REPORTs code 7: its outcome is a failure
    naming the code and detail, so the report is not ok; the rest of the run is fine."""
    (tmp_path / "fails.s").write_text(failing_guest(7, 0x55))
    report = go(tmp_path, 'iterations = 20\ncpus = 1\nactivities = { run = 1 }\n'
                          '[[realm]]\nname = "bad"\nguest = "fails.s"\n')
    (bad,) = report.realms
    assert not bad.ok and "reported failure code 7 (detail 0x55)" in bad.detail
    assert not report.ok and not report.failures and not report.problems and report.invariants.ok  # type: ignore[union-attr]


def test_measure_guest_passes_with_any_hash_and_value(tmp_path: Path) -> None:
    """The measure guest compares REM1 with EXPECTED0..7, which depend on the realm's hash and
    the value it extends with: the engine derives them, so a SHA-512 realm and one with its own
    VALUE/SIZE pass (both used to fail with code 3, the guest's SHA-256 default differing)."""
    report = go(tmp_path, 'iterations = 20\ncpus = 1\nactivities = { run = 1 }\n'
                          '[[realm]]\nname = "s512"\nguest = "measure"\nhash = "sha512"\n'
                          '[[realm]]\nname = "own"\nguest = "measure"\nconstants = { SIZE = 5, VALUE0 = 0x1234567890 }\n'
                          '[[realm]]\nname = "own512"\nguest = "measure"\nhash = "sha512"\nconstants = { SIZE = 0 }\n')
    assert [(r.name, r.ok) for r in report.realms] == [("s512", True), ("own", True), ("own512", True)], \
        [r.detail for r in report.realms]
    assert all("reported pass" in r.detail for r in report.realms)


def test_an_attest_token_copied_to_an_unaligned_shared_offset_is_read(tmp_path: Path) -> None:
    """The attest guest copies its token byte by byte to SHARED_OFFSET, which may lie anywhere
    in its RAM; the host maps whole pages there. The token used to be looked up with the
    unaligned IPA as a page's, so a realm that did everything right failed with "its token at
    IPA ... is on no page the host shared with it". The second realm's copy crosses a page."""
    report = go(tmp_path, 'iterations = 40\ncpus = 1\nactivities = { run = 1 }\n'
                          '[[realm]]\nname = "inside"\nguest = "attest"\nram = "4M"\n'
                          'constants = { SHARED_OFFSET = 0x200010 }\n'
                          '[[realm]]\nname = "across"\nguest = "attest"\nram = "4M"\n'
                          'constants = { SHARED_OFFSET = 0x200F00 }\n')
    assert [(r.name, r.ok) for r in report.realms] == [("inside", True), ("across", True)], \
        [r.detail for r in report.realms]
    assert all("verified" in r.detail for r in report.realms)


def test_smp_guests_start_every_rec_past_16(tmp_path: Path) -> None:
    """smp-boot and ripas-loop CPU_ON every secondary, naming REC i by its MPIDR (Aff1 = i / 16,
    Aff0 = i % 16): with 20 RECs all 19 secondaries start and smp-boot reports 20. They used to
    stop at 16 RECs, naming REC i by MPIDR i, and the rest never ran."""
    report = go(tmp_path, 'iterations = 1200\ncpus = 2\nactivities = { run = 1 }\n'
                          '[[realm]]\nname = "smp"\nguest = "smp-boot"\nrecs = 20\n'
                          '[[realm]]\nname = "loop"\nguest = "ripas-loop"\nrecs = 20\nram = "4M"\n')
    smp, loop = report.realms
    assert smp.ok and "reported pass (detail 0x14)" in smp.detail, smp.detail
    assert smp.counters["cpu_on"] == 19 and loop.counters["cpu_on"] == 19, (smp.counters, loop.counters)


def test_a_failed_vcpu_fails_its_realm(tmp_path: Path) -> None:
    """A guest that jumps into RAM the host never populated: the instruction abort ends its
    vCPU, the realm's outcome quotes the run loop's message, the report is not ok."""
    (tmp_path / "jump.s").write_text(JUMP_TO_UNBACKED_RAM)
    report = go(tmp_path, 'iterations = 10\ncpus = 1\nactivities = { run = 1 }\n'
                          '[[realm]]\nname = "j"\nguest = "jump.s"\n')
    (j,) = report.realms
    assert not j.ok and "a vCPU failed" in j.detail and "not a fault the host resolves" in j.detail
    assert not report.ok and not report.failures


def test_a_broken_invariant_fails_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """White-box: the invariant checker (as run.py calls it) reports a violation; the report
    keeps it and is not ok, though every CPU and realm was fine."""
    real = run.invariants

    def broken(machine):  # type: ignore[no-untyped-def]
        found = real(machine)
        return InvariantReport(found.granules, (Violation("planted", machine.dram_base, "by the test"),),
                               found.state_counts)

    monkeypatch.setattr(run, "invariants", broken)
    report = go(tmp_path, "iterations = 50\ncpus = 1\nactivities = { delegate-churn = 1 }\n")
    assert report.invariants is not None and not report.invariants.ok
    assert not report.failures and all(r.ok for r in report.realms)
    assert not report.ok


def test_the_parent_parks_before_building_a_realm() -> None:
    """While a pause is held (as `rmm-mp check` holds one), the parent of a run parks before it
    builds each realm instance: nothing is built (every granule still NS) and it is the one
    parked participant; once the pause ends, the run builds, runs and ends OK."""
    w = resolve(spec.load("quickstart"), cpus=2, iterations=20)
    made: list[Machine] = []
    paused = threading.Event()
    ready = threading.Event()

    def hold(machine: Machine) -> None:
        made.append(machine)
        ready.set()
        paused.wait(60)

    result: list[RunReport] = []
    worker = threading.Thread(target=lambda: result.append(run_workload(w, RunOptions(progress=False), hold)))
    worker.start()
    try:
        assert ready.wait(60)
        with Pause(made[0].control) as pause:
            paused.set()
            deadline = time.monotonic() + 20
            while pause.parked < 1 and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(0.2)
            assert (pause.participants, pause.parked) == (1, 1) and pause.quiescent()
            assert set(invariants(made[0]).state_counts) == {"NS"}
    finally:
        paused.set()
        worker.join(300)
    assert result and result[0].ok, render.format_report(result[0]) if result else "the run raised"


def test_realm_details_count_entries_in_words() -> None:
    """How a realm ended reads "(1 REC entry)" or "(12,345 REC entries)", as the rest of the
    report writes counts (it said "(12345 REC entries)")."""
    from rmm_mp.workload.realms import Finished, outcome
    def finished(entries: int, turned_off: bool = False) -> Finished:
        return Finished("vm", 1, 0, 0, "ACTIVE", "", 0, (0, 0), {"entries": entries}, turned_off=turned_off)
    assert outcome(finished(12_345), [], running=True).detail == "running when the run ended (12,345 REC entries)"
    assert outcome(finished(1), [], running=True).detail == "running when the run ended (1 REC entry)"
    assert outcome(finished(1, turned_off=True), [], running=False).detail == \
        "turned off by the lifecycle after 1 REC entry"


PRINTS_LOGS_AND_FAILS = f"""{PRELUDE}
    .equ LEN, text_end - text
start:
    adr x1, hostcall                // QUERY 2: the device window's IPA
    mov x2, #2
    strh x2, [x1]
    str x2, [x1, #8]
    mov x0, =RSI_HOST_CALL
    smc #0
    adr x1, hostcall
    ldr x24, [x1, #8]
    adr x22, text
    mov x23, #LEN
print:
    ldrb x2, [x22]
    strb x2, [x24]                  // console DATA
    add x22, x22, #1
    sub x23, x23, #1
    cbnz x23, print
    adr x1, hostcall                // LOG 0x11, 0x22
    mov x2, #1
    strh x2, [x1]
    mov x2, #0x11
    str x2, [x1, #8]
    mov x2, #0x22
    str x2, [x1, #16]
    mov x0, =RSI_HOST_CALL
    smc #0
    mov x19, #5
    mov x20, #0
    b report
text:
    .ascii "boot\\nstuck at step \\x1b2\\n"
text_end:
    .align 8
{REPORT_TAIL}"""


def test_a_failed_realm_shows_its_guest_output(tmp_path: Path) -> None:
    """A guest that prints two lines (one with an ESC) to its console, LOGs (0x11, 0x22) and
    REPORTs failure 5, beside a hello realm that passes: the failed realm's console and LOG
    record are in the JSON (output) and in the text (the ESC escaped); the realm that passed
    has no output (null). Before, no guest output reached the report at all."""
    (tmp_path / "talks.s").write_text(PRINTS_LOGS_AND_FAILS)
    report = go(tmp_path, 'iterations = 40\ncpus = 1\nactivities = { run = 1 }\n'
                          '[[realm]]\nname = "talks"\nguest = "talks.s"\n[[realm]]\nname = "hi"\nguest = "hello"\n')
    doc = render.to_json(report)
    talks, hi = doc["realms"]
    assert not talks["ok"] and hi["ok"]
    assert talks["output"] == {"console": "boot\nstuck at step \x1b2\n", "console_bytes": 22,
                               "log": [{"rec": 0, "values": [0x11, 0x22, 0, 0]}], "log_count": 1}
    assert hi["output"] is None
    text = render.format_report(report)
    assert ("Guest output of talks: console (22 bytes written), LOG (1 record)\n  | boot\n  | stuck at step \\x1b2\n"
            "  LOG rec 0: 0x11 0x22 0x0 0x0\n") in text
    assert "Guest output of hi" not in text


def test_console_option_shows_every_realms_output(tmp_path: Path) -> None:
    """With RunOptions.console (--console), a realm that passed (hello) also carries its guest
    output: no console bytes, and its one LOG record (RSI version, IPA width, hash)."""
    path = tmp_path / "w.toml"
    path.write_text('iterations = 20\ncpus = 1\nactivities = { run = 1 }\n[[realm]]\nname = "hi"\nguest = "hello"\n')
    report = run_workload(resolve(spec.load(str(path))), RunOptions(progress=False, console=True))
    (hi,) = render.to_json(report)["realms"]
    assert hi["ok"] and hi["output"] == {"console": "", "console_bytes": 0, "log_count": 1,
                                         "log": [{"rec": 0, "values": [0x10000, hi["output"]["log"][0]["values"][1], 0, 0]}]}
    assert "Guest output of hi: console (0 bytes written), LOG (1 record)\n  LOG rec 0: 0x10000" in render.format_report(report)


def test_a_guest_in_an_exception_loop_is_counted_and_warned_about(tmp_path: Path) -> None:
    """A guest that leaves vbar at 0 and executes udf: the vector (IPA 0x200, outside RAM) takes
    an SEA at its fetch, which enters the vector again, for ever. The realm stays ok ("running
    when the run ended": it never fails), but its exceptions are counted (far more than its REC
    entries) and the report warns that it may be in an exception loop; a hello realm beside it
    took none. Before, nothing in the report hinted at the loop."""
    (tmp_path / "loop.s").write_text("start:\n    udf\n")
    report = go(tmp_path, 'iterations = 20\ncpus = 1\ntime_slice = 500\nactivities = { run = 1 }\n'
                          '[[realm]]\nname = "stuck"\nguest = "loop.s"\n[[realm]]\nname = "hi"\nguest = "hello"\n')
    stuck, hi = report.realms
    assert stuck.ok and "running when the run ended" in stuck.detail
    assert stuck.exceptions > 4 * stuck.counters["entries"] >= 4 and hi.exceptions == 0
    doc = render.to_json(report)
    assert [r["exceptions"] for r in doc["realms"]] == [stuck.exceptions, 0]
    (warned,) = [w for w in doc["warnings"] if "exception loop" in w]
    assert warned.startswith(f"1 realm took more than 4 exceptions per REC entry (and at least 64): stuck "
                             f"({stuck.exceptions:,} exceptions, ")
    assert f"WARNING: {warned}" in render.format_report(report).replace("\n    ", " ")   # wrapped to the width


def test_the_report_records_the_host_load_around_the_cpus_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A one-CPU run of 4 delegate-churn steps: the report's host facts hold the load averages
    (os.getloadavg) read just before the CPU processes were started and just after their run,
    rounded to two decimals, and its JSON validates them as three numbers each. Before, the
    host's load was not recorded, and a run on a busy host could not be told from a quiet one."""
    readings = iter([(0.5, 0.25, 0.125), (2.004, 1.0, 0.75)])
    calls: list[str] = []
    real = run.run_cpus

    def run_cpus(*args: object, **kwargs: object) -> run.RunResult:
        calls.append("run_cpus")
        return real(*args, **kwargs)     # type: ignore[arg-type]

    def getloadavg() -> tuple[float, float, float]:
        calls.append("load")
        return next(readings)
    monkeypatch.setattr(run, "run_cpus", run_cpus)
    monkeypatch.setattr(run.os, "getloadavg", getloadavg)
    report = go(tmp_path, "iterations = 4\ncpus = 1\nactivities = { delegate-churn = 1 }\n")
    assert calls == ["load", "run_cpus", "load"]
    assert report.host["load_start"] == [0.5, 0.25, 0.12] and report.host["load_end"] == [2.0, 1.0, 0.75]
    doc = render.to_json(report)
    assert doc["host"]["load_start"] == [0.5, 0.25, 0.12] and doc["host"]["cores"] >= 1
    from stats.schema_subset import errors
    schema = json.loads((Path(__file__).resolve().parents[2] / "docs" / "report-schema.json").read_text())
    assert errors(doc, schema) == []
    doc["host"]["load_end"] = [2.0, 1.0]
    assert errors(doc, schema) == ["$.host.load_end: 2 items, fewer than minItems 3"]


def test_delegate_churn_counts_its_steps_once_under_their_name(tmp_path: Path) -> None:
    """delegate-churn, 1 CPU x 50 steps: the CPU's counters give the steps once, as
    `delegate-churn steps` 50, in the text and the JSON. Before, they also carried `iterations`
    50, ChurnStep's own count of the same steps under a name that said nothing of what it
    counted (and read as the run's --iterations)."""
    report = go(tmp_path, "iterations = 50\ncpus = 1\nactivities = { delegate-churn = 1 }\n")
    assert report.ok, (report.problems, report.failures)
    values = render.to_json(report)["counters"][0]["values"]
    assert values["delegate-churn steps"] == 50 and "iterations" not in values, values
    text = render.format_report(report)
    assert "cpu 0: delegate-churn steps 50, private rounds" in text and "iterations 50" not in text
