"""The stress segment's layout (stress.shared): the last CPU's words inside the pages made, the
per-CPU counters on a long run, and a segment of another layout version refused on attach."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from rmm_mp.stress import shared
from rmm_mp.stress.shared import COUNTED, MAX_CPUS, StressSegment


@pytest.fixture
def seg() -> Iterator[StressSegment]:
    s = StressSegment.create(f"rmm-mp-test-layout-{os.getpid()}", MAX_CPUS, shared.MODE_FREE, 0, 0, 1)
    yield s
    s.close()


def test_the_last_cpus_words_lie_inside_the_segment(seg: StressSegment) -> None:
    """At MAX_CPUS (64), the last CPU's every counter is written and read back, up to the last
    byte of its words, and the segment is whole pages; the CPU before it is not touched."""
    assert shared.SIZE % 4096 == 0 and len(seg.segment.buf) == shared.SIZE
    last = MAX_CPUS - 1
    assert seg._cpu(last) + shared._CPU_SIZE <= shared.SIZE
    for i, name in enumerate(COUNTED):
        for _ in range(i + 1):
            seg.count(last, name)
    seg.count_op(last)
    assert seg.counts(last) == {name: i + 1 for i, name in enumerate(COUNTED)}
    assert seg.ops(last) == 1
    assert seg.counts(last - 1) == {} and seg.ops(last - 1) == 0


def test_the_counters_do_not_wrap_at_32_bits(seg: StressSegment) -> None:
    """A day's run (--seconds 86,400) of one CPU at some 50,000 idle operations a second counts past
    2**32: a u32 counter wrapped to 0 and the CPU's counts read as none. Failed before the counters
    were u64 (the operation count read 0, the count by kind was left out)."""
    base = seg._cpu(0)
    seg.view.store_u32(base + shared.C_OPS, 0xFFFF_FFFF)
    seg.view.store_u32(base + shared.C_COUNTS, 0xFFFF_FFFF)
    seg.count_op(0)
    seg.count(0, COUNTED[0])
    assert seg.ops(0) == 1 << 32
    assert seg.counts(0) == {COUNTED[0]: 1 << 32}


def test_a_segment_of_another_layout_version_is_refused(seg: StressSegment) -> None:
    """The version word was written but never read: a CPU process of another layout (rmm_mp
    edited while the run started up) read and wrote its words at other offsets, silently."""
    seg.view.store_u32(0x08, shared.VERSION - 1)
    with pytest.raises(ValueError, match=f"layout version {shared.VERSION - 1}.*expected {shared.VERSION}"):
        StressSegment.attach(seg.machine_name)


def test_every_operation_kind_has_a_counter() -> None:
    """A CPU counts each operation it completes by kind in the segment too (Operations.count),
    at COUNTED's index for the kind: a kind a workload draws that COUNTED lacks would raise
    KeyError in every CPU that drew it. The events are there as well."""
    from rmm_mp.stress.ops import WORKLOADS
    kinds = {kind for weights in WORKLOADS.values() for kind in weights}
    assert kinds <= set(COUNTED), sorted(kinds - set(COUNTED))
    assert {"rec-enter", "vcpu-idle", "relaunch", "guest-tables-idle"} <= set(COUNTED)


def test_a_killed_cpus_total_is_what_its_counts_by_kind_add_up_to(seg: StressSegment) -> None:
    """A CPU counts a finished operation twice in the segment, its kind's counter and then its
    op count, two separate adds: killed between them (as here: its third `tables` counted by
    kind, not in the op count), the report's total for it (`operations_unreported`, read from
    the op count) was one short of its counts by kind (`counts_unreported`). The total a report
    gives is now the sum of the kind counters (events, such as rec-enter, left out). Failed with
    ``completed`` reading the op count, as the report did: 2 against 3."""
    for _ in range(2):
        seg.count(3, "tables")
        seg.count_op(3)
    seg.count(3, "rec-enter")
    seg.count(3, "tables")                  # killed here, before its count_op
    kinds = {k: n for k, n in seg.counts(3).items() if k in shared.OPERATION_KINDS}
    assert seg.completed(3) == sum(kinds.values()) == 3
    assert seg.ops(3) == 2                  # the progress word, one behind


def test_the_last_cpus_bug_calls_lie_inside_its_words(seg: StressSegment) -> None:
    """Every catalogued bug has a counter in each CPU's words (stress.bugs.BUG_INDEX), the last
    CPU's inside the segment, another CPU's untouched; an index past them is refused."""
    from rmm_mp.stress.bugs import BUG_INDEX
    last = MAX_CPUS - 1
    for name, i in BUG_INDEX.items():
        for _ in range(i + 1):
            seg.count_bug(last, i)
    assert seg.bug_calls(last, BUG_INDEX) == {name: i + 1 for name, i in BUG_INDEX.items()}
    assert not any(seg.bug_calls(last - 1, BUG_INDEX).values())
    assert seg.counts(last) == {}
    assert shared.C_BUGS + 8 * len(BUG_INDEX) <= shared._CPU_SIZE
    with pytest.raises(ValueError):
        seg.count_bug(last, shared.BUG_SLOTS)


def test_more_bugs_than_the_segment_counts_fail_the_import_under_python_o() -> None:
    """stress.bugs refuses, as it is imported, a catalogue longer than the stress segment's bug
    slots (stress.shared BUG_SLOTS), python -O or not: the guard was an assert, gone under -O,
    and the CPU then raised StressSegment.count_bug's ValueError inside the patched RMM function
    at the bug's first call. (Failed before: under -O the import passed.)"""
    # Run again (importlib.reload) with one slot, in a process of its own: the package imported it already.
    code = ("import importlib\nimport rmm_mp.stress.bugs as bugs\nimport rmm_mp.stress.shared as shared\n"
            "shared.BUG_SLOTS = 1\n"
            "try:\n    importlib.reload(bugs)\nexcept ImportError as exc:\n    print('refused:', exc)\n")
    res = subprocess.run([sys.executable, "-O", "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.startswith("refused: stress.bugs: "), (res.stdout, res.stderr)
    assert "counts the calls of 1 (stress.shared BUG_SLOTS)" in res.stdout, res.stdout
