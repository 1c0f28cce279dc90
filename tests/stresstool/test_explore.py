"""The interleaving explorer (rmm_mp/stress/explore.py, `rmm-mp explore`): correct pairs give
serial outcomes only (or, with a REC_ENTER, those of the other call run while the REC runs), a
catalogued bug of the "work outside the locks" kind, one of lock order and one of a REC's
running reference are reported, and the command's --list, usage errors and --json.

Each pair takes well under a second (a fresh in-process machine per run); the runs are
deterministic (one call runs at a time), so the counts below are exact.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from rmm_mp.abi.rmi import RmiFid as F
from rmm_mp.abi.rmi import RmiStatus
from rmm_mp.hw import points, segment
from rmm_mp.machine import Machine
from rmm_mp.stress.bugs import BUGS
from rmm_mp.stress.explore import PairReport, explore, run_once, verdict
from rmm_mp.stress.explore_cli import explore as explore_command
from rmm_mp.stress.explore_pairs import PAIRS
from rmm_mp.stress.explore_pairs_rec import rec_enter_aux_run_vs_rec_destroy
from rmm_mp.stress.probe import Patches


@contextmanager
def injected(name: str) -> Iterator[None]:
    patches = Patches()
    BUGS[name].install(patches)
    try:
        yield
    finally:
        patches.restore()


def _my_segments() -> list[str]:
    return [m.prefix for m in segment.list_machines() if m.creator_pid == os.getpid()]


NO_LOCK_EVENTS = {"data-create-own-src-vs-delegate"}
"""Pairs whose A takes no lock on the unmodified RMM (they are there for a catalogued bug)."""

NEW_PAIRS = ["rtt-fold-vs-data-create", "rtt-fold-vs-data-create-unknown", "rtt-fold-vs-read-entry",
             "rtt-create-vs-rtt-destroy-parent", "rtt-fold-assigned-vs-data-destroy",
             "rtt-create-unfold-vs-data-destroy", "rtt-fold-ns-vs-unmap", "rtt-destroy-vs-rtt-create",
             "init-ripas-vs-data-create", "set-ripas-vs-data-destroy", "realm-destroy-vs-rtt-create",
             "rtt-destroy-vs-realm-destroy", "realm-destroy-vs-rec-create", "rec-destroy-vs-rec-create-same-granules",
             "read-entry-vs-rtt-create", "read-entry-vs-rtt-destroy", "read-entry-vs-realm-destroy",
             "realm-destroy-vs-rec-aux-count", "undelegate-vs-data-create-unknown", "data-create-unknown-vs-undelegate",
             "init-ripas-vs-rtt-create", "psci-complete-vs-rec-destroy-target", "rec-destroy-target-vs-psci-complete",
             "set-ripas-vs-rtt-fold", "realm-destroy-vs-read-entry", "token-continue-vs-rec-destroy",
             "token-continue-vs-data-destroy", "ipa-state-get-vs-rtt-fold", "realm-config-vs-data-destroy"]


def test_a_call_thread_is_listed_only_once_started() -> None:
    """The supervisor joins every thread in the run's list while the first call's thread starts
    the second; a thread listed before it was started made that join raise "cannot join thread
    before it is started" (seen once in a full-suite run, on store-vs-rtt-fold-assigned)."""
    import threading
    from rmm_mp.stress import explore as explore_module
    threads: list[threading.Thread] = []
    visible_at_start: list[list[threading.Thread]] = []

    class Recorded(threading.Thread):
        def start(self) -> None:
            visible_at_start.append(list(threads))     # what _supervise could join just now
            super().start()

    thread = Recorded(target=lambda: None, daemon=True)
    explore_module._start(thread, threads)
    thread.join()
    assert visible_at_start == [[]] and threads == [thread]


@pytest.mark.parametrize("name", [n for n in PAIRS if n not in NEW_PAIRS])
def test_correct_pair_gives_serial_outcomes_only(name: str) -> None:
    """Every interleaving of the unmodified RMM is one of the two serial outcomes; the pair has
    more than one insertion point (the NO_LOCK_EVENTS pairs none), and the serial runs
    complete. Every pair of the catalog is explored here or in the test of NEW_PAIRS (a setup
    broken by a refactoring once went unnoticed because only five pairs were)."""
    report = explore(PAIRS[name])
    assert report.ok, report
    assert report.tried > 1 or name in NO_LOCK_EVENTS
    assert not any(o.trouble for o in report.serial.values())
    assert _my_segments() == []


def test_rec_enter_overlaps_are_references() -> None:
    """REC_ENTER of a looping guest vs REC_DESTROY: B run whole while the REC runs (its one run
    point) is a reference, REC_DESTROY failing rec_state; the interleavings after A took the
    running reference give it, which neither serial order does, and are accepted as such: all
    of them, since REC_ENTER's first lock is the REC's (taken with its run page, which this setup
    puts above the REC: lock_two goes in address order), so B meets the REC locked or running
    wherever it is inserted (when the run page was copied before any lock,
    B inserted at that copy's lock event ran before the entry, a serial order). The point hook
    is put back after the exploration."""
    pair = PAIRS["rec-enter-vs-rec-destroy"]
    report = explore(pair)
    assert report.ok, report
    assert list(report.during) == ["B at A's run loop (0)"]
    overlap = report.during["B at A's run loop (0)"]
    assert overlap.b[0] == RmiStatus.RMI_ERROR_REC and overlap.a[0] == RmiStatus.RMI_SUCCESS
    assert dict(overlap.seen) == {"A's exit": "IRQ"}
    assert {o.seen for o in report.serial.values()} == {(("A's exit", "IRQ"),), (("A's exit", "none"),)}
    overlapping = [k for k in range(report.tried) if verdict(run_once(pair, k).outcome, report.serial)]
    assert report.tried > 1 and overlapping == list(range(report.tried))
    assert points.hook is None
    assert _my_segments() == []


def test_views_tell_the_serial_orders_apart() -> None:
    """The REC exit is part of the outcome: a host call before DATA_DESTROY exits with the
    structure's imm and gprs, after it with a data abort at the structure's IPA (level 3); two
    RECs extending REM1 leave a different REM1 in each order, and each run with one REC's entry
    inside the other's gives one of the two."""
    report = explore(PAIRS["host-call-vs-data-destroy"])
    exits = {order: dict(o.seen)["A's exit"] for order, o in report.serial.items()}
    assert exits == {"A;B": "HOST_CALL imm=0x11 gprs=(0xa0, 0xa1)", "B;A": "SYNC esr=0x90000007 hpfar=0x10"}
    report = explore(PAIRS["rec-enter-vs-rec-enter-extend"])
    assert report.ok, report
    rems = {order: dict(o.seen)["REM1"] for order, o in report.serial.items()}
    assert len(set(rems.values())) == 2 and "zero" not in rems.values()
    assert len(report.during) == 8      # each REC_ENTER passes 4 run points
    assert {dict(o.seen)["REM1"] for o in report.during.values()} == set(rems.values())


def test_rec_enter_without_its_running_reference_is_reported() -> None:
    """rec-enter-not-running: REC_DESTROY run while the REC runs succeeds (the overlap rule of the
    pair: it must fail rec_state), and inserted at any of REC_ENTER's lock events it frees the REC
    the entry goes on to use: both succeed, and the entry saves the REC's context into the freed
    granule, an end state no serial order gives. (The bug's copy re-read the REC's words after
    releasing it, which the handler does not, so the freed REC made an RMM crash instead: two
    mistakes, not one.) Two REC_ENTERs of one REC both run."""
    with injected("rec-enter-not-running"):
        report = explore(PAIRS["rec-enter-vs-rec-destroy"])
        both = explore(PAIRS["rec-enter-vs-rec-enter"])
    assert not report.ok
    assert report.broken_rules == ("B at A's run loop (0): REC_DESTROY of the running REC must fail with "
                                   "RMI_ERROR_REC (rec_state), not RMI_SUCCESS",)
    assert report.non_serial and {n.why for n in report.non_serial} == {
        "the results of A;B, but the end state differs in: memory"}, report.non_serial
    assert [rule.split(":")[0] for rule in both.broken_rules] == ["B at A's run loop (0)", "A at B's run loop (0)"]
    assert _my_segments() == []


