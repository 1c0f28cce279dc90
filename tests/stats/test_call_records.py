"""Report records of rmm_mp/stats/report.py for `rmm-mp run`: kinds, lock class names, CallRecord
lists with "all" totals, and the time split.

Scenarios: every slot range maps to its kind; lock class names agree with the RMM's granule
states; call_records orders by kind, name and CPU, always adds an "all" record, and gives the
percentiles, means and split the histograms hold; time_split sums RMI calls only (RSI, PSCI and
REC runs are nested inside RMI_REC_ENTER) and its parts add up; the original rows() and
format_table() are gone: the report is drawn from call_records.
"""

from __future__ import annotations

import pytest

from report_samples import slot_of, stats_of
from rmm_mp.abi.psci import PsciFid
from rmm_mp.abi.rmi import RmiFid
from rmm_mp.abi.rsi import RsiFid
from rmm_mp.hw.granule import CLASSES, OTHER_CLASS
from rmm_mp.rmm.granule_state import GranuleState
from rmm_mp.stats import calls
from rmm_mp.stats import report as latency
from rmm_mp.stats.histogram import REGION_BYTES, Recorder, read_slot

DELEGATE = slot_of(int(RmiFid.RMI_GRANULE_DELEGATE))
ENTER = slot_of(int(RmiFid.RMI_REC_ENTER))
HOST_CALL = slot_of(int(RsiFid.RSI_HOST_CALL))
CPU_ON = slot_of(int(PsciFid.PSCI_CPU_ON))


@pytest.mark.parametrize(("slot", "kind"), [
    (0, "RMI"), (calls.RMI_UNUSED_SLOT, "RMI"), (calls.RSI_BASE, "RSI"), (HOST_CALL, "RSI"), (CPU_ON, "PSCI"),
    (calls.PSCI_BASE + 31, "PSCI"), (calls.EXIT_BASE, "EXIT"), (calls.EXIT_BASE + 15, "EXIT"),
    (calls.HOST_BASE, "HOST"), (calls.SLOTS - 1, "HOST")])
def test_kind_follows_the_slot_ranges(slot: int, kind: str) -> None:
    """RMI 0..31, RSI 32..63, PSCI 64..95, EXIT 96..111, HOST 112..127 (stats.calls)."""
    assert latency.kind(slot) == kind


def test_kind_rejects_a_slot_outside_the_table() -> None:
    """A slot one past the last (128) has no kind: a ValueError naming the slot."""
    with pytest.raises(ValueError, match="slot = 128"):
        latency.kind(calls.SLOTS)


def test_lock_class_names_are_the_granule_states() -> None:
    """Classes below 7 are named as rmm.granule_state names the states; OTHER_CLASS is OTHER."""
    assert latency.LOCK_CLASS_NAMES == GranuleState.NAMES
    assert [latency.lock_class_name(c) for c in range(7)] == list(GranuleState.NAMES)
    assert latency.lock_class_name(OTHER_CLASS) == "OTHER"
    assert latency.lock_class_name(7) == "CLASS_7"
    with pytest.raises(ValueError, match="lock class = 16"):
        latency.lock_class_name(CLASSES)


def test_call_records_order_totals_and_figures() -> None:
    """Records come by kind (RMI before RSI before PSCI), then name, then CPU, with "all" after
    each call's CPUs; figures are what the histograms hold (percentile = bucket upper edge)."""
    stats = {
        1: {DELEGATE: stats_of(DELEGATE, [1000] * 10, el3=0.2, lock=0.1, errors=2)},
        0: {CPU_ON: stats_of(CPU_ON, [5000]), DELEGATE: stats_of(DELEGATE, [2000] * 10, el3=0.5),
            HOST_CALL: stats_of(HOST_CALL, [3000])},
    }
    records = latency.call_records(stats)
    assert [(r.call, r.cpu) for r in records] == [
        ("RMI_GRANULE_DELEGATE", 0), ("RMI_GRANULE_DELEGATE", 1), ("RMI_GRANULE_DELEGATE", "all"),
        ("RSI_HOST_CALL", 0), ("RSI_HOST_CALL", "all"), ("PSCI_CPU_ON", 0), ("PSCI_CPU_ON", "all")]
    total = records[2]
    assert (total.kind, total.count, total.errors, total.max, total.mean) == ("RMI", 20, 2, 2000, 1500)
    assert total.p50 == 1007  # 1000 lies in bucket [992, 1007]: the upper edge is reported
    assert total.p90 == total.p99 == total.p999 == 2000  # [1984, 2015] capped at the exact max
    assert (total.el3_mean, total.rmm_mean, total.lock_wait_mean) == (600, 850, 50)
    assert total.el3_mean + total.rmm_mean + total.lock_wait_mean == total.mean
    assert [f for f in latency.RECORD_FIELDS] == ["cpu", "call", "kind", "count", "errors", "p50", "p90", "p99",
                                                    "p999", "max", "mean", "el3_mean", "rmm_mean", "lock_wait_mean"]


