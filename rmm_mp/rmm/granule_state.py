"""Granule states (DEN0137 A2.2) as the RMM stores them in the granule table's state field.

Values follow TF-RMM rel0. For each state: what the granule lock protects, and what the
refcount counts (hw.granule holds the words; this module gives them meaning).

GranuleState is a plain class of int constants rather than an IntEnum: handlers compare states
on every call, and an IntEnum comparison costs about eight times an int comparison.
"""

from __future__ import annotations

from typing import Final


class GranuleState:
    NS: Final = 0
    """UNDELEGATED: Normal-world memory. Lock: serialises DELEGATE with NS copies. Refcount 0."""
    DELEGATED: Final = 1
    """Realm PAS, unused. Lock: the contents, which read as zero whenever unlocked. Refcount 0."""
    RD: Final = 2
    """Realm Descriptor. Lock: realm state, parameters, measurements. Refcount: number of RECs."""
    REC: Final = 3
    """Realm Execution Context. Contents belong to the holder of the running reference
    (refcount 1) or to the lock holder while the refcount is 0. Refcount: 0 idle, 1 running."""
    REC_AUX: Final = 4
    """Auxiliary REC storage. Protected by its parent REC. Refcount 0."""
    DATA: Final = 5
    """Realm memory, mapped by exactly one RTT entry. Refcount 0."""
    RTT: Final = 6
    """Realm Translation Table. Lock: its 512 entries. Refcount: live entries (tables and
    protected assigned entries), at most 512."""

    NAMES: Final = ("NS", "DELEGATED", "RD", "REC", "REC_AUX", "DATA", "RTT")

    @classmethod
    def name(cls, value: int) -> str:
        return cls.NAMES[value] if 0 <= value < len(cls.NAMES) else f"UNKNOWN({value})"


EXTERNAL_STATES: Final = frozenset({GranuleState.NS, GranuleState.DELEGATED, GranuleState.RD, GranuleState.REC})
"""States an RMI argument may name; locked before internal ones, in address order."""