def test_rtt_create_releasing_the_parent_early_is_reported() -> None:
    """rtt-create-parent-released-early (a lock-free window between releasing the parent table
    and writing its entry): two RTT_CREATEs of one table both succeed, which no serial order
    gives. The same pair without the bug passes (test above)."""
    with injected("rtt-create-parent-released-early"):
        report = explore(PAIRS["rtt-create-vs-rtt-create"])
    assert not report.ok
    serial_results = {(o.a, o.b) for o in report.serial.values()}
    assert (0, 0, 0, 0, 0) in {o.a for o in report.serial.values()}
    both = [n for n in report.non_serial if n.a[0] == 0 and n.b[0] == 0]     # type: ignore[index]
    assert both and all((n.a, n.b) not in serial_results for n in both)
    assert {n.why for n in both} == {"results that no serial order gives"}


def _assert_abba_deadlock(report: PairReport, first: int, second: int) -> None:
    """The one non-serial outcome is a deadlock with B inserted after A's lock of ``first``:
    A waits for ``second``, which B (CPU 1) holds, while B waits for ``first``; both calls
    abandoned, and no machine of this process left behind."""
    [deadlock] = report.non_serial
    assert (deadlock.event, deadlock.where) == (0, f"after A acquired {first:#x}")
    assert deadlock.why == (f"deadlock: A waits for {second:#x}, held by CPU 1, "
                            f"while B waits for {first:#x}, held by CPU 0")
    assert (deadlock.a, deadlock.b) == ("abandoned", "abandoned")
    assert _my_segments() == []


@pytest.mark.parametrize("bug", ["psci-complete-unordered", "lock-two-unordered"])
def test_psci_complete_in_argument_order_deadlocks(bug: str) -> None:
    """psci-complete-unordered (and lock-two-unordered, which PSCI_COMPLETE's lock_two uses):
    each PSCI_COMPLETE locks its own REC first, so with B inserted after A's first lock each
    waits for the other: reported as a deadlock naming both waits, both calls abandoned, and the
    machines of the abandoned runs are gone too."""
    with injected(bug):
        report = explore(PAIRS["psci-complete-vs-psci-complete"], timeout=2.0)
    rec0, rec1 = report.a[1], report.a[2]
    _assert_abba_deadlock(report, first=rec0, second=rec1)


def test_lock_two_checking_late_deadlocks() -> None:
    """lock-two-check-late, an ABBA deadlock of two different commands: RTT_CREATE names the
    granule of an existing level-3 table (below the RD) and the buggy lock_two holds it, unchecked,
    while it waits for the RD; DATA_CREATE_UNKNOWN, inserted just after, holds the RD while it
    walks down to that table. The report says where B went in (A's first lock) and what each
    waits for and who holds it; it comes from the turn-taking, not from the time limit (2 s here,
    a run of a pair takes milliseconds), both calls are abandoned and no machine is left behind.
    Without the bug every interleaving is serial (test_correct_pair_gives_serial_outcomes_only)."""
    with injected("lock-two-check-late"):
        report = explore(PAIRS["rtt-create-again-vs-data-create-unknown"], timeout=2.0)
    rd, table = report.a[1], report.a[2]
    assert table < rd
    assert not report.serial_trouble and report.tried > 1
    _assert_abba_deadlock(report, first=table, second=rd)


def _rec_enter_orders(pair: str) -> list[bool]:
    """For each REC_ENTER call of ``pair``'s setup (on a fresh machine, no call run): whether its
    run page lies below its REC."""
    with Machine.create("host", cpus=2, time_slice=PAIRS[pair].time_slice) as machine:
        prepared = PAIRS[pair].setup(machine)
    return [call[2] < call[1] for call in (prepared.a, prepared.b) if call[0] == F.RMI_REC_ENTER]


RUN_BELOW = [name for name in PAIRS if name.endswith("-run-below")]


@pytest.mark.parametrize("name", RUN_BELOW)
def test_run_below_pairs_lock_the_run_page_before_the_rec(name: str) -> None:
    """REC_ENTER locks its run page with the REC in address order (lock_two). Every pair
    ``X-run-below`` is pair X with each REC_ENTER's run page below its REC, where X has it above
    (the catalog once held only that order, so a run page locked before its REC was never
    explored). Whether the pair is serial is test_correct_pair_gives_serial_outcomes_only's."""
    original = name.removesuffix("-run-below")
    below, above = _rec_enter_orders(name), _rec_enter_orders(original)
    assert below and all(below), below
    assert len(above) == len(below) and not any(above), above


def test_lock_two_checking_late_deadlocks_a_rec_enter_whose_run_page_lies_below_its_rec() -> None:
    """lock-two-check-late with REC_ENTER's run page below the REC: the REC_ENTER names an aux
    granule of its REC as its run page (not NS: it must fail at once) and the buggy lock_two holds
    it, unchecked, while it waits for the REC; REC_DESTROY, inserted just after, holds the REC
    while it takes the aux granules: a deadlock. With the aux granules above the REC (the other
    address order) lock_two takes the REC first, so the same bug gives serial outcomes only:
    this pair is what reaches it. Without the bug it is serial
    (test_correct_pair_gives_serial_outcomes_only)."""
    pair = PAIRS["rec-enter-aux-run-vs-rec-destroy"]
    above = dataclasses.replace(pair, setup=functools.partial(rec_enter_aux_run_vs_rec_destroy, aux_above=True))
    with injected("lock-two-check-late"):
        report = explore(pair, timeout=2.0)
        other_order = explore(above, timeout=2.0)
    rec, aux = report.a[1], report.a[2]
    assert aux < rec
    assert not report.serial_trouble and report.tried > 1
    _assert_abba_deadlock(report, first=aux, second=rec)
    assert other_order.a[2] > other_order.a[1]
    assert other_order.ok and other_order.tried > 1, other_order


OUT_OF_REACH = {
    "rd-refcount-plain-rmw": ("rec-destroy-vs-rec-create",),
    "delegate-state-before-pas": ("rec-create-vs-delegate-aux", "data-create-vs-delegate-src"),
    "data-destroy-wipe-after-rtt": ("data-destroy-vs-rtt-destroy", "data-destroy-vs-rtt-fold"),
    "rec-destroy-aux-after-rec": ("rec-destroy-vs-rec-create-same-granules", "rec-enter-aux-run-vs-rec-destroy"),
}
"""The catalogued bugs docs/stress.md says no pair reaches, and the pairs that come nearest: the
buggy command against one that uses what it leaves in its window (the RD's refcount, a granule
DELEGATE holds, the DATA granule and its table, the REC's aux granules)."""


@pytest.mark.parametrize("bug", OUT_OF_REACH)
def test_bugs_out_of_the_explorers_reach_give_serial_outcomes(bug: str) -> None:
    """Each bug docs/stress.md calls out of the explorer's reach gives serial outcomes only on
    the pairs nearest to it, for the reason the doc gives (no lock event in its window, or a
    granule taken late that keeps its state meanwhile). A report here means that reason is
    wrong or the explorer gained insertion points: the doc's list must then change."""
    with injected(bug):
        reports = [explore(PAIRS[name], timeout=2.0) for name in OUT_OF_REACH[bug]]
    for report in reports:
        assert report.ok and report.tried > 1, report
    assert _my_segments() == []


