"""The shared granule table and its per-granule locks.

One 8-byte descriptor per 4 KiB DRAM granule, in a shared segment:

    +0  u32 lock word    0 = free; CPU n holds it as n + 1; an unbound host process (NS memory
                         copies done by Machine.ns_read/ns_write) holds it as 0x8000_0000 | pid
    +4  u32 state word   bits [23:16] state (opaque here; the RMM gives the values meaning),
                         bits [15:0] refcount

The state changes only under the lock (an atomic XOR of the changed bits, as TF-RMM does),
because the refcount bits of the same word may change concurrently without the lock (REC exit,
REC_DESTROY's decrement of the RD). The refcount changes by atomic add.

Locking rules (after TF-RMM's granule_types.h and locking.rst, numbered so that checkers and
messages can quote them):

  1. External granules (NS, DELEGATED, RD, REC: states an RMI argument may name) are locked
     before any internal granule (RTT, DATA, REC_AUX: reached only through a locked or
     referenced object).
  2. Two external granules are locked in ascending physical address order (lock_two).
  3. After locking an external granule its state is checked at once; on a mismatch it is
     unlocked and the command takes no further locks.
  4. Internal granules are locked by class in the order RTT -> DATA -> REC_AUX, each under
     the object that reaches it: a DATA granule while holding the level-3 table that maps it
     (DATA after its RTT), REC_AUX granules while holding their REC, in aux index order.
  5. RTTs are locked within one tree only, root to leaf, hand over hand (the walker locks the
     child before it releases the parent); concatenated roots in ascending address order.
     At most one DATA granule at a time.
  6. A granule's state changes only while its lock is held; a granule whose refcount counts
     references to it (RD, REC, RTT) leaves its state only at refcount 0 (a new RTT takes the
     references of the block it replaces while it is still DELEGATED and locked).
  7. An unlocked DELEGATED granule reads as all zeros.
  8. Non-secure memory (params and run pages; host ns_read and ns_write) is copied while
     holding no other granule lock: the copy locks each granule of the range in address
     order. (A page's lock is also the lock lock_two takes once the page is DELEGATED, and
     lock_two holds it while waiting for an RD; a copy made under an RD could close a cycle.)
     A page that must be read under other locks (DATA_CREATE's source, REC_ENTER's run
     page) is instead locked as an external granule expected NS, in address order with the
     command's others (rule 2), and read under that lock.

Acquire is a compare-and-swap, then a bounded spin, then os.sched_yield() between tries, then
short sleeps, so that many CPU processes on few host cores still progress while a holder is
descheduled. Blocking, not try-lock: deadlock freedom comes from the rules above, as in TF-RMM.

Every acquire and release passes one instrumentation point: ``GranuleTable.observer``. When it
is None (nothing listens) the cost is that single attribute test. A contended acquire has a
second one, ``GranuleTable.waiter``: when set, it is called after every failed try instead of
the backoff, and decides when to try again (the interleaving explorer, rmm_mp.stress.explore,
hands the turn to another call there; the host's own table, hw.memory.HostLockWaiter, gives up
on a holder that will never release, and so does a CPU's, hw.memory.CpuLockWaiter, once the run
is stopping); the uncontended path never looks at it. ``lock_known`` takes a
subclass hint (``sub``: an RTT's level, ``| SUB_ROOT`` for a root) that the lock itself ignores:
the stress tool (rmm_mp.stress) replaces the lock methods at start-up in its CPU processes and
hands the hint and the expected state to its lock-order checker, so the hint costs an argument.
``racy_state`` is the one declared lock-free read of a state (a hint, re-checked under the lock).

This module owns lock words, state/refcount words and the lock API. It must not know what a
state means, nor touch granule contents.
"""

from __future__ import annotations

import os
import time
from typing import Protocol

import atomicshm

from rmm_mp.hw.faults import RmmInternalError

GRANULE_SIZE = 4096
DESCRIPTOR_SIZE = 8
STATE_SHIFT = 16
STATE_MASK = 0xFF
REFCOUNT_MASK = 0xFFFF
HOST_OWNER_FLAG = 0x8000_0000

SPIN_TRIES = 64
YIELD_TRIES = 512
SLEEP_MAX_S = 0.0005


