"""Shared fixtures: a fresh `host` machine per test (footprint snapshots: footprint.py).

Every test that makes a machine closes it; the `no_leaks` check at the end of the session
fails the run if any segment this test process created is still in /dev/shm.
"""

from __future__ import annotations

import os
import signal
import threading
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


@pytest.fixture
def ctrl_c() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt in this process for the test, as a terminal's Ctrl-C does
    in a foreground command: for a test that sends it (to itself, or to a child that inherits
    the disposition). A background job of a non-interactive shell (`pytest ... &` in a script,
    some CI runners) starts with SIGINT ignored, and Python then installs no handler: such a
    test waited for an interrupt that never came (a run with no time limit hung). The
    disposition pytest was started with is put back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers can only be set from the main thread")
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)


@pytest.fixture(scope="session", autouse=True)
def no_leaks() -> Iterator[None]:
    """Fail the session if this process left any of its segments in /dev/shm."""
    yield
    mine = [m.prefix for m in segment.list_machines() if m.creator_pid == os.getpid()]
    assert not mine, f"shared memory leaked by this test process: {mine}"
