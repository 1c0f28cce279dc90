"""Trace Event Format export of the per-CPU trace rings (rmm_mp/stats/trace_export.py).

Scenarios: on a real machine, CPU 0 enters a realm twice (a host call, then SYSTEM_OFF) and
CPU 1 delegates, undelegates and waits for a contended RTT lock, all traced; the file loads as
JSON with the process and one named track per CPU, every ring record as an X event with its spec
name and arguments, sorted by start, and calls nested as they happened (REC runs inside
RMI_REC_ENTER, RSI and PSCI calls inside REC runs). A ring that wrapped yields only its capacity
of events, and the file says how many were dropped. A torn record (a CPU killed mid-write) is
left out and counted, never raised. One record converts with exact ns (ts and
dur in us, three decimals, relative to t0), and an unknown kind is refused.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from report_samples import DELEGATE, UNDELEGATE, run_guest
from rmm_mp import Machine
from rmm_mp.abi.rmi import RmiFid
from rmm_mp.hw import trace
from rmm_mp.hw.granule import cpu_owner
from rmm_mp.stats import calls
from rmm_mp.stats.trace_export import event, write_trace

RTT = 6


def _load(path: Path) -> dict[str, Any]:
    doc = json.loads(path.read_text())
    assert doc["displayTimeUnit"] == "ns"
    return doc


def _track(doc: dict[str, Any], tid: int) -> list[dict[str, Any]]:
    return [e for e in doc["traceEvents"] if e["ph"] == "X" and e["tid"] == tid]


def _inside(child: dict[str, Any], parent: dict[str, Any]) -> bool:
    return parent["ts"] <= child["ts"] and child["ts"] + child["dur"] <= parent["ts"] + parent["dur"]


def _contended_rtt_lock(m: Machine, cpu: Any, idx: int) -> None:
    """CPU ``cpu`` locks granule ``idx`` as an RTT while another owner holds it for 50 ms."""
    other = m.granule_table(cpu_owner(0))
    other.lock(idx)
    releaser = threading.Timer(0.05, other.unlock, args=(idx,))
    releaser.start()
    try:
        cpu.granules.lock(idx, RTT)
        cpu.granules.unlock(idx)
    finally:
        releaser.join()


def test_trace_of_a_realm_run_and_a_lock_wait(tmp_path: Path) -> None:
    """Tracks, names, arguments, order and nesting of a real machine's trace."""
    t0 = time.perf_counter_ns()
    with Machine.create("host", cpus=2, trace_capacity=512) as m:
        rec, realms = run_guest(m, cpu=0, tracing=True)
        cpu1 = m.cpu(1)
        cpu1.set_tracing(True)
        pa = m.dram_base + 90 * m.granule_size
        assert cpu1.smc(DELEGATE, pa)[0] == 0
        assert cpu1.smc(UNDELEGATE, pa)[0] == 0
        _contended_rtt_lock(m, cpu1, 91)
        cpu1.set_tracing(False)
        records = {cpu: len(m.read_trace(cpu)) for cpu in (0, 1)}
        written = write_trace(m, [0, 1], str(tmp_path / "t.json"), t0, realms).events
    doc = _load(tmp_path / "t.json")
    meta = [(e["name"], e["tid"], e["args"]) for e in doc["traceEvents"] if e["ph"] == "M"]
    assert ("process_name", 1, {"name": "rmm-mp machine"}) in meta
    assert ("thread_name", 1, {"name": "CPU 0"}) in meta and ("thread_name", 2, {"name": "CPU 1"}) in meta
    cpu0, cpu1_events = _track(doc, 1), _track(doc, 2)
    assert written == len(cpu0) + len(cpu1_events) == records[0] + records[1]
    assert doc["otherData"]["dropped"] == {"0": 0, "1": 0}
    for events in (cpu0, cpu1_events):
        assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)
        assert all(e["pid"] == 1 and e["ts"] >= 0 and e["dur"] > 0 for e in events)

    assert [e["name"] for e in cpu1_events] == ["RMI_GRANULE_DELEGATE", "RMI_GRANULE_UNDELEGATE", "lock wait RTT"]
    assert cpu1_events[0]["args"] == {"x1": f"{pa:#x}"} and cpu1_events[0]["cat"] == "rmi"
    wait = cpu1_events[2]
    assert wait["args"] == {"granule": f"{m.dram_base + 91 * m.granule_size:#x}", "class": "RTT"}
    assert wait["dur"] >= 20_000  # us: most of the 50 ms the other owner held the lock

    enters = [e for e in cpu0 if e["name"] == "RMI_REC_ENTER"]
    runs = [e for e in cpu0 if e["name"].startswith("REC run")]
    assert [r["name"] for r in runs] == ["REC run -> EXIT_HOST_CALL", "REC run -> EXIT_PSCI"]
    assert runs[0]["args"] == {"rec": f"{rec:#x}", "realm": "guest", "exit_reason": "EXIT_HOST_CALL"}
    assert all(e["args"]["realm"] == "guest" and e["args"]["x1"] == f"{rec:#x}" for e in enters)
    assert len(enters) == 2 and all(_inside(run, enter) for run, enter in zip(runs, enters))
    realm_calls = [e for e in cpu0 if e["cat"] in ("rsi", "psci")]
    assert [(e["name"], e["cat"]) for e in realm_calls] == [
        ("RSI_VERSION", "rsi"), ("RSI_HOST_CALL", "rsi"), ("PSCI_VERSION", "psci"), ("PSCI_SYSTEM_OFF", "psci")]
    assert all(_inside(c, runs[0]) for c in realm_calls[:2]) and all(_inside(c, runs[1]) for c in realm_calls[2:])
    assert realm_calls[0]["args"] == {"x1": "0x10000"}


