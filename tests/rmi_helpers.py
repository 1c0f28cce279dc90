"""Small, explicit helpers for RMI unit tests: they speak SMC only, one call at a time.

They are deliberately independent of rmm_mp.host (the KVM-like host under test elsewhere), so a
handler test does not depend on the host library being right.

    t = Rmi(machine)                      # CPU 0, granules handed out from the bottom of DRAM
    rd = t.realm(s2sz=40)                  # delegate RD + roots, REALM_CREATE -> Realm
    t.rtts(rd, ipa, 3)                     # create the missing RTTs down to level 3
    pa = t.delegate()                      # one DELEGATED granule
    ns = t.ns_page(b"...")                 # one NS granule holding bytes
"""

from __future__ import annotations

import dataclasses
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rmm_mp import Machine
from rmm_mp.abi.rmi import RmiFid
from rmm_mp.abi.structs import RMI_REALM_PARAMS, RMI_REC_PARAMS, Layout, RmiRecCreateFlags, rec_index_to_mpidr
from rmm_mp.hw.granule import GranuleTable
from rmm_mp.hw.memory import NsAccess, PhysicalMemory
from rmm_mp.hw.platform import Platform, Region
from rmm_mp.hw.platform import load as load_platform
from rmm_mp.rmm import nsbuf, s2tt
from rmm_mp.rmm.handlers import rmi_rec
from rmm_mp.rmm.realm_desc import Rd

if TYPE_CHECKING:
    from collections.abc import Callable

    import pytest

F = RmiFid
GRANULE = 4096
SUCCESS = 0
INPUT = 1
REALM_ERR = 2
REC_ERR = 3


def rtt_error(level: int) -> int:
    """X0 of (RMI_ERROR_RTT, level)."""
    return 4 | ((level & 0xFF) << 8)


@dataclass
class Realm:
    rd: int
    roots: tuple[int, ...]
    s2sz: int
    start_level: int
    hash_algo: int
    vmid: int
    rtts: dict[tuple[int, int], int] = field(default_factory=dict)
    recs: list[tuple[int, tuple[int, ...]]] = field(default_factory=list)

    @property
    def ctx(self) -> s2tt.S2Ctx:
        return s2tt.S2Ctx(self.s2sz, self.start_level, len(self.roots), self.roots[0])

    @property
    def unprotected(self) -> int:
        """The lowest unprotected IPA (the top IPA bit)."""
        return 1 << (self.s2sz - 1)


def dram_across_2_48() -> Platform:
    """The `host` platform with a 52-bit PA space and its 64 MiB of DRAM straddling 2^48 (Secure
    carve-out just below), LPA2 still absent: DRAM granules at or above 2^48 are delegable but no
    realm may use them (the *_bound2 failure conditions); the first 31 MiB serve as usual. The
    loader refuses such DRAM: make its machine with Machine.create(..., check_platform=False)."""
    host = load_platform("host")
    top = 1 << 48
    return dataclasses.replace(host, pa_bits=52, dram=Region(top - (32 << 20), 64 << 20),
                               secure=(Region(top - (1 << 20), 1 << 20),))


def start_level_for(s2sz: int) -> int:
    """The start level a KVM-like host picks: the deepest one that needs at most 16 roots."""
    for level in (0, 1, 2):
        if s2tt.start_level_consistent(s2sz, level, 48):
            return level
    raise ValueError(f"no start level for s2sz {s2sz}")


def delegate_after_the_copy(monkeypatch: "pytest.MonkeyPatch", handlers: object, other: "Rmi", page: int) -> None:
    """Make the next NS copy of the handler module ``handlers`` (its ``read_ns``) delegate
    ``page`` on ``other``'s CPU right after copying: the window between a handler's lock-free
    copy (locking rule 8) and its locks, forced. ``monkeypatch.undo()`` ends it."""
    copy = handlers.read_ns      # type: ignore[attr-defined]

    def copy_then_delegate(rmm, addr, size):  # type: ignore[no-untyped-def]
        content = copy(rmm, addr, size)
        assert other.smc(F.RMI_GRANULE_DELEGATE, page)[0] == SUCCESS
        return content

    monkeypatch.setattr(handlers, "read_ns", copy_then_delegate)


def before_the_first_lock(monkeypatch: "pytest.MonkeyPatch", rmi: Rmi, action: Callable[[], None]) -> None:
    """Run ``action`` once, just before ``rmi``'s CPU next locks a granule by its expected state
    (find_lock: lock_two, lock_sorted, DELEGATE ...; not an NS copy, which locks with lock()):
    the window between a handler's lock-free checks (and, in a handler that makes one, its
    lock-free NS copy) and its first granule lock, forced. Other CPUs' and the host's tables
    pass through. ``monkeypatch.undo()`` ends it."""
    find_lock = GranuleTable.find_lock
    table = rmi.cpu.granules
    pending = [action]

    def act_then_lock(self: GranuleTable, addr: int, expected_state: int):  # type: ignore[no-untyped-def]
        if self is table and pending:
            pending.pop()()
        return find_lock(self, addr, expected_state)

    monkeypatch.setattr(GranuleTable, "find_lock", act_then_lock)


