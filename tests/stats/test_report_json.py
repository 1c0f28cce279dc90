"""The JSON and CSV views of a run report (rmm_mp/workload/render_json.py) against
docs/report-schema.json, for hand-built reports and for a report of a real short run.

Scenarios: a full hand-built report, and variants (no latency recorded, invariants not checked,
one CPU, pinning asked but impossible, more CPUs than host cores, nothing at all recorded) each
validate; the document carries the figures the report holds (seed, host facts, warnings, locks
with their "all" sums, processes, realms, failures, the RMI time split); write_json writes the
same document; the CSV has one row per latency record with the JSON's columns; a real run (a
realm on CPU 0, then two CPU processes delegating, pinned) validates and its records count the
calls that were made; a CPU killed during a flush gets a warning naming the rows it left half
written.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from report_samples import delegate_rounds, delegate_rounds_then_die, hand_built, real_run, slot_of, stats_of
from rmm_mp import Machine
from rmm_mp.abi.rmi import RmiFid
from rmm_mp.cpu_outcome import ProcessUsage
from rmm_mp.runtime import run_cpus
from rmm_mp.stats import report as latency
from rmm_mp.workload import realms, render
from rmm_mp.workload.report import GuestOutput, RealmOutcome, collect_locks
from schema_subset import errors

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs" / "report-schema.json").read_text())


def _valid(doc: dict[str, Any]) -> dict[str, Any]:
    found = errors(doc, SCHEMA)
    assert found == [], found
    return doc


UNPINNED = {0: ProcessUsage(1.0, 0.0, 1, 1, 1 << 20, 0, 20 << 20),
            1: ProcessUsage(1.0, 0.0, 1, 1, 1 << 20, None, 20 << 20)}


@pytest.mark.parametrize("changes", [
    {},
    {"latency_recorded": False, "stats": {}},
    {"invariants": None, "interrupted": True},
    {"cpus": 1, "host_cores": 1, "host": {}, "outputs": {}},
    {"pinned": True, "usage": UNPINNED},
    {"cpus": 4, "host_cores": 2},
    {"stats": {}, "locks": {}, "usage": {}, "counters": {}, "realms": (), "failures": (), "problems": ()},
    {"host": {"machine": "x86_64", "python": "3.11.7", "host_cpus": None}},
    {"realms": (RealmOutcome("vm", 1, False, "the guest reported failure code 5 (detail 0x0)", {"entries": 4},
                             GuestOutput("boot\n\ufffd", 6, ((0, (0x11, (1 << 64) - 1, 0, 0)),), 30)),
                RealmOutcome("ok", 1, True, "turned itself off", {}, GuestOutput("", 0, (), 0)))},
    {"realms": (RealmOutcome("vm#40", 1, False, "the guest reported failure code 5 (detail 0x0)", {},
                             output_dropped=True),)},
    {"realms": (realms.unreported("vm", 2, 1),)},
    {"realms": (RealmOutcome("kept", 2, True, "turned itself off", {"entries": 9}, cpus=(1, 3)),
                RealmOutcome("anywhere", 1, True, "turned itself off", {"entries": 2}))},
], ids=["full", "no-latency", "not-checked", "one-cpu", "pin-impossible", "oversubscribed", "empty",
        "host-cpus-unknown", "guest-output", "guest-output-dropped", "realm-not-reported", "realm-cpus"])
def test_hand_built_reports_validate(changes: dict[str, Any]) -> None:
    """Every shape a report can take gives a document the schema accepts."""
    _valid(render.to_json(hand_built(**changes)))


def test_document_carries_the_report() -> None:
    """Metadata, seed and host facts; records in ns; lock sums; processes; realms; failures; ok."""
    doc = _valid(render.to_json(hand_built()))
    assert doc["schema"] == "rmm-mp-run-report/1" and doc["latency_unit"] == "ns"
    assert (doc["workload"], doc["seed"], doc["cpus"], doc["ok"]) == ("smp-realms", 7, 2, False)
    assert doc["host"] == {"cores": 2, "machine": "x86_64", "python": "3.11.7", "date": "2026-11-27 10:00:00 +0000"}
    assert doc["warnings"] == []
    delegate = [r for r in doc["latency"] if r["call"] == "RMI_GRANULE_DELEGATE"]
    assert [(r["cpu"], r["count"], r["errors"], r["max"]) for r in delegate] == [
        (0, 100, 3, 50_000), (1, 40, 0, 2500), ("all", 140, 3, 50_000)]
    assert {r["kind"] for r in doc["latency"]} == {"RMI", "RSI", "PSCI", "EXIT", "HOST"}
    rtt = [r for r in doc["locks"] if r["class"] == "RTT"]
    assert [(r["cpu"], r["acquired"], r["contended"], r["max_wait_ns"]) for r in rtt] == [
        (0, 1000, 10, 20_000), (1, 500, 25, 40_000), ("all", 1500, 35, 40_000)]
    assert rtt[2]["contended_share"] == pytest.approx(35 / 1500, abs=1e-6)  # rounded to 6 places
    grand = doc["locks"][-1]
    assert (grand["cpu"], grand["class"], grand["acquired"], grand["wait_ns"]) == ("all", "all", 1514, 200_900)
    assert [(p["cpu"], p["involuntary_switches"]) for p in doc["processes"]] == [(0, 340), (1, 120)]
    assert [(r["name"], r["ok"]) for r in doc["realms"]] == [("vm0", True), ("vm1", False)]
    assert doc["failures"] == [{"cpu": 1, "how": "raised RuntimeError", "held_locks": ["0x88012000"],
                                "traceback": "Traceback (most recent call last):\n  boom\n"}]
    assert doc["invariants"]["violation_count"] == 1 and not doc["invariants"]["ok"]
    split = doc["time_split"][-1]
    assert split["cpu"] == "all" and split["el3_ns"] + split["rmm_ns"] + split["lock_wait_ns"] == split["total_ns"]
    assert split["calls"] == sum(r["count"] for r in doc["latency"] if r["kind"] == "RMI" and r["cpu"] == "all")


def test_a_realms_cpus_are_recorded_when_they_are_not_every_cpu_of_the_run() -> None:
    """A realm kept to CPUs 1 and 3 and one every CPU runs: the JSON realm records carry "cpus"
    [1, 3] and null, which the schema requires of every realm. Before, the document had no such
    field, and a realm's per-CPU REC entries could not be told from the report alone."""
    doc = _valid(render.to_json(hand_built(realms=(
        RealmOutcome("kept", 2, True, "turned itself off", {"entries": 9}, cpus=(1, 3)),
        RealmOutcome("anywhere", 1, True, "turned itself off", {"entries": 2})))))
    assert [(r["name"], r["cpus"]) for r in doc["realms"]] == [("kept", [1, 3]), ("anywhere", None)]
    assert "cpus" in SCHEMA["properties"]["realms"]["items"]["required"]