def test_a_wrapped_ring_yields_at_most_its_capacity(tmp_path: Path) -> None:
    """40 calls into an 8-record ring: 8 events (the newest), and 32 reported dropped."""
    with Machine.create("host", cpus=1, trace_capacity=8) as m:
        cpu = m.cpu(0)
        cpu.set_tracing(True)
        pa = m.dram_base + 90 * m.granule_size
        for _ in range(20):
            cpu.smc(DELEGATE, pa)
            cpu.smc(UNDELEGATE, pa)
        cpu.set_tracing(False)
        last = m.read_trace(0)[-1]
        written = write_trace(m, [0], str(tmp_path / "t.json"), 0)
    doc = _load(tmp_path / "t.json")
    events = _track(doc, 1)
    assert written.events == len(events) == 8 and written.left_out == {} and doc["otherData"]["left_out"] == {}
    assert doc["otherData"]["dropped"] == {"0": 32} and doc["otherData"]["capacity"] == 8
    assert events[-1]["name"] == "RMI_GRANULE_UNDELEGATE" and events[-1]["ts"] == round(last[0] / 1000, 3)


def _ten_calls_on_cpu0(m: Machine) -> int:
    """CPU 0 traced through 5 DELEGATE and UNDELEGATE pairs of one granule (10 records); its PA."""
    cpu = m.cpu(0)
    cpu.set_tracing(True)
    pa = m.dram_base + 90 * m.granule_size
    for _ in range(5):
        cpu.smc(DELEGATE, pa)
        cpu.smc(UNDELEGATE, pa)
    cpu.set_tracing(False)
    return pa


def _full_ring_with_a_torn_oldest(m: Machine) -> None:
    """CPU 0 makes 10 calls into m's 8-record ring; then its oldest record (the slot the next
    write goes to) gets a lock wait's kind and an RSI call's slot as its code: what a process
    killed between those fields of a lock wait written over an RSI_IPA_STATE_GET leaves."""
    _ten_calls_on_cpu0(m)
    region = m.trace_region(0)
    try:
        head = int.from_bytes(region[:8], "little")
        kind = trace.HEADER + (head % m.trace_capacity) * trace.RECORD_SIZE + 16
        region[kind:kind + 4] = trace.KIND_LOCK_WAIT.to_bytes(2, "little") + (40).to_bytes(2, "little")
    finally:
        region.release()