def backoff(tries: int) -> None:
    """Wait before compare-and-swap try number ``tries`` of a contended lock: nothing for the
    first SPIN_TRIES, then sched_yield for YIELD_TRIES, then sleeps growing by 10 us a try up to
    SLEEP_MAX_S (a busy holder may be waiting for a core that spinning CPUs keep)."""
    if tries <= SPIN_TRIES:
        return
    if tries <= SPIN_TRIES + YIELD_TRIES:
        os.sched_yield()
    else:
        time.sleep(min(SLEEP_MAX_S, 0.000_01 * (tries - SPIN_TRIES - YIELD_TRIES)))


LOOK_EVERY = 64
"""Tries between two looks of a sleeping wait at what it waits for (look_due): at most 32 ms
apart once the backoff sleeps its longest."""


def look_due(tries: int, every: int = LOOK_EVERY) -> bool:
    """Whether a wait that backs off (``backoff``), at try number ``tries``, should look at the
    process it waits for (its liveness costs a /proc read, too dear for every try): only once it
    sleeps, never while it spins or yields (a live holder finishing its call is done by then),
    and every ``every`` tries."""
    return tries > SPIN_TRIES + YIELD_TRIES and tries % every == 0


def cpu_owner(cpu: int) -> int:
    """Lock-word value that means 'held by CPU cpu'."""
    return cpu + 1


def host_owner(pid: int) -> int:
    """Lock-word value that means 'held by the unbound host process pid'."""
    return HOST_OWNER_FLAG | (pid & 0x7FFF_FFFF)


def describe_owner(word: int) -> str:
    """Human-readable holder of a lock word."""
    if word == 0:
        return "nobody"
    if word & HOST_OWNER_FLAG:
        return f"host process {word & 0x7FFF_FFFF}"
    return f"CPU {word - 1}"


class LockTracer(Protocol):
    """Where contended acquisitions are reported for timelines (rmm_mp.hw.trace)."""

    def lock_wait(self, start_ns: int, waited_ns: int, cls: int, pa: int) -> None: ...


class LockWaiter(Protocol):
    """What a contended acquire calls after each failed try when ``GranuleTable.waiter`` is set."""

    def wait(self, table: "GranuleTable", idx: int, holder: int) -> None:
        """Return when granule idx's lock (held by lock word ``holder``) is worth trying again,
        or raise to abandon the call (it keeps the locks it holds)."""
        ...


class LockObserver(Protocol):
    """What the instrumentation point calls (lock-order checker, statistics, scheduler)."""

    def acquired(self, table: "GranuleTable", idx: int, waited_ns: int) -> None: ...

    def released(self, table: "GranuleTable", idx: int) -> None: ...


SUB_ROOT = 0x10
"""Flag in a lock_known subclass hint: the RTT is a root of its realm (not reached through a table)."""
NO_SUB = -1
"""lock_known's hint when the caller names no subclass."""

_GUARDS_MAX = 4096
"""Guards a table keeps (GranuleTable._guard): those of the last 4096 granules (16 MiB) it locked
through find_lock or lock_known, of any state, at most."""

CLASSES = 16
OTHER_CLASS = CLASSES - 1
"""Lock statistics are kept per lock class: the granule state the locker expects (an opaque
number here; the RMM gives states meaning). A plain lock() (NS copies) counts as OTHER_CLASS."""


class LockStats:
    """Lock counters of one owner, kept in the owning process (published by its CPU's EL3).

    Per class: acquisitions, contended acquisitions, total and longest wait; overall: the
    longest wait and the granule it was for.
    """

    __slots__ = ("acquired", "contended_by_class", "wait_by_class", "max_wait_by_class",
                 "contended", "wait_ns", "max_wait_ns", "max_wait_idx")

    def __init__(self) -> None:
        self.acquired = [0] * CLASSES
        self.contended_by_class = [0] * CLASSES
        self.wait_by_class = [0] * CLASSES
        self.max_wait_by_class = [0] * CLASSES
        self.contended = 0
        self.wait_ns = 0
        self.max_wait_ns = 0
        self.max_wait_idx = -1

    def reset(self) -> None:
        """Every counter back to 0, in place: the granule table and its CPU's EL3 share this
        object, and the table keeps ``acquired`` itself (its lock fast path counts there)."""
        for counters in (self.acquired, self.contended_by_class, self.wait_by_class, self.max_wait_by_class):
            counters[:] = [0] * CLASSES
        self.contended = self.wait_ns = self.max_wait_ns = 0
        self.max_wait_idx = -1

    def count_contended(self, idx: int, cls: int, waited: int) -> None:
        """One contended acquisition of granule ``idx`` (lock class ``cls``) that waited
        ``waited`` ns: GranuleTable._lock_contended's, and the stress tool's replacements of it,
        which wait their own way. Only contended acquisitions come here, never the fast path."""
        self.contended += 1
        self.wait_ns += waited
        self.contended_by_class[cls] += 1
        self.wait_by_class[cls] += waited
        if waited > self.max_wait_by_class[cls]:
            self.max_wait_by_class[cls] = waited
        if waited > self.max_wait_ns:
            self.max_wait_ns = waited
            self.max_wait_idx = idx