def test_a_single_cpu_still_gets_an_all_record() -> None:
    """Consumers find totals by cpu == "all" whatever the CPU count."""
    records = latency.call_records({0: {DELEGATE: stats_of(DELEGATE, [100, 200])}})
    assert [(r.cpu, r.count) for r in records] == [(0, 2), ("all", 2)]


def test_time_split_covers_rmi_calls_only_and_adds_up() -> None:
    """An RSI call and a REC run happen inside RMI_REC_ENTER: the split leaves them out."""
    per_slot = {DELEGATE: stats_of(DELEGATE, [1000] * 4, el3=0.25, lock=0.5),
                ENTER: stats_of(ENTER, [10_000], el3=0.1),
                HOST_CALL: stats_of(HOST_CALL, [3000]),
                calls.EXIT_BASE + 5: stats_of(calls.EXIT_BASE + 5, [8000])}
    split = latency.time_split(per_slot)
    assert (split.calls, split.total_ns) == (5, 14_000)
    assert (split.el3_ns, split.rmm_ns, split.lock_wait_ns) == (1000 + 1000, 1000 + 9000, 2000)
    assert split.el3_ns + split.rmm_ns + split.lock_wait_ns == split.total_ns


def test_merged_sums_every_cpu() -> None:
    """One call's statistics on CPUs 0 and 3 merge into one: the counts and the sums add, the maximum is
    the larger."""
    stats = {0: {DELEGATE: stats_of(DELEGATE, [100])}, 3: {DELEGATE: stats_of(DELEGATE, [300, 500])}}
    total = latency.merged(stats)[DELEGATE]
    assert (total.count, total.sum_ns, total.max_ns) == (3, 900, 500)


def test_total_calls_counts_every_cpu_and_slot() -> None:
    """One DELEGATE on CPU 0; two DELEGATEs and a host call on CPU 1: total_calls is 4, every slot of
    every CPU counted."""
    stats = {0: {DELEGATE: stats_of(DELEGATE, [2000])},
             1: {DELEGATE: stats_of(DELEGATE, [4000, 10]), HOST_CALL: stats_of(HOST_CALL, [3000])}}
    assert latency.total_calls(stats) == 4

SMCCC_GUEST = """
    mov x0, =0x80000000             // SMCCC_VERSION: function number 0, as PSCI_VERSION's
    smc #0
    mov x0, =0x80000000
    smc #0
    mov x0, =PSCI_VERSION
    smc #0
    mov x0, =PSCI_SYSTEM_OFF
    smc #0
    b .
"""


@pytest.mark.multiprocess
def test_smccc_version_is_not_counted_as_psci_version() -> None:
    """A realm's SMCCC_VERSION (0x8000_0000) is answered with the PSCI calls, but it is its own
    call: its records are SMCCC_VERSION (kind PSCI), not PSCI_VERSION, whose function number it
    shares; abi.psci and stats.calls agree on its ID."""
    from realm_guests import Guest
    from rmm_mp import Machine

    assert int(PsciFid.SMCCC_VERSION) == calls.SMCCC_VERSION_FID
    with Machine.create("host", cpus=1) as m:
        with Guest.build(m, SMCCC_GUEST) as g:
            status, ex = g.enter()
            assert status == 0 and ex["exit_reason"] == 3, ex    # PSCI_SYSTEM_OFF
            g.cpu.flush_statistics()
            stats = latency.collect(m, [0])
        g.cpu.close()
    counts = {(r.call, r.kind): r.count for r in latency.call_records(stats) if r.cpu == "all"}
    assert counts[("SMCCC_VERSION", "PSCI")] == 2 and counts[("PSCI_VERSION", "PSCI")] == 1, counts