def test_warnings_for_oversubscription_and_impossible_pinning() -> None:
    """Both warnings appear in the JSON list, worded as the issue asks; the oversubscription one
    also says what to do about it (a first-time user found it named the problem only): the
    --cpus that fits the host's cores, "--cpus 1" for one core."""
    doc = _valid(render.to_json(hand_built(cpus=4, host_cores=2, pinned=True, usage=UNPINNED)))
    assert doc["warnings"] == [
        "4 simulated CPUs on 2 host cores: latency includes time a CPU process was not scheduled (the tails "
        "and means more than the p50s); for tail figures, run with --cpus 2 or fewer",
        "pinning was asked (--pin) but was not possible for CPU 1: it ran unpinned"]
    assert render.warnings(hand_built(pinned=True, usage={0: UNPINNED[0]})) == []
    assert render.warnings(hand_built(cpus=2, host_cores=1)) == [
        "2 simulated CPUs on 1 host core: latency includes time a CPU process was not scheduled (the tails "
        "and means more than the p50s); for tail figures, run with --cpus 1"]


def test_the_oversubscription_warning_without_latency_names_what_was_recorded() -> None:
    """4 simulated CPUs on 2 host cores with --no-latency: the warning speaks of the lock waits and
    the work done, which were recorded, not of latency tails, which were not (it said "latency
    includes time a CPU process was not scheduled ...; for tail figures", beside "Latency was not
    recorded"), and still says what to do."""
    (warned,) = render.warnings(hand_built(cpus=4, host_cores=2, latency_recorded=False, stats={}))
    assert warned == ("4 simulated CPUs on 2 host cores: the lock waits include time a lock holder's process was "
                      "not scheduled, and each CPU did less work in the run's time; for figures free of that, run "
                      "with --cpus 2 or fewer")
    assert "latency" not in warned and "tail" not in warned


