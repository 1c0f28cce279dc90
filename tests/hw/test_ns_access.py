"""The host's NS memory access (Machine.ns_read / ns_write, hw.memory.NsAccess) beyond the
contract basics in test_machine_contract.py: where a GranuleProtectionFault says the access
failed, and what the host gets when a granule's lock is held by an RMM that crashed: an
error, not a hang (the lock is the model's: a real host access takes none).

The lock-holder tests would hang on a broken implementation; a SIGALRM guard (far longer than
the tests need) turns that hang into a failure. It bounds nothing the tests measure.
"""

from __future__ import annotations

import contextlib
import os
import signal
import struct
import threading
from types import FrameType
from typing import Iterator

import pytest

from rmm_mp import GranuleProtectionFault, Machine, RmmInternalError
from rmm_mp.abi.rmi import RmiFid
from rmm_mp.hw.faults import MachineError
from rmm_mp.hw.gpt import Pas
from rmm_mp.hw.granule import SPIN_TRIES, YIELD_TRIES, cpu_owner
from rmm_mp.rmm import dispatch
from rmm_mp.rmm.granule_state import GranuleState

HANG_GUARD_S = 120


@contextlib.contextmanager
def no_hang() -> Iterator[None]:
    """Fail (instead of hanging the session) if the block does not end within HANG_GUARD_S."""
    def expired(signum: int, frame: FrameType | None) -> None:
        raise AssertionError(f"still waiting after {HANG_GUARD_S} s: the host access hangs")
    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(HANG_GUARD_S)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _pa(machine: Machine, idx: int) -> int:
    return machine.dram_base + idx * machine.granule_size


# -- where the fault is ------------------------------------------------------------------------


def test_fault_names_the_first_byte_of_the_access() -> None:
    """An access that starts inside a Secure granule faults at its own first byte (not at the
    granule's base, which the access never touches); one that runs from NS into the Secure
    region faults at the region's first byte."""
    with Machine.create("host", cpus=1) as m:
        base, _ = m.secure_regions[0]
        for access in (lambda pa, n: m.ns_read(pa, n), lambda pa, n: m.ns_write(pa, bytes(n))):
            with pytest.raises(GranuleProtectionFault) as inside:
                access(base + 100, 8)
            assert inside.value.pa == base + 100
            with pytest.raises(GranuleProtectionFault) as across:
                access(base + 100, 2 * m.granule_size)
            assert across.value.pa == base + 100
            with pytest.raises(GranuleProtectionFault) as into:
                access(base - 16, 32)
            assert into.value.pa == base


@pytest.mark.parametrize("idx", [1, 5, 200])
def test_an_access_inside_one_realm_granule_faults_whatever_its_neighbours(idx: int) -> None:
    """The single-granule path checks the granule the access is in: a delegated granule among NS
    ones (at indices where a wrong shift would pick an NS granule instead) faults for a read and
    a write of a few bytes, and its neighbours stay accessible."""
    with Machine.create("host", cpus=1) as m:
        pa = _pa(m, idx)
        assert m.cpu(0).smc(RmiFid.RMI_GRANULE_DELEGATE, pa)[0] == 0
        for offset in (0, 100, m.granule_size - 8):
            with pytest.raises(GranuleProtectionFault):
                m.ns_read(pa + offset, 8)
            with pytest.raises(GranuleProtectionFault):
                m.ns_write(pa + offset, bytes(8))
        m.ns_write(pa - 8, b"neighbor")
        assert m.ns_read(pa - 8, 8) == b"neighbor"
        assert m.ns_read(pa + m.granule_size, 8) == bytes(8)
        assert m.cpu(0).smc(RmiFid.RMI_GRANULE_UNDELEGATE, pa)[0] == 0