RESERVED_PSCI_GUEST = """
    mov x0, =0x8400001F             // PSCI function number 0x1F (reserved): NOT_SUPPORTED
    smc #0
    mov x20, x0
    mov x0, =0xC400001F
    smc #0
    mov x21, x0
    mov x0, =PSCI_SYSTEM_OFF
    smc #0
    b .
"""


@pytest.mark.multiprocess
def test_reserved_psci_function_is_not_counted_as_smccc_version() -> None:
    """A realm's PSCI call with function number 0x1F (reserved in PSCI 1.1; answered
    NOT_SUPPORTED) would fall into slot PSCI_BASE + 31, which is SMCCC_VERSION's: it is not
    recorded (as an unknown SMC is not), so the report shows no SMCCC_VERSION call the realm
    never made."""
    from realm_guests import Guest
    from rmm_mp import Machine

    not_supported = (1 << 64) - 1
    with Machine.create("host", cpus=1) as m:
        with Guest.build(m, RESERVED_PSCI_GUEST) as g:
            status, ex = g.enter()
            assert status == 0 and ex["exit_reason"] == 3, ex    # PSCI_SYSTEM_OFF
            assert (g.gpr(20), g.gpr(21)) == (not_supported, not_supported)
            g.cpu.flush_statistics()
            stats = latency.collect(m, [0])
        g.cpu.close()
    counts = {(r.call, r.kind): r.count for r in latency.call_records(stats) if r.cpu == "all"}
    assert ("SMCCC_VERSION", "PSCI") not in counts, counts
    assert counts[("PSCI_SYSTEM_OFF", "PSCI")] == 1, counts


@pytest.mark.parametrize("number, expected", [(0x05, "PSCI_MIGRATE"), (0x0E, "PSCI_SYSTEM_SUSPEND"),
                                              (0x12, "PSCI_SYSTEM_RESET2"), (0x14, "PSCI_MEM_PROTECT_CHECK_RANGE"),
                                              (0x15, "PSCI_UNASSIGNED_0x15")])
def test_every_psci_function_number_has_a_name(number: int, expected: str) -> None:
    """A PSCI call the RMM answers NOT_SUPPORTED is named in the report as PSCI 1.1 names it
    (or as unassigned), in both calling conventions; it read SLOT_69 and the like. No PSCI
    slot is left without a name."""
    assert calls.name(calls.psci_slot(0x8400_0000 + number)) == expected
    assert calls.name(calls.psci_slot(0xC400_0000 + number)) == expected
    assert not [n for n in range(0x1F) if calls.name(calls.psci_slot(0x8400_0000 + n)).startswith("SLOT_")]


def test_rmi_means_are_each_rounded_down_and_nested_calls_keep_their_lock_waits() -> None:
    """What docs/report-schema.json says of rmm_mean: for RMI it is the handler sum / count
    rounded down, like el3_mean and lock_wait_mean, so the three can be 2 ns short of mean (it
    is not mean - el3_mean - lock_wait_mean); an RSI call records no lock wait of its own (a
    wait in it counts in its RMI_REC_ENTER), so its rmm_mean is its whole mean."""
    region = memoryview(bytearray(REGION_BYTES))
    recorder = Recorder(region)
    for el3, wait in ((334, 334), (334, 334), (333, 333)):     # 3 calls of 1001 ns
        recorder.record(DELEGATE, 1001, el3, wait, False)
    recorder.record(HOST_CALL, 3000, 0, 0, False)
    recorder.record(HOST_CALL, 3001, 0, 0, False)
    recorder.flush(0)
    recorder.release()
    delegate, host_call = read_slot(region, DELEGATE), read_slot(region, HOST_CALL)
    assert (delegate.sum_ns, delegate.el3_ns, delegate.lockwait_ns, delegate.handler_ns) == (3003, 1001, 1001, 1001)
    (record, _), (nested, _) = (latency.call_records({0: {slot: s}}) for slot, s in
                                ((DELEGATE, delegate), (HOST_CALL, host_call)))
    assert (record.mean, record.el3_mean, record.lock_wait_mean, record.rmm_mean) == (1001, 333, 333, 333)
    assert (nested.mean, nested.el3_mean, nested.lock_wait_mean, nested.rmm_mean) == (3000, 0, 0, 3000)
