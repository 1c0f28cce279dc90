"""The granule table's lock API (rmm_mp/hw/granule.py; DESIGN.md section 4; rmi.md 8.1-8.3).

Lock words hold 0 (free) or the owner's id (CPU n -> n + 1); the state word holds the state in
bits [23:16] and the refcount in bits [15:0]. find_lock and lock_two follow TF-RMM's
find_lock_granule / find_lock_two_granules: lock first, then compare the state; on any failure
hold nothing. Every acquire and release passes the observer.

The two cross-process tests use a second process (spawn context) and are bounded: the child
holds the lock until the parent is seen waiting for it (not for a fixed time, which a loaded
host can outlast), every wait has a timeout, and the parent's acquire runs under a deadline
alarm.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
from typing import Iterator

import pytest

from rmm_mp import Machine, RmmInternalError
from rmm_mp.hw import granule as granule_module
from rmm_mp.hw.granule import GranuleTable, cpu_owner

NS, DELEGATED, RD, REC = 0, 1, 2, 3  # opaque state ids, as the RMM would use them
DEADLINE_S = 60
RECURSIVE_DEADLINE_S = 10


class Observer:
    """A LockObserver that records every call."""

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def acquired(self, table: GranuleTable, idx: int, waited_ns: int) -> None:
        self.events.append(("acquired", idx, waited_ns))

    def released(self, table: GranuleTable, idx: int) -> None:
        self.events.append(("released", idx))

    def acquired_order(self) -> list[int]:
        return [e[1] for e in self.events if e[0] == "acquired"]


@contextlib.contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Raise TimeoutError in this (main) thread if the block runs longer than ``seconds``:
    a lock that spins forever would otherwise hang the test run."""

    def expired(signum: int, frame: object) -> None:
        raise TimeoutError(f"still blocked after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _table(machine: Machine, cpu: int = 0) -> GranuleTable:
    return machine.granule_table(cpu_owner(cpu))


def _pa(machine: Machine, idx: int) -> int:
    return machine.dram_base + idx * machine.granule_size


def _nothing_held(machine: Machine) -> bool:
    locks, _ = machine.granule_table(0).snapshot()
    return not any(locks)


# -- lock / unlock -------------------------------------------------------------------------------


def test_owner_encoding() -> None:
    """cpu_owner(n) is n + 1, so that 0 can mean 'free'."""
    assert [cpu_owner(n) for n in range(4)] == [1, 2, 3, 4]


def test_lock_unlock_sets_and_clears_owner(machine: Machine) -> None:
    """lock() writes the owner (cpu + 1) into the lock word; unlock() clears it to 0; other
    granules' lock words and the state word are untouched."""
    table = _table(machine, 2)
    _, words_before = table.snapshot()
    table.lock(10)
    assert table.holder(10) == cpu_owner(2) == 3
    assert table.held_by(cpu_owner(2)) == [10]
    assert table.holder(9) == 0 and table.holder(11) == 0
    table.unlock(10)
    assert table.holder(10) == 0
    locks, words = table.snapshot()
    assert not any(locks)
    assert words == words_before


def test_lock_two_owners_different_granules(machine: Machine) -> None:
    """Two owners hold two different granules at once, each lock word naming its holder."""
    t0, t1 = _table(machine, 0), _table(machine, 1)
    t0.lock(5)
    t1.lock(6)
    assert (t0.holder(5), t0.holder(6)) == (1, 2)
    t1.unlock(6)
    t0.unlock(5)
    assert _nothing_held(machine)


def test_recursive_lock_raises(machine: Machine) -> None:
    """Locking a granule this owner already holds raises RmmInternalError (a recursive lock
    spins forever on hardware) instead of spinning; the lock stays held by the owner. Bounded
    by a deadline alarm in case the detection is lost."""
    table = _table(machine, 0)
    table.lock(12)
    with deadline(RECURSIVE_DEADLINE_S):
        with pytest.raises(RmmInternalError, match="already holds"):
            table.lock(12)
    assert table.holder(12) == cpu_owner(0)
    table.unlock(12)
    assert table.holder(12) == 0


def test_recursive_find_lock_raises(machine: Machine) -> None:
    """find_lock of a granule the same owner already holds raises RmmInternalError too
    (bounded by a deadline alarm)."""
    table = _table(machine, 1)
    table.lock(13)
    with deadline(RECURSIVE_DEADLINE_S):
        with pytest.raises(RmmInternalError):
            table.find_lock(_pa(machine, 13), NS)
    table.unlock(13)


def test_unlock_of_other_owner_raises(machine: Machine) -> None:
    """unlock() of a lock held by another owner raises RmmInternalError naming both."""
    t0, t1 = _table(machine, 0), _table(machine, 1)
    t0.lock(14)
    with pytest.raises(RmmInternalError, match="CPU 1 released granule 14 held by CPU 0"):
        t1.unlock(14)


def test_unlock_of_free_lock_raises(machine: Machine) -> None:
    """unlock() of a lock nobody holds raises RmmInternalError."""
    with pytest.raises(RmmInternalError, match="held by nobody"):
        _table(machine, 0).unlock(15)


# -- find / find_lock ----------------------------------------------------------------------------


def test_find(machine: Machine) -> None:
    """find: index for an aligned DRAM PA, -1 for unaligned, below-DRAM and past-DRAM PAs."""
    table = _table(machine)
    end = machine.dram_base + machine.granule_count * machine.granule_size
    assert table.find(machine.dram_base) == 0
    assert table.find(end - machine.granule_size) == machine.granule_count - 1
    for pa in (machine.dram_base + 1, machine.dram_base - machine.granule_size, end, 1 << machine.pa_bits):
        assert table.find(pa) == -1, hex(pa)


def test_find_lock_success(machine: Machine) -> None:
    """find_lock of an aligned DRAM granule in the expected state returns a guard holding it;
    leaving the guard's with-block releases it."""
    table = _table(machine, 3)
    pa = _pa(machine, 16)
    g = table.find_lock(pa, NS)
    assert g is not None and (g.idx, g.addr) == (16, pa)
    assert table.holder(16) == cpu_owner(3)
    with g:
        assert g.state == NS
    assert table.holder(16) == 0


@pytest.mark.parametrize("case", ["unaligned", "below-dram", "past-dram", "beyond-pa", "wrong-state"])
def test_find_lock_failure_holds_nothing(machine: Machine, case: str) -> None:
    """find_lock returns None, holding no lock, for an unaligned PA, a PA outside DRAM, or a
    granule in another state (which it locked, compared and released: one acquire and one
    release pass the observer)."""
    table = _table(machine)
    obs = Observer()
    end = machine.dram_base + machine.granule_count * machine.granule_size
    pa = {
        "unaligned": _pa(machine, 17) + 0x100,
        "below-dram": machine.dram_base - machine.granule_size,
        "past-dram": end,
        "beyond-pa": 1 << machine.pa_bits,
        "wrong-state": _pa(machine, 17),
    }[case]
    table.observer = obs
    assert table.find_lock(pa, DELEGATED) is None
    table.observer = None
    assert _nothing_held(machine)
    if case == "wrong-state":
        assert obs.events == [("acquired", 17, 0), ("released", 17)]
    else:
        assert obs.events == []


# -- lock_two ------------------------------------------------------------------------------------


@pytest.mark.parametrize("swap", [False, True], ids=["ascending-args", "descending-args"])
def test_lock_two_ascending_order(machine: Machine, swap: bool) -> None:
    """lock_two locks the lower address first whatever the argument order (rule 2), and
    returns the guards in argument order."""
    table = _table(machine, 1)
    low, high = 20, 40
    table.lock(low)
    table.set_state(low, RD)
    table.unlock(low)
    a, sa, b, sb = (_pa(machine, low), RD, _pa(machine, high), NS)
    if swap:
        a, sa, b, sb = b, sb, a, sa
    obs = Observer()
    table.observer = obs
    pair = table.lock_two(a, sa, b, sb)
    assert pair is not None
    assert obs.acquired_order() == [low, high]
    assert [g.addr for g in pair] == [a, b]
    assert table.holder(low) == table.holder(high) == cpu_owner(1)
    for g in pair:
        g.unlock()
    table.observer = None
    assert _nothing_held(machine)


def test_lock_two_equal_addresses(machine: Machine) -> None:
    """lock_two with a == b returns None and takes no lock at all (TF-RMM rejects equal
    addresses before locking)."""
    table = _table(machine)
    obs = Observer()
    table.observer = obs
    assert table.lock_two(_pa(machine, 21), NS, _pa(machine, 21), NS) is None
    assert obs.events == []
    assert _nothing_held(machine)


@pytest.mark.parametrize("swap", [False, True], ids=["second-is-b", "second-is-a"])
def test_lock_two_second_state_mismatch(machine: Machine, swap: bool) -> None:
    """lock_two where the granule at the higher address (locked second) has the wrong state:
    None, holding nothing; the lower one was acquired and released, the higher one acquired,
    compared and released."""
    table = _table(machine, 2)
    low, high = 22, 23
    a, sa, b, sb = _pa(machine, low), NS, _pa(machine, high), DELEGATED  # high is NS: mismatch
    if swap:
        a, sa, b, sb = b, sb, a, sa
    obs = Observer()
    table.observer = obs
    assert table.lock_two(a, sa, b, sb) is None
    assert _nothing_held(machine)
    assert obs.acquired_order() == [low, high]
    assert sorted(e[1] for e in obs.events if e[0] == "released") == [low, high]


def test_lock_two_first_state_mismatch(machine: Machine) -> None:
    """lock_two where the lower granule has the wrong state: None, and the higher granule is
    never locked (rule 3: no further locks after a mismatch)."""
    table = _table(machine)
    obs = Observer()
    table.observer = obs
    assert table.lock_two(_pa(machine, 25), NS, _pa(machine, 24), DELEGATED) is None
    assert obs.acquired_order() == [24]
    assert _nothing_held(machine)


@pytest.mark.parametrize("case", ["unaligned", "unaligned-below-dram", "below-dram", "past-dram", "beyond-pa"])
@pytest.mark.parametrize("first", [False, True], ids=["bad-second", "bad-first"])
def test_lock_two_bad_address(machine: Machine, case: str, first: bool) -> None:
    """lock_two with one unaligned or out-of-range address, in either position: None, no lock
    taken (its tests of both addresses, on their offsets from the DRAM base, come first)."""
    table = _table(machine)
    end = machine.dram_base + machine.granule_count * machine.granule_size
    bad = {
        "unaligned": _pa(machine, 27) + 8,
        "unaligned-below-dram": machine.dram_base - 8,
        "below-dram": machine.dram_base - machine.granule_size,
        "past-dram": end,
        "beyond-pa": 1 << machine.pa_bits,
    }[case]
    good = end - machine.granule_size         # the last granule: in range
    obs = Observer()
    table.observer = obs
    args = (bad, NS, good, NS) if first else (good, NS, bad, NS)
    assert table.lock_two(*args) is None
    assert obs.events == []
    assert _nothing_held(machine)


# -- state and refcount --------------------------------------------------------------------------


def test_set_state_preserves_refcount(machine: Machine) -> None:
    """set_state changes only bits [23:16]: the refcount survives any number of transitions."""
    table = _table(machine)
    idx = 30
    table.lock(idx)
    assert table.refcount_add(idx, 7) == 0
    table.set_state(idx, RD)
    assert (table.state(idx), table.refcount(idx)) == (RD, 7)
    assert table.word(idx) == (RD << 16) | 7
    table.set_state(idx, REC)
    table.set_state(idx, 0xFF)
    assert (table.state(idx), table.refcount(idx)) == (0xFF, 7)
    table.set_state(idx, NS)
    assert table.word(idx) == 7
    table.unlock(idx)
    assert table.word(idx - 1) == 0 and table.word(idx + 1) == 0


def test_unlock_transition(machine: Machine) -> None:
    """Granule.unlock_transition sets the new state, keeps the refcount, then releases."""
    table = _table(machine)
    g = table.find_lock(_pa(machine, 31), NS)
    assert g is not None
    g.refcount_add(2)
    g.unlock_transition(DELEGATED)
    assert table.holder(31) == 0
    assert table.word(31) == (DELEGATED << 16) | 2


def test_refcount_add_returns_old_value(machine: Machine) -> None:
    """refcount_add returns the count before the addition; adds and subtracts accumulate."""
    table = _table(machine)
    assert [table.refcount_add(32, d) for d in (1, 1, 5, -3, -4)] == [0, 1, 2, 7, 4]
    assert table.refcount(32) == 0


@pytest.mark.parametrize("start, delta", [(0, -1), (3, -4), (0xFFFF, 1), (0xFFF0, 0x20)],
                         ids=["0-1", "3-4", "max+1", "overflow-by-16"])
def test_refcount_add_refuses_out_of_range(machine: Machine, start: int, delta: int) -> None:
    """refcount_add that would leave [0, 0xFFFF] raises RmmInternalError and leaves the whole
    word unchanged (the state bits next to the refcount are not borrowed from or carried into)."""
    table = _table(machine)
    idx = 33
    table.lock(idx)
    table.set_state(idx, REC)
    table.unlock(idx)
    if start:
        table.refcount_add(idx, start)
    word = table.word(idx)
    with pytest.raises(RmmInternalError):
        table.refcount_add(idx, delta)
    assert table.word(idx) == word == (REC << 16) | start


# -- observer ------------------------------------------------------------------------------------


def test_observer_once_per_acquire_and_release(machine: Machine) -> None:
    """The observer sees one acquired(idx, 0) per uncontended acquire and one released(idx)
    per release, in order, for lock/unlock, find_lock and lock_known guards."""
    table = _table(machine)
    obs = Observer()
    table.observer = obs
    table.lock(40)
    table.unlock(40)
    g = table.find_lock(_pa(machine, 41), NS)
    assert g is not None
    g.unlock()
    with table.lock_known(42, NS):
        pass
    table.observer = None
    table.lock(43)
    table.unlock(43)
    assert obs.events == [("acquired", 40, 0), ("released", 40), ("acquired", 41, 0), ("released", 41),
                          ("acquired", 42, 0), ("released", 42)]
    assert table.stats.contended == 0


# -- two processes -------------------------------------------------------------------------------


def _hold_lock(name: str, idx: int, locked, release, hold_s: float) -> None:  # type: ignore[no-untyped-def]
    """Child: lock granule idx as CPU 1, say so, hold it until ``release`` is set (at most
    hold_s), release."""
    with Machine.attach(name) as m:
        table = m.granule_table(cpu_owner(1))
        table.lock(idx)
        locked.set()
        release.wait(hold_s)
        table.unlock(idx)


def _count_up(name: str, idx: int, n: int, ready, go) -> None:  # type: ignore[no-untyped-def]
    """Child: once both sides are ready, add 1 to granule idx's refcount n times, without its
    lock."""
    with Machine.attach(name) as m:
        table = m.granule_table(cpu_owner(1))
        ready.set()
        go.wait(60)
        for _ in range(n):
            table.refcount_add(idx, 1)


def test_contended_acquire_from_second_process(machine: Machine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A child process (spawn) holds granule 50 as CPU 1; the parent's lock() as CPU 0 finds it
    held and waits (its spin is over: it has called the backoff), and only then does the child
    release it: the parent's lock() succeeds, stats.contended == 1, wait_ns > 0, and the
    observer reports the same non-zero wait. (Before, the child held the lock for a fixed
    0.3 s: a parent delayed that long on a loaded host found it free.)"""
    from rmm_mp.hw import granule

    ctx = multiprocessing.get_context("spawn")
    locked, release = ctx.Event(), ctx.Event()
    real_backoff = granule.backoff

    def waiting(tries: int) -> None:
        # The contended path's own backoff, unchanged: the parent is waiting, so let go.
        release.set()
        real_backoff(tries)
    monkeypatch.setattr(granule, "backoff", waiting)
    child = ctx.Process(target=_hold_lock, args=(machine.name, 50, locked, release, 60))
    child.start()
    try:
        assert locked.wait(60), "child never took the lock"
        table = _table(machine, 0)
        assert table.holder(50) == cpu_owner(1)
        obs = Observer()
        table.observer = obs
        with deadline(DEADLINE_S):
            table.lock(50)
        assert release.is_set(), "the lock was taken without waiting for its holder"
        assert table.holder(50) == cpu_owner(0)
        table.unlock(50)
        assert table.stats.contended == 1
        assert table.stats.wait_ns > 0
        assert table.stats.max_wait_idx == 50
        assert obs.events[0][:2] == ("acquired", 50) and obs.events[0][2] > 0
    finally:
        release.set()
        child.join(60)
        if child.is_alive():
            child.kill()
            child.join()
    assert child.exitcode == 0
    assert _nothing_held(machine)


def test_refcount_add_is_atomic_across_processes(machine: Machine) -> None:
    """Two processes each add 1 to the same refcount 30,000 times, concurrently and without
    the lock: no update is lost (the final count is 60,000) and the state bits are intact."""
    n = 30_000
    idx = 51
    table = _table(machine, 0)
    table.lock(idx)
    table.set_state(idx, RD)
    table.unlock(idx)
    ctx = multiprocessing.get_context("spawn")
    ready, go = ctx.Event(), ctx.Event()
    child = ctx.Process(target=_count_up, args=(machine.name, idx, n, ready, go))
    child.start()
    try:
        assert ready.wait(60), "child never attached"
        go.set()
        for _ in range(n):
            table.refcount_add(idx, 1)
    finally:
        child.join(120)
        if child.is_alive():
            child.kill()
            child.join()
    assert child.exitcode == 0
    assert table.word(idx) == (RD << 16) | (2 * n)


def test_wrong_owner_unlock_leaves_the_holder_named(machine) -> None:  # type: ignore[no-untyped-def]
    """Releasing a lock held by another CPU raises and leaves the lock word naming the real
    holder, so that a report can say who holds it."""
    holder = machine.granule_table(cpu_owner(1))
    intruder = machine.granule_table(cpu_owner(2))
    holder.lock(5)
    with pytest.raises(RmmInternalError):
        intruder.unlock(5)
    assert holder.holder(5) == cpu_owner(1)
    holder.unlock(5)


class _Holder:
    """A LockObserver that records, at each release it hears of, the lock word then."""

    def __init__(self) -> None:
        self.words: list[int] = []

    def acquired(self, table: GranuleTable, idx: int, waited_ns: int) -> None:
        pass

    def released(self, table: GranuleTable, idx: int) -> None:
        self.words.append(table.holder(idx))


def test_observer_hears_of_a_release_once_the_lock_is_free(machine: Machine) -> None:
    """The interleaving explorer lets another call take the lock at that point (stress.explore)."""
    table = _table(machine)
    obs = _Holder()
    table.observer = obs
    table.lock(3)
    table.unlock(3)
    table.observer = None
    assert obs.words == [0]


class _Waiter:
    """A LockWaiter that releases the lock for the waiter on its second call, after giving up once."""

    def __init__(self, other: GranuleTable) -> None:
        self.other = other
        self.calls: list[tuple[int, int]] = []

    def wait(self, table: GranuleTable, idx: int, holder: int) -> None:
        self.calls.append((idx, holder))
        if len(self.calls) == 2:
            self.other.unlock(idx)


def test_waiter_decides_when_a_contended_lock_is_tried_again(machine: Machine) -> None:
    """With a waiter set, each failed try calls it (with the holder's lock word) instead of the
    backoff; the acquire succeeds on the try after the holder let go."""
    mine, other = _table(machine, 0), _table(machine, 1)
    other.lock(5)
    waiter = _Waiter(other)
    mine.waiter = waiter
    with deadline(DEADLINE_S):
        mine.lock(5)
    mine.waiter = None
    assert waiter.calls == [(5, cpu_owner(1)), (5, cpu_owner(1))]
    assert mine.holder(5) == cpu_owner(0)
    mine.unlock(5)


class _Abandon(BaseException):
    pass


def test_waiter_may_abandon_the_acquire(machine: Machine) -> None:
    """A waiter that raises on a contended lock ends the acquire: the exception comes out of lock() and
    the other owner still holds the granule."""
    mine, other = _table(machine, 0), _table(machine, 1)
    other.lock(6)

    class GiveUp:
        def wait(self, table: GranuleTable, idx: int, holder: int) -> None:
            raise _Abandon

    mine.waiter = GiveUp()
    with pytest.raises(_Abandon):
        mine.lock(6)
    mine.waiter = None
    assert mine.holder(6) == cpu_owner(1)
    other.unlock(6)


# -- contended acquires of every kind (a waiter hands the lock over) ------------------------------


class _Tracer:
    """A LockTracer that records the class and PA of every contended acquire."""

    def __init__(self) -> None:
        self.waits: list[tuple[int, int]] = []

    def lock_wait(self, start_ns: int, waited_ns: int, cls: int, pa: int) -> None:
        self.waits.append((cls, pa))


@pytest.mark.parametrize("how", ["lock", "find_lock", "lock_known"])
def test_every_acquire_waits_for_a_held_lock(machine: Machine, how: str) -> None:
    """lock, find_lock and lock_known each wait while another owner holds the granule (here the
    waiter lets the holder go on its second call), then hold it themselves; the wait is counted
    under the acquire's class and reported to the tracer with the granule's PA. (A lock_known
    that skipped its contended path returned a guard for a lock another CPU held.)"""
    mine, other = _table(machine, 0), _table(machine, 1)
    idx = 44
    other.lock(idx)
    other.set_state(idx, DELEGATED)
    waiter, tracer = _Waiter(other), _Tracer()
    mine.waiter, mine.tracer = waiter, tracer
    with deadline(DEADLINE_S):
        if how == "lock":
            mine.lock(idx, DELEGATED)
        elif how == "find_lock":
            assert mine.find_lock(_pa(machine, idx), DELEGATED) is not None
        else:
            mine.lock_known(idx, DELEGATED)
    mine.waiter = mine.tracer = None
    assert waiter.calls == [(idx, cpu_owner(1))] * 2
    assert mine.holder(idx) == cpu_owner(0)
    stats = mine.stats
    assert (stats.acquired[DELEGATED], stats.contended, stats.contended_by_class[DELEGATED]) == (1, 1, 1)
    assert stats.max_wait_idx == idx
    assert stats.max_wait_by_class[DELEGATED] == stats.max_wait_ns == stats.wait_by_class[DELEGATED] == stats.wait_ns
    assert tracer.waits == [(DELEGATED, _pa(machine, idx))]
    mine.unlock(idx)


def test_racy_state_reads_the_state_without_the_lock(machine: Machine) -> None:
    """racy_state is state() without the lock: the state bits of the granule's own word."""
    table = _table(machine)
    table.lock(45)
    table.set_state(45, REC)
    table.refcount_add(45, 3)
    table.unlock(45)
    assert [table.racy_state(i) for i in (44, 45, 46)] == [NS, REC, NS]


def test_lock_known_names_the_granule(machine: Machine) -> None:
    """lock_known's guard holds the granule's PA; reaching a granule in another state than the
    one it was reached as is an RMM bug: the error names the PA and both states, and the lock is
    released."""
    table = _table(machine)
    with pytest.raises(RmmInternalError, match=f"granule {_pa(machine, 46):#x} reached as state {REC} "
                                                f"is in state {NS}"):
        table.lock_known(46, REC)
    assert table.holder(46) == 0
    with table.lock_known(46, NS) as guard:
        assert guard.addr == _pa(machine, 46)


def test_refcount_add_error_names_both_counts(machine: Machine) -> None:
    """Taking a refcount of 3 below zero is an RmmInternalError that shows the count before and the count
    it would have become."""
    table = _table(machine)
    table.refcount_add(47, 3)
    with pytest.raises(RmmInternalError, match="from 3 to -1"):
        table.refcount_add(47, -4)


def test_guards_are_kept_per_granule_and_bounded(machine: Machine, monkeypatch: pytest.MonkeyPatch) -> None:
    """find_lock and lock_known return the granule's one kept guard on every acquisition, each
    naming its own granule; past the table's bound the kept guards start afresh and the new ones
    still name the right granule and release it (test-only: the guard cache of granule.py)."""
    monkeypatch.setattr(granule_module, "_GUARDS_MAX", 2)
    table = _table(machine)
    first = table.find_lock(_pa(machine, 20), NS)
    assert first is not None
    first.unlock()
    again = table.lock_known(20, NS)
    assert again is first and table.holder(20) == cpu_owner(0)
    again.unlock()
    for idx in (21, 22, 23):
        with table.lock_known(idx, NS) as guard:
            assert (guard.idx, guard.addr, table.holder(idx)) == (idx, _pa(machine, idx), cpu_owner(0))
        assert table.holder(idx) == 0
    fresh = table.find_lock(_pa(machine, 20), NS)
    assert fresh is not None and (fresh.idx, fresh.addr) == (20, _pa(machine, 20))
    fresh.unlock()
    assert _nothing_held(machine)


@pytest.mark.parametrize("how", ["find_lock", "lock_known"])
def test_a_key_error_made_by_the_guard_is_not_taken_for_a_miss(machine: Machine, monkeypatch: pytest.MonkeyPatch,
                                                               how: str) -> None:
    """find_lock and lock_known catch the KeyError of their guard lookup only: one raised while
    the guard is made reaches the caller as it is, after one attempt (test-only: the scope of the
    try around the kept guard's subscript)."""
    table = _table(machine)
    made: list[int] = []

    def failing(self: GranuleTable, idx: int) -> None:
        made.append(idx)
        raise KeyError("made")

    monkeypatch.setattr(GranuleTable, "_guard", failing)
    with pytest.raises(KeyError, match="made"):
        if how == "find_lock":
            table.find_lock(_pa(machine, 30), NS)
        else:
            table.lock_known(30, NS)
    assert made == [30] and table.holder(30) == cpu_owner(0)    # the lock was taken, as before the guard
    table.unlock(30)
    assert _nothing_held(machine)