@pytest.mark.parametrize("start, idx", [(0x800, 1), (0xFF8, 1), (0x1010, 2)])
def test_an_access_that_runs_into_a_realm_granule_faults(start: int, idx: int) -> None:
    """An access from an NS granule into the delegated granule ``idx`` faults at that granule's
    base and writes nothing, wherever in their granules it starts and ends (the single-granule
    path must not take a two-granule access for one)."""
    with Machine.create("host", cpus=1) as m:
        realm = _pa(m, idx)
        assert m.cpu(0).smc(RmiFid.RMI_GRANULE_DELEGATE, realm)[0] == 0
        pa = m.dram_base + start
        size = realm + 8 - pa
        with pytest.raises(GranuleProtectionFault) as read:
            m.ns_read(pa, size)
        with pytest.raises(GranuleProtectionFault) as write:
            m.ns_write(pa, b"x" * size)
        assert read.value.pa == write.value.pa == realm
        assert m.ns_read(pa, realm - pa) == bytes(realm - pa)
        assert m.cpu(0).smc(RmiFid.RMI_GRANULE_UNDELEGATE, realm)[0] == 0


@pytest.mark.parametrize("start, idx", [(0x800, 1), (0xFF8, 1), (0x1010, 2)])
def test_ns_unpack_reads_and_faults_as_ns_read(start: int, idx: int) -> None:
    """Machine.ns_unpack (the run loop's in-place read of an exit) gives what unpacking
    ns_read's bytes gives, inside one granule and across two, and faults where ns_read faults,
    holding no lock afterwards."""
    layout = struct.Struct("<Q4sH")
    with Machine.create("host", cpus=1) as m:
        for pa in (m.dram_base + start, m.dram_base + 0x1FFC):
            m.ns_write(pa, bytes(range(1, layout.size + 1)))
            assert m.ns_unpack(pa, layout) == layout.unpack(m.ns_read(pa, layout.size))
        realm = _pa(m, idx)
        assert m.cpu(0).smc(RmiFid.RMI_GRANULE_DELEGATE, realm)[0] == 0
        for pa in (realm + 16, realm - 8):
            with pytest.raises(GranuleProtectionFault) as unpacked:
                m.ns_unpack(pa, layout)
            with pytest.raises(GranuleProtectionFault) as read:
                m.ns_read(pa, layout.size)
            assert unpacked.value.pa == read.value.pa
        assert not m.granule_table(0).held_by(m._host_ns.table.owner)
        assert m.cpu(0).smc(RmiFid.RMI_GRANULE_UNDELEGATE, realm)[0] == 0


@pytest.mark.parametrize("idx", [1, 5])
def test_pack_values_writes_as_ns_write_and_faults_without_writing(idx: int) -> None:
    """NsAccess.pack_values (REC_ENTER's exit into the run page, by granule index) leaves the
    bytes ns_write of layout.pack_bytes leaves; in a delegated granule it faults at the
    structure's first byte, writes nothing and holds no lock afterwards."""
    from rmm_mp.abi.structs import REC_EXIT_OFFSET, RMI_REC_EXIT_RAW
    from rmm_mp.hw.memory import NsAccess
    values = RMI_REC_EXIT_RAW.unpack(bytes(range(256)) * 8)
    with Machine.create("host", cpus=1) as m:
        table = m.granule_table(cpu_owner(1))       # CPU 1's name in the lock words, as its RMM's
        ns = NsAccess(m.memory, table, m.gpt)
        pa = _pa(m, idx) + REC_EXIT_OFFSET
        ns.pack_values(idx, REC_EXIT_OFFSET, RMI_REC_EXIT_RAW, values)
        assert m.ns_read(pa, RMI_REC_EXIT_RAW.size) == RMI_REC_EXIT_RAW.pack_bytes(values)
        m.ns_write(pa, bytes(RMI_REC_EXIT_RAW.size))
        assert m.cpu(0).smc(RmiFid.RMI_GRANULE_DELEGATE, _pa(m, idx))[0] == 0
        with pytest.raises(GranuleProtectionFault) as fault:
            ns.pack_values(idx, REC_EXIT_OFFSET, RMI_REC_EXIT_RAW, values)
        assert fault.value.pa == pa
        assert not table.held_by(table.owner)
        assert m.memory.is_zero(idx)
        assert m.cpu(0).smc(RmiFid.RMI_GRANULE_UNDELEGATE, _pa(m, idx))[0] == 0