def host_rewrites_after_each_read(monkeypatch: "pytest.MonkeyPatch", machine: Machine, page: int,
                                  versions: list[bytes]) -> list[int]:
    """A racing host CPU, made deterministic: right after each read the RMM makes of NS ``page``
    (an NS copy through NsAccess, or read_held_ns or unpack_held_ns under the page's lock), the
    page's first bytes
    become the next of ``versions`` (the last one stays). The store goes straight into DRAM,
    past the granule lock, as a real CPU's store would: hardware has no such lock. A handler
    that reads a field twice (validates one value, uses another) then sees two different
    values. Returns the list of the offsets of each read in the page, for counting them.
    ``monkeypatch.undo()`` ends it."""
    ns_read, memory_read, unpack_held = NsAccess.read, PhysicalMemory.read, nsbuf.unpack_held_ns
    reads: list[int] = []
    pending = list(versions)

    def overlaps(pa: int, size: int) -> bool:
        return pa < page + GRANULE and page < pa + size

    def after_read(pa: int) -> None:
        reads.append(pa - page)
        if pending:
            version = pending.pop(0)
            offset = page - machine.dram_base
            machine.memory.buf[offset:offset + len(version)] = version

    def ns_read_then_rewrite(self: NsAccess, pa: int, size: int) -> bytes:
        data = ns_read(self, pa, size)
        if overlaps(pa, size):
            after_read(pa)
        return data

    def memory_read_then_rewrite(self: PhysicalMemory, pa: int, size: int) -> bytes:
        data = memory_read(self, pa, size)
        if overlaps(pa, size):
            after_read(pa)
        return data

    def unpack_then_rewrite(rmm: Any, held: Any, layout: Layout) -> dict[str, Any] | None:
        values = unpack_held(rmm, held, layout)
        if held.addr == page:
            after_read(page)
        return values

    monkeypatch.setattr(NsAccess, "read", ns_read_then_rewrite)
    monkeypatch.setattr(PhysicalMemory, "read", memory_read_then_rewrite)
    for module in (nsbuf, rmi_rec):     # REC_ENTER calls it by the name it imported
        monkeypatch.setattr(module, "unpack_held_ns", unpack_then_rewrite)
    return reads