def test_the_pinning_warning_counts_its_cpus() -> None:
    """Pinning asked but not possible for one CPU, then for two: the warning reads "for CPU 1: it
    ran unpinned" and "for CPUs 0, 1: they ran unpinned" (it said "CPU 1: they" and "CPU 0, 1")."""
    one = render.warnings(hand_built(pinned=True, usage={1: UNPINNED[1]}))
    assert one == ["pinning was asked (--pin) but was not possible for CPU 1: it ran unpinned"]
    both = render.warnings(hand_built(pinned=True, usage={0: UNPINNED[1], 1: UNPINNED[1]}))
    assert both == ["pinning was asked (--pin) but was not possible for CPUs 0, 1: they ran unpinned"]


def test_without_latency_the_latency_parts_are_empty() -> None:
    """A report of a run without latency recording, whose statistics are still there: the JSON's latency
    records and time split are empty and say so, while the lock statistics remain."""
    doc = _valid(render.to_json(hand_built(latency_recorded=False)))
    assert doc["latency"] == [] and doc["time_split"] == [] and doc["latency_recorded"] is False
    assert doc["locks"]  # lock statistics do not depend on latency recording


def test_without_latency_figures_the_time_split_is_empty_as_with_no_latency() -> None:
    """Latency was recorded but no CPU's figures were read (every CPU never started, or a signal
    skipped the read): the time split is empty, as with --no-latency, where it held one "all" row
    of zeros beside an empty latency list; the document still validates."""
    doc = _valid(render.to_json(hand_built(stats={})))
    assert doc["latency_recorded"] is True and doc["latency"] == [] and doc["time_split"] == [], doc["time_split"]