@pytest.mark.parametrize("offset", [-8, 0x808, 0x1000, 1 << 40])
def test_pack_values_refuses_a_structure_outside_its_granule(offset: int) -> None:
    """pack_values locks and checks one granule, so a structure that does not lie inside it (a
    negative offset, one past REC_EXIT_OFFSET for a 2 KiB RmiRecExit, one at the granule's end)
    is refused before anything is locked or written: packed anyway, it went into the neighbour
    without that granule's lock or PAS check, here a delegated granule (Realm PAS), which must
    never hold host bytes."""
    from rmm_mp.abi.structs import RMI_REC_EXIT_RAW
    from rmm_mp.hw.memory import NsAccess
    values = RMI_REC_EXIT_RAW.unpack(bytes(range(1, 256)) * 8 + bytes(8))
    with Machine.create("host", cpus=1) as m:
        table = m.granule_table(cpu_owner(1))
        ns = NsAccess(m.memory, table, m.gpt)
        for neighbour in (4, 6):
            assert m.cpu(0).smc(RmiFid.RMI_GRANULE_DELEGATE, _pa(m, neighbour))[0] == 0
        with pytest.raises(ValueError, match="granule"):
            ns.pack_values(5, offset, RMI_REC_EXIT_RAW, values)
        assert not table.held_by(table.owner)
        assert all(m.memory.is_zero(idx) for idx in (4, 5, 6))
        for neighbour in (4, 6):
            assert m.cpu(0).smc(RmiFid.RMI_GRANULE_UNDELEGATE, _pa(m, neighbour))[0] == 0


def test_pack_values_releases_the_lock_when_a_value_does_not_fit() -> None:
    """A value its field cannot hold raises LayoutError out of pack_values with the granule's
    lock released (packed under it, in a try whose finally unlocks)."""
    from rmm_mp.abi.structs import REC_EXIT_OFFSET, RMI_REC_EXIT_RAW, LayoutError
    from rmm_mp.hw.memory import NsAccess
    values = RMI_REC_EXIT_RAW.unpack(bytes(RMI_REC_EXIT_RAW.size))
    values["esr"] = 1 << 64
    with Machine.create("host", cpus=1) as m:
        table = m.granule_table(cpu_owner(1))
        ns = NsAccess(m.memory, table, m.gpt)
        with pytest.raises(LayoutError):
            ns.pack_values(5, REC_EXIT_OFFSET, RMI_REC_EXIT_RAW, values)
        assert not table.held_by(table.owner)
        m.ns_write(_pa(m, 5), b"unlocked")       # the host's copy does not wait for a lock left held


class _InterruptingGpt:
    """A GPT whose ``pas`` raises KeyboardInterrupt on its ``at``-th call: a Ctrl-C that arrives
    at the first point after a granule's lock where Python runs signal handlers (the call of
    gpt.pas is one), as it can on any copy."""

    def __init__(self, real: object, at: int) -> None:
        self.real = real
        self.at = at
        self.calls = 0

    def pas(self, idx: int) -> int:
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return self.real.pas(idx)       # type: ignore[attr-defined, no-any-return]


@pytest.mark.parametrize("at", [1, 2])
def test_an_interrupt_after_a_lock_leaves_no_lock_held(at: int) -> None:
    """A KeyboardInterrupt raised between a copy's lock and its copy (here in the PAS check of
    the first or second granule) reaches the caller with every lock the copy took released:
    one-granule read / unpack / write / pack_values, and a range over two granules. Before,
    the lock was taken outside the try that releases it, and stayed held for ever."""
    from rmm_mp.abi.structs import REC_EXIT_OFFSET, RMI_REC_EXIT_RAW
    from rmm_mp.hw.memory import NsAccess
    values = RMI_REC_EXIT_RAW.unpack(bytes(RMI_REC_EXIT_RAW.size))
    word = struct.Struct("<Q")
    with Machine.create("host", cpus=1) as m:
        table = m.granule_table(cpu_owner(1))
        pa = _pa(m, 5)
        copies = [("range read", lambda ns: ns.read(pa + 0xFF8, 16)),
                  ("range write", lambda ns: ns.write(pa + 0xFF8, bytes(16)))]
        if at == 1:
            copies += [("read", lambda ns: ns.read(pa, 8)), ("unpack", lambda ns: ns.unpack(pa, word)),
                       ("write", lambda ns: ns.write(pa, bytes(8))),
                       ("pack_values", lambda ns: ns.pack_values(5, REC_EXIT_OFFSET, RMI_REC_EXIT_RAW, values))]
        for name, copy in copies:
            ns = NsAccess(m.memory, table, _InterruptingGpt(m.gpt, at))      # type: ignore[arg-type]
            with pytest.raises(KeyboardInterrupt):
                copy(ns)
            assert not table.held_by(table.owner), name
        assert m.ns_read(pa, 8) == bytes(8)


