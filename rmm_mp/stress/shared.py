"""The stress segment: the scheduler's and the run's shared words, next to the machine's segments.

One extra segment ``<machine prefix>.stress`` (hw.segment naming, so `rmm-mp clean` and orphan
removal take it with the machine), created by the runner and attached by every CPU process.
Little-endian; every word is read and written with atomic loads and stores:

    0x000  magic "RMMSTRSS", layout version u32, CPUs u32
    0x010  mode u32 (0 free-running, 1 deterministic), strategy u32 (0 random, 1 PCT, 2 replay)
    0x018  CPUs registered u32
    0x020  step u64: schedule points passed (deterministic mode)
    0x028  turn u32: the CPU that may run (0xFFFFFFFF: none yet; NO_FIRST_TURN: the run was
           stopped before the first turn, which none gets); end u32: 0 running, 1 draining (no
           new operation starts), 2 aborted (parked CPUs leave their call at once)
    0x030  the scheduler's random state u64 (splitmix64), shared so that whichever CPU decides
           draws the next number
    0x038  step budget u64; 0x040 context switches u64; 0x048 preemptions u64
    0x050  step at which the run ended u64; 0x058 quiescent invariant checks made u64
    0x060  reserved (0x060 to 0x0A7)
    0x0A8  the highest REC index created in the population's NEW realm u32 (a hint for the
           next REC_CREATE: CPUs race to create index + 1)
    0x0B0  quiescent check pending u32 (deterministic: CPUs park between operations until all
           are there); 0x0B8 step at which the next quiescent check is due u64
    0x100  per CPU (MAX_CPUS of them), 320 bytes each: status u32, blocked-on u32 (granule
           index + 1), last point kind u32, reserved u32, last point argument u64, priority u64,
           steps run u64, op count u64; at +0x40, a u64 per name of COUNTED (operations by kind,
           then events), the CPU's own copy of its report's counts, read for a CPU that returned
           no result. The counters are u64: a day's run (--seconds 86,400) of one CPU at some
           50,000 operations a second passes 2**32, where a u32 wrapped to 0 (layout version 2).
           At +0xB0, BUG_SLOTS u64s: the calls of each injected bug's code on this CPU, by the
           bug's index in the catalogue (stress.bugs.BUGS), read for a CPU that returned no
           result (layout version 4: until then they went with its process).

This module owns the layout. It must not decide anything.
"""

from __future__ import annotations

from typing import Final

import atomicshm

from rmm_mp.host.runqueue import MAX_CPUS as RUNQUEUE_MAX_CPUS
from rmm_mp.hw.segment import STRESS_PART, Segment

MAGIC: Final = b"RMMSTRSS"
VERSION: Final = 4
"""The layout's version, checked on attach (4: injected bugs' calls, 320 bytes a CPU; 3: u64 counters,
192 bytes; 2: u32 counters by kind, 128 bytes; 1: 64 bytes a CPU, its operation count only)."""
PART: Final = STRESS_PART
MAX_CPUS: Final = RUNQUEUE_MAX_CPUS
"""The most CPUs a stress run has: the host run queue's (host.runqueue.MAX_CPUS, 64), which
every stress CPU's run loop uses; `rmm-mp run` has the same limit. The segment used to be one
page, which held 60 CPUs' words: the one limit on the CPU count the stress tool had of its own."""

OPERATION_KINDS: Final = ("vcpu", "tables", "data", "map", "recs", "measured", "delegate", "wrong", "lifecycle",
                          "guest-tables")
"""The operation kinds a CPU counts (stress.ops.Operations.counts), each operation it completes."""
EVENTS: Final = ("rec-enter", "vcpu-idle", "relaunch", "guest-tables-idle")
"""The vCPU events a CPU counts beside its operations (stress.ops.Operations.counts)."""
COUNTED: Final = OPERATION_KINDS + EVENTS
"""Every name a CPU's counts may hold: the operation kinds, then the events. Each has a counter
per CPU here, which the CPU adds to as it counts, so that the counts of a CPU that returned no
result (killed, died) are still known, as its operation total is."""
_COUNT_INDEX: Final = {name: i for i, name in enumerate(COUNTED)}

MODE_FREE, MODE_DETERMINISTIC = 0, 1
STRATEGIES: Final = ("random", "pct", "replay")
END_RUNNING, END_DRAIN, END_ABORT = 0, 1, 2
NO_FIRST_TURN: Final = 0xFFFF_FFFE
"""The turn word of a deterministic run stopped (Ctrl-C, SIGTERM, its time limit) before the parent
gave the first turn: none is given, and each CPU leaves once registered, without a step."""

# per-CPU status
ABSENT, READY, RUNNING, BLOCKED, DONE = 0, 1, 2, 3, 4
STATUS_NAMES: Final = ("absent", "ready", "running", "blocked", "done")

