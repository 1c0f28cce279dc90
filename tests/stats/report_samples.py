"""Run reports for the rendering tests (a helper, not a test file): hand-built and from a real run.

``hand_built`` makes a RunReport from literal figures (histograms filled by the real Recorder),
covering every kind of call, lock class, realm and failure. ``real_run`` makes one from a short
run on a real machine, the way the runner does: a realm entered on CPU 0 in this process (RSI,
PSCI and REC exit figures), then two CPU processes delegating and undelegating granules through
run_cpus, then stats.report.collect, collect_locks and the invariant checker.
"""

from __future__ import annotations

import os
import signal
from dataclasses import replace
from typing import Any

from rmm_mp import Machine
from rmm_mp.abi.psci import PsciFid
from rmm_mp.abi.rmi import RmiFid
from rmm_mp.abi.rsi import RsiFid
from rmm_mp.check import InvariantReport, Violation, invariants
from rmm_mp.hw.granule import OTHER_CLASS
from rmm_mp.cpu_outcome import CpuFailure, ProcessUsage
from rmm_mp.runtime import host_cores, run_cpus
from rmm_mp.stats import calls
from rmm_mp.stats import report as latency
from rmm_mp.stats.histogram import REGION_BYTES, CallStats, Recorder, read_slot
from rmm_mp.workload.report import LockClassStats, RealmOutcome, RunReport, collect_locks

DELEGATE = int(RmiFid.RMI_GRANULE_DELEGATE)
UNDELEGATE = int(RmiFid.RMI_GRANULE_UNDELEGATE)
RTT, DATA, REC = 6, 5, 3

GUEST = """
    mov x0, =RSI_VERSION
    mov x1, =0x10000
    smc #0
    adr x1, hostcall
    mov x0, =RSI_HOST_CALL
    smc #0
    mov x0, =PSCI_VERSION
    smc #0
    mov x0, =PSCI_SYSTEM_OFF
    smc #0
    b .
    .align 256
hostcall:
    .zero 256
"""
"""One host call (EXIT_HOST_CALL), then SYSTEM_OFF (EXIT_PSCI)."""


def slot_of(fid: int) -> int:
    """The histogram slot of an RMI, RSI or PSCI function ID."""
    if 0xC400_0150 <= fid <= 0xC400_018F:
        return calls.rmi_slot(fid)
    if 0xC400_0190 <= fid <= 0xC400_01AF:
        return calls.RSI_BASE + fid - 0xC400_0190
    return calls.psci_slot(fid)


def stats_of(slot: int, samples: list[int], el3: float = 0.0, lock: float = 0.0, errors: int = 0) -> CallStats:
    """A CallStats holding ``samples`` (ns), each split el3 / handler / lock by the shares given."""
    region = memoryview(bytearray(REGION_BYTES))
    rec = Recorder(region)
    for n, total in enumerate(samples):
        e, w = int(total * el3), int(total * lock)
        rec.record(slot, total, e, w, n < errors)
    rec.flush(0)
    rec.release()
    return read_slot(region, slot)


def _hand_stats() -> dict[int, dict[int, CallStats]]:
    d, u = slot_of(DELEGATE), slot_of(UNDELEGATE)
    enter, rsi_host = slot_of(int(RmiFid.RMI_REC_ENTER)), slot_of(int(RsiFid.RSI_HOST_CALL))
    cpu_on, exit_host = slot_of(int(PsciFid.PSCI_CPU_ON)), calls.EXIT_BASE + 5
    return {
        0: {d: stats_of(d, [2600] * 90 + [4000] * 9 + [50_000], el3=0.25, lock=0.05, errors=3),
            u: stats_of(u, [2700] * 50, el3=0.25),
            enter: stats_of(enter, [40_000, 50_000, 60_000], el3=0.05, lock=0.01),
            rsi_host: stats_of(rsi_host, [3000, 3100]),
            cpu_on: stats_of(cpu_on, [5000]),
            exit_host: stats_of(exit_host, [30_000, 31_000]),
            calls.HOST_BASE: stats_of(calls.HOST_BASE, [2_000_000])},
        1: {d: stats_of(d, [2500] * 40, el3=0.3),
            enter: stats_of(enter, [45_000], el3=0.05)},
    }