class _InterruptingTable:
    """A granule table whose ``unlock`` raises KeyboardInterrupt right after its first release:
    a Ctrl-C at the release loop's backward jump, as the caller sees it. Every other call goes
    to the real table."""

    def __init__(self, real: object) -> None:
        self.real = real
        self.owner = real.owner         # type: ignore[attr-defined]
        self.released = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)

    def unlock(self, idx: int) -> None:
        self.real.unlock(idx)           # type: ignore[attr-defined]
        self.released += 1
        if self.released == 1:
            raise KeyboardInterrupt


class _NotNsAt:
    """A GPT that puts granule ``idx`` in the Realm PAS and leaves the rest to the real one."""

    def __init__(self, real: object, idx: int) -> None:
        self.real = real
        self.idx = idx

    def pas(self, idx: int) -> int:
        return int(Pas.REALM) if idx == self.idx else self.real.pas(idx)  # type: ignore[attr-defined, no-any-return]


@pytest.mark.parametrize("case", ["range read", "range write", "fault in the third granule"])
def test_an_interrupt_in_the_release_loop_leaves_no_lock_held(case: str) -> None:
    """A KeyboardInterrupt after the first of three releases (the loop that ends a range copy,
    or the one that undoes its locks when the third granule is not NS) reaches the caller with
    the other two locks released as well. Before, they stayed held for ever."""
    from rmm_mp.hw.memory import NsAccess
    with Machine.create("host", cpus=1) as m:
        table = m.granule_table(cpu_owner(1))
        pa = _pa(m, 5) + 0xFF8
        size = 2 * 4096 + 16                     # granules 5, 6 and 7
        gpt = _NotNsAt(m.gpt, 7) if case == "fault in the third granule" else m.gpt
        ns = NsAccess(m.memory, _InterruptingTable(table), gpt)  # type: ignore[arg-type]
        with pytest.raises(KeyboardInterrupt):
            if case == "range write":
                ns.write(pa, bytes(size))
            else:
                ns.read(pa, size)
        assert not table.held_by(table.owner)


def test_ns_access_is_the_host_copies_nsaccess_and_refused_once_closed() -> None:
    """Machine.ns_access gives the NsAccess ns_read / ns_write copy through (the run loop binds
    it once and copies through it on every step): a copy through it is one ns_read sees; on a
    closed machine it raises as ns_read does."""
    m = Machine.create("host", cpus=1)
    try:
        ns = m.ns_access()
        pa = _pa(m, 7) + 16
        ns.write(pa, b"through")
        assert m.ns_read(pa, 7) == b"through"
        assert ns.unpack(pa, struct.Struct("<7s")) == (b"through",)
    finally:
        m.close()
    with pytest.raises(MachineError, match="closed"):
        m.ns_access()
    with pytest.raises(MachineError, match="closed"):
        m.ns_read(pa, 7)


# -- a lock nobody will release ----------------------------------------------------------------