def test_map_unprotected_leaking_its_table_lock_is_reported() -> None:
    """map-unprotected-leaks-lock: RTT_MAP_UNPROTECTED of a page mapped already fails and keeps
    the level-3 table locked, so the RTT_UNMAP_UNPROTECTED after it waits for a lock nothing
    running will release: the reference run A;B does not complete, and the pair fails."""
    with injected("map-unprotected-leaks-lock"):
        report = explore(PAIRS["remap-vs-unmap-unprotected"], timeout=2.0)
    assert not report.ok
    [trouble] = report.serial_trouble
    assert trouble.startswith("A;B: B waits for 0x")
    assert trouble.endswith(", held by CPU 0, which nothing running will release (a leaked lock)")
    assert report.serial["A;B"].b == "abandoned"
    # The last line, which a user reads for the verdict, says the pair failed: it said "every
    # one serial" under the reference run that did not complete.
    from rmm_mp.stress.explore_cli import report_text
    last = report_text(report).splitlines()[-1]
    assert last.endswith(": FAILED: a reference run did not complete (above), so matching it proves nothing"), last
    assert _my_segments() == []


def _remap_vs_delegate(machine):  # type: ignore[no-untyped-def]
    """RTT_MAP_UNPROTECTED of a page mapped already vs DELEGATE of an NS page nothing else uses:
    no call of the pair waits for the table the map walks to."""
    from rmm_mp.host.realm import NS_MAP_ATTRS
    from rmm_mp.stress.explore_setup import UNPROTECTED, Builder, prepared
    b = Builder(machine)
    realm = b.realm()
    b.tables(realm, UNPROTECTED, 3)
    ipa = UNPROTECTED + 5 * 4096
    b.call(F.RMI_RTT_MAP_UNPROTECTED, realm.rd, ipa, 3, b.ns_page() | NS_MAP_ATTRS)
    again, other = b.ns_page(), b.ns_page()
    return prepared(b, (F.RMI_RTT_MAP_UNPROTECTED, realm.rd, ipa, 3, again | NS_MAP_ATTRS),
                    (F.RMI_GRANULE_DELEGATE, other))


def test_a_lock_left_held_that_no_call_waits_for_is_reported() -> None:
    """map-unprotected-leaks-lock on a pair whose other call never needs the table: both serial
    runs end with the table locked, alike, so comparing runs alone passed the pair. A lock still
    held once both calls returned is reported (every reference run, so the pair fails); without
    the bug the same pair is clean."""
    from rmm_mp.stress.explore import Pair
    pair = Pair("remap-vs-delegate", "test only", _remap_vs_delegate)
    assert explore(pair, timeout=2.0).ok
    with injected("map-unprotected-leaks-lock"):
        report = explore(pair, timeout=2.0)
    assert not report.ok
    assert [t.split(": ", 1)[0] for t in report.serial_trouble] == ["A;B", "B;A"]
    assert all(t.endswith(", held by CPU 0: still locked after both calls returned (a leaked lock)")
               for t in report.serial_trouble)
    assert report.serial["A;B"].a[0] == RmiStatus.RMI_ERROR_RTT | 3 << 8     # type: ignore[index]
    assert _my_segments() == []


def test_a_pair_whose_a_takes_no_lock_says_so_rather_than_every_one_serial() -> None:
    """data-create-own-src-vs-delegate on the unmodified RMM: A (DATA_CREATE naming one page as
    source and data) is refused before it takes any lock, so no interleaving is tried. The
    report's last line says that A had no lock event to insert B at; it read "0
    interleaving(s) tried in ... s: every one serial", a verdict about nothing."""
    from rmm_mp.stress.explore_cli import report_text
    report = explore(PAIRS["data-create-own-src-vs-delegate"], timeout=2.0)
    assert report.tried == 0 and report.ok, report
    last = report_text(report).splitlines()[-1]
    assert " 0 interleaving(s) tried in " in last and "every one serial" not in last, last
    assert last.endswith("A took no lock, so there was no lock event to insert B at: the two serial orders "
                         "only"), last
    assert _my_segments() == []


def test_a_pair_stopped_at_the_lock_event_cap_says_so() -> None:
    """rtt-create-vs-rtt-create with the cap on lock events lowered to 2 (its A has more): the
    report tries 2 and says, under its count, that it stopped at the cap of 2 lock events
    (JSON capped 2), without failing the pair. It said "2 interleaving(s) tried ...: every
    one serial" and nothing else, the cap hit silently. With a cap of exactly A's 8 lock
    events, every one is tried and nothing is said (JSON capped null)."""
    from rmm_mp.stress.explore_cli import report_json, report_text
    report = explore(PAIRS["rtt-create-vs-rtt-create"], timeout=2.0, max_events=2)
    assert report.tried == 2 and report.capped == 2 and report.ok, report
    lines = report_text(report).splitlines()
    assert lines[-1] == ("  stopped at the cap of 2 lock events: A has more, and B was not inserted at any "
                         "of them"), lines
    assert report_json(report)["capped"] == 2
    whole = explore(PAIRS["rtt-create-vs-rtt-create"], timeout=2.0, max_events=8)
    assert whole.tried == 8 and whole.capped == 0 and "cap" not in report_text(whole)
    assert report_json(whole)["capped"] is None
    assert _my_segments() == []


def test_a_cap_below_one_lock_event_is_refused() -> None:
    """explore(..., max_events=0): a ValueError naming max_events and its value. It tried no
    interleaving and reported capped 0 ("every lock event tried") of a pair whose A takes 8."""
    with pytest.raises(ValueError, match=r"max_events = 0: expected 1 or more"):
        explore(PAIRS["rtt-create-vs-rtt-create"], timeout=2.0, max_events=0)
    assert _my_segments() == []


def test_the_summary_of_several_pairs_names_the_ones_stopped_at_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two pairs explored with the cap lowered to 2 lock events, which both pairs' A pass: exit
    0, and the summary says every interleaving tried gave a reference outcome but names both
    pairs as stopped at the cap. It said "every one gave a reference outcome", the cap lines
    being inside the pairs' blocks far above."""
    from rmm_mp.stress import explore_cli
    monkeypatch.setattr(explore_cli, "explore_pair", functools.partial(explore, max_events=2))
    res = CliRunner().invoke(explore_command, ["rtt-create-vs-rtt-create", "rtt-destroy-vs-undelegate-table"])
    assert res.exit_code == 0, res.output
    assert res.output.count("stopped at the cap of 2 lock events: A has more") >= 1, res.output
    assert res.output.splitlines()[-1] == (
        "2 pairs explored: every interleaving tried gave a reference outcome, but 2 stopped at the cap of 2 lock "
        "events (rtt-create-vs-rtt-create, rtt-destroy-vs-undelegate-table): B was not inserted at A's later "
        "ones"), res.output


def test_a_copy_under_the_rd_is_reported() -> None:
    """data-create-copy-under-rd: DATA_CREATE from its own source page (data = source), with
    B's DELEGATE of that page inserted before A locked it as its data granule: A's copy under
    the RD locks that granule again, an RMM crash, which no serial order gives. The unmodified
    RMM refuses the aliased page before taking any lock, so it has nothing to interleave and
    both orders fail DATA_CREATE."""
    pair = PAIRS["data-create-own-src-vs-delegate"]
    report = explore(pair, timeout=2.0)
    assert report.ok and not report.non_serial, report
    assert {o.a[0] for o in report.serial.values()} == {RmiStatus.RMI_ERROR_INPUT}    # type: ignore[index]
    with injected("data-create-copy-under-rd"):
        report = explore(pair, timeout=2.0)
    assert report.non_serial and not report.serial_trouble
    assert all(str(n.a).startswith("RmmInternalError") for n in report.non_serial)
    assert {n.why for n in report.non_serial} == {"results that no serial order gives"}
    assert _my_segments() == []


@pytest.mark.parametrize("name", NEW_PAIRS)
def test_fold_teardown_and_ripas_pairs_are_serial_and_tell_the_orders_apart(name: str) -> None:
    """The pairs of RTT folds and unfolds, RTT_CREATE against RTT_DESTROY, RIPAS changes and
    realm and REC teardown give serial outcomes only on the unmodified RMM, and their two serial
    orders differ (in a result or the end state): a pair whose orders agree could not tell a
    non-serial interleaving from a serial one."""
    report = explore(PAIRS[name])
    assert report.ok, report
    assert report.tried > 1
    assert not any(o.trouble for o in report.serial.values())
    assert not report.serial["A;B"].same(report.serial["B;A"])
    assert _my_segments() == []