class GranuleTable:
    """The granule descriptors as seen by one lock owner.

    Every process (and every CPU handle in it) has its own instance over the same shared view;
    ``owner`` is the lock-word value it writes.
    """

    __slots__ = (
        "view", "buf", "base", "count", "end", "span", "owner", "observer", "waiter", "stats", "tracer", "_acquired",
        "_cas", "_load", "_xor", "_add", "_guards",
    )

    def __init__(self, view: atomicshm.AtomicView, buf: memoryview, base: int, count: int, owner: int) -> None:
        self.view = view
        self.buf = buf
        self.base = base
        self.count = count
        self.end = base + count * GRANULE_SIZE
        self.span = count * GRANULE_SIZE     # end - base: lock_two tests offsets from base against it
        self.owner = owner
        self.observer: LockObserver | None = None
        self.waiter: LockWaiter | None = None
        self.stats = LockStats()
        self._acquired = self.stats.acquired
        self.tracer: LockTracer | None = None
        self._cas = view.cas_u32
        self._load = view.load_u32
        self._xor = view.fetch_xor_u32
        self._add = view.fetch_add_u32
        self._guards: dict[int, Granule] = {}

    # -- locks ---------------------------------------------------------------------------

    def lock(self, idx: int, cls: int = OTHER_CLASS) -> None:
        """Acquire granule idx's lock (blocking), counted under lock class ``cls``."""
        self._acquired[cls] += 1
        if self._cas(idx << 3, 0, self.owner) != 0:
            self._lock_contended(idx, cls)
        elif self.observer is not None:
            self.observer.acquired(self, idx, 0)

    def _lock_contended(self, idx: int, cls: int = OTHER_CLASS) -> None:
        offset = idx << 3
        cas = self._cas
        owner = self.owner
        waiter = self.waiter
        start = time.perf_counter_ns()
        tries = 0
        while True:
            holder = cas(offset, 0, owner)
            if holder == 0:
                break
            if holder == owner:
                raise RmmInternalError(
                    f"{describe_owner(owner)} tried to lock granule {idx} that it already holds "
                    "(recursive lock: on hardware this spins forever)")
            tries += 1
            if waiter is not None:
                waiter.wait(self, idx, holder)
            elif tries > SPIN_TRIES:
                backoff(tries)
        end = time.perf_counter_ns()
        waited = end - start
        self.stats.count_contended(idx, cls, waited)
        if self.tracer is not None:
            self.tracer.lock_wait(start, waited, cls, self.base + (idx << 12))
        if self.observer is not None:
            self.observer.acquired(self, idx, waited)

    def unlock(self, idx: int) -> None:
        """Release granule idx's lock; releasing a lock this owner does not hold is an RMM bug.

        The observer hears of it once the lock is free: the interleaving explorer lets another
        call take it there, before this one goes on."""
        holder = self._cas(idx << 3, self.owner, 0)
        if holder != self.owner:
            # Leave the word alone: it names the real holder, which the report needs.
            raise RmmInternalError(
                f"{describe_owner(self.owner)} released granule {idx} held by {describe_owner(holder)}")
        if self.observer is not None:
            self.observer.released(self, idx)

    def holder(self, idx: int) -> int:
        """The lock word of granule idx (0 when free). Racy by nature: for reports and checks."""
        return self._load(idx << 3)

    def held_by(self, owner: int) -> list[int]:
        """Indices of every granule whose lock word is ``owner`` (a scan: for reports only)."""
        load = self._load
        return [i for i in range(self.count) if load(i << 3) == owner]

    # -- state and refcount ----------------------------------------------------------------

    def state(self, idx: int) -> int:
        return (self._load((idx << 3) + 4) >> STATE_SHIFT) & STATE_MASK

    def racy_state(self, idx: int) -> int:
        """The state read without the lock: a hint the caller re-checks under the lock (declared
        lock-free, so the stress tool's ownership checker accepts it)."""
        return (self._load((idx << 3) + 4) >> STATE_SHIFT) & STATE_MASK

    def set_state(self, idx: int, new: int) -> None:
        """Change the state; caller holds the lock (rule 6)."""
        offset = (idx << 3) + 4
        old = (self._load(offset) >> STATE_SHIFT) & STATE_MASK
        self._xor(offset, (old ^ new) << STATE_SHIFT)

    def refcount(self, idx: int) -> int:
        return self._load((idx << 3) + 4) & REFCOUNT_MASK

    def refcount_add(self, idx: int, delta: int) -> int:
        """Atomically add delta to the refcount; returns the old count. Underflow is an RMM bug."""
        old = self._add((idx << 3) + 4, delta) & REFCOUNT_MASK
        if not 0 <= old + delta <= REFCOUNT_MASK:
            self._add((idx << 3) + 4, -delta)
            raise RmmInternalError(f"refcount of granule {idx} would go from {old} to {old + delta}")
        return old

    def word(self, idx: int) -> int:
        """The raw state word (state and refcount together)."""
        return self._load((idx << 3) + 4)

    def snapshot(self) -> tuple[list[int], list[int]]:
        """(lock words, state words) of every granule, copied at once (for checks and reports).

        Not atomic as a whole: meaningful on a quiescent machine.
        """
        raw = self.buf[: self.count * DESCRIPTOR_SIZE]
        words_view = raw.cast("I")
        try:
            words = words_view.tolist()
        finally:
            words_view.release()
            raw.release()
        return words[0::2], words[1::2]

    # -- TF-RMM vocabulary: address lookup and guards ----------------------------------

    def find(self, addr: int) -> int:
        """Index of the granule at PA addr, or -1 if addr is unaligned or not delegable DRAM.

        The tests are made on the offset from the (granule-aligned) DRAM base, not on the PA: on
        CPython a PA at or above 2^30 is a multi-digit int, whose every operation costs several
        times a one-digit int's, and an offset into the first GiB of DRAM is one digit (find_lock
        and lock_two test the same way, on every REC entry)."""
        pos = addr - self.base
        idx = pos >> 12
        if pos & 0xFFF or not 0 <= idx < self.count:
            return -1
        return idx

    def addr(self, idx: int) -> int:
        return self.base + (idx << 12)

    def find_lock(self, addr: int, expected_state: int) -> "Granule | None":
        """Find, lock and check the state (rule 3): None, holding nothing, on any failure.

        The lock is taken before the state is compared, as TF-RMM's find_lock_granule does: a
        wrong-state address still contends for the lock. (Hot path: find, lock and state are
        written out inline.)
        """
        pos = addr - self.base      # find()'s tests, on the offset from the DRAM base
        idx = pos >> 12
        if pos & 0xFFF or not 0 <= idx < self.count:
            return None
        offset = idx << 3
        self._acquired[expected_state] += 1
        if self._cas(offset, 0, self.owner) != 0:
            self._lock_contended(idx, expected_state)
        elif self.observer is not None:
            self.observer.acquired(self, idx, 0)
        if (self._load(offset + 4) >> STATE_SHIFT) & STATE_MASK != expected_state:
            self.unlock(idx)
            return None
        try:                # a subscript, not .get: no method call on the hit (the try costs nothing)
            return self._guards[idx]
        except KeyError:
            return self._guard(idx)

    def lock_two(self, addr_a: int, state_a: int, addr_b: int, state_b: int) -> "tuple[Granule, Granule] | None":
        """Lock two external granules in ascending address order (rule 2), checking each state.

        Returns the guards in argument order, or None holding nothing: when the addresses are
        equal, either is not a granule, or either has the wrong state.
        """
        if addr_a == addr_b:
            return None
        # find() of both, written out (hot path: REC_ENTER locks the REC and its run page here),
        # on the offsets from the DRAM base as find() tests: both aligned (one test of the two
        # or'ed together) and both inside [0, span).
        base, span = self.base, self.span
        pos_a, pos_b = addr_a - base, addr_b - base
        if (pos_a | pos_b) & 0xFFF or not (0 <= pos_a < span and 0 <= pos_b < span):
            return None
        if pos_a < pos_b:
            first = self.find_lock(addr_a, state_a)
            if first is None:
                return None
            second = self.find_lock(addr_b, state_b)
            if second is None:
                first.unlock()
                return None
            return first, second
        first = self.find_lock(addr_b, state_b)
        if first is None:
            return None
        second = self.find_lock(addr_a, state_a)
        if second is None:
            first.unlock()
            return None
        return second, first

    def lock_sorted(self, wanted: "list[tuple[int, int]]") -> "list[Granule] | None":
        """Lock external granules [(addr, state), ...] in ascending address order (rule 2).

        Returns the guards in the order asked, or None holding nothing if any address is not a
        granule, appears twice, or has the wrong state.
        """
        order = sorted(range(len(wanted)), key=lambda i: wanted[i][0])
        addrs = [wanted[i][0] for i in order]
        if len(set(addrs)) != len(addrs) or any(self.find(a) < 0 for a in addrs):
            return None
        held: list[Granule] = []
        for i in order:
            guard = self.find_lock(*wanted[i])
            if guard is None:
                for g in reversed(held):
                    g.unlock()
                return None
            held.append(guard)
        result: list[Granule] = [held[0]] * len(wanted)
        for position, i in enumerate(order):
            result[i] = held[position]
        return result

    def lock_known(self, idx: int, state: int, sub: int = NO_SUB) -> "Granule":
        """Lock a granule reached through a locked or referenced object, whose state is known
        to be ``state`` (TF-RMM's granule_lock): a different state is an RMM bug.

        ``sub`` names the lock's subclass for checkers (an RTT's level, | SUB_ROOT for a root);
        the lock ignores it. (Hot path: lock() is written out inline.)
        """
        self._acquired[state] += 1
        if self._cas(idx << 3, 0, self.owner) != 0:
            self._lock_contended(idx, state)
        elif self.observer is not None:
            self.observer.acquired(self, idx, 0)
        found = (self._load((idx << 3) + 4) >> STATE_SHIFT) & STATE_MASK
        if found != state:
            self.unlock(idx)
            raise RmmInternalError(f"granule {self.base + (idx << 12):#x} reached as state {state} is in state {found}")
        try:                # as in find_lock
            return self._guards[idx]
        except KeyError:
            return self._guard(idx)

    def _guard(self, idx: int) -> "Granule":
        """Granule idx's guard, made once and kept (find_lock and lock_known look it up first).

        A guard is an immutable (table, idx, addr) whose lock state lives in the shared table,
        so one object serves every acquisition: making one per lock cost about 1,800
        instructions, five times on each REC round trip (docs/performance.md). At most
        _GUARDS_MAX are kept; the next is made after a fresh start."""
        guards = self._guards
        if len(guards) >= _GUARDS_MAX:
            guards.clear()
        guard = guards[idx] = Granule(self, idx, self.base + (idx << 12))
        return guard