def hand_built(**changes: Any) -> RunReport:
    """A two-CPU report with every section filled; ``changes`` replace fields (dataclasses.replace)."""
    report = RunReport(
        workload="smp-realms", source="workloads/smp-realms.toml", platform="host", cpus=2, seed=7,
        seconds=2.0, iterations=None, elapsed_s=2.0123, latency_recorded=True, stats=_hand_stats(),
        locks={0: {RTT: LockClassStats(1000, 10, 50_000, 20_000), OTHER_CLASS: LockClassStats(10, 0, 0, 0)},
               1: {RTT: LockClassStats(500, 25, 150_000, 40_000), DATA: LockClassStats(4, 1, 900, 900)}},
        usage={0: ProcessUsage(1.5, 0.25, 12, 340, 60 << 20, None, 20 << 20),
               1: ProcessUsage(1.25, 0.5, 8, 120, 58 << 20, None, 20 << 20)},
        host_cores=2, pinned=False,
        counters={0: {"realms created": 3, "rec entries": 120}, 1: {"realms created": 2, "rec entries": 80}},
        realms=(RealmOutcome("vm0", 2, True, "SYSTEM_OFF", {"exits": 40, "host calls": 2}),
                RealmOutcome("vm1", 1, False, "REC 0 entered 0 times: RMI_REC_ENTER returned ERROR_REC", {})),
        failures=(CpuFailure(1, "raised RuntimeError", "Traceback (most recent call last):\n  boom\n",
                             (0x8801_2000,)),),
        problems=("vm1 did not reach SYSTEM_OFF",),
        invariants=InvariantReport(4096, (Violation("lock-held", 0x8801_2000, "locked by CPU 1"),), {"NS": 4000}),
        interrupted=False, outputs={"json": "out/report.json", "trace": "out/trace.json"},
        host={"machine": "x86_64", "python": "3.11.7", "date": "2026-11-27 10:00:00 +0000"},
    )
    return replace(report, **changes)


def delegate_rounds(cpu, rounds: int) -> int:  # type: ignore[no-untyped-def]
    """A CPU process's work: DELEGATE then UNDELEGATE its own granule ``rounds`` times."""
    pa = cpu.machine.dram_base + (96 + cpu.id) * cpu.machine.granule_size
    for _ in range(rounds):
        assert cpu.smc(DELEGATE, pa)[0] == 0
        assert cpu.smc(UNDELEGATE, pa)[0] == 0
    return rounds


def delegate_rounds_then_die(cpu, rounds: int) -> None:  # type: ignore[no-untyped-def]
    """delegate_rounds, then the process is killed (SIGKILL) with its CPU handle still open, as a
    CPU process that dies is: what it recorded since its last flush is never published."""
    delegate_rounds(cpu, rounds)
    os.kill(os.getpid(), signal.SIGKILL)


def run_guest(m: Machine, cpu: int = 0, tracing: bool = False) -> tuple[int, dict[int, str]]:
    """Build and run GUEST on ``cpu`` in this process to SYSTEM_OFF, tear it down, release the CPU.

    With ``tracing``, only the two REC entries are traced (not the build or the teardown).
    Returns the REC's PA and {REC PA: "guest", RD PA: "guest"} for trace labels.
    """
    from realm_guests import Guest

    with Guest.build(m, GUEST, cpu=cpu) as g:
        g.cpu.set_tracing(tracing)
        first, ex = g.enter()
        assert first == 0 and ex["exit_reason"] == 5, ex  # RSI_HOST_CALL
        second, ex = g.enter()
        assert second == 0 and ex["exit_reason"] == 3, ex  # PSCI_SYSTEM_OFF
        g.cpu.set_tracing(False)
        rec = g.rec_pa()
        names = {rec: "guest", g.realm.rd: "guest"}
    g.cpu.close()
    return rec, names


def real_run(m: Machine, rounds: int = 200, pin: bool = True) -> RunReport:
    """The report of: a realm run on CPU 0 here, then two CPU processes delegating ``rounds`` times."""
    run_guest(m)
    result = run_cpus(m, delegate_rounds, [0, 1], args=(rounds,), pin=pin)
    assert result.ok, [f.describe() for f in result.failures]
    return RunReport(
        workload="delegate-rounds", source="tests/stats/report_samples.py", platform=m.platform.name, cpus=2,
        seed=0, seconds=None, iterations=rounds, elapsed_s=result.elapsed_s, latency_recorded=True,
        stats=latency.collect(m, [0, 1]), locks=collect_locks(m, [0, 1]), usage=dict(result.usage),
        host_cores=len(host_cores()), pinned=pin, counters={0: {}, 1: {}},
        realms=(RealmOutcome("guest", 1, True, "SYSTEM_OFF"),), failures=result.failures, problems=(),
        invariants=invariants(m), interrupted=result.interrupted)
