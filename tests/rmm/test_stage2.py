"""A running realm's stage-2 translation (rmm_mp/rmm/stage2.py), entry by entry.

Stage2Bus.translate has a fast path for valid protected pages and blocks and a general
classification for the rest; the realm-running tests reach both only through whole guests.
Here each case writes one entry into a real realm's RTTs and translates one page: what the
entry maps, or the fault reason and the level the walk stopped at.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from realm_guests import Guest
from rmi_helpers import Realm, Rmi
from rmm_mp import Machine
from rmm_mp.abi.rmi import RmiFid as F
from rmm_mp.abi.structs import REC_EXIT_OFFSET, RMI_REC_ENTER, RMI_REC_EXIT
from rmm_mp.guest.assembler import assemble
from rmm_mp.rmm import s2tt, stage2
from rmm_mp.rmm.realm_desc import OFF_TLB_GENERATION
from rmm_mp.rmm.rec_desc import Rec
from rmm_mp.rmm.stage2 import Stage2Bus, WalkFault

GRANULE = 4096
S2AP_READ, S2AP_WRITE = 1 << 6, 1 << 7
NORMAL_WB = 0b0110 << 2


@pytest.fixture
def machine() -> Iterator[Machine]:
    with Machine.create("host", cpus=1) as m:
        yield m


def _setup(machine: Machine) -> tuple[Rmi, Realm, Stage2Bus]:
    t = Rmi(machine, first_granule=64)
    realm = t.realm(s2sz=40)
    rmm = machine.cpu(0).rmm
    return t, realm, Stage2Bus(rmm, realm.ctx, rmm.tlb)


def _idx(machine: Machine, pa: int) -> int:
    return (pa - machine.dram_base) // GRANULE


def _fault(bus: Stage2Bus, page: int, write: bool = False, fetch: bool = False) -> tuple[str, int]:
    with pytest.raises(WalkFault) as info:
        bus.translate(page, write, fetch)
    return info.value.reason, info.value.level


@pytest.mark.parametrize("desc, reason", [
    (s2tt.UNASSIGNED_RAM, stage2.UNASSIGNED),
    (s2tt.UNASSIGNED_EMPTY, stage2.EMPTY),
    (s2tt.UNASSIGNED_DESTROYED, stage2.DESTROYED),
])
def test_a_walk_that_stops_above_level_3_faults_with_the_entrys_ripas(machine: Machine, desc: int,
                                                                      reason: str) -> None:
    """An invalid entry in a level-2 table (no level-3 table below): the fault names its RIPAS
    and level 2; the entry's bits are never taken for an output address."""
    t, realm, bus = _setup(machine)
    l2 = t.rtts(realm, 0, 2)[-1]
    s2tt.write(machine.memory, _idx(machine, l2), 1, desc)
    assert _fault(bus, 0x20_5000) == (reason, 2)


@pytest.mark.parametrize("desc, reason", [
    (s2tt.UNASSIGNED_RAM, stage2.UNASSIGNED),
    (s2tt.UNASSIGNED_EMPTY, stage2.EMPTY),
    (s2tt.UNASSIGNED_DESTROYED, stage2.DESTROYED),
    (s2tt.assigned(0x8100_0000, 3, s2tt.RIPAS_EMPTY), stage2.EMPTY),
    (s2tt.assigned(0x8100_0000, 3, s2tt.RIPAS_DESTROYED), stage2.DESTROYED),
    # Invalid entries whose bits would decode as ASSIGNED RAM: never RAM (A5.3.1: TTD.VALID is 1).
    (0x8100_0000 | s2tt.HIPAS_ASSIGNED | (s2tt.RIPAS_RAM << s2tt.RIPAS_SHIFT), stage2.UNASSIGNED),
    (0x8100_0000 | s2tt.PROTECTED_ATTRS | 0x1, stage2.UNASSIGNED),     # a block's type, reserved at level 3
    (0x8100_0000 | s2tt.PROTECTED_ATTRS | 0x2, stage2.UNASSIGNED),     # bit 0 clear: invalid
])
def test_a_protected_page_that_is_not_ram_faults(machine: Machine, desc: int, reason: str) -> None:
    """A level-3 entry that is UNASSIGNED (any RIPAS) or ASSIGNED with RIPAS EMPTY or DESTROYED: translating
    its page faults at level 3 with the reason its RIPAS gives."""
    t, realm, bus = _setup(machine)
    l3 = t.rtts(realm, 0, 3)[-1]
    s2tt.write(machine.memory, _idx(machine, l3), 5, desc)
    assert _fault(bus, 0x5000) == (reason, 3)


