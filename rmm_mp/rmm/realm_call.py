"""What an RSI or PSCI handler works with while a REC runs, and how it reaches realm memory.

A call from a running REC is handled on the CPU that runs it, holding the REC's running
reference and no lock. A handler may take the RD lock (measurements, SYSTEM_OFF), or walk the
realm's RTTs from root 0 hand over hand and keep the last-level table locked while it touches a
realm page (REALM_CONFIG, HOST_CALL), which keeps a concurrent DATA_DESTROY out; never both.

Handlers return either the values of X0, X1, ... (the REC continues after the SMC; unwritten
X1..X3 read 0 and X4 keeps its value, as TF-RMM's result record does) or an Exit: the REC exits to
the host with these RmiRecExit fields, its PC advanced past the SMC or not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rmm_mp.rmm import s2tt
from rmm_mp.rmm.s2tt import Kind
from rmm_mp.rmm.granule_state import GranuleState

if TYPE_CHECKING:
    from rmm_mp.guest.interpreter import GuestState
    from rmm_mp.hw.granule import Granule
    from rmm_mp.rmm.cpu import RmmCpu
    from rmm_mp.rmm.realm_desc import Rd
    from rmm_mp.rmm.rec_desc import Rec
    from rmm_mp.rmm.s2tt import S2Ctx

RAM, EMPTY, FAULT = "ram", "empty", "fault"


@dataclass(frozen=True, slots=True)
class Exit:
    """A REC exit decided by a handler: RmiRecExit fields, and whether the PC moves on."""

    fields: dict[str, Any]
    advance_pc: bool = True


@dataclass(slots=True)
class RealmCall:
    rmm: "RmmCpu"
    rec: "Rec"
    rd: "Rd"
    rd_pa: int
    state: "GuestState"
    ctx: "S2Ctx"
    enter_flags: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class RealmPage:
    """The result of a locked walk to a realm page; ``llt`` is locked when set."""

    kind: str
    level: int
    pa: int
    llt: "Granule | None"

    def release(self) -> None:
        if self.llt is not None:
            self.llt.unlock()
            self.llt = None


def lock_realm_page(call: RealmCall, ipa: int) -> RealmPage:
    """Walk to ``ipa``'s entry holding locks hand over hand; RAM pages come back with their PA
    and the last-level table still locked (the caller releases it), EMPTY and unmapped ones
    with the level where the walk stopped and nothing locked."""
    rmm, ctx = call.rmm, call.ctx
    root0 = rmm.granules.lock_known(rmm.granules.find(ctx.rtt_base), GranuleState.RTT)
    walk = s2tt.walk(rmm.granules, rmm.memory, ctx, root0, ipa, s2tt.PAGE_LEVEL)
    desc = s2tt.read(rmm.memory, walk.llt.idx, walk.index)
    kind, ripas = s2tt.decode(desc, walk.level)
    if kind == Kind.ASSIGNED and ripas == s2tt.RIPAS_RAM:
        pa = s2tt.output_address(desc, walk.level) + (ipa & (s2tt.block_size(walk.level) - 1) & ~0xFFF)
        return RealmPage(RAM, walk.level, pa, walk.llt)
    walk.llt.unlock()
    if ripas == s2tt.RIPAS_EMPTY and kind in (Kind.ASSIGNED, Kind.UNASSIGNED):
        return RealmPage(EMPTY, walk.level, 0, None)
    return RealmPage(FAULT, walk.level, 0, None)


def stage2_abort_exit(ipa: int, level: int) -> Exit:
    """The emulated data abort an RSI call reports when its buffer is not mapped (A4.4): the PC
    stays on the SMC, so the realm repeats the call once the host has mapped the page."""
    esr = (0x24 << 26) | (0x04 + level)
    # HPFAR from the address as the realm passed it: TF-RMM lets in-page offset bits of a
    # host-call structure leak into HPFAR[3:0], and hosts mask them (rsi-attest.md 1.4).
    return Exit({"exit_reason": 0, "esr": esr, "far": 0, "hpfar": ipa >> 8}, advance_pc=False)