def test_write_json_and_csv(tmp_path: Path) -> None:
    """write_json writes to_json's document; the CSV has the record columns and one row per record."""
    report = hand_built()
    render.write_json(report, str(tmp_path / "r.json"))
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc == render.to_json(report)
    render.write_csv(report, str(tmp_path / "r.csv"))
    with open(tmp_path / "r.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert [c.removesuffix("_ns") for c in rows[0]] == list(doc["latency"][0])
    assert len(rows) == 1 + len(doc["latency"])
    assert [r for r in rows[1:]] == [[str(v) for v in rec.values()] for rec in doc["latency"]]
    render.write_csv(hand_built(latency_recorded=False), str(tmp_path / "none.csv"))
    assert (tmp_path / "none.csv").read_text().splitlines() == [",".join(rows[0])]


def test_the_csv_header_names_the_unit_of_every_time(tmp_path: Path) -> None:
    """A spreadsheet or pandas reader of the CSV sees only its header, not the JSON's latency_unit:
    every time column is named with its unit (p50_ns ... lock_wait_mean_ns), the counts and names
    without one, and a row read by those names holds the JSON record's figures."""
    report = hand_built()
    render.write_csv(report, str(tmp_path / "r.csv"))
    with open(tmp_path / "r.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["cpu", "call", "kind", "count", "errors", "p50_ns", "p90_ns", "p99_ns", "p999_ns",
                             "max_ns", "mean_ns", "el3_mean_ns", "rmm_mean_ns", "lock_wait_mean_ns"]
    first = render.to_json(report)["latency"][0]
    assert rows[0]["p50_ns"] == str(first["p50"]) and rows[0]["lock_wait_mean_ns"] == str(first["lock_wait_mean"])


@pytest.mark.multiprocess
def test_a_real_run_report_validates(tmp_path: Path) -> None:
    """A realm entered on CPU 0, then two pinned CPU processes each making 200 DELEGATE +
    UNDELEGATE pairs: the document validates, counts those calls, and its text shows them."""
    with Machine.create("host", cpus=2) as m:
        report = real_run(m, rounds=200)
    doc = _valid(render.to_json(report))
    assert doc["ok"], render.format_report(report)
    by_call = {(r["call"], r["cpu"]): r for r in doc["latency"]}
    assert by_call[("RMI_GRANULE_DELEGATE", 1)]["count"] == 200
    assert by_call[("RMI_GRANULE_DELEGATE", "all")]["count"] >= 400  # the realm's build delegated more on CPU 0
    for call in ("RMI_REC_ENTER", "RSI_VERSION", "RSI_HOST_CALL", "PSCI_SYSTEM_OFF", "EXIT_HOST_CALL", "EXIT_PSCI"):
        assert by_call[(call, 0)]["count"] >= 1, call
    assert [p["cpu"] for p in doc["processes"]] == [0, 1]
    assert any(r["class"] == "DELEGATED" and r["cpu"] == 1 and r["acquired"] == 200 for r in doc["locks"])
    render.write_csv(report, str(tmp_path / "r.csv"))
    assert len((tmp_path / "r.csv").read_text().splitlines()) == 1 + len(doc["latency"])
    text = render.format_report(report)
    assert "RMI_GRANULE_DELEGATE" in text and "EXIT_HOST_CALL" in text and text.endswith("result: OK")


@pytest.mark.multiprocess
def test_a_cpu_that_died_is_warned_to_have_figures_cut_off() -> None:
    """CPU 1 makes 100 DELEGATE + UNDELEGATE pairs and is then killed (SIGKILL), its handle never
    closed: its histograms hold what its last flush published (the first call), not the 200 calls
    it made. The report warns that CPU 1's latency and lock figures stop at its last flush, and,
    with --no-latency (lock figures published only at the end), that it has none; a CPU that
    raised (its handle closed, so its figures flushed) gets no such warning."""
    with Machine.create("host", cpus=2) as m:
        result = run_cpus(m, delegate_rounds_then_die, [1], args=(100,))
        stats = latency.collect(m, [1])
    assert [f.cpu for f in result.failures] == [1] and result.failures[0].unpublished
    assert 0 < latency.total_calls(stats) < 200    # what the warning is about
    died = "CPU 1 died without publishing its last figures: its latency and lock figures stop at its last flush"
    report = hand_built(failures=result.failures)
    assert any(w.startswith(died) for w in _valid(render.to_json(report))["warnings"])
    assert any(line.startswith(f"WARNING: {died}") for line in render.format_report(report).splitlines())
    no_latency = render.warnings(hand_built(failures=result.failures, latency_recorded=False, stats={}))
    assert any(w.startswith("CPU 1 died without publishing its lock figures") for w in no_latency), no_latency
    assert not any("died" in w for w in render.warnings(hand_built()))    # CPU 1 raised there


@pytest.mark.multiprocess
def test_a_cpu_that_died_unpublished_shows_no_lock_figures_of_an_earlier_handle() -> None:
    """`rmm-mp run` builds its realms on CPU 0 in the parent (recording off) and closes that handle,
    which publishes the set-up's lock figures; then CPU 0's process binds the CPU. That process is
    killed before it publishes anything (as with --no-latency, or before its first RMI call): the
    lock table must then have no figures for CPU 0, as the warning says, not the set-up's."""
    with Machine.create("host", cpus=1) as m:
        setup = m.cpu(0)
        setup.set_recording(False)
        delegate_rounds(setup, 5)
        setup.close()
        assert collect_locks(m, [0])[0], "the set-up's figures are published when its handle closes"
        result = run_cpus(m, delegate_rounds_then_die, [0], args=(0,))
        locks = collect_locks(m, [0])
    assert [f.cpu for f in result.failures] == [0] and result.failures[0].unpublished
    assert locks == {0: {}}


def test_lock_rows_are_the_classes_taken_and_the_json_keeps_every_all_row() -> None:
    """docs/latency.md, "Lock contention": a CPU that only delegated and undelegated a granule
    published lock figures of the classes it took (NS for DELEGATE, DELEGATED for UNDELEGATE)
    and no row of any other class; in the JSON of a two-CPU report a class only CPU 1 took
    (DATA) has its CPU 1 row and an "all" row, none of CPU 0, while the text leaves that
    lone "all" row out."""
    with Machine.create("host", cpus=1) as m:
        cpu = m.cpu(0)
        delegate_rounds(cpu, 3)
        cpu.close()
        locks = collect_locks(m, [0])
    assert sorted(latency.lock_class_name(cls) for cls in locks[0]) == ["DELEGATED", "NS"]
    assert all(s.acquired > 0 for s in locks[0].values())
    doc = _valid(render.to_json(hand_built()))
    assert [r["cpu"] for r in doc["locks"] if r["class"] == "DATA"] == [1, "all"]
    text = render.format_report(hand_built())
    assert any(line.split()[:2] == ["DATA", "1"] for line in text.splitlines())
    assert not any(line.split()[:2] == ["DATA", "all"] for line in text.splitlines())


def test_a_plot_of_a_run_without_calls_is_an_output_error_not_a_crash(tmp_path: Path) -> None:
    """A run stopped before any call was recorded (Ctrl-C or SIGTERM while the CPUs start) with
    --plot: write_plot has nothing to draw and says so (ValueError). That is one report file not
    written, as a full disk is: the JSON is still written, last, and names it; the text says so."""
    from rmm_mp.workload.cli import _write_outputs

    report = hand_built(stats={}, interrupted=True, outputs={})
    j, png = tmp_path / "r.json", tmp_path / "r.png"
    _write_outputs(report, [("json", str(j), render.write_json), ("plot", str(png), render.write_plot)])
    assert not png.exists()
    doc = json.loads(j.read_text())
    assert doc["outputs"] == {"json": str(j)} and doc["ok"] is False
    assert doc["output_errors"] == [f"could not write the plot report to {png}: no calls were recorded: "
                                    "there is no latency to plot"]
    assert "Report files not written" in render.format_report(report)


def test_figures_a_killed_flush_left_half_written_are_named_in_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    """CPU 1 flushed 1,000 DELEGATE calls, then was killed while flushing 1,000 more: the slot's
    count and sum took them, its buckets and EL3 / handler sums did not. Such a row's percentiles
    (its p90 reads the maximum) and time split (its parts no longer add up to its time) are
    wrong, so the report must say which rows they are; a report of whole flushes warns nothing
    of the kind."""
    from rmm_mp.stats import histogram
    DELEGATE_SLOT = slot_of(int(RmiFid.RMI_GRANULE_DELEGATE))
    region = memoryview(bytearray(histogram.REGION_BYTES))
    recorder = histogram.Recorder(region)
    for total in range(1000, 2000):
        recorder.record(DELEGATE_SLOT, total, 200, 0, False)
    recorder.flush(0)
    for total in range(6000, 7000):
        recorder.appends[DELEGATE_SLOT](total)

    class Killed(Exception):
        """The process ending there, as far as the shared region can tell."""

    def killed(*_: object) -> None:
        raise Killed

    monkeypatch.setattr(histogram, "_add_to_buckets", killed)
    with pytest.raises(Killed):
        recorder.flush(0)
    monkeypatch.undo()
    recorder.release()
    torn = histogram.read_slot(region, DELEGATE_SLOT)
    assert torn.count == 2000 and sum(torn.buckets) == 1000 and torn.percentile(90) == torn.max_ns
    stats = {0: {DELEGATE_SLOT: stats_of(DELEGATE_SLOT, [1500] * 10, el3=0.2)}, 1: {DELEGATE_SLOT: torn}}
    warned = render.warnings(hand_built(stats=stats))
    expected = ("CPU 1 died during a flush of its figures, so some are half written: RMI_GRANULE_DELEGATE (2,000 "
                "calls counted, 1,000 in its histogram)")
    assert any(w.startswith(expected) for w in warned), warned
    assert not any("half written" in w for w in render.warnings(hand_built()))


def test_a_cpu_whose_close_failed_after_its_result_is_a_warning() -> None:
    """A CPU process whose machine close failed after its result was sent (runtime's
    RunResult.warnings) counts as returned: the report stays ok and names the failure among its
    warnings, in the JSON and as a WARNING line of the text. Before, the warning reached no
    report: only the CPU process's stderr said it."""
    report = hand_built(cpu_warnings={1: "closing its machine handle failed after its result was sent: OSError: x"})
    doc = _valid(render.to_json(report))
    assert report.ok == hand_built().ok
    named = [w for w in doc["warnings"] if w.startswith("CPU 1: closing its machine handle failed")]
    assert named and "its result arrived and counts" in named[0], doc["warnings"]
    assert any(line.startswith("WARNING: CPU 1: closing its machine handle") for line in render.format_report(report).splitlines())
