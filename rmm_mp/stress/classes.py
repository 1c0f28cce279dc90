"""Lock classes of the stress tool's checkers: what a granule lock is, as the locker names it.

A lock's class is the granule state its locker expects (find_lock, lock_two and lock_sorted
name it; lock_known names it and, for RTTs, the table's level as a subclass), not the state the
granule turns out to have: a candidate locked as DELEGATED that is really an RTT is still an
external lock, taken under rule 2, and is released at once (rule 3). Plain ``lock()`` is used
only for copies of Non-secure memory (hw.memory.NsAccess): class NS_COPY, which rule 8 governs.

    0 NS  1 DELEGATED  2 RD  3 REC        external: an RMI argument may name them
    4 REC_AUX  5 DATA                    internal
    6..9 RTT[L0]..RTT[L3]               internal, subclass = level
    10 RTT[?]                            an RTT whose locker named no level (a root, when no
                                         other RTT is held)
    11 NS_COPY                           a page of an NS memory copy

Numbers stay below 16: the per-CPU edge matrix in the shared area (hw.cpuarea OFF_LOCK_EDGES)
is 16 x 16 bits. This module owns the numbering and names.
"""

from __future__ import annotations

from typing import Final

from rmm_mp.hw.granule import NO_SUB, SUB_ROOT
from rmm_mp.rmm.granule_state import GranuleState as GS

NS: Final = 0
DELEGATED: Final = 1
RD: Final = 2
REC: Final = 3
REC_AUX: Final = 4
DATA: Final = 5
RTT_L0: Final = 6
RTT_UNKNOWN: Final = 10
NS_COPY: Final = 11
COUNT: Final = 12

NAMES: Final = ("NS", "DELEGATED", "RD", "REC", "REC_AUX", "DATA", "RTT[L0]", "RTT[L1]", "RTT[L2]", "RTT[L3]",
                "RTT[?]", "NS_COPY")
EXTERNAL: Final = frozenset({NS, DELEGATED, RD, REC})
INTERNAL_RANK: Final = {REC_AUX: 2, DATA: 1}
"""Rule 4 order among internal classes: RTTs (rank 0) before DATA (1) before REC_AUX (2)."""
REACHED: Final = frozenset({DATA, REC_AUX})
"""Internal classes locked only under the object that reaches them (rule 4): a DATA granule
under its level-3 table, a REC_AUX granule under its REC."""


def of(state: int, sub: int = NO_SUB) -> int:
    """The class of a lock taken expecting ``state`` (with lock_known's subclass hint)."""
    if state == GS.RTT:
        return RTT_L0 + (sub & 0x3) if sub >= 0 else RTT_UNKNOWN
    if 0 <= state < RTT_L0:
        return state
    return NS_COPY


def state_of(cls: int) -> int | None:
    """The state a lock of class ``cls`` expects; None for NS_COPY, which expects none."""
    if is_rtt(cls):
        return GS.RTT
    return cls if 0 <= cls < RTT_L0 else None


def is_rtt(cls: int) -> bool:
    return RTT_L0 <= cls <= RTT_UNKNOWN


def rtt_level(cls: int) -> int:
    """The level of an RTT class, -1 for RTT[?]."""
    return cls - RTT_L0 if RTT_L0 <= cls < RTT_UNKNOWN else -1


def rank(cls: int) -> int:
    """Rule 4 rank of an internal class."""
    return INTERNAL_RANK.get(cls, 0)


def is_root_hint(sub: int) -> bool:
    return sub >= 0 and bool(sub & SUB_ROOT)


def name(cls: int) -> str:
    return NAMES[cls] if 0 <= cls < COUNT else f"class {cls}"
