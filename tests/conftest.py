"""Shared fixtures: a fresh `host` machine per test, and footprint snapshots.

Every test that makes a machine closes it; the `no_leaks` check at the end of the session
fails the run if any segment this test process created is still in /dev/shm.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Iterator

import pytest

from rmm_mp import Machine
from rmm_mp.hw import segment


@pytest.fixture
def machine() -> Iterator[Machine]:
    """A `host` machine with all 4 CPUs, closed (and unlinked) after the test."""
    with Machine.create("host", cpus=4) as m:
        yield m


@pytest.fixture
def cpu0(machine: Machine):  # type: ignore[no-untyped-def]
    return machine.cpu(0)


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


@pytest.fixture(scope="session", autouse=True)
def no_leaks() -> Iterator[None]:
    """Fail the session if this process left any of its segments in /dev/shm."""
    yield
    mine = [m.prefix for m in segment.list_machines() if m.creator_pid == os.getpid()]
    assert not mine, f"shared memory leaked by this test process: {mine}"
