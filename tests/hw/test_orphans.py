"""hw.orphans.is_orphan: which machines `rmm-mp clean` and Machine.create may remove."""

from __future__ import annotations

import psutil
import pytest

from rmm_mp.hw import orphans, process
from rmm_mp.hw.segment import MachineSegments

MACHINE = MachineSegments(prefix="rmm-mp-1-feedface", creator_pid=1, paths=())


def _process_raising(exc: Exception) -> type:
    class Unreadable:
        def __init__(self, pid: int) -> None:
            raise exc
    return Unreadable


@pytest.mark.parametrize("started", [None, 1234])
def test_a_creator_that_cannot_be_looked_at_is_not_an_orphan(monkeypatch: pytest.MonkeyPatch,
                                                              started: int | None) -> None:
    """A creator psutil may not look at (AccessDenied: another user's process under a /proc
    mounted with hidepid) is alive as far as removal goes: it was taken for dead, and
    `rmm-mp clean` (or any Machine.create) removed a live machine from under its processes.
    One that does not exist is an orphan."""
    monkeypatch.setattr(orphans, "creator_start_ms", lambda prefix: started)
    monkeypatch.setattr(process.psutil, "Process", _process_raising(psutil.AccessDenied(1)))
    assert not orphans.is_orphan(MACHINE)
    monkeypatch.setattr(process.psutil, "Process", _process_raising(psutil.NoSuchProcess(1)))
    assert orphans.is_orphan(MACHINE)


def test_a_creator_pid_reused_by_another_process_is_an_orphan(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pid is alive but names a process started at another time than the control block
    records: the creator has ended (its pid was reused), so the machine is an orphan; with the
    recorded start time it is not."""
    real_start = process.start_ms(1)
    assert real_start is not None
    monkeypatch.setattr(orphans, "creator_start_ms", lambda prefix: real_start + 5_000)
    assert orphans.is_orphan(MACHINE)
    monkeypatch.setattr(orphans, "creator_start_ms", lambda prefix: real_start)
    assert not orphans.is_orphan(MACHINE)
