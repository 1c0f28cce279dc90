"""The interleaving explorer's catalog of pairs (stress.explore): named races of two RMI calls.

Each pair's setup builds its objects on a fresh machine through the RMI ABI only (SMCs on CPU 0
and NS writes of parameter pages, as a host would), with a Builder that hands out NS granules
from the bottom of DRAM, so the same setup gives the same addresses every time. It returns the
calls A (run on CPU 0) and B (CPU 1). The pairs are the races where a command could read or do
work before it takes its locks: a source copied early, a VMID reserved before the checks, aux
granules claimed before the checks, a table read before it is locked.

This module owns the pairs and the Builder. It must not write the machine's shared memory other
than through SMCs and Machine.ns_write.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rmm_mp.abi.rmi import RmiFid, RmiStatus
from rmm_mp.abi.rsi import RsiFid, RsiRipas
from rmm_mp.abi.structs import (
    REC_EXIT_OFFSET, RMI_REALM_PARAMS, RMI_REC_ENTER, RMI_REC_EXIT, RMI_REC_PARAMS, RmiRecCreateFlags,
    RmiRecExitReason, rec_index_to_mpidr,
)
from rmm_mp.guest.assembler import assemble
from rmm_mp.host.realm import NS_MAP_ATTRS, block_size, num_roots, start_level
from rmm_mp.machine import Machine
from rmm_mp.stress.explore import Pair, Prepared

F = RmiFid
G = 4096
L2 = block_size(2)
IPA_WIDTH = 40
UNPROTECTED = 1 << (IPA_WIDTH - 1)
VMID = 5


class SetupError(RuntimeError):
    """A pair's setup got an answer a correct RMM does not give (the pair cannot be explored)."""


@dataclass
class BuiltRealm:
    rd: int
    start_level: int
    tables: dict[tuple[int, int], int] = field(default_factory=dict)
    """(ipa of the table's range, level) -> the RTT's PA."""