def test_rim_tells_the_order_of_init_ripas_and_data_create() -> None:
    """RTT_INIT_RIPAS and a measured DATA_CREATE of a page in its range both extend the RIM: the
    RIM view differs between the two orders (INIT_RIPAS stops at the page DATA_CREATE made)."""
    report = explore(PAIRS["init-ripas-vs-data-create"])
    a_first, b_first = report.serial["A;B"], report.serial["B;A"]
    assert (a_first.a[:2], b_first.a[:2]) == ((0, 0x10000), (0, 0x5000))
    assert dict(a_first.seen)["RIM"] != dict(b_first.seen)["RIM"]


@pytest.mark.parametrize("bug, name", [("rtt-destroy-refcount-unlocked", "rtt-create-vs-rtt-destroy-parent"),
                                       ("walk-unlock-parent-first", "rtt-create-vs-rtt-destroy-parent"),
                                       ("rec-create-no-rd-lock", "realm-destroy-vs-rec-create")])
def test_teardown_against_a_creation_reports_catalogued_bugs(bug: str, name: str) -> None:
    """rtt-destroy-refcount-unlocked: RTT_DESTROY of a level-2 table reads its refcount (0)
    while RTT_CREATE holds it and adds a level-3 table: both succeed, which no serial order
    gives. walk-unlock-parent-first: RTT_DESTROY takes the table from under RTT_CREATE's walk
    (an RMM crash). rec-create-no-rd-lock: REC_CREATE creates a REC in a realm that REALM_DESTROY
    is destroying: both succeed."""
    with injected(bug):
        report = explore(PAIRS[name])
    assert not report.ok and report.non_serial
    assert {n.why for n in report.non_serial} == {"results that no serial order gives"}
    assert _my_segments() == []


def test_data_create_unknown_locking_the_root_first_deadlocks_against_a_fold() -> None:
    """data-create-rtt-before-rd: DATA_CREATE_UNKNOWN locks root RTT 0 before the RD, RTT_FOLD
    the RD before root RTT 0: with DATA_CREATE_UNKNOWN inserted after the fold took the RD, each
    waits for the other."""
    with injected("data-create-rtt-before-rd"):
        report = explore(PAIRS["rtt-fold-vs-data-create-unknown"])
    assert [n.event for n in report.non_serial] == [0]
    assert report.non_serial[0].why.startswith("deadlock: A waits for ")
    assert _my_segments() == []


ERROR_REALM_SYSTEM_OFF = RmiStatus.RMI_ERROR_REALM | 1 << 8


@pytest.mark.parametrize("name, other", [("system-off-vs-rec-enter", "B"), ("rec-enter-vs-system-off", "A"),
                                         ("cpu-on-vs-system-off", "A")])
def test_a_rec_entered_after_system_off_fails_realm_1(name: str, other: str) -> None:
    """B4.3.14 system_off: once a REC's PSCI_SYSTEM_OFF has run, REC_ENTER of another REC of the
    realm returns (RMI_ERROR_REALM, 1) and the REC does not run (no exit, REM1 not extended,
    CPU_ON not pending); entered before, it runs. So in the serial order with SYSTEM_OFF first,
    and in each run with the other entry at a run point after SYSTEM_OFF, and in no other."""
    report = explore(PAIRS[name])
    assert report.ok, report
    off_first = "B;A" if other == "A" else "A;B"
    off = "B" if other == "A" else "A"
    # The rule is about entries at run points too: both sides of SYSTEM_OFF must have been tried
    # (with no run-point references the loop below checked the serial orders only).
    for side in ("before", "after"):
        assert any(label.startswith(f"{other} at {off}'s {side} PSCI_SYSTEM_OFF") for label in report.references), \
            list(report.references)
    for label, outcome in report.references.items():
        result = outcome.a if other == "A" else outcome.b
        after_off = label == off_first or "after PSCI_SYSTEM_OFF" in label
        assert (result[0] == ERROR_REALM_SYSTEM_OFF) == after_off, (label, outcome)     # type: ignore[index]
        assert (dict(outcome.seen)[f"{other}'s exit"] == "none") == after_off, (label, outcome)
    assert _my_segments() == []


def test_psci_completions_answer_by_the_target_s_state() -> None:
    """PSCI_COMPLETE of AFFINITY_INFO about a REC that calls CPU_OFF: OFF (1) once it is off,
    ON (PSCI_SUCCESS, 0) while it runs or before (B6.3.1.3); of CPU_ON naming a REC that is off,
    while another REC calls SYSTEM_OFF: SUCCESS, REC 1 reset to the entry point with the
    context id in X0, in every order (RMI_PSCI_COMPLETE has no realm state condition)."""
    report = explore(PAIRS["affinity-info-complete-vs-cpu-off"])
    assert report.ok, report
    x0 = {label: dict(o.seen)["REC 0"].split()[0] for label, o in report.references.items()}
    assert x0 == {label: "x0=0x1" if label == "A;B" else "x0=0x0" for label in x0}
    report = explore(PAIRS["system-off-vs-psci-complete"])
    assert report.ok, report
    assert {dict(o.seen)["REC 1"].split(" psci")[0] for o in report.references.values()} == {
        "x0=0x42 x1=0x0 x2=0x0 pc=0x800 runnable=1"}


def test_two_cpu_on_completions_of_one_target() -> None:
    """RECs 0 and 2 both have CPU_ON(REC 1) pending, REC 1 off: in every interleaving of their
    completions one caller gets SUCCESS and starts REC 1 with its own context id, the other gets
    ALREADY_ON (B4.3.7.3); never both SUCCESS (a second reset of a REC already started)."""
    report = explore(PAIRS["psci-complete-same-target"])
    assert report.ok, report
    for label, outcome in report.references.items():
        seen = dict(outcome.seen)
        x0 = (seen["REC 0"].split()[0], seen["REC 2"].split()[0], seen["REC 1"].split()[0])
        assert x0 in {("x0=0x0", "x0=0xfffffffffffffffc", "x0=0x42"),
                      ("x0=0xfffffffffffffffc", "x0=0x0", "x0=0x43")}, (label, x0)
    assert _my_segments() == []


def _rec_enter_reference_before_checks(rmm, rec_addr: int, run_ptr: int) -> None:  # type: ignore[no-untyped-def]
    """RMI_REC_ENTER in TF-RMM rel0's order for an entry bound to fail: the running reference
    taken and the REC unlocked before realm_new, system_off, rec_runnable, ... are checked
    (docs/deviations.md). An entry that passes them is left to the real handler (the REC is
    not running: these pairs enter a REC on one CPU at a time)."""
    from rmm_mp.abi.structs import RMI_REC_ENTER, RMI_REC_ENTER_RAW
    from rmm_mp.rmm.handlers import rmi_rec
    from rmm_mp.rmm.nsbuf import read_ns
    from rmm_mp.rmm.realm_desc import Rd
    from rmm_mp.rmm.rec_desc import Rec
    raw = read_ns(rmm, run_ptr, RMI_REC_ENTER.size)
    g = rmm.granules.find_lock(rec_addr, rmi_rec.REC)
    g.refcount_add(1)
    g.unlock()
    rec = Rec(rmm.memory, g.idx)
    # gprs and gicv3_lrs as their bytes, as the handler gives them to its checks (its GIC memo
    # unpacks the LRs' bytes: the plain layout's ints made it raise TypeError)
    refusal = rmi_rec._entry_refusal(rmm, Rd(rmm.memory, rmi_rec._index(rmm, rec.owner_rd)), rec,
                                     RMI_REC_ENTER_RAW.unpack(raw))
    rmm.granules.refcount_add(g.idx, -1)
    if refusal is not None:
        raise refusal
    rmi_rec.rmi_rec_enter(rmm, rec_addr, run_ptr)


