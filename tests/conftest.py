"""Shared fixtures: a fresh `host` machine per test (footprint snapshots: footprint.py).

Every test that makes a machine closes it; the `no_leaks` check at the end of the session
fails the run if any segment this test process created is still in /dev/shm.
"""

from __future__ import annotations

import os
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


@pytest.fixture(scope="session", autouse=True)
def no_leaks() -> Iterator[None]:
    """Fail the session if this process left any of its segments in /dev/shm."""
    yield
    mine = [m.prefix for m in segment.list_machines() if m.creator_pid == os.getpid()]
    assert not mine, f"shared memory leaked by this test process: {mine}"
