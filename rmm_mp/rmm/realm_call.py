"""What an RSI or PSCI handler works with while a REC runs, and how it reaches realm memory.

A call from a running REC is handled on the CPU that runs it, holding the REC's running
reference and no lock. A handler may take the RD lock (measurements, SYSTEM_OFF), or walk the
realm's RTTs from root 0 hand over hand and keep the last-level table locked while it touches a
realm page (REALM_CONFIG, HOST_CALL), which keeps a concurrent DATA_DESTROY out; never both.

One walk per host call. RSI_HOST_CALL reads its RsiHostCall under the locked walk (as TF-RMM's
realm_ipa_to_pa does), and the next REC_ENTER must write the host's results into the same
structure. That second access does not walk again while nothing can have changed the mapping:
rsi_host_call reads the realm's TLB generation (hw.tlb) before its walk, and the REC keeps it
with the PA. Every change that removes or changes a valid stage-2 mapping (DATA_DESTROY,
RTT_DESTROY, SET_RIPAS of a RAM page to EMPTY) bumps that generation after writing the entry,
and waits for every CPU executing the realm to sync before the page can be wiped or given away.
A generation read before the walk is therefore older than any such change the walk did not
see. At the completion, a CPU that is counted in as executing the realm (Tlb.enter) and still
reads the generation it kept knows that the mapping is what the walk found, and that no unmap
can finish before its next sync point, which comes after the copy: the guarantee the realm's
own stores through stage 2 have (an unfold keeps the PA and does not invalidate; a fold keeps
the PA too, but invalidates before it frees the folded table, so it moves the generation). If
the generation moved, the completion walks again, with locks, counted out. What the locks
protected is still protected: the call's read holds the last-level table as before, and the
completion's write is covered by the invalidation protocol instead of the lock.

Handlers return either the values of X0, X1, ... (the REC continues after the SMC; for an RSI
command every other register up to X16 reads 0, set_rsi_results; PSCI keeps SMCCC's rule) or an
Exit: the REC exits to the host with these RmiRecExit fields, its PC advanced past the SMC or not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rmm_mp.hw.granule import SUB_ROOT
from rmm_mp.rmm import s2tt
from rmm_mp.rmm.granule_state import GranuleState
from rmm_mp.rmm.s2tt import Kind

if TYPE_CHECKING:
    from rmm_mp.guest.interpreter import GuestState
    from rmm_mp.hw.granule import Granule
    from rmm_mp.rmm.cpu import RmmCpu
    from rmm_mp.rmm.realm_desc import Rd
    from rmm_mp.rmm.rec_desc import Rec
    from rmm_mp.rmm.s2tt import S2Ctx

RAM, EMPTY, FAULT = "ram", "empty", "fault"
_RTT = GranuleState.RTT
_PAGE_LEVEL, _DESC_TYPE_MASK = s2tt.PAGE_LEVEL, s2tt.DESC_TYPE_MASK
_SHIFTS = tuple(s2tt.level_shift(level) for level in range(s2tt.PAGE_LEVEL + 1))
_TABLE, _OA_MASK, _NS, _INDEX_MASK = s2tt.DESC_TABLE, s2tt.OA_MASK, s2tt.NS, s2tt.ENTRIES - 1
_RAM_TYPE = s2tt.RAM_DESC_TYPE

WHY_RD_ALONE = ("the realm's CPU holds no lock when the call starts (REC_ENTER released the REC); "
                "the RD alone, never with an RTT")
WHY_WALK = ("the realm's CPU holds no lock when the call starts (REC_ENTER released the REC); RTTs root "
            "to leaf (rule 5), never with the RD; not counted in as executing the realm while it waits, "
            "so an RMI command's TLB invalidation never waits for it")
"""The deadlock arguments of the realm calls' LOCK_SEQUENCES (docs/locking.md, "Realm calls")."""

RSI_RESULT_REGS = 17
"""X0..X16: the registers an RSI command's return defines (spec B1.2)."""
RSI_ZEROS = (0,) * RSI_RESULT_REGS


def set_rsi_results(x: list[int], out: tuple[int, ...]) -> None:
    """Write an RSI command's results into the realm's registers: X0 and the command's outputs,
    and 0 in every other register up to X16.

    Spec B1.2: on return from an RSI command, any of X0..X16 that is not an output MBZ. TF-RMM
    rel0 (and the shared digest rsi-attest.md 1.2) zero only X1..X3 and keep X4 and above, as
    SMCCC asks of an SMC that returns fewer results; the specification decides
    (docs/deviations.md). PSCI calls and SMCCC_VERSION are not RSI commands and keep SMCCC's
    rule (rsi_dispatch).
    """
    n = len(out)
    x[:n] = out
    x[n:RSI_RESULT_REGS] = RSI_ZEROS[n:]