@pytest.mark.parametrize("desc", [
    0x8100_0000 | s2tt.HIPAS_ASSIGNED | (s2tt.RIPAS_RAM << s2tt.RIPAS_SHIFT),
    0x8100_0000 | s2tt.PROTECTED_ATTRS | 0x2,
], ids=["assigned-invalid-ram", "type-10"])
def test_an_invalid_entry_is_ram_for_neither_walk(machine: Machine, desc: int) -> None:
    """An invalid level-2 entry that s2tt.decode reads as ASSIGNED RAM (no RMM command writes
    one): the realm's translation faults as for an unmapped RAM page, and the RMM's locked walk
    (lock_realm_page, RSI_HOST_CALL's) reports a fault too, with nothing left locked."""
    from rmm_mp.rmm import realm_call
    t, realm, bus = _setup(machine)
    l2 = t.rtts(realm, 0, 2)[-1]
    s2tt.write(machine.memory, _idx(machine, l2), 1, desc)
    assert _fault(bus, 0x20_5000) == (stage2.UNASSIGNED, 2)
    rmm = machine.cpu(0).rmm
    call = SimpleNamespace(rmm=rmm, ctx=realm.ctx)
    page = realm_call.lock_realm_page(call, 0x20_5000)  # type: ignore[arg-type]
    assert (page.kind, page.level, page.llt) == (realm_call.FAULT, 2, None)
    assert not rmm.granules.held_by(rmm.granules.owner)


def test_protected_pages_and_blocks_translate_to_their_output_address(machine: Machine) -> None:
    """An ASSIGNED RAM page at level 3 and an ASSIGNED RAM block at level 2: a write to the page and a fetch
    inside the block translate to the output address (plus the offset in the block) as a DRAM offset."""
    t, realm, bus = _setup(machine)
    l3 = t.rtts(realm, 0, 3)[-1]
    l2 = realm.rtts[(0, 2)]
    page, block = machine.dram_base + 0x30_0000, machine.dram_base + 0x20_0000
    s2tt.write(machine.memory, _idx(machine, l3), 5, s2tt.assigned(page, 3, s2tt.RIPAS_RAM))
    s2tt.write(machine.memory, _idx(machine, l2), 1, s2tt.assigned(block, 2, s2tt.RIPAS_RAM))
    assert bus.translate(0x5000, True, False) == page - machine.dram_base
    assert bus.translate(0x20_7000, False, True) == block - machine.dram_base + 0x7000


def test_unprotected_mappings_translate_by_their_permissions_and_pas(machine: Machine) -> None:
    """The first DRAM granule, NS, mapped read/write at the first unprotected IPA translates to
    DRAM offset 0; a fetch, a write to a read-only page and a page in the Realm PAS do not."""
    t, realm, bus = _setup(machine)
    top = realm.unprotected
    l3 = t.rtts(realm, top, 3)[-1]
    delegated = t.delegate()
    entries = {0: s2tt.assigned_ns(machine.dram_base | NORMAL_WB | S2AP_READ | S2AP_WRITE, 3),
               1: s2tt.assigned_ns((machine.dram_base + GRANULE) | NORMAL_WB | S2AP_READ, 3),
               2: s2tt.assigned_ns(delegated | NORMAL_WB | S2AP_READ | S2AP_WRITE, 3)}
    for index, desc in entries.items():
        s2tt.write(machine.memory, _idx(machine, l3), index, desc)
    assert bus.translate(top, True, False) == 0
    assert bus.translate(top + GRANULE, False, False) == GRANULE
    assert _fault(bus, top, fetch=True) == (stage2.PERMISSION, 3)
    assert _fault(bus, top + GRANULE, write=True) == (stage2.PERMISSION, 3)
    assert _fault(bus, top + 2 * GRANULE) == (stage2.NS_GPF, 3)
    assert _fault(bus, top + 3 * GRANULE) == (stage2.UNMAPPED_NS, 3)
    assert _fault(bus, 1 << realm.s2sz) == (stage2.OUT_OF_RANGE, realm.start_level)