def _crash_holding(m: Machine, pa: int) -> None:
    """Crash the RMM on CPU 0 inside RMI_GRANULE_DELEGATE of ``pa`` after it has locked the
    granule (an injected handler bug), so the lock stays held by CPU 0."""
    def buggy(rmm, addr):  # type: ignore[no-untyped-def]
        assert rmm.granules.find_lock(addr, GranuleState.NS) is not None
        raise ValueError("injected RMM bug")
    original = dispatch.replace_handler(RmiFid.RMI_GRANULE_DELEGATE, buggy)
    try:
        with pytest.raises(RmmInternalError):
            m.cpu(0).smc(RmiFid.RMI_GRANULE_DELEGATE, pa)
    finally:
        assert original is not None
        dispatch.replace_handler(RmiFid.RMI_GRANULE_DELEGATE, original)
    assert m.dead
    assert m.granule_table(0).holder((pa - m.dram_base) // m.granule_size) == 1   # CPU 0's word


def test_access_to_a_granule_a_crashed_rmm_left_locked_raises() -> None:
    """After the RMM crashed holding granule G's lock, ns_read and ns_write of G raise
    RmmInternalError naming G's PA and the holder (and write nothing); granules it did not hold
    stay accessible."""
    with Machine.create("host", cpus=2) as m:
        pa = _pa(m, 60)
        m.ns_write(pa, b"\x5a" * 16)
        _crash_holding(m, pa)
        with no_hang():
            with pytest.raises(RmmInternalError, match=f"{pa:#x}.*locked by CPU 0.*crashed"):
                m.ns_read(pa, 8)
            with pytest.raises(RmmInternalError, match=f"{pa:#x}"):
                m.ns_write(pa, b"\x00" * 16)
        assert bytes(m.memory.read(pa, 16)) == b"\x5a" * 16
        assert m.ns_read(_pa(m, 61), 8) == bytes(8)


def test_abandoned_range_access_holds_no_lock() -> None:
    """A range access that gives up on its second granule (locked by the crashed RMM) releases
    the first granule's lock: a later access to the first granule alone works."""
    with Machine.create("host", cpus=2) as m:
        pa = _pa(m, 70)
        _crash_holding(m, pa)
        with no_hang():
            with pytest.raises(RmmInternalError):
                m.ns_read(pa - 8, 16)
        assert m.granule_table(0).holder(69) == 0
        assert m.ns_read(pa - 8, 8) == bytes(8)


class _CountingWaiter:
    """Counts the host table's failed tries, passing each on to the real waiter."""

    def __init__(self, real: object) -> None:
        self.real = real
        self.calls = 0

    def wait(self, table, idx, holder):  # type: ignore[no-untyped-def]
        self.calls += 1
        self.real.wait(table, idx, holder)  # type: ignore[attr-defined]


def test_a_new_wait_for_the_same_granule_starts_from_the_first_try() -> None:
    """A wait that ended with the lock acquired does not carry its tries into the next wait for
    the same granule: once the RMM has crashed, the next wait still gives a live holder the
    spinning and yielding phases before it raises (it raised at its first try, as if it had
    waited all along, and a lone sleep grew with every earlier wait)."""
    with Machine.create("host", cpus=2) as m:
        idx = 90
        pa = _pa(m, idx)
        table = m._host_ns.table
        counter = _CountingWaiter(table.waiter)
        table.waiter = counter
        cpu0 = m.cpu(0).granules             # bound to this process: a live holder
        errors: list[BaseException] = []

        def read() -> None:
            try:
                m.ns_read(pa, 8)
            except BaseException as exc:    # noqa: BLE001 - reported by the main thread
                errors.append(exc)

        with no_hang():
            cpu0.lock(idx)
            first = threading.Thread(target=read)
            first.start()
            while counter.calls <= SPIN_TRIES + YIELD_TRIES:   # a long first wait, past the yields
                os.sched_yield()
            cpu0.unlock(idx)
            first.join()
            assert errors == []

            cpu0.lock(idx)
            m.control.mark_dead("injected crash")
            counter.calls = 0
            second = threading.Thread(target=read)
            second.start()
            second.join()
        assert len(errors) == 1 and isinstance(errors[0], RmmInternalError)
        assert counter.calls == SPIN_TRIES + YIELD_TRIES + 1


def test_a_lock_held_by_a_cpu_no_process_is_bound_to_raises() -> None:
    """A granule whose lock word names CPU 1 while no process holds CPU 1's binding (its word
    is free: the process unbound or never bound): the holder cannot release it, so the host's
    wait ends in MachineError naming the PA and the holder, not a hang."""
    with Machine.create("host", cpus=2) as m:
        pa = _pa(m, 80)
        m.granule_table(cpu_owner(1)).lock(80)
        with no_hang():
            with pytest.raises(MachineError, match=f"{pa:#x}.*CPU 1.*process has ended"):
                m.ns_read(pa, 8)