def test_rec_enter_holding_a_reference_before_its_checks_is_reported() -> None:
    """With REC_ENTER's reference taken before its checks (rel0's order), an entry of a REC that
    is off, bound to fail rec_runnable, makes a PSCI_COMPLETE of CPU_ON naming it, inserted just
    after the entry released the REC, answer ALREADY_ON: the results of A;B (ERROR_REC, SUCCESS)
    but REC 1 stays off, which no serial order gives. The same pair passes on the RMM as it is."""
    from rmm_mp.rmm import dispatch
    previous = dispatch.replace_handler(F.RMI_REC_ENTER, _rec_enter_reference_before_checks)
    try:
        report = explore(PAIRS["rec-enter-target-vs-psci-complete"])
    finally:
        dispatch.replace_handler(F.RMI_REC_ENTER, previous)     # type: ignore[arg-type]
    assert report.non_serial, report
    assert {n.why for n in report.non_serial} == {
        "the results of A;B, but the end state differs in: REC 0, REC 1, memory"}
    already_on = [n for n in report.non_serial if dict(n.seen)["REC 0"].startswith("x0=0xfffffffffffffffc")]
    assert already_on and all("runnable=0" in dict(n.seen)["REC 1"] for n in already_on)
    assert _my_segments() == []


GPF_EXIT = "SYNC esr=0x90000028 hpfar=0x80000050"
"""A data abort exit with DFSC 0x28 (a granule protection fault) at the unprotected page's IPA."""


@pytest.mark.parametrize("name, rec", [("unprotected-access-vs-delegate", "A"), ("delegate-vs-unprotected-access", "B")])
def test_an_unprotected_access_to_a_page_being_delegated_runs_or_exits_with_a_gpf(name: str, rec: str) -> None:
    """REC_ENTER whose guest stores to an unprotected page, extends REM1, loads from it and stores
    again, vs DELEGATE of the mapped NS page: DELEGATE succeeds in every outcome; the entry runs
    to its IRQ exit (delegated after it) or stops with the GPF exit at the first access made
    after the delegation (the first store, pc 0x20, or the load, pc 0xa8), and the page ends
    zero (DELEGATE zeroes it; no access reached it after). Both orders are the explorer's."""
    report = explore(PAIRS[name])
    assert report.ok, report
    exits: dict[str, tuple[str, str]] = {}
    for label, outcome in report.references.items():
        result = outcome.b if rec == "A" else outcome.a
        seen = dict(outcome.seen)
        assert result[0] == RmiStatus.RMI_SUCCESS, (label, outcome)     # type: ignore[index]
        assert seen["page"] == "00" * 16, (label, seen)
        pc = seen["REC"].split("pc=")[1].split()[0]
        exits[label] = (seen[f"{rec}'s exit"], pc)
    delegate_first = "A;B" if rec == "B" else "B;A"
    assert exits[delegate_first] == (GPF_EXIT, "0x20")
    assert set(exits.values()) == {("IRQ", "0xc0"), (GPF_EXIT, "0x20"), (GPF_EXIT, "0xa8")}
    assert _my_segments() == []


@pytest.mark.parametrize("name, rec, fields", [
    ("ipa-state-get-vs-set-ripas", "REC 1", {"A;B": "x1=0x420000 x2=0x0", "B;A": "x1=0x410000 x2=0x1"}),
    ("ipa-state-get-vs-data-destroy", "REC", {"A;B": "x1=0x3000 x2=0x1", "B;A": "x1=0x3000 x2=0x2"}),
    ("ipa-state-get-vs-rtt-fold", "REC", {"A;B": "x1=0x600000 x2=0x1", "B;A": "x1=0x605000 x2=0x1"}),
    ("measurement-read-vs-extend", "REC 0", {"A;B": "x1=0x0 x2=0x0",
                                             "B;A": "x1=0x77c203925bf13586 x2=0xb0e8d09cca25a710"}),
])
def test_an_rsi_read_sees_the_host_change_whole_or_not_at_all(name: str, rec: str, fields: dict[str, str]) -> None:
    """An RSI call that reads what the other call changes (IPA_STATE_GET of a range RTT_SET_RIPAS
    answers another REC's request for, of a page DATA_DESTROY destroys, or of a table RTT_FOLD
    folds: the run stops at the level-3 table's end, or goes on through the next RAM level-2
    entry; MEASUREMENT_READ of the REM1 another REC extends) returns what it returns before the change or after it, in
    every outcome (its X1 and X2 in the REC's view): never a mix (a run of the RIPAS cut short
    by a half-made change, a REM partly extended)."""
    report = explore(PAIRS[name])
    assert report.ok, report
    seen = {label: dict(o.seen)[rec].split(" pc=")[0].split(" ", 1)[1] for label, o in report.references.items()}
    assert {label: seen[label] for label in ("A;B", "B;A")} == fields
    assert set(seen.values()) == set(fields.values())
    assert _my_segments() == []


def _results_by_interleaving(name: str, tried: int) -> set[tuple[int, int]]:
    """The X0s of A and B in each interleaving (B at A's lock event k) of ``name``."""
    results = set()
    for k in range(tried):
        outcome = run_once(PAIRS[name], k).outcome
        results.add((outcome.a[0], outcome.b[0]))   # type: ignore[index]
    return results


def test_realm_destroy_holds_the_rd_until_its_roots_are_down() -> None:
    """REALM_DESTROY vs RTT_READ_ENTRY of the second root RTT's start-level entry: read first, its
    UNASSIGNED EMPTY entry at the start level; destroyed first, the read fails rd_state
    (RMI_ERROR_INPUT). REALM_DESTROY holds the RD from its first lock to its last, so the read,
    inserted at any of its lock events, waits for it and fails: every interleaving is A;B."""
    report = explore(PAIRS["realm-destroy-vs-read-entry"])
    assert report.ok, report
    a_first, b_first = report.serial["A;B"], report.serial["B;A"]
    assert (a_first.a[0], a_first.b[0]) == (RmiStatus.RMI_SUCCESS, RmiStatus.RMI_ERROR_INPUT)  # type: ignore[index]
    assert (b_first.a[0], b_first.b[:4]) == (RmiStatus.RMI_SUCCESS, (0, 1, 0, 0))     # type: ignore[index]
    assert report.tried > 1
    assert _results_by_interleaving("realm-destroy-vs-read-entry", report.tried) == {
        (RmiStatus.RMI_SUCCESS, RmiStatus.RMI_ERROR_INPUT)}
    assert _my_segments() == []


def test_a_token_copy_meets_a_destroy_whole_chunks_at_a_time() -> None:
    """REC_ENTER of a guest copying its attestation token out, 0x200 bytes per CONTINUE (the
    setup copied the first chunk), vs DATA_DESTROY of the buffer's page: the guest's count of
    bytes copied is the whole token (0x404) with an IRQ exit when the entry goes first, 0x200
    with a data abort at the buffer when the destroy does, and 0x400 with the abort when the
    destroy lands between the two CONTINUE calls; no other outcome. Against REC_DESTROY of the
    REC: entered first, the whole token reaches the page; destroyed first, the entry fails
    (RMI_ERROR_INPUT) and the page keeps the first chunk only; while the REC runs, REC_DESTROY
    fails rec_state and the whole token is copied."""
    report = explore(PAIRS["token-continue-vs-data-destroy"])
    assert report.ok, report
    sync = "SYNC esr=0x90000007 hpfar=0x30"
    seen = {label: (dict(o.seen)["A's exit"], dict(o.seen)["copied"]) for label, o in report.references.items()}
    assert (seen["A;B"], seen["B;A"]) == (("IRQ", "0x404"), (sync, "0x200"))
    assert set(seen.values()) == {("IRQ", "0x404"), (sync, "0x200"), (sync, "0x400")}
    report = explore(PAIRS["token-continue-vs-rec-destroy"])
    assert report.ok, report
    x0 = {label: (o.a[0], o.b[0], dict(o.seen)["A's exit"])     # type: ignore[index]
          for label, o in report.references.items()}
    assert x0["A;B"] == (RmiStatus.RMI_SUCCESS, RmiStatus.RMI_SUCCESS, "IRQ")
    assert x0["B;A"] == (RmiStatus.RMI_ERROR_INPUT, RmiStatus.RMI_SUCCESS, "none")
    assert set(x0.values()) == {x0["A;B"], x0["B;A"], (RmiStatus.RMI_SUCCESS, RmiStatus.RMI_ERROR_REC, "IRQ")}
    token = {label: int(dict(o.seen)["token bytes"]) for label, o in report.references.items()}
    assert 0 < token["B;A"] < token["A;B"]
    assert {n for label, n in token.items() if label != "B;A"} == {token["A;B"]}
    assert _my_segments() == []