def test_invalidate_bumps_the_realms_generation_and_names_its_rd(machine: Machine) -> None:
    """stage2.invalidate is the TLBI of one realm: the RD's TLB generation moves by one, and the
    TLB waits for the CPUs executing that RD (named by its PA)."""
    t, realm, _ = _setup(machine)
    rmm = machine.cpu(0).rmm
    rd_idx = _idx(machine, realm.rd)
    calls: list[tuple[int, int]] = []

    class RecordingTlb:
        def invalidate_realm(self, rd_pa: int, generation_offset: int) -> None:
            calls.append((rd_pa, generation_offset))
            rmm.tlb.invalidate_realm(rd_pa, generation_offset)

    generation = rd_idx * GRANULE + OFF_TLB_GENERATION
    before = machine.memory.view.load_u64(generation)
    stage2.invalidate(SimpleNamespace(tlb=RecordingTlb(), memory=rmm.memory), rd_idx)  # type: ignore[arg-type]
    assert calls == [(realm.rd, generation)]
    assert machine.memory.view.load_u64(generation) == before + 1


def test_a_cpus_kept_bus_serves_only_its_own_stage_2(machine: Machine) -> None:
    """A CPU keeps one Stage2Bus per S2Ctx (RmmCpu.buses) across REC entries. Two live realms
    entered in turn on CPU 0 each run their own code; once both are destroyed, a realm made at
    one of their RD addresses with another IPA width runs through its own RTTs. A bus kept by RD
    (or one per CPU) walked the old realm's tables: the wrong code, or the RMM crashed."""
    program = "mov x0, ={}\ndone:\n    wfi\n    b done\n"
    a = Guest.build(machine, program.format(0x1111))
    b = Guest.build(machine, program.format(0x2222))
    for guest, value in ((a, 0x1111), (b, 0x2222), (a, 0x1111)):
        assert guest.enter()[0] == 0
        assert guest.gpr(0) == value
    old_rds = {a.realm.rd, b.realm.rd}
    a.destroy()
    b.destroy()
    c = Guest.build(machine, program.format(0x3333), ipa_width=36)
    assert c.realm.rd in old_rds, "the test needs the RD address used again"
    assert c.enter()[0] == 0
    assert c.gpr(0) == 0x3333
    c.destroy()


