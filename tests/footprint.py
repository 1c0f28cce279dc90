"""Footprints: what a failing RMI/RSI call must leave unchanged (the spec's "footprint")."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from rmm_mp import Machine


@dataclass(frozen=True)
class Snapshot:
    """What a failing command must leave unchanged: every granule's lock, state and refcount,
    every GPT entry, and the contents of the named granules."""

    locks: tuple[int, ...]
    words: tuple[int, ...]
    gpt: bytes
    contents: tuple[tuple[int, str], ...]

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


def snapshot(m: Machine, *pas: int) -> Snapshot:
    """Footprint of the machine: granule table, GPT, and contents of the DRAM granules ``pas``."""
    locks, words = m.granule_table(0).snapshot()
    contents = []
    for pa in pas:
        if m.dram_base <= pa < m.dram_base + m.granule_count * m.granule_size:
            idx = (pa - m.dram_base) // m.granule_size
            contents.append((pa, hashlib.sha256(m.memory.granule(idx)).hexdigest()))
    return Snapshot(tuple(locks), tuple(words), m.gpt.snapshot(), tuple(contents))