def test_realm_config_is_written_whole_before_a_destroy_or_not_at_all() -> None:
    """REC_ENTER whose guest calls RSI_REALM_CONFIG on a DATA page (0xff bytes) and loads the
    structure's first word (ipa_width) back vs DATA_DESTROY of the page: the call succeeds and
    the guest reads 40 (entered first); or the call exits with a data abort at the page, X0
    still the FID (destroyed first); or, destroyed at the run point after the call, it succeeded
    and the load exits with the abort. Never a success whose load reads 0xff bytes or zero."""
    report = explore(PAIRS["realm-config-vs-data-destroy"])
    assert report.ok, report
    sync = "SYNC esr=0x90000007 hpfar=0x20"
    seen = {label: (dict(o.seen)["A's exit"], dict(o.seen)["REC"].split(" x1=")[0],
                    dict(o.seen)["REC"].split(" x2=")[1].split()[0]) for label, o in report.references.items()}
    assert (seen["A;B"], seen["B;A"]) == (("IRQ", "x0=0x0", "0x28"), (sync, "x0=0xc4000196", "0x0"))
    assert set(seen.values()) == {seen["A;B"], seen["B;A"], (sync, "x0=0x0", "0x0")}
    assert _my_segments() == []


@pytest.mark.parametrize("name", ["read-entry-vs-rtt-destroy", "ipa-state-get-vs-rtt-fold"])
def test_a_walk_that_lets_its_parent_go_first_is_reported_on_reads(name: str) -> None:
    """walk-unlock-parent-first: RTT_READ_ENTRY (a host read) and RSI_IPA_STATE_GET (a realm's)
    walk to a level-3 table; RTT_DESTROY or RTT_FOLD, inserted once the walk let the level-2
    table go, takes the table from under it (an RMM crash), which no serial order gives."""
    with injected("walk-unlock-parent-first"):
        report = explore(PAIRS[name], timeout=2.0)
    assert report.non_serial and not report.serial_trouble
    assert all(str(n.a).startswith("RmmInternalError") for n in report.non_serial)
    assert _my_segments() == []


def test_list() -> None:
    """`explore --list` exits 0 and prints one line per pair, in the catalogue's order, each starting with
    the pair's name."""
    res = CliRunner().invoke(explore_command, ["--list"])
    assert res.exit_code == 0, res.output
    assert [line.split()[0] for line in res.output.splitlines()] == list(PAIRS)


def test_list_refuses_what_it_would_ignore() -> None:
    """`explore --list` with a pair and --json beside it: a usage error (exit 2) naming both, not a
    listing that ignores them (no pair explored, no JSON written). The pair is named PAIR, as
    the usage line and --help write it (it was the parameter's Python name, PAIRS)."""
    res = CliRunner().invoke(explore_command, ["--list", "rtt-create-vs-rtt-create", "--json", "x.json"])
    assert res.exit_code == 2, res.output
    assert "it takes no other option or argument (given: PAIR, --json)" in res.output


def test_unknown_pair_is_a_usage_error() -> None:
    """A known pair followed by an unknown one: exit 2 naming the unknown pair, before the known one
    runs."""
    res = CliRunner().invoke(explore_command, ["rtt-create-vs-rtt-create", "no-such-pair"])
    assert res.exit_code == 2
    assert "unknown pair 'no-such-pair'" in res.output
    assert "rtt-create-vs-rtt-create:" not in res.output      # nothing ran


def test_a_pair_named_twice_is_a_usage_error() -> None:
    """`explore P Q P`: exit 2 naming P and what was expected, before any pair runs, as --inject
    refuses a bug named twice. P was explored once, silently."""
    res = CliRunner().invoke(explore_command, ["rtt-create-vs-rtt-create", "data-create-vs-delegate-src",
                                               "rtt-create-vs-rtt-create"])
    assert res.exit_code == 2, res.output
    assert ("PAIR = rtt-create-vs-rtt-create data-create-vs-delegate-src rtt-create-vs-rtt-create: "
            "rtt-create-vs-rtt-create named more than once; expected each pair at most once") in res.output
    assert "serial A;B" not in res.output      # nothing ran


def test_a_misspelt_pair_or_a_bug_given_as_a_pair_is_named_with_what_was_meant() -> None:
    """A pair's name with one letter missing and a catalogued bug's name given as a PAIR: exit 2,
    the first with the pair it is closest to ("did you mean"), the second with the option it
    belongs to (--inject); an unrelated word with neither. Both used to say only "unknown pair"."""
    res = CliRunner().invoke(explore_command, ["rtt-create-vs-rtt-creat", "rtt-create-parent-released-early",
                                               "no-such-pair"])
    assert res.exit_code == 2, res.output
    assert ("unknown pairs 'rtt-create-vs-rtt-creat' (did you mean \"rtt-create-vs-rtt-create\"?), "
            "'rtt-create-parent-released-early' (a bug of the catalogue: --inject rtt-create-parent-released-early), "
            "'no-such-pair': see `rmm-mp explore --list`") in res.output


def test_two_bugs_replacing_the_same_code_are_a_usage_error() -> None:
    """--inject of two bugs that both swap GranuleTable.lock_two: exit 2 naming both and what
    they replace, before any pair runs (the second used to replace the first silently, so the
    first was explored as injected while the correct lock_two ran)."""
    res = CliRunner().invoke(explore_command, ["rtt-create-vs-rtt-create", "--inject", "lock-two-unordered",
                                               "--inject", "lock-two-check-late"])
    assert res.exit_code == 2, res.output
    assert ("--inject = lock-two-unordered, lock-two-check-late: lock-two-unordered and lock-two-check-late both "
            "replace GranuleTable.lock_two") in res.output
    assert "rtt-create-vs-rtt-create:" not in res.output      # nothing ran


def test_json_and_exit_status(tmp_path: Path) -> None:
    """A pair with a non-serial outcome: exit 1, the printed lock events, and the JSON."""
    path = tmp_path / "explore.json"
    res = CliRunner().invoke(explore_command, ["rtt-create-vs-rtt-create", "--inject",
                                               "rtt-create-parent-released-early", "--json", str(path)])
    assert res.exit_code == 1, res.output
    assert "NON-SERIAL" in res.output and "lock event 0 (after A acquired 0x" in res.output
    doc = json.loads(path.read_text())
    assert (doc["ok"], doc["inject"], doc["interrupted"]) == (False, ["rtt-create-parent-released-early"], False)
    [pair] = doc["pairs"]
    assert pair["pair"] == "rtt-create-vs-rtt-create" and pair["a"].startswith("RMI_RTT_CREATE(")
    assert pair["tried"] > 1 and pair["non_serial"]
    assert set(pair["serial"]) == {"A;B", "B;A"}
    assert pair["non_serial"][0]["a"] == [0, 0, 0, 0, 0]
    # the bug is switched off again: the same pair now passes
    res = CliRunner().invoke(explore_command, ["rtt-create-vs-rtt-create", "--json", str(path)])
    assert res.exit_code == 0, res.output
    assert json.loads(path.read_text())["ok"] is True