def test_a_rec_reentered_translates_nothing_again_until_its_stage_2_changes(machine: Machine,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A CPU keeps its translations from one REC entry to the next (hw/tlb.py), as a TLB keeps
    VMID-tagged entries across exits: a REC that loads from a data page and waits (WFI: an IRQ
    exit) translates its code and data pages at its first entry and nothing at the second.
    Then the host destroys the data page (DATA_DESTROY, the granule kept delegated: no GPT
    change), which bumps the realm's TLB generation while no CPU executes it: the third entry
    drops what it kept, and the load exits with a data abort at the DESTROYED IPA (a kept
    translation would have read the old page and taken the WFI again)."""
    data = 0x8001_0000
    calls: list[tuple[int, bool, bool]] = []
    translate = Stage2Bus.translate

    def counted(bus: Stage2Bus, page: int, write: bool, fetch: bool) -> int:
        calls.append((page, write, fetch))
        return translate(bus, page, write, fetch)
    monkeypatch.setattr(Stage2Bus, "translate", counted)
    with Guest.build(machine, "loop:\n    ldr x1, [x2]\n    wfi\n    b loop\n", gprs=(0, 0, data)) as g:
        pa = g.fault_in(data)
        for expected in ([(0x8000_0000, False, True), (data, False, False)], []):
            calls.clear()
            x0, ex = g.enter()
            assert (x0, ex["exit_reason"]) == (0, 1), ex
            assert calls == expected
        assert g.smc(F.RMI_DATA_DESTROY, g.realm.rd, data)[:2] == (0, pa)
        x0, ex = g.enter()
        assert (x0, ex["exit_reason"], ex["esr"] >> 26, ex["hpfar"]) == (0, 0, 0x24, (data >> 8) & ~0xF), ex
        assert g.smc(F.RMI_GRANULE_UNDELEGATE, pa)[0] == 0
        g.alloc.free(pa)



class _Reborn:
    """One set of delegated granules (RD, root RTTs, the RTTs down to a code page at CODE_IPA, a
    REC and its aux granules) that realms are made on, run once on CPU 0 and torn down again,
    every granule kept delegated: no GPT change from one realm to the next (the stage-2 epoch
    tests below)."""

    CODE_IPA = 0x8000_0000
    S2SZ, LEVEL = 40, 1          # two concatenated level-1 roots: a root entry maps 1 GiB

    def __init__(self, machine: Machine) -> None:
        self.m = machine
        self.t = t = Rmi(machine, first_granule=64)
        count = s2tt.num_root_rtts(self.S2SZ, self.LEVEL)
        first = t.ns_granules(count, align=count * GRANULE)
        self.roots = tuple(t.delegate(first + i * GRANULE) for i in range(count))
        self.rd, self.rec = t.delegate(), t.delegate()
        aux = tuple(t.delegate() for _ in range(16))
        self.rtts = {lvl: t.delegate() for lvl in range(self.LEVEL + 1, s2tt.PAGE_LEVEL + 1)}
        self.run = t.ns_page()
        self.rec_params = t.rec_params(0, True, self.CODE_IPA, (), aux)

    def build_and_run(self, code: int, program: str, maps: tuple[tuple[int, int, int], ...] = ()) -> dict:
        """Make a realm with ``program`` in DATA granule ``code`` at CODE_IPA and the unprotected
        mappings ``maps`` ((ipa, level, desc) each), enter its REC once; the exit."""
        t, rd, ipa = self.t, self.rd, self.CODE_IPA
        params = t.realm_params(self.S2SZ, rtt_base=self.roots[0], start_level=self.LEVEL, vmid=1)
        assert t.smc(F.RMI_REALM_CREATE, rd, params)[0] == 0
        for lvl, rtt in self.rtts.items():
            assert t.smc(F.RMI_RTT_CREATE, rd, rtt, ipa & ~(s2tt.block_size(lvl - 1) - 1), lvl)[0] == 0
        assert t.smc(F.RMI_DATA_CREATE, rd, code, ipa, t.ns_page(assemble(program, base=ipa)), 0)[0] == 0
        for map_ipa, level, desc in maps:
            assert t.smc(F.RMI_RTT_MAP_UNPROTECTED, rd, map_ipa, level, desc)[0] == 0
        assert t.smc(F.RMI_REC_CREATE, rd, self.rec, self.rec_params)[0] == 0
        assert t.smc(F.RMI_REALM_ACTIVATE, rd)[0] == 0
        self.m.ns_write(self.run, bytes(RMI_REC_ENTER.pack()))
        assert t.smc(F.RMI_REC_ENTER, self.rec, self.run)[0] == 0
        return RMI_REC_EXIT.unpack(self.m.ns_read(self.run + REC_EXIT_OFFSET, RMI_REC_EXIT.size))

    def gpr(self, n: int) -> int:
        return Rec(self.m.memory, _idx(self.m, self.rec)).gpr(n)

    def tear_down(self) -> None:
        """REC_DESTROY, DATA_DESTROY of the code page, RTT_DESTROY of the RTTs, REALM_DESTROY
        (whatever is mapped unprotected stays mapped: RTTs holding only ASSIGNED_NS entries
        are not live, A5.5)."""
        t, rd, ipa = self.t, self.rd, self.CODE_IPA
        assert t.smc(F.RMI_REC_DESTROY, self.rec)[0] == 0
        assert t.smc(F.RMI_DATA_DESTROY, rd, ipa)[0] == 0
        for lvl in sorted(self.rtts, reverse=True):
            assert t.smc(F.RMI_RTT_DESTROY, rd, ipa & ~(s2tt.block_size(lvl - 1) - 1), lvl)[0] == 0
        assert t.smc(F.RMI_REALM_DESTROY, rd)[0] == 0


def test_a_realm_made_again_on_the_same_granules_runs_its_own_code(machine: Machine) -> None:
    """REALM_DESTROY's stage-2 epoch, end to end (hw/tlb.py: a CPU keeps its translations across
    entries while the realm and both generations are unchanged). Realm A runs on CPU 0 with no
    invalidation before its run (TLB generation 0); the host tears it down keeping every granule
    delegated (no GPT change), makes realm B on the same RD, root RTTs, lower RTTs and REC
    granules (its generation starts again from 0), with other code in another DATA granule at the
    same IPA, and enters B's REC on CPU 0: B runs its own code (x1 = 0x222). Without the epoch
    the CPU kept A's fetch translation (same RD, generations 0 and unchanged) and ran the wiped
    code page A had left."""
    r = _Reborn(machine)
    program = "mov x1, #{:#x}\nloop:\n    wfi\n    b loop\n"
    codes = (r.t.delegate(), r.t.delegate())
    for code, value in zip(codes, (0x111, 0x222)):
        assert r.build_and_run(code, program.format(value))["exit_reason"] == 1
        assert r.gpr(1) == value
        r.tear_down()


def test_an_unprotected_root_mapping_left_at_realm_destroy_is_not_used_by_the_next_realm(
        machine: Machine) -> None:
    """REALM_DESTROY succeeds while a root RTT still holds an ASSIGNED_NS entry (an RTT with
    only ASSIGNED_NS entries is not live, A5.5; TF-RMM rel0 does the same, and invalidates
    nothing there): no unmap, so no TLB invalidation, ended that mapping. Realm A maps a 1 GiB
    NS block at the first unprotected IPA from a root entry and loads a word through it on CPU 0;
    realm B, made on the same granules with the same code in the same DATA granule but no
    unprotected mapping, makes the same load on CPU 0: it exits with an emulatable data abort
    (EC 0x24, ISV) at that IPA. Without the stage-2 epoch the CPU kept A's translation (same
    RD, generations unchanged) and B read A's NS page."""
    r = _Reborn(machine)
    block = s2tt.block_size(r.LEVEL)
    ns_page = r.t.ns_page((0x5A5A_0000_0000_0001).to_bytes(8, "little"))
    block_pa = ns_page & ~(block - 1)
    ipa = (1 << (r.S2SZ - 1)) + (ns_page - block_pa)
    program = f"mov x2, ={ipa:#x}\nldr x1, [x2]\nloop:\n    wfi\n    b loop\n"
    code = r.t.delegate()
    ex = r.build_and_run(code, program, ((1 << (r.S2SZ - 1), r.LEVEL, block_pa | NORMAL_WB | S2AP_READ),))
    assert (ex["exit_reason"], r.gpr(1)) == (1, 0x5A5A_0000_0000_0001)
    r.tear_down()
    ex = r.build_and_run(code, program)
    assert (ex["exit_reason"], ex["esr"] >> 26, bool(ex["esr"] & (1 << 24))) == (0, 0x24, True), ex
    assert ex["hpfar"] == (ipa >> 8) & ~0xF
    r.tear_down()
