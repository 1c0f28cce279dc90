"""Footprints: what a failing RMI/RSI call must leave unchanged (the spec's "footprint"), and
what a successful one may change (`changed`: nothing outside the command's footprint)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from rmm_mp import Machine
from rmm_mp.rmm.granule_state import GranuleState


@dataclass(frozen=True)
class Snapshot:
    """What a failing command must leave unchanged: every granule's lock, state and refcount,
    every GPT entry, and the contents of the named granules."""

    locks: tuple[int, ...]
    words: tuple[int, ...]
    gpt: bytes
    contents: tuple[tuple[int, str], ...]
    dram_base: int = 0
    granule_size: int = 4096

    def diff(self, other: "Snapshot") -> list[str]:
        out = []
        for i, (a, b) in enumerate(zip(self.words, other.words)):
            if a != b:
                out.append(f"granule {i}: state word {a:#x} -> {b:#x}")
        for i, (a, b) in enumerate(zip(self.locks, other.locks)):
            if a != b:
                out.append(f"granule {i}: lock word {a:#x} -> {b:#x}")
        for i, (a, b) in enumerate(zip(self.gpt, other.gpt)):
            if a != b:
                out.append(f"granule {i}: PAS {a} -> {b}")
        for (pa, h1), (_, h2) in zip(self.contents, other.contents):
            if h1 != h2:
                out.append(f"contents of {pa:#x} changed")
        return out

    def changed(self, other: "Snapshot") -> set[int]:
        """PAs of the granules whose state, refcount, lock, PAS or (hashed) contents differ
        between the two snapshots; ``other`` must hash the same granules (see `realm_snapshot`)."""
        out = {self.dram_base + i * self.granule_size
               for i, (a, b) in enumerate(zip(zip(self.words, self.locks, self.gpt),
                                              zip(other.words, other.locks, other.gpt))) if a != b}
        before, after = dict(self.contents), dict(other.contents)
        out |= {pa for pa in before.keys() | after.keys() if before.get(pa) != after.get(pa)}
        return out


def _granule_hash(m: Machine, pa: int) -> tuple[int, str]:
    return pa, hashlib.sha256(m.memory.granule((pa - m.dram_base) // m.granule_size)).hexdigest()


def _in_dram(m: Machine, pa: int) -> bool:
    return m.dram_base <= pa < m.dram_base + m.granule_count * m.granule_size


def snapshot(m: Machine, *pas: int) -> Snapshot:
    """Footprint of the machine: granule table, GPT, and contents of the DRAM granules ``pas``."""
    locks, words = m.granule_table(0).snapshot()
    contents = [_granule_hash(m, pa) for pa in pas if _in_dram(m, pa)]
    return Snapshot(tuple(locks), tuple(words), m.gpt.snapshot(), tuple(contents), m.dram_base, m.granule_size)


def realm_snapshot(m: Machine, *pas: int) -> Snapshot:
    """`snapshot` with the contents of every granule in a realm state (any but NS) too, so that
    `Snapshot.changed` sees a success path writing an RTT, RD, REC or DATA granule it should not."""
    table = m.granule_table(0)
    owned = [m.dram_base + i * m.granule_size for i in range(m.granule_count) if table.state(i) != GranuleState.NS]
    return snapshot(m, *sorted(set(owned) | set(pas)))