class Granule:
    """A locked granule: the guard find_lock, lock_two and lock_known return.

    Use it as a context manager or call unlock()/unlock_transition() exactly once per
    acquisition. Its table keeps one guard per granule and returns it on every acquisition
    (GranuleTable._guard): a guard holds no state of its own, so no caller can tell.
    """

    __slots__ = ("table", "idx", "addr")

    def __init__(self, table: GranuleTable, idx: int, addr: int) -> None:
        self.table = table
        self.idx = idx
        self.addr = addr

    def __enter__(self) -> "Granule":
        return self

    def __exit__(self, *exc: object) -> None:
        self.table.unlock(self.idx)

    def __repr__(self) -> str:
        return f"Granule({self.addr:#x})"

    @property
    def state(self) -> int:
        return self.table.state(self.idx)

    def set_state(self, new: int) -> None:
        self.table.set_state(self.idx, new)

    @property
    def refcount(self) -> int:
        return self.table.refcount(self.idx)

    def refcount_add(self, delta: int) -> int:
        return self.table.refcount_add(self.idx, delta)

    def unlock(self) -> None:
        self.table.unlock(self.idx)

    def unlock_transition(self, new_state: int) -> None:
        """Set the state, then release the lock (granule_unlock_transition)."""
        table = self.table
        offset = (self.idx << 3) + 4
        old = (table._load(offset) >> STATE_SHIFT) & STATE_MASK
        table._xor(offset, (old ^ new_state) << STATE_SHIFT)
        table.unlock(self.idx)