def test_several_pairs_end_with_a_summary_naming_the_failed_ones_and_a_command_that_reruns_them() -> None:
    """Two pairs, one failing under rtt-create-parent-released-early, with --timeout 5: the
    output ends with "2 pairs explored: 1 FAILED (rtt-create-vs-rtt-create)" and the command
    that explores it alone (the bug and the --timeout kept), which, run, gives that pair's
    report again; without the bug the last line says every pair passed. The output used to end
    with the last pair's own line ("every one serial") under exit status 1, the failed pairs to
    be searched for among ~600 lines of the whole catalogue."""
    runner = CliRunner()
    res = runner.invoke(explore_command, ["rtt-create-vs-rtt-create", "map-vs-unmap-unprotected",
                                          "--inject", "rtt-create-parent-released-early", "--timeout", "5"])
    assert res.exit_code == 1, res.output
    *lines, summary, again = res.output.splitlines()
    assert summary == "2 pairs explored: 1 FAILED (rtt-create-vs-rtt-create)", res.output
    assert again == ("explore it alone: rmm-mp explore rtt-create-vs-rtt-create "
                     "--inject rtt-create-parent-released-early --timeout 5.0"), res.output
    rerun = runner.invoke(explore_command, again.split()[5:])
    assert rerun.exit_code == 1, rerun.output
    first = [line for line in lines if "interleaving(s) tried" not in line]
    assert rerun.output.splitlines()[:4] == first[:4] and "NON-SERIAL" in rerun.output, rerun.output
    res = runner.invoke(explore_command, ["rtt-create-vs-rtt-create", "map-vs-unmap-unprotected"])
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[-1] == "2 pairs explored: every one gave a reference outcome", res.output


def test_an_interrupted_run_names_the_pairs_that_failed_before_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C (KeyboardInterrupt) as the third of three pairs starts, the first having failed
    under rtt-create-parent-released-early: exit status 1, and the line saying the run was
    interrupted also names the failed pair and the command that explores it alone. It said only
    "interrupted (Ctrl-C) after 2 of 3 pair(s)"."""
    from rmm_mp.stress import explore_cli
    real = explore_cli.explore_pair
    calls: list[str] = []

    def stopped_at_the_third(pair, **kw):  # type: ignore[no-untyped-def]
        calls.append(pair.name)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(pair, **kw)

    monkeypatch.setattr(explore_cli, "explore_pair", stopped_at_the_third)
    result = CliRunner().invoke(explore_command, ["rtt-create-vs-rtt-create", "map-vs-unmap-unprotected",
                                                  "rtt-destroy-vs-undelegate-table",
                                                  "--inject", "rtt-create-parent-released-early"])
    assert result.exit_code == 1, result.output
    assert result.output.splitlines()[-1] == (
        "interrupted (Ctrl-C) after 2 of 3 pair(s); 1 FAILED before it (rtt-create-vs-rtt-create): "
        "rmm-mp explore rtt-create-vs-rtt-create --inject rtt-create-parent-released-early"), result.output


def test_json_of_a_rec_enter_pair(tmp_path: Path) -> None:
    """The JSON of a pair with run points: the references during the run and the views."""
    path = tmp_path / "explore.json"
    res = CliRunner().invoke(explore_command, ["rec-enter-vs-rec-destroy", "--json", str(path)])
    assert res.exit_code == 0, res.output
    assert "B at A's run loop (0): A -> RMI_SUCCESS; B -> RMI_ERROR_REC; A's exit: IRQ" in res.output
    assert "every one serial or at a run point" in res.output
    [pair] = json.loads(path.read_text())["pairs"]
    assert pair["during"]["B at A's run loop (0)"]["seen"] == {"A's exit": "IRQ"}
    assert pair["serial"]["B;A"]["seen"] == {"A's exit": "none"}
    assert pair["broken_rules"] == []


@pytest.mark.usefixtures("ctrl_c")     # `explore` then starts with SIGINT at its default
def test_ctrl_c_closes_every_machine() -> None:
    """Ctrl-C once the first pair is reported: the pairs done are kept, `interrupted` is said,
    the exit status is 1, and the process leaves none of its machines in /dev/shm."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "rmm_mp", "explore"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    try:
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if "interleaving(s) tried" in line:
                break
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = "".join(seen) + rest
    assert proc.returncode == 1, output
    assert "interrupted (Ctrl-C) after " in output
    assert [m.prefix for m in segment.list_machines() if m.creator_pid == proc.pid] == []


def test_a_sigint_ignored_when_the_command_began_stays_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """`explore` started with SIGINT ignored (a background job of a script, which the terminal's
    Ctrl-C is not meant for) goes on: exit 0, not interrupted, as `rmm-mp run` and `stress` do.
    It set its own SIGINT handler whatever the disposition, and stopped."""
    from rmm_mp.stress import explore_cli
    real = explore_cli.explore_pair

    def signalled(pair, **kw):  # type: ignore[no-untyped-def]
        os.kill(os.getpid(), signal.SIGINT)
        return real(pair, **kw)

    monkeypatch.setattr(explore_cli, "explore_pair", signalled)
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        result = CliRunner().invoke(explore_command, ["rtt-create-vs-rtt-create"])
        after = signal.getsignal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, before)
    assert result.exit_code == 0, result.output
    assert "interrupted" not in result.output and after == signal.SIG_IGN


@pytest.mark.usefixtures("ctrl_c")
def test_a_ctrl_c_python_swallows_still_stops_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """A SIGINT whose KeyboardInterrupt Python drops (raised inside a callback it runs itself,
    such as a finished thread's cleanup: 'Exception ignored in ...') still stops `explore` after
    the pair under way, exit 1, 'interrupted'. It used to run the rest of the catalog and exit 0
    (seen in 2 of about 130 Ctrl-Cs by the review of the explorer)."""
    from rmm_mp.stress import explore_cli
    real = explore_cli.explore_pair

    def swallowed(pair, **kw):  # type: ignore[no-untyped-def]
        try:
            os.kill(os.getpid(), signal.SIGINT)        # its handler runs before the next line
        except KeyboardInterrupt:
            pass                                               # as Python does in such a callback
        return real(pair, **kw)

    monkeypatch.setattr(explore_cli, "explore_pair", swallowed)
    result = CliRunner().invoke(explore_command, ["rtt-create-vs-rtt-create", "map-vs-unmap-unprotected"])
    assert result.exit_code == 1, result.output
    assert "interrupted (Ctrl-C) after 0 of 2 pair(s)" in result.output
    assert "map-vs-unmap-unprotected:" not in result.output


@pytest.mark.usefixtures("ctrl_c")
def test_the_copy_of_a_ctrl_c_does_not_cut_the_clean_up_short(monkeypatch: pytest.MonkeyPatch) -> None:
    """`timeout -s INT 5 rmm-mp explore`: GNU timeout sends SIGINT to the command and again to
    its process group. The first Ctrl-C lands while the explorer waits for a pair's calls; its
    copy lands in the clean-up that follows (the calls abandoned, their threads joined, the
    machine closed). The copy was a second Ctrl-C there and cut the clean-up short: the calls
    were never abandoned (found by a review: `explore` did not apply the copy rule `run` and
    `stress` apply). Now the clean-up runs whole and the command still ends interrupted, exit 1.
    The copy window is set to 1 s, so that a slow host cannot make the copy a late second one."""
    import sys as _sys
    from types import SimpleNamespace

    from rmm_mp import interrupts
    from rmm_mp.stress import explore as explore_module

    monkeypatch.setattr(interrupts, "COPY_S", 1.0)
    real_monotonic = explore_module.time.monotonic

    def monotonic() -> float:
        # The first Ctrl-C, at the start of the first wait for a pair's calls.
        if _sys._getframe(1).f_code.co_name == "_supervise" and not sent:
            sent.append("first")
            os.kill(os.getpid(), signal.SIGINT)
        return real_monotonic()

    real_abandon = explore_module._abandon_quietly
    abandoned: list[str] = []

    def abandon(turns, why):  # type: ignore[no-untyped-def]
        if len(sent) == 1:
            sent.append("copy")
            os.kill(os.getpid(), signal.SIGINT)         # the copy, microseconds after the first
        real_abandon(turns, why)
        abandoned.append(why)

    sent: list[str] = []
    monkeypatch.setattr(explore_module, "time", SimpleNamespace(monotonic=monotonic))
    monkeypatch.setattr(explore_module, "_abandon_quietly", abandon)
    result = CliRunner().invoke(explore_command, ["rtt-create-vs-rtt-create"])
    assert sent == ["first", "copy"]
    assert abandoned == ["interrupted"], result.output
    assert result.exit_code == 1, result.output
    assert "interrupted (Ctrl-C) after 0 of 1 pair(s)" in result.output