@dataclass(slots=True)
class Exit:
    """A REC exit decided by a handler: RmiRecExit fields, and whether the PC moves on.

    (One per exit, so not frozen, which would cost more to make; realm_run adds the GIC fields
    to ``fields``, a dict the handler made for this exit.)
    """

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
        llt = self.llt
        if llt is not None:
            llt.table.unlock(llt.idx)   # Granule.unlock, one call fewer
            self.llt = None


def lock_realm_page(call: RealmCall, ipa: int) -> RealmPage:
    """Walk to ``ipa``'s entry holding locks hand over hand; RAM pages come back with their PA
    and the last-level table still locked (the caller releases it), EMPTY and unmapped ones
    with the level where the walk stopped and nothing locked.

    The walk is s2tt.walk from root 0 to the page level, the same locks in the same order with
    the same hints (locking rule 5: root 0, the root covering ipa, then each table, the child
    locked before its parent is released), written out here for this hot path (RSI_HOST_CALL
    walks once per call), in this function: a helper returning the table, level and entry cost a
    call and a tuple per walk. The arithmetic is arranged to work on one-digit ints where it can
    (granule indices, IPA bits shifted down before they are masked): a PA or IPA at or above
    2^30 is a multi-digit int on CPython, whose every operation costs several times a one-digit
    one's."""
    rmm, ctx = call.rmm, call.ctx
    granules = rmm.granules
    load = rmm.memory.view.load_u64  # type: ignore[union-attr]
    base_idx = granules.base >> 12
    level = ctx.start_level
    table = (ctx.rtt_base >> 12) - base_idx
    llt = granules.lock_known(table, _RTT, level | SUB_ROOT)
    shift = _SHIFTS[level]
    # (ipa & (2^ipa_width - 1)) >> shift, shifted first: ipa_width > shift (s2tt.start_level_consistent)
    sl_index = (ipa >> shift) & ((1 << (ctx.ipa_width - shift)) - 1)
    # Each parent is released by its index (``table``), not through its guard: one attribute
    # load fewer a level, and ``llt`` is simply the last guard lock_known returned.
    if sl_index >> s2tt.STRIDE:
        child = table + (sl_index >> s2tt.STRIDE)
        try:
            llt = granules.lock_known(child, _RTT, level | SUB_ROOT)
        except BaseException:
            granules.unlock(table)
            raise
        granules.unlock(table)
        table = child
    index = sl_index & _INDEX_MASK
    while True:
        desc = load((table << 12) + (index << 3))
        if level == _PAGE_LEVEL or desc & _DESC_TYPE_MASK != _TABLE:
            break
        child = ((desc & _OA_MASK) >> 12) - base_idx
        level += 1
        try:
            llt = granules.lock_known(child, _RTT, level)
        except BaseException:
            # Not an RTT (lock_known: an RMM bug, fatal): release the parent first, as s2tt.walk
            # does, so the post-mortem lock check and report do not find it held. (A try costs
            # nothing on CPython 3.11 while nothing is raised.)
            granules.unlock(table)
            raise
        granules.unlock(table)
        table = child
        index = (ipa >> _SHIFTS[level]) & _INDEX_MASK
    # llt: the last-level table (index ``table``), locked; level: its level; desc: ipa's entry in it.
    # A valid protected page or block is ASSIGNED, RIPAS RAM; anything else is decoded below
    # (EMPTY, or a fault: an invalid entry whose bits say HIPAS ASSIGNED, RIPAS RAM is one, as
    # no RMM command writes it and the hardware would not translate through it).
    if desc & _DESC_TYPE_MASK == _RAM_TYPE[level] and not desc & _NS:
        if level == _PAGE_LEVEL:    # a page: its output address is the PA (no block offset to add)
            return RealmPage(RAM, level, desc & _OA_MASK, llt)
        size = 1 << _SHIFTS[level]
        return RealmPage(RAM, level, (desc & _OA_MASK & ~(size - 1)) + (ipa & (size - 1) & ~0xFFF), llt)
    kind, ripas = s2tt.decode(desc, level)
    llt.unlock()
    if ripas == s2tt.RIPAS_EMPTY and kind in (Kind.ASSIGNED, Kind.UNASSIGNED):
        return RealmPage(EMPTY, level, 0, None)
    return RealmPage(FAULT, level, 0, None)


def stage2_abort_exit(ipa: int, level: int) -> Exit:
    """The emulated data abort an RSI call reports when its buffer is not mapped (A4.4): the PC
    stays on the SMC, so the realm repeats the call once the host has mapped the page."""
    esr = (0x24 << 26) | (0x04 + level)
    # exit.hpfar holds what HPFAR_EL2 would (A4.3.4): FIPA, IPA[51:12] at bits [43:4], with
    # RES0 bits [3:0]. TF-RMM rel0 (and rsi-attest.md 1.4) shift X1 as the realm passed it, so
    # the in-page offset of a host-call structure leaks into bits [3:0] (docs/deviations.md).
    return Exit({"exit_reason": 0, "esr": esr, "far": 0, "hpfar": (ipa >> 8) & ~0xF}, advance_pc=False)