class Rmi:
    """SMC-level helpers bound to one CPU of a machine."""

    def __init__(self, machine: Machine, cpu: int = 0, first_granule: int = 0) -> None:
        self.m = machine
        self.cpu = machine.cpu(cpu)
        self.smc = self.cpu.smc
        self._next = machine.dram_base + first_granule * GRANULE
        secure = [(b, b + s) for b, s in machine.secure_regions]
        self._secure = secure
        self._vmid = 1

    def ns_granule(self) -> int:
        """A fresh NS granule (never handed out before)."""
        while True:
            pa = self._next
            self._next += GRANULE
            if not any(lo <= pa < hi for lo, hi in self._secure):
                return pa

    def ns_granules(self, count: int, align: int = GRANULE) -> int:
        """``count`` contiguous fresh NS granules starting at an ``align``-aligned PA."""
        self._next = (self._next + align - 1) // align * align
        first = self._next
        for _ in range(count):
            self.ns_granule()
        return first

    def ns_page(self, data: bytes = b"") -> int:
        pa = self.ns_granule()
        if data:
            self.m.ns_write(pa, data)
        return pa

    def delegate(self, pa: int | None = None) -> int:
        pa = self.ns_granule() if pa is None else pa
        x0 = self.smc(F.RMI_GRANULE_DELEGATE, pa)[0]
        assert x0 == SUCCESS, f"DELEGATE({pa:#x}) -> {x0:#x}"
        return pa

    def realm_params(self, s2sz: int = 40, hash_algo: int = 0, vmid: int | None = None,
                     rtt_base: int = 0, start_level: int | None = None, num_roots: int | None = None,
                     **extra: object) -> int:
        """An NS page holding RmiRealmParams (num_bps = num_wps = 1 unless given)."""
        level = start_level_for(s2sz) if start_level is None else start_level
        roots = s2tt.num_root_rtts(s2sz, level) if num_roots is None else num_roots
        if vmid is None:
            vmid, self._vmid = self._vmid, self._vmid + 1
        fields = dict(s2sz=s2sz, num_bps=1, num_wps=1, hash_algo=hash_algo, vmid=vmid, rtt_base=rtt_base,
                      rtt_level_start=level, rtt_num_start=roots)
        fields.update(extra)
        return self.ns_page(bytes(RMI_REALM_PARAMS.pack(**fields)))

    def realm(self, s2sz: int = 40, hash_algo: int = 0, activate: bool = False, start_level: int | None = None,
              **extra: object) -> Realm:
        """Delegate the RD and roots and create a realm (start level: the deepest valid one unless
        given, e.g. 2 for an s2sz 32..34 realm with concatenated level-2 roots)."""
        level = start_level_for(s2sz) if start_level is None else start_level
        count = s2tt.num_root_rtts(s2sz, level)
        first = self.ns_granules(count, align=count * GRANULE)
        roots = tuple(self.delegate(first + i * GRANULE) for i in range(count))
        rd = self.delegate()
        vmid = self._vmid
        params = self.realm_params(s2sz, hash_algo, rtt_base=roots[0], start_level=level, **extra)
        x0 = self.smc(F.RMI_REALM_CREATE, rd, params)[0]
        assert x0 == SUCCESS, f"REALM_CREATE -> {x0:#x}"
        realm = Realm(rd, roots, s2sz, level, hash_algo, vmid)
        if activate:
            assert self.smc(F.RMI_REALM_ACTIVATE, rd)[0] == SUCCESS
        return realm

    def rtts(self, realm: Realm, ipa: int, level: int) -> list[int]:
        """Create every missing RTT on the way to ``level`` for ``ipa``; returns the new RTT PAs."""
        made = []
        for lvl in range(realm.start_level + 1, level + 1):
            base = ipa & ~(s2tt.block_size(lvl - 1) - 1)
            if (base, lvl) in realm.rtts:
                continue
            rtt = self.delegate()
            x0 = self.smc(F.RMI_RTT_CREATE, realm.rd, rtt, base, lvl)[0]
            if x0 == rtt_error(lvl - 1):  # it exists already (made by another path)
                self.smc(F.RMI_GRANULE_UNDELEGATE, rtt)
                continue
            assert x0 == SUCCESS, f"RTT_CREATE(level {lvl}, ipa {base:#x}) -> {x0:#x}"
            realm.rtts[(base, lvl)] = rtt
            made.append(rtt)
        return made

    def data_posing_as_rd(self, realm: Realm, ipa: int, state: int) -> int:
        """A DATA granule of the NEW ``realm`` at ``ipa`` whose bytes, read as an RD, hold realm
        state ``state`` (the RD's state word is its first u64): for the failure-ordering tests
        [rd_bound, rd_state] < [realm_state], where only the granule's state tells it from an RD
        in that state. Returns its PA."""
        self.rtts(realm, ipa, 3)
        data = self.delegate()
        src = self.ns_page(struct.pack("<Q", state))
        assert self.smc(F.RMI_DATA_CREATE, realm.rd, data, ipa, src, 0)[0] == SUCCESS
        assert Rd(self.m.memory, (data - self.m.dram_base) // GRANULE).state == state
        return data

    def read_entry(self, realm: Realm, ipa: int, level: int = 3) -> tuple[int, int, int, int, int]:
        return self.smc(F.RMI_RTT_READ_ENTRY, realm.rd, ipa, level)

    def rec_params(self, index: int = 0, runnable: bool = True, pc: int = 0, gprs: tuple[int, ...] = (),
                   aux: tuple[int, ...] = (), num_aux: int | None = None, mpidr: int | None = None,
                   flags: int | None = None) -> int:
        fields = dict(flags=(RmiRecCreateFlags.RUNNABLE if runnable else 0) if flags is None else flags,
                      mpidr=rec_index_to_mpidr(index) if mpidr is None else mpidr,
                      pc=pc, gprs=gprs, num_aux=len(aux) if num_aux is None else num_aux, aux=aux)
        return self.ns_page(bytes(RMI_REC_PARAMS.pack(**fields)))

    def rec(self, realm: Realm, index: int | None = None, runnable: bool = True, pc: int = 0,
            gprs: tuple[int, ...] = ()) -> int:
        """Create a REC with 16 delegated aux granules; returns its PA."""
        index = len(realm.recs) if index is None else index
        aux = tuple(self.delegate() for _ in range(16))
        rec = self.delegate()
        params = self.rec_params(index, runnable, pc, gprs, aux)
        x0 = self.smc(F.RMI_REC_CREATE, realm.rd, rec, params)[0]
        assert x0 == SUCCESS, f"REC_CREATE -> {x0:#x}"
        realm.recs.append((rec, aux))
        return rec