@pytest.mark.usefixtures("ctrl_c")
def test_a_ctrl_c_as_an_interrupted_runs_json_is_written_ends_it(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A first Ctrl-C stops the pair under way, a second lands as the --json file (of the
    interrupted run) is being written: the writing ends (no file, a line on stderr names it and
    why) and the command ends interrupted, exit 1; not click's "Aborted!". (After the last pair's
    last line, when no Ctrl-C came before, the file is written held back instead: see
    tests/cli/test_run.py.) The copy window is set to 0: the two signals come within 50 ms."""
    from rmm_mp import interrupts
    from rmm_mp.stress import explore_cli
    monkeypatch.setattr(interrupts, "COPY_S", 0.0)
    real_pair, real_write = explore_cli.explore_pair, explore_cli._write_json

    def pair_signalled(*args, **kw):  # type: ignore[no-untyped-def]
        os.kill(os.getpid(), signal.SIGINT)
        return real_pair(*args, **kw)

    def write_signalled(*args, **kw):  # type: ignore[no-untyped-def]
        os.kill(os.getpid(), signal.SIGINT)
        return real_write(*args, **kw)

    monkeypatch.setattr(explore_cli, "explore_pair", pair_signalled)
    monkeypatch.setattr(explore_cli, "_write_json", write_signalled)
    path = tmp_path / "explore.json"
    result = CliRunner().invoke(explore_command, ["rtt-create-vs-rtt-create", "--json", str(path)])
    assert result.exit_code == 1, result.output
    assert "interrupted (Ctrl-C) after 0 of 1 pair(s)" in result.stdout and "Aborted!" not in result.output
    assert f"Error: the json report was not written to {path}: interrupted (Ctrl-C)" in result.stderr
    assert not path.exists()


def test_a_pair_whose_setup_fails_is_named_not_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    """A setup that gets an answer a correct RMM does not give (SetupError; likeliest with a bug
    injected, which is on during the setups too) ends the command with one line naming the pair,
    exit 1; it was a traceback."""
    import dataclasses

    from rmm_mp.stress import explore_cli
    from rmm_mp.stress.explore_setup import SetupError

    def broken(machine):  # type: ignore[no-untyped-def]
        raise SetupError("RMI_GRANULE_DELEGATE answered RMI_ERROR_INPUT")

    name = "rtt-create-vs-rtt-create"
    monkeypatch.setitem(explore_cli.PAIRS, name, dataclasses.replace(PAIRS[name], setup=broken))
    result = CliRunner().invoke(explore_command, [name])
    assert result.exit_code == 1 and not isinstance(result.exception, SetupError), result.output
    assert f"pair {name!r} could not be set up: RMI_GRANULE_DELEGATE answered" in result.output


def test_a_pair_whose_setup_fails_still_gets_its_json_written(monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    """Two pairs with --json, the second's setup failing: the JSON is written all the same, with
    the first pair's report, `ok` false and `error` naming the pair that could not be set up.
    It was not written at all, and nothing said so: a file left by an earlier run (here one
    saying `ok` true) stayed in place, for a script to read as this run's verdict."""
    from rmm_mp.stress import explore_cli
    from rmm_mp.stress.explore_setup import SetupError

    def broken(machine):  # type: ignore[no-untyped-def]
        raise SetupError("RMI_GRANULE_DELEGATE answered RMI_ERROR_INPUT")

    good, bad = "rtt-create-vs-rtt-create", "data-destroy-vs-rtt-fold"
    monkeypatch.setitem(explore_cli.PAIRS, bad, dataclasses.replace(PAIRS[bad], setup=broken))
    path = tmp_path / "explore.json"
    path.write_text('{"ok": true, "pairs": []}')
    result = CliRunner().invoke(explore_command, [good, bad, "--json", str(path)])
    assert result.exit_code == 1, result.output
    data = json.loads(path.read_text())
    assert data["ok"] is False and [p["pair"] for p in data["pairs"]] == [good]
    assert data["error"] == f"pair {bad!r} could not be set up: RMI_GRANULE_DELEGATE answered RMI_ERROR_INPUT"


@pytest.mark.parametrize("outcome", ["ok", "finding", "interrupted", "error"])
def test_explore_json_names_its_schema_in_every_outcome(outcome: str, monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path) -> None:
    """`explore --json` opens with "schema": "rmm-mp-explore-report/1" whether every pair passed,
    one gave a non-serial outcome, a Ctrl-C stopped the pairs or a pair could not be set up. The
    document had no such key: a script could not tell it from the other commands' JSON (only
    `run`'s named itself)."""
    from rmm_mp.stress import explore_cli
    from rmm_mp.stress.explore_setup import SetupError
    name, options = "rtt-create-vs-rtt-create", []
    if outcome == "finding":
        options = ["--inject", "rtt-create-parent-released-early"]
    elif outcome == "interrupted":
        def stopped(pair, **kw):  # type: ignore[no-untyped-def]
            raise KeyboardInterrupt
        monkeypatch.setattr(explore_cli, "explore_pair", stopped)
    elif outcome == "error":
        def broken(machine):  # type: ignore[no-untyped-def]
            raise SetupError("RMI_GRANULE_DELEGATE answered RMI_ERROR_INPUT")
        monkeypatch.setitem(explore_cli.PAIRS, name, dataclasses.replace(PAIRS[name], setup=broken))
    path = tmp_path / "explore.json"
    result = CliRunner().invoke(explore_command, [name, *options, "--json", str(path)])
    assert result.exit_code == (0 if outcome == "ok" else 1), result.output
    document = json.loads(path.read_text())
    assert next(iter(document.items())) == ("schema", "rmm-mp-explore-report/1"), document
    assert (document["ok"], document["interrupted"], document["error"] is not None) == (
        outcome == "ok", outcome == "interrupted", outcome == "error"), document


def test_the_help_gives_the_lock_event_cap_explore_uses() -> None:
    """`rmm-mp explore --help` names the cap on lock events tried (its docstring writes the number
    out): it must be explore.MAX_EVENTS, so that changing the cap without the help fails here."""
    from rmm_mp.stress.explore import MAX_EVENTS
    text = " ".join(CliRunner().invoke(explore_command, ["--help"]).output.split())
    assert f"The lock events tried stop at {MAX_EVENTS:,}:" in text, text


def test_no_segment_directory_is_exit_status_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Test-only: a missing RMM_MP_SHM_DIR is a machine that could not be made, exit status 1 with
    the MachineError named, as for `rmm-mp run` and `rmm-mp stress` (its --help now lists it: it
    fitted neither "bad usage" nor "a pair's setup failed"); the JSON says why the pairs stopped."""
    where = tmp_path / "shm"
    monkeypatch.setattr(segment, "SHM_DIR", str(where))
    monkeypatch.setenv("RMM_MP_SHM_DIR", str(where))
    out = tmp_path / "e.json"
    res = CliRunner().invoke(explore_command, ["rtt-create-vs-rtt-create", "--json", str(out)])
    assert res.exit_code == 1, res.output
    assert res.stderr.startswith(f"Error: MachineError: shared memory cannot be made in {where} (RMM_MP_SHM_DIR): "
                                 "found nothing"), res.output
    document = json.loads(out.read_text())
    assert document["ok"] is False and document["error"].startswith("MachineError: "), document
