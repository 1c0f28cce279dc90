"""What the interleaving explorer's pairs (stress.explore_pairs) build their setups with: the
Builder, which makes objects on a fresh machine through the RMI ABI only (SMCs on CPU 0 and NS
writes of parameter pages, as a host would) and hands out NS granules from the bottom of DRAM,
so that the same setup gives the same addresses every time; and the views (Prepared.watch) of
the end state a pair may add to its outcomes: a REC exit, a REC, a REM.

This module owns the Builder and the views. It must not write the machine's shared memory other
than through SMCs and Machine.ns_write; the views only read it, after a run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rmm_mp.abi.rmi import RmiFid, RmiStatus
from rmm_mp.abi.rsi import RsiFid, RsiRipas
from rmm_mp.abi.structs import (
    REC_EXIT_OFFSET, RMI_REALM_PARAMS, RMI_REC_ENTER, RMI_REC_EXIT, RMI_REC_PARAMS, RmiRecCreateFlags, RmiRecExitReason,
    rec_index_to_mpidr,
)
from rmm_mp.guest.assembler import assemble
from rmm_mp.host.realm import block_size, num_roots, start_level
from rmm_mp.machine import Machine
from rmm_mp.rmm.realm_desc import RIM_SLOT, Rd
from rmm_mp.rmm.rec_desc import Rec
from rmm_mp.stress.explore import Prepared, Watch

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
    pages: dict[int, int] = field(default_factory=dict)
    """ipa -> PA of each DATA page Builder.data made."""


class Builder:
    """Objects made through SMCs on CPU 0; NS granules handed out upwards from the bottom of DRAM."""

    def __init__(self, machine: Machine, *, runs_below: int = 0, aux_above: bool = False) -> None:
        """``runs_below``: granules handed out first, at the bottom of DRAM, for the first
        ``runs_below`` run pages (run_page), so that they lie below every REC the setup makes:
        REC_ENTER locks its run page with the REC in address order (GranuleTable.lock_two), so
        such a run page is locked before the REC, and a run page made after the REC after it.
        prepared() refuses a setup that left one of them unused.

        ``aux_above``: rec() delegates the REC's granule before its aux granules, so that they
        lie above it (by default they lie below: delegated first)."""
        self.machine = machine
        self.smc = machine.cpu(0).smc
        self.next = machine.dram_base
        self.secure = [(base, base + size) for base, size in machine.secure_regions]
        self.low_runs = [self.granule() for _ in range(runs_below)]
        self.aux: dict[int, tuple[int, ...]] = {}
        """REC PA -> the aux granules rec() gave it."""
        self.aux_above = aux_above
        """Whether rec() puts a REC's aux granules above it (the constructor's ``aux_above``)."""

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

    def delegated_block(self) -> list[int]:
        """512 delegated granules forming one 2 MiB-aligned block (for a table RTT_FOLD can fold
        into an ASSIGNED block: unknown_block). Taken first in a setup, it starts at the bottom
        of DRAM and wastes nothing (the DRAM handed out is part of every end state)."""
        self.next = -(-self.next // L2) * L2
        pages = [self.delegate() for _ in range(L2 // G)]
        if pages[-1] - pages[0] != L2 - G:
            raise SetupError(f"no 2 MiB of contiguous non-secure DRAM at {pages[0]:#x}")
        return pages

    def unknown_block(self, realm: BuiltRealm, ipa: int, pages: list[int]) -> None:
        """DATA_CREATE_UNKNOWN of ``pages`` (delegated_block) at the 512 pages of ``ipa``'s
        level-3 table, which must exist."""
        for i, pa in enumerate(pages):
            self.call(F.RMI_DATA_CREATE_UNKNOWN, realm.rd, pa, ipa + i * G)

    def rec_params(self, index: int, aux: tuple[int, ...], pc: int = 0, runnable: bool = True) -> int:
        flags = RmiRecCreateFlags.RUNNABLE if runnable else 0
        return self.ns_page(bytes(RMI_REC_PARAMS.pack(
            flags=flags, mpidr=rec_index_to_mpidr(index), pc=pc, num_aux=len(aux), aux=aux)))

    def aux_granules(self, realm: BuiltRealm) -> tuple[int, ...]:
        count = self.call(F.RMI_REC_AUX_COUNT, realm.rd)[1]
        return tuple(self.delegate() for _ in range(count))

    def rec(self, realm: BuiltRealm, index: int, pc: int = 0, runnable: bool = True) -> int:
        if self.aux_above:
            rec = self.delegate()
            aux = self.aux_granules(realm)
        else:
            aux = self.aux_granules(realm)
            rec = self.delegate()
        self.call(F.RMI_REC_CREATE, realm.rd, rec, self.rec_params(index, aux, pc, runnable))
        self.aux[rec] = aux
        return rec

    def data(self, realm: BuiltRealm, ipa: int, content: bytes = b"") -> int:
        """A measured DATA page at ``ipa`` (RIPAS RAM) holding ``content``; its PA."""
        data = self.delegate()
        self.call(F.RMI_DATA_CREATE, realm.rd, data, ipa, self.ns_page(content), 0)
        realm.pages[ipa] = data
        return data

    def run_page(self, gprs: tuple[int, ...] = (), flags: int = 0) -> int:
        """An RmiRecRun page for REC_ENTER (``flags``, the host's gprs); its exit reason reads
        NO_EXIT (0xff, no RmiRecExitReason) until an entry writes the exit. One of the granules
        reserved at the bottom of DRAM (``runs_below``) while any is left, else the next one."""
        run = self.low_runs.pop(0) if self.low_runs else self.granule()
        self.machine.ns_write(run, bytes(RMI_REC_ENTER.pack(flags=flags, gprs=gprs + (0,) * (31 - len(gprs)))))
        self.machine.ns_write(run + REC_EXIT_OFFSET, bytes([NO_EXIT]))
        return run

    def enter(self, rec: int) -> dict[str, int]:
        """REC_ENTER with a fresh run page; the RmiRecExit fields."""
        run = self.ns_page(bytes(RMI_REC_ENTER.pack(flags=0)))
        self.call(F.RMI_REC_ENTER, rec, run)
        return RMI_REC_EXIT.unpack(self.machine.ns_read(run + REC_EXIT_OFFSET, RMI_REC_EXIT.size))


NO_EXIT = 0xFF
"""The exit reason Builder.run_page leaves in a run page: no entry has written an exit there."""


def prepared(b: Builder, a_call: tuple[int, ...], b_call: tuple[int, ...], watch: tuple[Watch, ...] = ()) -> Prepared:
    if b.low_runs:
        # A reserved run page no call uses: the setup asked for more than it makes, and a pair
        # meant to put its run pages below the REC may not do so for the one it does use.
        raise SetupError(f"runs_below reserved run pages the setup never made: {', '.join(map(hex, b.low_runs))}")
    return Prepared(tuple(int(r) for r in a_call), tuple(int(r) for r in b_call), b.end, watch)


# -- views of the end state (Prepared.watch) ------------------------------------------------------

_EXIT_WORDS = ("esr", "far", "hpfar", "imm", "ripas_base", "ripas_top", "ripas_value")
"""RmiRecExit fields a view shows when they are not zero (besides the reason and the gprs):
what a host acts on after an exit. The GIC and timer state is the same in every exit here."""


def exit_text(fields: Mapping[str, Any]) -> str:
    """``HOST_CALL imm=0x11 gprs=(0xa0, 0xa1)``: an RmiRecExit as a view shows it."""
    reason = fields["exit_reason"]
    if reason == NO_EXIT:
        return "none"
    try:
        words = [RmiRecExitReason(reason).name.removeprefix("RMI_EXIT_")]
    except ValueError:
        words = [f"reason {reason:#x}"]
    words += [f"{name}={fields[name]:#x}" for name in _EXIT_WORDS if fields[name]]
    gprs = list(fields["gprs"])
    while gprs and gprs[-1] == 0:
        gprs.pop()
    if gprs:
        words.append(f"gprs=({', '.join(f'{g:#x}' for g in gprs)})")
    return " ".join(words)


def exit_view(who: str, run: int) -> Watch:
    """The RmiRecExit in run page ``run`` (``who`` names the call that entered with it)."""
    return (f"{who}'s exit", lambda m: exit_text(RMI_REC_EXIT.unpack(m.ns_read(run + REC_EXIT_OFFSET,
                                                                                RMI_REC_EXIT.size))))


def rem_view(realm: BuiltRealm, index: int = 1) -> Watch:
    """REM ``index`` of the realm (its first 8 bytes, the rest is in the end state's digest)."""
    def read(m: Machine) -> str:
        value = Rd(m.memory, (realm.rd - m.dram_base) >> 12).measurement(index)
        return value[:8].hex() if any(value) else "zero"
    return (f"REM{index}", read)


def rec_view(name: str, rec: int) -> Watch:
    """A REC's saved X0..X2 and PC, whether it is runnable and what it has pending (PSCI, host call)."""
    def read(m: Machine) -> str:
        r = Rec(m.memory, (rec - m.dram_base) >> 12)
        return (f"x0={r.gpr(0):#x} x1={r.gpr(1):#x} x2={r.gpr(2):#x} pc={r.pc:#x} runnable={int(r.runnable)} "
                f"psci={r.psci_pending:#x} "
                f"host_call={int(r.host_call_pending)}")
    return (name, read)


def rim_view(realm: BuiltRealm) -> Watch:
    """The realm's RIM (its first 8 bytes): it tells the order of the extensions two commands made."""
    def read(m: Machine) -> str:
        return Rd(m.memory, (realm.rd - m.dram_base) >> 12).measurement(RIM_SLOT)[:8].hex()
    return ("RIM", read)


RIPAS_BASE, RIPAS_TOP = L2, L2 + 16 * G
"""The range whose RIPAS the realm of ripas_request asks to change, in a level-3 table of its own."""


def ripas_request(b: Builder, ripas: RsiRipas = RsiRipas.RSI_RAM,
                   pages: tuple[int, ...] = ()) -> tuple[BuiltRealm, int]:
    """A realm whose REC 0 has exited asking for ``ripas`` over [RIPAS_BASE, RIPAS_TOP) (its
    guest loops after the request), with measured DATA ``pages`` (IPAs) in that range; the REC."""
    realm = b.realm()
    b.tables(realm, 0, 3)
    b.tables(realm, RIPAS_BASE, 3)
    for ipa in pages:
        b.data(realm, ipa)
    image = assemble(f"""
        mov x1, #{RIPAS_BASE:#x}
        mov x2, #{RIPAS_TOP:#x}
        mov x3, #{int(ripas)}
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
    return realm, rec
