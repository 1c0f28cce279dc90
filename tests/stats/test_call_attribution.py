"""Which CPU and which row a measured call lands in, and that the rows add up to the calls made.

Scenarios (docs/latency.md, "What each call's figures measure" and "Percentiles, maximum and
mean"):

- a realm built on CPU 0 and entered from CPU 1: its RSI and PSCI calls and its REC run are
  CPU 1's figures, none CPU 0's; the SMCCC SVE hint (FID bit 16) and bits [63:32] of X0 do not
  change a call's row; the SMC32 forms of the RMI and RSI FIDs are no RMI or RSI call (not
  counted), the SMC32 and SMC64 forms of a PSCI function share its row; failing calls are
  counted, in the same row, as errors;
- two CPU processes each making calls for several 50 ms flush intervals (so the histograms are
  built over several flushes), a third of them failing: each CPU's rows hold exactly the calls
  that CPU made, their buckets hold every call, and the "all" rows are the sums.
"""

from __future__ import annotations

import time

import pytest

from realm_guests import Guest
from rmm_mp import Machine
from rmm_mp.abi.rmi import RmiFid
from rmm_mp.abi.smccc import SMC_UNKNOWN, SMCCC_SVE_HINT
from rmm_mp.runtime import run_cpus
from rmm_mp.stats import calls
from rmm_mp.stats import report as latency
from rmm_mp.stats.histogram import FLUSH_INTERVAL_NS, H_FLUSHES, SLOT_Q
from rmm_mp.stats.report import read_stats

SVE_HINT = SMCCC_SVE_HINT

ATTRIBUTION_GUEST = """
    mov x0, =RSI_VERSION
    mov x1, =0x10000
    smc #0
    mov x0, =0xC4010190             // RSI_VERSION with the SVE hint: the same call
    mov x1, =0x10000
    smc #0
    mov x0, =0x84000190             // RSI_VERSION's number in an SMC32 FID: no RSI call
    smc #0
    mov x19, x0
    mov x0, =0x84000003             // PSCI_CPU_ON (SMC32) of the caller's own REC: ALREADY_ON
    mov x1, =0
    mov x2, =0x80000000
    smc #0
    mov x0, =PSCI_CPU_ON            // SMC64: the same row
    mov x1, =0
    mov x2, =0x80000000
    smc #0
    mov x0, =RSI_IPA_STATE_GET      // base not aligned: RSI_ERROR_INPUT
    mov x1, =0x80001001
    mov x2, =0x80002000
    smc #0
    mov x0, =PSCI_SYSTEM_OFF
    smc #0
    b .
"""


def _rows(stats: dict[int, dict[int, object]]) -> dict[tuple[int | str, str], tuple[int, int]]:
    return {(r.cpu, r.call): (r.count, r.errors) for r in latency.call_records(stats)}  # type: ignore[arg-type]


@pytest.mark.multiprocess
def test_a_realms_calls_and_the_hosts_land_on_the_calling_cpu_in_their_rows() -> None:
    """A realm built on CPU 0, entered from CPU 1 once (to SYSTEM_OFF), then four RMI calls on
    CPU 1. CPU 1 holds: RSI_VERSION twice (once with the SVE hint), PSCI_CPU_ON twice with 2
    errors (SMC32 and SMC64 forms, own REC), RSI_IPA_STATE_GET with 1 error, PSCI_SYSTEM_OFF,
    EXIT_PSCI and RMI_REC_ENTER once each, RMI_VERSION twice (SVE hint; junk in X0[63:32]),
    RMI_GRANULE_DELEGATE once with 1 error (of the RD); the SMC32 RSI_VERSION and the SMC32
    RMI_VERSION (both answered SMC_UNKNOWN) are nowhere. CPU 0, which built the realm, has no
    RSI, PSCI, EXIT or REC_ENTER row."""
    with Machine.create("host", cpus=2) as m:
        with Guest.build(m, ATTRIBUTION_GUEST, cpu=0) as g:
            host = m.cpu(1)
            try:
                status, ex = g.enter(cpu=1)
                assert status == 0 and ex["exit_reason"] == 3, ex    # RMI_EXIT_PSCI: SYSTEM_OFF
                assert g.gpr(19) == SMC_UNKNOWN
                assert host.smc(RmiFid.RMI_VERSION | SVE_HINT, 0x10000)[0] == 0
                assert host.smc(RmiFid.RMI_VERSION | (0xFFFF_FFFF << 32), 0x10000)[0] == 0
                assert host.smc(0x8400_0150, 0x10000)[0] == SMC_UNKNOWN
                assert host.smc(RmiFid.RMI_GRANULE_DELEGATE, g.realm.rd)[0] != 0
                host.flush_statistics()
                g.cpu.flush_statistics()
                stats = latency.collect(m, [0, 1])
            finally:
                host.close()
        g.cpu.close()
    rows = _rows(stats)
    cpu1 = {call: figures for (cpu, call), figures in rows.items() if cpu == 1}
    assert cpu1 == {"RSI_VERSION": (2, 0), "PSCI_CPU_ON": (2, 2), "RSI_IPA_STATE_GET": (1, 1),
                    "PSCI_SYSTEM_OFF": (1, 0), "EXIT_PSCI": (1, 0), "RMI_REC_ENTER": (1, 0),
                    "RMI_VERSION": (2, 0), "RMI_GRANULE_DELEGATE": (1, 1)}, cpu1
    cpu0 = {call for (cpu, call) in rows if cpu == 0}
    assert not {c for c in cpu0 if not c.startswith("RMI_") or c == "RMI_REC_ENTER"}, cpu0
    assert "RMI_UNUSED_0x16f_0x18f" not in cpu0 | set(cpu1)