_MODE, _STRATEGY, _REGISTERED = 0x10, 0x14, 0x18
_STEP, _TURN, _END, _RNG, _BUDGET = 0x20, 0x28, 0x2C, 0x30, 0x38
_SWITCHES, _PREEMPTIONS, _END_STEP, _QUIESCENT = 0x40, 0x48, 0x50, 0x58
_REC_HINT = 0xA8
_QUIESCING, _QUIESCE_AT = 0xB0, 0xB8
_CPU, _CPU_SIZE = 0x100, 320
SIZE: Final = (_CPU + _CPU_SIZE * MAX_CPUS + 0xFFF) & ~0xFFF
"""Whole pages, holding MAX_CPUS CPUs' words (six pages for 64)."""
C_STATUS, C_BLOCKED, C_KIND, C_ARG, C_PRIORITY, C_STEPS, C_OPS, C_COUNTS = 0, 4, 8, 16, 24, 32, 40, 64
C_BUGS: Final = C_COUNTS + 8 * len(COUNTED)
BUG_SLOTS: Final = (_CPU_SIZE - C_BUGS) // 8
"""How many catalogued bugs the segment counts calls of (stress.bugs checks its catalogue fits)."""
assert C_BUGS == 0xB0 and BUG_SLOTS >= 15


class StressSegment:
    """Typed access to one machine's stress segment."""

    __slots__ = ("segment", "view", "cpus", "creator")

    def __init__(self, segment: Segment, creator: bool) -> None:
        self.segment = segment
        self.view = atomicshm.AtomicView(segment.buf)
        self.cpus = self.view.load_u32(0x0C)
        self.creator = creator

    @classmethod
    def create(cls, prefix: str, cpus: int, mode: int, strategy: int, budget: int, seed_state: int) -> "StressSegment":
        if not 1 <= cpus <= MAX_CPUS:
            raise ValueError(f"cpus = {cpus}: the stress segment holds 1..{MAX_CPUS} CPUs")
        segment = Segment.create(prefix, PART, SIZE)
        segment.buf[0:8] = MAGIC
        view = atomicshm.AtomicView(segment.buf)
        view.store_u32(0x08, VERSION)
        view.store_u32(0x0C, cpus)
        view.store_u32(_MODE, mode)
        view.store_u32(_STRATEGY, strategy)
        view.store_u64(_BUDGET, budget)
        view.store_u64(_RNG, seed_state)
        view.store_u32(_TURN, 0xFFFF_FFFF)
        view.close()
        return cls(segment, creator=True)

    @classmethod
    def attach(cls, prefix: str) -> "StressSegment":
        segment = Segment.attach(prefix, PART)
        if bytes(segment.buf[0:8]) != MAGIC:
            segment.close()
            raise ValueError(f"{prefix}.{PART} is not a stress segment")
        version = int.from_bytes(segment.buf[8:12], "little")
        if version != VERSION or segment.size < SIZE:
            # Read at this layout's offsets, another's words were misread and overwritten silently
            # (a CPU process that imported an rmm_mp edited while the run started up).
            segment.close()
            raise ValueError(f"{prefix}.{PART} is a stress segment of layout version {version} and "
                             f"{segment.size} bytes; expected {VERSION} and {SIZE} bytes (another rmm-mp made it)")
        return cls(segment, creator=False)

    def close(self) -> None:
        self.view.close()
        if self.creator:
            self.segment.unlink()
        self.segment.close()

    @property
    def machine_name(self) -> str:
        """The name of the machine this segment belongs to."""
        return self.segment.path.rsplit("/", 1)[-1].rsplit(".", 1)[0]

    # -- run-wide words ----------------------------------------------------------------------

    @property
    def mode(self) -> int:
        return self.view.load_u32(_MODE)

    @property
    def strategy(self) -> int:
        return self.view.load_u32(_STRATEGY)

    def register(self) -> int:
        return self.view.fetch_add_u32(_REGISTERED, 1) + 1

    @property
    def registered(self) -> int:
        return self.view.load_u32(_REGISTERED)

    @property
    def step(self) -> int:
        return self.view.load_u64(_STEP)

    def next_step(self) -> int:
        return self.view.fetch_add_u64(_STEP, 1) + 1

    @property
    def turn(self) -> int:
        return self.view.load_u32(_TURN)

    def set_turn(self, cpu: int) -> None:
        self.view.store_u32(_TURN, cpu)

    @property
    def end(self) -> int:
        return self.view.load_u32(_END)

    def set_end(self, how: int) -> None:
        """Raise the end level (running < draining < aborted); the first end records its step."""
        current = self.view.load_u32(_END)
        while how > current:
            previous = self.view.cas_u32(_END, current, how)
            if previous == current:
                if current == END_RUNNING:
                    self.view.store_u64(_END_STEP, self.view.load_u64(_STEP))
                return
            current = previous

    @property
    def end_step(self) -> int:
        return self.view.load_u64(_END_STEP)

    @property
    def rng(self) -> int:
        return self.view.load_u64(_RNG)

    def set_rng(self, state: int) -> None:
        self.view.store_u64(_RNG, state)

    @property
    def budget(self) -> int:
        return self.view.load_u64(_BUDGET)

    def count_switch(self, preemption: bool) -> None:
        self.view.fetch_add_u64(_SWITCHES, 1)
        if preemption:
            self.view.fetch_add_u64(_PREEMPTIONS, 1)

    @property
    def switches(self) -> int:
        return self.view.load_u64(_SWITCHES)

    @property
    def preemptions(self) -> int:
        return self.view.load_u64(_PREEMPTIONS)

    def count_quiescent(self) -> int:
        return self.view.fetch_add_u64(_QUIESCENT, 1) + 1

    @property
    def quiescent_checks(self) -> int:
        return self.view.load_u64(_QUIESCENT)

    @property
    def quiescing(self) -> bool:
        return self.view.load_u32(_QUIESCING) != 0

    def set_quiescing(self, on: bool) -> None:
        self.view.store_u32(_QUIESCING, int(on))

    @property
    def quiesce_at(self) -> int:
        return self.view.load_u64(_QUIESCE_AT)

    def set_quiesce_at(self, step: int) -> None:
        self.view.store_u64(_QUIESCE_AT, step)

    def rec_hint(self) -> int:
        """The REC index to propose next in the NEW realm."""
        return self.view.load_u32(_REC_HINT) + 1

    def advance_rec_hint(self, index: int) -> None:
        self.view.cas_u32(_REC_HINT, index - 1, index)

    # -- per CPU ------------------------------------------------------------------------------

    def _cpu(self, cpu: int) -> int:
        return _CPU + cpu * _CPU_SIZE

    def status(self, cpu: int) -> int:
        return self.view.load_u32(self._cpu(cpu) + C_STATUS)

    def set_status(self, cpu: int, status: int, blocked_on: int = -1) -> None:
        base = self._cpu(cpu)
        self.view.store_u32(base + C_BLOCKED, blocked_on + 1)
        self.view.store_u32(base + C_STATUS, status)

    def blocked_on(self, cpu: int) -> int:
        return self.view.load_u32(self._cpu(cpu) + C_BLOCKED) - 1

    def set_point(self, cpu: int, kind: int, arg: int) -> None:
        base = self._cpu(cpu)
        self.view.store_u32(base + C_KIND, kind)
        self.view.store_u64(base + C_ARG, arg & 0xFFFF_FFFF_FFFF_FFFF)
        self.view.fetch_add_u64(base + C_STEPS, 1)

    def point(self, cpu: int) -> tuple[int, int]:
        base = self._cpu(cpu)
        return self.view.load_u32(base + C_KIND), self.view.load_u64(base + C_ARG)

    def steps_of(self, cpu: int) -> int:
        return self.view.load_u64(self._cpu(cpu) + C_STEPS)

    def priority(self, cpu: int) -> int:
        return self.view.load_u64(self._cpu(cpu) + C_PRIORITY)

    def set_priority(self, cpu: int, value: int) -> None:
        self.view.store_u64(self._cpu(cpu) + C_PRIORITY, value)

    def count_op(self, cpu: int) -> None:
        self.view.fetch_add_u64(self._cpu(cpu) + C_OPS, 1)

    def ops(self, cpu: int) -> int:
        return self.view.load_u64(self._cpu(cpu) + C_OPS)

    def completed(self, cpu: int) -> int:
        """``cpu``'s operations completed, as the sum of its counters of the operation kinds: the
        total given for a CPU that returned no result, which its counts by kind add up to. Its op
        count (``ops``, for the progress line) is another word, added to just after the kind's
        counter: read for such a CPU, killed between the two adds, it was one short of them."""
        base = self._cpu(cpu) + C_COUNTS
        return sum(self.view.load_u64(base + 8 * _COUNT_INDEX[name]) for name in OPERATION_KINDS)

    def count(self, cpu: int, name: str) -> None:
        """One more of ``name`` (a name of COUNTED) on ``cpu``."""
        self.view.fetch_add_u64(self._cpu(cpu) + C_COUNTS + 8 * _COUNT_INDEX[name], 1)

    def count_bug(self, cpu: int, index: int) -> None:
        """One more call of the bug at ``index`` in the catalogue on ``cpu``."""
        if not 0 <= index < BUG_SLOTS:
            raise ValueError(f"bug index {index}: the stress segment counts 0..{BUG_SLOTS - 1}")
        self.view.fetch_add_u64(self._cpu(cpu) + C_BUGS + 8 * index, 1)

    def bug_calls(self, cpu: int, indices: dict[str, int]) -> dict[str, int]:
        """``cpu``'s calls of each bug of ``indices`` (name: its catalogue index), 0 for one never called."""
        base = self._cpu(cpu) + C_BUGS
        return {name: self.view.load_u64(base + 8 * i) for name, i in indices.items()}

    def counts(self, cpu: int) -> dict[str, int]:
        """``cpu``'s counts by name, those not 0, as its report's counts hold them."""
        base = self._cpu(cpu) + C_COUNTS
        read = {name: self.view.load_u64(base + 8 * i) for i, name in enumerate(COUNTED)}
        return {name: n for name, n in read.items() if n}
