"""hw.orphans.is_orphan: which machines `rmm-mp clean` and Machine.create may remove; and how
the other liveness checks (hw.process) judge a process they cannot look at or whose start moved."""

from __future__ import annotations

import os
import subprocess
import sys

import psutil
import pytest

from rmm_mp import Machine
from rmm_mp.host import devices
from rmm_mp.hw import orphans, process
from rmm_mp.hw.cpuarea import binding_ended, binding_word
from rmm_mp.hw.granule import HOST_OWNER_FLAG
from rmm_mp.hw.memory import HostLockWaiter
from rmm_mp.hw.segment import MachineSegments, list_machines

MACHINE = MachineSegments(prefix="rmm-mp-1-feedface", creator_pid=1, paths=())


def _stat_raising(exc: Exception):  # type: ignore[no-untyped-def]
    def unreadable(pid: int) -> tuple[bytes, int]:
        raise exc
    return unreadable


def _ended_pid() -> int:
    """The pid of a process that has ended and been reaped (a child that exited at once)."""
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid


@pytest.mark.parametrize("started", [None, 1234])
def test_a_creator_that_cannot_be_looked_at_is_not_an_orphan(monkeypatch: pytest.MonkeyPatch,
                                                              started: int | None) -> None:
    """A creator whose /proc entry may not be read (another user's process under a /proc
    mounted with hidepid) is alive as far as removal goes: it was taken for dead, and
    `rmm-mp clean` (or any Machine.create) removed a live machine from under its processes.
    One that does not exist is an orphan."""
    monkeypatch.setattr(orphans, "creator_start_ms", lambda prefix: started)
    monkeypatch.setattr(process, "_stat", _stat_raising(PermissionError(13, "Permission denied")))
    assert not orphans.is_orphan(MACHINE)
    monkeypatch.setattr(process, "_stat", _stat_raising(FileNotFoundError(2, "No such file or directory")))
    assert orphans.is_orphan(MachineSegments(prefix=f"rmm-mp-{_ended_pid()}-feedface", creator_pid=_ended_pid(),
                                             paths=()))


def test_a_step_of_the_wall_clock_leaves_live_processes_alive(monkeypatch: pytest.MonkeyPatch) -> None:
    """The wall clock steps by a second (settimeofday, an NTP or chrony step, a VM resumed):
    the kernel's boot time, which it derives from the clock, moves with it, and with it every
    process's start time of day. Start times were times of day (psutil's create_time, which
    adds the boot time read afresh), so after the step this process's live machine was an
    orphan that any Machine.create unlinked, and its own CPU binding read as ended. Start times
    since boot do not move."""
    with Machine.create("host", cpus=1) as m:
        machine = next(s for s in list_machines() if s.prefix == m.name)
        word = binding_word(os.getpid(), process.own_start_ms())
        assert not orphans.is_orphan(machine) and not binding_ended(word)
        stepped = psutil.boot_time() + 1.0
        monkeypatch.setattr(psutil._pslinux, "boot_time", lambda: stepped)
        monkeypatch.setattr(psutil, "boot_time", lambda: stepped)
        assert not orphans.is_orphan(machine), "a clock step made a live machine an orphan"
        assert not binding_ended(word), "a clock step made a live CPU binding's process ended"
        assert process.alive(os.getpid(), process.own_start_ms())


def test_another_layouts_creator_start_is_not_compared(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine of another layout (an older rmm-mp's, whose creator start is a time of day)
    has no start time this rmm-mp can compare: the pid alone decides, so a live older machine
    is never taken for an orphan because its start is of another kind."""
    with Machine.create("host", cpus=1) as m:
        machine = next(s for s in list_machines() if s.prefix == m.name)
        assert orphans.creator_start_ms(m.name) == process.own_start_ms()
        monkeypatch.setattr(orphans, "LAYOUT_VERSION", orphans.LAYOUT_VERSION + 1)
        assert orphans.creator_start_ms(m.name) is None
        assert not orphans.is_orphan(machine)


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


def test_a_lock_holder_that_cannot_be_looked_at_is_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """A granule lock held by a host process, or a realm's output lock, whose holder's /proc
    entry may not be read (hidepid) is held by a live process as far as the waiter knows: the
    host's lock wait raised "whose process has ended" and the output lock was taken over from
    it. A holder with no /proc entry at all has ended."""
    waiter = HostLockWaiter.__new__(HostLockWaiter)    # the host-owner check reads no field
    word = binding_word(4242, 123_450)
    monkeypatch.setattr(process, "_stat", _stat_raising(PermissionError(13, "Permission denied")))
    assert waiter._holder_alive(HOST_OWNER_FLAG | 4242)
    assert not devices._holder_gone(word)
    monkeypatch.setattr(process, "_stat", _stat_raising(FileNotFoundError(2, "No such file or directory")))
    gone = _ended_pid()
    assert not waiter._holder_alive(HOST_OWNER_FLAG | gone)
    assert devices._holder_gone(binding_word(gone, 123_450))


def test_a_process_hidden_from_proc_has_not_ended(monkeypatch: pytest.MonkeyPatch) -> None:
    """A /proc mounted with hidepid=invisible (2) has no entry at all for another user's process:
    its stat file is not found, as a gone process's is. The kernel still knows it (signal 0), so
    it has not ended: its machine is no orphan, its CPU binding is not reclaimed and a lock wait
    goes on. It used to be taken for gone, though the docs say such a creator counts as running.
    A process the kernel does not know either has ended."""
    monkeypatch.setattr(process, "_stat", _stat_raising(FileNotFoundError(2, "No such file or directory")))
    me = os.getpid()
    assert not process.ended(me, lambda start_ms: False)
    assert not orphans.is_orphan(MachineSegments(prefix=f"rmm-mp-{me}-feedface", creator_pid=me, paths=()))
    assert not binding_ended(binding_word(me, 123_450))
    assert HostLockWaiter.__new__(HostLockWaiter)._holder_alive(HOST_OWNER_FLAG | me)
    assert process.ended(_ended_pid(), lambda start_ms: True)


def test_a_pid_beyond_pid_t_has_ended(monkeypatch: pytest.MonkeyPatch) -> None:
    """A segment file's name may carry any digits as its creator's pid (rmm-mp-4294967297-...):
    no process has a pid beyond pid_t's range, so it has ended and the machine is an orphan.
    The /proc read finds no entry, and the kernel must not be asked with signal 0, for which
    os.kill raised OverflowError: `rmm-mp clean` and every Machine.create (which removes
    orphans) crashed on such a file."""
    huge = 2**32 + 1
    assert process.ended(huge, lambda start_ms: True)
    assert process.ended(2**31, lambda start_ms: True)
    assert orphans.is_orphan(MachineSegments(prefix=f"rmm-mp-{huge}-feedface", creator_pid=huge, paths=()))
    assert not process.alive(huge)