def test_a_torn_record_is_left_out_and_counted(tmp_path: Path) -> None:
    """A full ring whose oldest record is torn into a lock wait of class 40 (no such class):
    the file is written without it (7 events), and otherData.left_out counts it; the export
    used to raise ValueError, and the run's report was lost with it."""
    with Machine.create("host", cpus=1, trace_capacity=8) as m:
        _full_ring_with_a_torn_oldest(m)
        written = write_trace(m, [0], str(tmp_path / "t.json"), 0)
    doc = _load(tmp_path / "t.json")
    assert written.events == len(_track(doc, 1)) == 7
    assert written.left_out == {0: 1} and doc["otherData"]["left_out"] == {"0": 1}
    assert not any(e["name"].startswith("lock wait") for e in _track(doc, 1))


def test_a_killed_cpus_oldest_record_of_a_full_ring_is_left_out(tmp_path: Path) -> None:
    """For a CPU named killed, the oldest record of its full ring is left out even when it
    reads as valid (a torn record can mix two valid ones); a CPU not killed keeps it, and a
    killed CPU whose ring is not full keeps all (the slot it wrote last is not read)."""
    with Machine.create("host", cpus=2, trace_capacity=8) as m:
        pa = _ten_calls_on_cpu0(m)
        other = m.cpu(1)
        other.set_tracing(True)
        other.smc(DELEGATE, pa + m.granule_size)
        other.set_tracing(False)
        oldest = m.read_trace(0)[0]
        kept = write_trace(m, [0, 1], str(tmp_path / "kept.json"), 0)
        killed = write_trace(m, [0, 1], str(tmp_path / "killed.json"), 0, killed=[0, 1])
    assert kept.events == 9 and kept.left_out == {}
    assert killed.events == 8 and killed.left_out == {0: 1}
    assert round(oldest[0] / 1000, 3) not in [e["ts"] for e in _track(_load(tmp_path / "killed.json"), 1)]


def test_one_record_converts_with_exact_ns() -> None:
    """ts = (start - t0) / 1000 and dur = duration / 1000, three decimals: nothing is lost."""
    t0 = 5_000_000_000
    record = (t0 + 1_234_567, 891, trace.KIND_RMI, calls.rmi_slot(RmiFid.RMI_REC_ENTER), 0x8800_0000)
    got = event(record, 3, t0, {0x8800_0000: "vm"})
    assert got == {"name": "RMI_REC_ENTER", "cat": "rmi", "ph": "X", "pid": 1, "tid": 3, "ts": 1234.567,
                   "dur": 0.891, "args": {"x1": "0x88000000", "realm": "vm"}}
    # A name that holds only from a later time (the realm was built after the record) is left out.
    assert "realm" not in event(record, 3, t0, {0x8800_0000: "vm"}, {0x8800_0000: record[0] + 1})["args"]
    assert event(record, 3, t0, {0x8800_0000: "vm"}, {0x8800_0000: record[0]})["args"]["realm"] == "vm"
    with pytest.raises(ValueError, match="kind = 9"):
        event((t0, 1, 9, 0, 0), 1, t0, {})


@pytest.mark.parametrize("slot", [calls.RSI_BASE + 0x8, calls.PSCI_BASE + 0x3])
def test_a_realms_call_is_not_named_after_the_host_pa_its_x1_equals(slot: int) -> None:
    """A realm's RSI or PSCI call passes an IPA or a value in X1 (RSI_IPA_STATE_GET of its RAM
    base 0x80000000, PSCI_CPU_ON's MPIDR), not a host PA: that it equals the PA of some live
    realm's RD or REC (the first realm's RD is often at 0x80000000 on host) says nothing about
    the call, which was labelled with that realm's name. The enclosing REC run names the realm."""
    t0 = 5_000_000_000
    record = (t0 + 1000, 500, trace.KIND_RSI, slot, 0x8000_0000)
    assert event(record, 1, t0, {0x8000_0000: "loop"})["args"] == {"x1": "0x80000000"}