DELEGATE = int(RmiFid.RMI_GRANULE_DELEGATE)
UNDELEGATE = int(RmiFid.RMI_GRANULE_UNDELEGATE)
DELEGATE_SLOT = calls.rmi_slot(DELEGATE)
ROUNDS_FOR_NS = 4 * FLUSH_INTERVAL_NS


def _rounds_with_errors(cpu) -> int:  # type: ignore[no-untyped-def]
    """A CPU process's work: for at least four flush intervals, DELEGATE + UNDELEGATE of its own
    granule, then an UNDELEGATE of it again (Non-secure by then: RMI_ERROR_INPUT); the rounds."""
    pa = cpu.machine.dram_base + (96 + cpu.id) * cpu.machine.granule_size
    rounds = 0
    end = time.perf_counter_ns() + ROUNDS_FOR_NS
    while rounds < 50 or time.perf_counter_ns() < end:
        assert cpu.smc(DELEGATE, pa)[0] == 0
        assert cpu.smc(UNDELEGATE, pa)[0] == 0
        assert cpu.smc(UNDELEGATE, pa)[0] != 0
        rounds += 1
    return rounds


@pytest.mark.multiprocess
def test_per_cpu_rows_hold_exactly_the_calls_made_and_all_is_their_sum() -> None:
    """Two CPU processes, each for at least 200 ms (four flush intervals), make R_n rounds of
    DELEGATE, UNDELEGATE and a failing UNDELEGATE, and return R_n. CPU n's DELEGATE row counts
    R_n calls (0 errors), its UNDELEGATE row 2 R_n (R_n errors), each over several flushes, with
    every call in its buckets; the "all" rows count R_0 + R_1 and 2 (R_0 + R_1) with the errors
    summed, and the time split's calls are the RMI calls made."""
    with Machine.create("host", cpus=2) as m:
        result = run_cpus(m, _rounds_with_errors, [0, 1])
        assert result.ok, [f.describe() for f in result.failures]
        stats = latency.collect(m, [0, 1])
        flushes = {cpu: read_stats(m, cpu, lambda region: region.cast("Q")[DELEGATE_SLOT * SLOT_Q + H_FLUSHES])
                   for cpu in (0, 1)}
    rounds = {cpu: result.results[cpu] for cpu in (0, 1)}
    rows = {(r.cpu, r.call): r for r in latency.call_records(stats)}
    for cpu, n in rounds.items():
        assert (rows[(cpu, "RMI_GRANULE_DELEGATE")].count, rows[(cpu, "RMI_GRANULE_DELEGATE")].errors) == (n, 0)
        assert (rows[(cpu, "RMI_GRANULE_UNDELEGATE")].count, rows[(cpu, "RMI_GRANULE_UNDELEGATE")].errors) == (2 * n, n)
        assert flushes[cpu] >= 2, flushes     # the figures were built over more than one flush
        for s in stats[cpu].values():
            assert sum(s.buckets) == s.count and not s.half_written()
    total = sum(rounds.values())
    assert (rows[("all", "RMI_GRANULE_DELEGATE")].count, rows[("all", "RMI_GRANULE_DELEGATE")].errors) == (total, 0)
    assert (rows[("all", "RMI_GRANULE_UNDELEGATE")].count,
            rows[("all", "RMI_GRANULE_UNDELEGATE")].errors) == (2 * total, total)
    assert {call for (_, call) in rows} == {"RMI_GRANULE_DELEGATE", "RMI_GRANULE_UNDELEGATE"}
    assert latency.time_split(latency.merged(stats)).calls == 3 * total == latency.total_calls(stats)