class Builder:
    """Objects made through SMCs on CPU 0; NS granules handed out upwards from the bottom of DRAM."""

    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        self.smc = machine.cpu(0).smc
        self.next = machine.dram_base
        self.secure = [(base, base + size) for base, size in machine.secure_regions]

    @property
    def end(self) -> int:
        """Every granule handed out lies below this PA."""
        return self.next

    def granule(self) -> int:
        while True:
            pa, self.next = self.next, self.next + G
            if not any(lo <= pa < hi for lo, hi in self.secure):
                return pa

    def ns_page(self, data: bytes = b"") -> int:
        pa = self.granule()
        if data:
            self.machine.ns_write(pa, data)
        return pa

    def call(self, *regs: int) -> tuple[int, ...]:
        """An SMC that must succeed."""
        result = self.smc(*regs)
        if result[0] != RmiStatus.RMI_SUCCESS:
            raise SetupError(f"{F(regs[0]).name}({', '.join(hex(r) for r in regs[1:])}) -> X0 = {result[0]:#x}")
        return result

    def delegate(self, pa: int | None = None) -> int:
        pa = self.granule() if pa is None else pa
        self.call(F.RMI_GRANULE_DELEGATE, pa)
        return pa

    def realm_params(self, rtt_base: int, vmid: int = VMID) -> int:
        level = start_level(IPA_WIDTH)
        return self.ns_page(bytes(RMI_REALM_PARAMS.pack(
            s2sz=IPA_WIDTH, num_bps=1, num_wps=1, vmid=vmid, rtt_base=rtt_base, rtt_level_start=level,
            rtt_num_start=num_roots(IPA_WIDTH, level))))

    def roots(self) -> int:
        """Delegated root RTTs, aligned to their count; the first one's PA."""
        count = num_roots(IPA_WIDTH, start_level(IPA_WIDTH))
        self.next = -(-self.next // (count * G)) * (count * G)
        first = self.granule()
        self.delegate(first)
        for _ in range(count - 1):
            self.delegate()
        return first

    def realm(self, vmid: int = VMID) -> BuiltRealm:
        rd = self.delegate()
        self.call(F.RMI_REALM_CREATE, rd, self.realm_params(self.roots(), vmid))
        return BuiltRealm(rd, start_level(IPA_WIDTH))

    def tables(self, realm: BuiltRealm, ipa: int, level: int) -> int:
        """Create every missing RTT down to ``level`` for ``ipa``; the PA of the one at ``level``."""
        for lvl in range(realm.start_level + 1, level + 1):
            base = ipa & ~(block_size(lvl - 1) - 1)
            if (base, lvl) not in realm.tables:
                rtt = self.delegate()
                self.call(F.RMI_RTT_CREATE, realm.rd, rtt, base, lvl)
                realm.tables[(base, lvl)] = rtt
        return realm.tables[(ipa & ~(block_size(level - 1) - 1), level)]

    def data_unknown(self, realm: BuiltRealm, ipa: int) -> int:
        data = self.delegate()
        self.call(F.RMI_DATA_CREATE_UNKNOWN, realm.rd, data, ipa)
        return data

    def rec_params(self, index: int, aux: tuple[int, ...], pc: int = 0) -> int:
        return self.ns_page(bytes(RMI_REC_PARAMS.pack(
            flags=RmiRecCreateFlags.RUNNABLE, mpidr=rec_index_to_mpidr(index), pc=pc, num_aux=len(aux), aux=aux)))

    def aux_granules(self, realm: BuiltRealm) -> tuple[int, ...]:
        count = self.call(F.RMI_REC_AUX_COUNT, realm.rd)[1]
        return tuple(self.delegate() for _ in range(count))

    def rec(self, realm: BuiltRealm, index: int, pc: int = 0) -> int:
        aux = self.aux_granules(realm)
        rec = self.delegate()
        self.call(F.RMI_REC_CREATE, realm.rd, rec, self.rec_params(index, aux, pc))
        return rec

    def enter(self, rec: int) -> dict[str, int]:
        """REC_ENTER with a fresh run page; the RmiRecExit fields."""
        run = self.ns_page(bytes(RMI_REC_ENTER.pack(flags=0)))
        self.call(F.RMI_REC_ENTER, rec, run)
        return RMI_REC_EXIT.unpack(self.machine.ns_read(run + REC_EXIT_OFFSET, RMI_REC_EXIT.size))


def _prepared(b: Builder, a_call: tuple[int, ...], b_call: tuple[int, ...]) -> Prepared:
    return Prepared(tuple(int(r) for r in a_call), tuple(int(r) for r in b_call), b.end)


# -- the setups --------------------------------------------------------------------------------

def data_create_vs_delegate_src(machine: Machine) -> Prepared:
    """DATA_CREATE whose data granule is its own NS source page, against DELEGATE of that page:
    serially one of them fails (the page is NS, or no longer NS, when DATA_CREATE looks)."""
    b = Builder(machine)
    realm = b.realm()
    b.tables(realm, 0, 3)
    src = b.ns_page(b"source" * 600)
    return _prepared(b, (F.RMI_DATA_CREATE, realm.rd, src, 5 * G, src, 1), (F.RMI_GRANULE_DELEGATE, src))


def data_create_vs_undelegate_data(machine: Machine) -> Prepared:
    b = Builder(machine)
    realm = b.realm()
    b.tables(realm, 0, 3)
    src = b.ns_page(b"source" * 600)
    data = b.delegate()
    return _prepared(b, (F.RMI_DATA_CREATE, realm.rd, data, 5 * G, src, 1), (F.RMI_GRANULE_UNDELEGATE, data))


def _one_data_page(machine: Machine) -> tuple[Builder, BuiltRealm]:
    b = Builder(machine)
    realm = b.realm()
    b.tables(realm, 0, 3)
    b.data_unknown(realm, 5 * G)
    return b, realm


def data_destroy_vs_rtt_destroy(machine: Machine) -> Prepared:
    b, realm = _one_data_page(machine)
    return _prepared(b, (F.RMI_DATA_DESTROY, realm.rd, 5 * G), (F.RMI_RTT_DESTROY, realm.rd, 0, 3))


def data_destroy_vs_rtt_fold(machine: Machine) -> Prepared:
    b, realm = _one_data_page(machine)
    return _prepared(b, (F.RMI_DATA_DESTROY, realm.rd, 5 * G), (F.RMI_RTT_FOLD, realm.rd, 0, 3))


def rtt_create_vs_rtt_create(machine: Machine) -> Prepared:
    """Two RTT_CREATEs of the level-3 table of one range, with different granules: one wins."""
    b = Builder(machine)
    realm = b.realm()
    b.tables(realm, 0, 2)
    first, second = b.delegate(), b.delegate()
    return _prepared(b, (F.RMI_RTT_CREATE, realm.rd, first, 0, 3), (F.RMI_RTT_CREATE, realm.rd, second, 0, 3))


def rtt_destroy_vs_undelegate_table(machine: Machine) -> Prepared:
    b = Builder(machine)
    realm = b.realm()
    table = b.tables(realm, 0, 3)
    return _prepared(b, (F.RMI_RTT_DESTROY, realm.rd, 0, 3), (F.RMI_GRANULE_UNDELEGATE, table))


def map_vs_unmap_unprotected(machine: Machine) -> Prepared:
    """MAP and UNMAP of one unprotected page: serially UNMAP first fails, MAP first lets both succeed."""
    b = Builder(machine)
    realm = b.realm()
    b.tables(realm, UNPROTECTED, 3)
    ns = b.ns_page()
    ipa = UNPROTECTED + 5 * G
    return _prepared(b, (F.RMI_RTT_MAP_UNPROTECTED, realm.rd, ipa, 3, ns | NS_MAP_ATTRS),
                     (F.RMI_RTT_UNMAP_UNPROTECTED, realm.rd, ipa, 3))


def realm_create_vs_realm_create(machine: Machine) -> Prepared:
    """A REALM_CREATE bound to fail (its RD is not delegated) and a valid one, naming one VMID: the
    failing one has no footprint, so serially the valid one succeeds either way."""
    b = Builder(machine)
    bad_rd = b.ns_page()
    bad_params = b.realm_params(b.roots())
    rd = b.delegate()
    params = b.realm_params(b.roots())
    return _prepared(b, (F.RMI_REALM_CREATE, bad_rd, bad_params), (F.RMI_REALM_CREATE, rd, params))


def _failing_rec_create(machine: Machine) -> tuple[Builder, tuple[int, ...], tuple[int, ...]]:
    """A REC_CREATE bound to fail (it names REC index 5 of a realm with no REC) and its aux granules."""
    b = Builder(machine)
    realm = b.realm()
    aux = b.aux_granules(realm)
    rec = b.delegate()
    return b, (F.RMI_REC_CREATE, realm.rd, rec, b.rec_params(5, aux)), aux


def rec_create_vs_undelegate_aux(machine: Machine) -> Prepared:
    b, create, aux = _failing_rec_create(machine)
    return _prepared(b, create, (F.RMI_GRANULE_UNDELEGATE, aux[0]))


def rec_create_vs_delegate_aux(machine: Machine) -> Prepared:
    """The same failing REC_CREATE with its last aux granule still NS, against its DELEGATE."""
    b, create, aux = _failing_rec_create(machine)
    last = aux[-1]
    b.call(F.RMI_GRANULE_UNDELEGATE, last)
    return _prepared(b, create, (F.RMI_GRANULE_DELEGATE, last))


def _one_rec(machine: Machine) -> tuple[Builder, BuiltRealm, int]:
    b = Builder(machine)
    realm = b.realm()
    return b, realm, b.rec(realm, 0)


def rec_destroy_vs_rec_aux_count(machine: Machine) -> Prepared:
    b, realm, rec = _one_rec(machine)
    return _prepared(b, (F.RMI_REC_DESTROY, rec), (F.RMI_REC_AUX_COUNT, realm.rd))


def rec_destroy_vs_rec_create(machine: Machine) -> Prepared:
    b, realm, rec = _one_rec(machine)
    aux = b.aux_granules(realm)
    rec1 = b.delegate()
    return _prepared(b, (F.RMI_REC_DESTROY, rec), (F.RMI_REC_CREATE, realm.rd, rec1, b.rec_params(1, aux)))


def psci_complete_vs_psci_complete(machine: Machine) -> Prepared:
    """PSCI_COMPLETE of two RECs of one realm, each naming the other as the target (neither has a
    PSCI request pending, so both fail, but only after locking both RECs)."""
    b, realm, rec0 = _one_rec(machine)
    rec1 = b.rec(realm, 1)
    return _prepared(b, (F.RMI_PSCI_COMPLETE, rec0, rec1, 0), (F.RMI_PSCI_COMPLETE, rec1, rec0, 0))


RIPAS_BASE, RIPAS_TOP = L2, L2 + 16 * G
"""The range whose RIPAS the realm of set_ripas_vs_rtt_destroy asks to change, in a level-3 table of its own."""


def set_ripas_vs_rtt_destroy(machine: Machine) -> Prepared:
    """A realm's REC asks (RSI_IPA_STATE_SET) for RAM over part of an empty level-3 table; the
    host answers with RTT_SET_RIPAS while another CPU destroys that table. Built through the ABI:
    the guest image is a measured DATA page at IPA 0, and REC_ENTER runs it to its RIPAS exit."""
    b = Builder(machine)
    realm = b.realm()
    b.tables(realm, 0, 3)
    b.tables(realm, RIPAS_BASE, 3)
    image = assemble(f"""
        mov x1, #{RIPAS_BASE:#x}
        mov x2, #{RIPAS_TOP:#x}
        mov x3, #{int(RsiRipas.RSI_RAM)}
        mov x4, #0
        mov x0, ={int(RsiFid.RSI_IPA_STATE_SET):#x}
        smc #0
        b .
    """, 0)
    src = b.ns_page(image)
    b.call(F.RMI_DATA_CREATE, realm.rd, b.delegate(), 0, src, 0)
    rec = b.rec(realm, 0, pc=0)
    b.call(F.RMI_REALM_ACTIVATE, realm.rd)
    exit_fields = b.enter(rec)
    if exit_fields["exit_reason"] != RmiRecExitReason.RMI_EXIT_RIPAS_CHANGE:
        raise SetupError(f"the guest exited with reason {exit_fields['exit_reason']}, not a RIPAS change")
    return _prepared(b, (F.RMI_RTT_SET_RIPAS, realm.rd, rec, RIPAS_BASE, RIPAS_TOP),
                     (F.RMI_RTT_DESTROY, realm.rd, RIPAS_BASE, 3))


PAIRS: dict[str, Pair] = {p.name: p for p in (
    Pair("data-create-vs-delegate-src", "DATA_CREATE from its own NS source page vs DELEGATE of that page",
         data_create_vs_delegate_src),
    Pair("data-create-vs-undelegate-data", "DATA_CREATE vs UNDELEGATE of its data granule",
         data_create_vs_undelegate_data),
    Pair("data-destroy-vs-rtt-destroy", "DATA_DESTROY of the only page of a table vs RTT_DESTROY of the table",
         data_destroy_vs_rtt_destroy),
    Pair("data-destroy-vs-rtt-fold", "DATA_DESTROY of the only page of a table vs RTT_FOLD of the table",
         data_destroy_vs_rtt_fold),
    Pair("rtt-create-vs-rtt-create", "two RTT_CREATEs of one level-3 table with different granules",
         rtt_create_vs_rtt_create),
    Pair("rtt-destroy-vs-undelegate-table", "RTT_DESTROY vs UNDELEGATE of the table it destroys",
         rtt_destroy_vs_undelegate_table),
    Pair("map-vs-unmap-unprotected", "RTT_MAP_UNPROTECTED vs RTT_UNMAP_UNPROTECTED of one page",
         map_vs_unmap_unprotected),
    Pair("realm-create-vs-realm-create", "a REALM_CREATE bound to fail vs a valid one with the same VMID",
         realm_create_vs_realm_create),
    Pair("rec-create-vs-undelegate-aux", "a REC_CREATE bound to fail vs UNDELEGATE of one of its aux granules",
         rec_create_vs_undelegate_aux),
    Pair("rec-create-vs-delegate-aux", "a REC_CREATE bound to fail vs DELEGATE of one of its (NS) aux granules",
         rec_create_vs_delegate_aux),
    Pair("rec-destroy-vs-rec-aux-count", "REC_DESTROY vs REC_AUX_COUNT of its realm",
         rec_destroy_vs_rec_aux_count),
    Pair("rec-destroy-vs-rec-create", "REC_DESTROY vs REC_CREATE of another REC of the same realm",
         rec_destroy_vs_rec_create),
    Pair("set-ripas-vs-rtt-destroy", "RTT_SET_RIPAS of a REC's RIPAS request vs RTT_DESTROY of the table it covers",
         set_ripas_vs_rtt_destroy),
    Pair("psci-complete-vs-psci-complete", "PSCI_COMPLETE(REC 0, REC 1) vs PSCI_COMPLETE(REC 1, REC 0)",
         psci_complete_vs_psci_complete),
)}
