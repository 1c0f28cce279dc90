"""RMI_REC_CREATE, RMI_REC_DESTROY, RMI_REC_AUX_COUNT and RMI_REC_ENTER (DEN0137 1.0-rel0
B4.3.12, B4.3.13, B4.3.11, B4.3.14).

This module owns a REC's life as the host sees it: creation with its auxiliary granules,
destruction, and entry up to the point where the realm runs (rmm.realm_run owns the run itself).

Refcounts (granule_state): the RD's counts the realm's RECs; REC_CREATE adds one under the RD
lock, REC_DESTROY takes it away while still holding the REC, without the RD lock (atomically,
so a transiently high count is possible and harmless: REALM_DESTROY then refuses). A REC's refcount is
its running flag: REC_ENTER sets it under the REC lock, releases the lock, and owns the REC
through that reference until it drops it (atomically, without the lock) after the exit is
written. rec_count (the next REC index) only grows: indices are never reused.

Check order is TF-RMM rel0's with its later fixes, which fits the specification's partial
orders, except where the specification decides otherwise:
- REC_CREATE: the REC, the RD and the aux granules are locked together in address order and
  no aux granule changes state before every check has passed (rel0 claims each aux granule,
  DELEGATED -> REC_AUX, before it looks at the REC and the RD, and rolls them back on a later
  failure: a concurrent command naming one of them saw it REC_AUX for a moment). num_aux above
  16 is refused before the aux granules are looked at (TF-RMM bounds its array first), a
  num_aux below 16 only after the RD checks, so "num_aux" appears twice in FAILURE_CONDITIONS.
- REC_ENTER: the run page is locked with the REC in address order, each state checked as it is
  locked, and its enter half read under that lock (not NS, or outside the NS PAS: run_pas,
  INPUT before the run, ahead of every REC check that is not INPUT too, as B4.3.14.2.1 orders
  run_* before rec_state; TF-RMM reads it after taking the REC's reference). INJECT_SEA
  never fails the command: B4.3.14 has no such failure condition and B1.6 says a command with no
  failure condition true succeeds (rel0 returns RMI_ERROR_REC when the last exit was not a data
  abort at an unprotected IPA). EMUL_MMIO is ignored when INJECT_SEA is set (A4.2.3), and fails
  with RMI_ERROR_REC unless the last exit was an emulatable data abort (rec_mmio).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from rmm_mp.abi.rmi import FeatureRegister0 as FR0
from rmm_mp.abi.structs import (
    REC_EXIT_OFFSET, RMI_REC_ENTER_RAW, RMI_REC_EXIT_RAW, RMI_REC_MPIDR_SBZ, RMI_REC_PARAMS, RmiRecCreateFlags,
    RmiRecEnterFlags, mpidr_to_rec_index,
)
from rmm_mp.hw.faults import GranuleProtectionFault, RmmInternalError
from rmm_mp.hw.granule import GRANULE_SIZE
from rmm_mp.rmm import gic, realm_run
from rmm_mp.rmm.errors import RmiError
from rmm_mp.rmm.granule_state import GranuleState
from rmm_mp.rmm.measurement import rim_extend_rec
from rmm_mp.rmm.memo import BoundedMemo
from rmm_mp.rmm.nsbuf import read_ns, still_ns, unpack_held_ns
from rmm_mp.rmm.realm_desc import RIM_SLOT, RealmState, Rd
from rmm_mp.rmm.rec_desc import AUX_MAX, H_OWNER, H_PSCI, H_RUNNABLE, Rec

if TYPE_CHECKING:
    from rmm_mp.hw.granule import Granule
    from rmm_mp.rmm.cpu import RmmCpu

NS, DELEGATED, RD = GranuleState.NS, GranuleState.DELEGATED, GranuleState.RD
REC, REC_AUX = GranuleState.REC, GranuleState.REC_AUX
_NEW, _SYSTEM_OFF = RealmState.NEW, RealmState.SYSTEM_OFF
_RUNNABLE = int(RmiRecCreateFlags.RUNNABLE)
_EMUL_MMIO, _INJECT_SEA = int(RmiRecEnterFlags.EMUL_MMIO), int(RmiRecEnterFlags.INJECT_SEA)
_gic_valid: BoundedMemo[tuple[int, int, bytes], bool] = BoundedMemo(
    lambda key: gic.gic_state_valid(key[1], gic.LRS.unpack(key[2]), key[0]), 1024)
"""(num_lrs, hcr, lrs as their bytes: RMI_REC_ENTER_RAW) -> gic.gic_state_valid: a pure function,
and a host re-enters with the same GIC state entry after entry; a lookup costs about half of
checking the LRs again."""

ESR_EC_SHIFT = 26
ESR_EC_DATA_ABORT_LOWER = 0x24
ESR_ISV = 1 << 24

LOCK_SEQUENCES = {
    "RMI_REC_CREATE": ("the REC (DELEGATED), the RD and every aux granule (DELEGATED), all together in "
                       "ascending address order; the RD refcount raised under the RD lock; the aux granules "
                       "become REC_AUX and the REC becomes REC only once every check has passed",
                       "external granules only, taken in address order (rule 2)"),
    "RMI_REC_DESTROY": ("the REC; each aux granule in turn, in index order (scrub, DELEGATED); the RD refcount "
                        "drops (atomic, without the RD lock), then the REC becomes DELEGATED",
                        "external before internal (rules 1, 4); the RD is never locked"),
    "RMI_REC_AUX_COUNT": ("the RD", "one lock"),
    "RMI_REC_ENTER": ("the REC and the run page (NS) in ascending address order; the enter half read under the "
                      "run page's lock, which is then released; with the REC held, the realm state read without a "
                      "lock, the REC's runnable, PSCI, GIC and MMIO checks, then the refcount raised, lock released; "
                      "during the run, each realm call takes its own locks (see Realm calls), and completing a host "
                      "call may walk the RTTs as RSI_HOST_CALL does; the run page again (an NS copy) for the exit; the "
                      "refcount dropped without the lock",
                      "two externals in address order (rule 2); the run page is locked as an external granule, not by "
                      "an NS copy (rule 8); the exit's NS copy is made holding no other lock; no lock is held across "
                      "the run, so each realm call starts holding none"),
}
FAILURE_CONDITIONS = {
    "RMI_REC_CREATE": ("params_align", "params_bound", "params_pas", "num_aux", "aux_align", "aux_alias",
                       "aux_state", "rec_align", "rec_bound", "rec_state", "rd_align", "rd_bound", "rd_state",
                       "params_pas", "num_recs", "realm_state", "mpidr_index", "num_aux"),
    "RMI_REC_DESTROY": ("rec_align", "rec_bound", "rec_gran_state", "rec_state"),
    "RMI_REC_AUX_COUNT": ("rd_align", "rd_bound", "rd_state"),
    # REC_ENTER: lock_two refuses run_align / run_bound / rec_align / rec_bound, and locks the REC
    # and the run page in address order, checking each state as it is locked (rec_gran_state and
    # run_pas in that order: all INPUT, which B4.3.14.2.1 leaves unordered among themselves; TF-RMM
    # looks at the run page's state lock-free first, which gives the same answer); a page NS in
    # the granule table but outside the NS PAS fails run_pas once both are held.
    "RMI_REC_ENTER": ("run_align", "run_bound", "run_pas", "rec_align", "rec_bound", "rec_gran_state",
                      "run_pas", "rec_state", "realm_new", "system_off", "rec_runnable", "rec_psci", "rec_gicv3",
                      "rec_mmio"),
}


def _index(rmm: "RmmCpu", pa: int) -> int:
    """Granule index of a PA the RMM stored itself (a REC's RD or aux): not finding it is a bug."""
    granules = rmm.granules
    # granules.find(pa), written out: REC_ENTER asks for its RD's index on every entry.
    if pa & (GRANULE_SIZE - 1) or not granules.base <= pa < granules.end:
        raise RmmInternalError(f"CPU {rmm.cpu}: REC metadata names {pa:#x}, which is not a DRAM granule")
    return (pa - granules.base) >> 12


# -- REC_CREATE ---------------------------------------------------------------------------------

def _release_aux(rmm: "RmmCpu", indices: list[int]) -> None:
    """REC_AUX -> DELEGATED, one granule at a time, each zeroed first (REC_DESTROY: the REC's
    state must not outlive it in a granule the host can take back)."""
    for idx in indices:
        g = rmm.granules.lock_known(idx, REC_AUX)
        rmm.memory.zero(idx)
        g.unlock_transition(DELEGATED)


def _params_gone(rmm: "RmmCpu", params_ptr: int) -> RmiError | None:
    """params_pas again, once the REC and the RD are locked (nsbuf.still_ns: the page may have
    been delegated since the copy, even as this REC or one of its aux granules). TF-RMM rel0
    copies first too and never looks again (docs/deviations.md)."""
    return None if still_ns(rmm, params_ptr) else RmiError.input()


def _create_refusal(rmm: "RmmCpu", rd_g: "Granule", rd: Rd, mpidr: int, num_aux: int) -> RmiError | None:
    """num_recs, realm_state, mpidr_index, num_aux, checked with the RD locked."""
    if rd_g.refcount == (1 << FR0.field(rmm.features0, "MAX_RECS_ORDER")) - 1:
        return RmiError.realm()
    if rd.state != _NEW:
        return RmiError.realm()
    # RecIndex (B3.38) reads the affinity fields only: the SBZ bits (Aff0[7:4], [63:32]) are
    # no failure condition, so junk there is ignored (B1.6; TF-RMM rel0 refuses it).
    if mpidr_to_rec_index(mpidr) != rd.rec_count:
        return RmiError.input()
    if num_aux != rd.num_rec_aux:
        return RmiError.input()
    return None


def rmi_rec_create(rmm: "RmmCpu", rd_addr: int, rec_addr: int, params_ptr: int) -> None:
    """Create REC ``rec_addr`` (DELEGATED -> REC) with its aux granules in the NEW realm ``rd_addr``."""
    raw = read_ns(rmm, params_ptr, RMI_REC_PARAMS.size)
    if raw is None:
        raise RmiError.input()
    p = RMI_REC_PARAMS.unpack(raw)
    num_aux = p["num_aux"]
    if num_aux > AUX_MAX:
        raise RmiError.input()
    aux = p["aux"][:num_aux]
    # aux_align, aux_alias, aux_state, rec_*, rd_*: every granule locked together, in address
    # order (rule 2), and nothing changes state before every check has passed. (Claiming each
    # aux granule DELEGATED -> REC_AUX first, as TF-RMM rel0 does, made a command bound to fail
    # hold them for a moment: a concurrent UNDELEGATE, DATA_CREATE or REC_CREATE naming one
    # failed, which no serial order gives.) A duplicate or a wrong state fails lock_sorted.
    locked = rmm.granules.lock_sorted([(rec_addr, DELEGATED), (rd_addr, RD)] + [(a, DELEGATED) for a in aux])
    if locked is None:
        raise RmiError.input()
    rec_g, rd_g = locked[0], locked[1]
    rd = Rd(rmm.memory, rd_g.idx)
    refusal = _params_gone(rmm, params_ptr) or _create_refusal(rmm, rd_g, rd, p["mpidr"], num_aux)
    if refusal is not None:
        for g in locked:
            g.unlock()
        raise refusal
    params = rd.params()
    index = rd.rec_count
    runnable = bool(p["flags"] & _RUNNABLE)
    Rec(rmm.memory, rec_g.idx).initialise(rd_addr, index, p["mpidr"] & ~RMI_REC_MPIDR_SBZ, runnable, p["pc"],
                                          p["gprs"], aux, params.s2ctx(), params.hash_algo)
    if runnable:    # B4.3.12.4: only a runnable REC is measured
        rim = rim_extend_rec(params.hash_algo, rd.measurement(RIM_SLOT), p["flags"], p["pc"], p["gprs"])
        rd.set_measurement(RIM_SLOT, rim)
    rd_g.refcount_add(1)    # atomic even under the lock: REC_DESTROY drops it without the lock
    rd.set_rec_count(index + 1)
    for g in locked[2:]:
        g.unlock_transition(REC_AUX)
    rd_g.unlock()
    rec_g.unlock_transition(REC)


# -- REC_DESTROY, REC_AUX_COUNT -------------------------------------------------------------------

def rmi_rec_destroy(rmm: "RmmCpu", rec_addr: int) -> None:
    """Destroy a REC that is not running: aux granules and the REC become DELEGATED (zeroed)."""
    g = rmm.granules.find_lock(rec_addr, REC)
    if g is None:
        raise RmiError.input()
    if g.refcount != 0:
        g.unlock()
        raise RmiError.rec()
    rec = Rec(rmm.memory, g.idx)
    rd_idx = _index(rmm, rec.owner_rd)
    _release_aux(rmm, [_index(rmm, pa) for pa in rec.aux()])
    rmm.memory.zero(g.idx)
    # The RD's count drops while the REC is still locked, so no CPU can see the granule
    # DELEGATED (and undelegate it) while REALM_DESTROY still counts the REC: that order failed
    # REALM_DESTROY after the REC was visibly gone, which no serial order gives. TF-RMM rel0
    # drops it after the unlock. No RD lock: the REC's reference keeps the RD alive until here.
    rmm.granules.refcount_add(rd_idx, -1)
    g.unlock_transition(DELEGATED)


def rmi_rec_aux_count(rmm: "RmmCpu", rd_addr: int) -> tuple[int]:
    """Number of aux granules a REC of this realm needs (X1)."""
    g = rmm.granules.find_lock(rd_addr, RD)
    if g is None:
        raise RmiError.input()
    count = Rd(rmm.memory, g.idx).num_rec_aux
    g.unlock()
    return (count,)


# -- REC_ENTER ------------------------------------------------------------------------------------

def _emul_mmio_allowed(rec: Rec, flags: int) -> bool:
    """rec_mmio (A4.2.3): EMUL_MMIO needs the last exit to be an emulatable data abort (a data
    abort from the realm whose saved ESR has ISV set); it is ignored when INJECT_SEA is set."""
    if not flags & _EMUL_MMIO or flags & _INJECT_SEA:
        return True
    esr = rec.last_exit()[0]
    return (esr >> ESR_EC_SHIFT) & 0x3F == ESR_EC_DATA_ABORT_LOWER and bool(esr & ESR_ISV)


def _entry_refusal(rmm: "RmmCpu", rd: Rd, rec: Rec, enter: dict[str, Any],
                   head: tuple[int, ...] | None = None) -> RmiError | None:
    """realm_new, system_off, rec_runnable, rec_psci, rec_gicv3, rec_mmio. Checked with the REC
    locked, before the running reference is taken: a REC_ENTER bound to fail must never hold
    one, even for a moment. RMI_PSCI_COMPLETE counts a REC with a reference as on (it made a
    concurrent CPU_ON complete with ALREADY_ON and the target never start), and REC_DESTROY or
    another REC_ENTER of the REC fail rec_state while it is held (both commands then failed,
    which no serial order gives). TF-RMM rel0 takes the reference before all of these checks.
    The RD is kept alive by the REC; its state is an atomic load. ``head``: the REC's
    Rec.run_state(), read under its lock, when the caller has it (else the fields are read here)."""
    state = rd.state
    if state == _NEW:
        return RmiError.realm(0)
    if state == _SYSTEM_OFF:
        return RmiError.realm(1)
    if head is None:
        if not rec.runnable or rec.psci_pending:
            return RmiError.rec()
    elif not head[H_RUNNABLE] or head[H_PSCI]:
        return RmiError.rec()
    if not _gic_valid[(rmm.num_lrs, enter["gicv3_hcr"], enter["gicv3_lrs"])]:     # gic.gic_state_valid
        return RmiError.rec()
    flags = enter["flags"]
    if flags & _EMUL_MMIO and not _emul_mmio_allowed(rec, flags):     # no EMUL_MMIO: allowed, no call
        return RmiError.rec()
    return None


_KEPT_MAX = 1024
_View = TypeVar("_View", Rec, Rd)


def _kept(views: dict[int, _View], key: int, view: _View) -> _View:
    """Keep ``view`` in RmmCpu.recs (under its granule index) or .rds (under its PA, the REC's
    owner field) as ``key``: REC_ENTER looks its REC and RD up there (making a Rec or Rd costs
    about 1,800 instructions, a dict lookup a tenth of that); past _KEPT_MAX views the next miss
    starts afresh."""
    if len(views) >= _KEPT_MAX:
        views.clear()
    views[key] = view
    return view


def rmi_rec_enter(rmm: "RmmCpu", rec_addr: int, run_ptr: int) -> None:
    """Enter a REC; on SUCCESS the exit is in run_ptr + 0x800 (RmiRecExit)."""
    # The run page is locked with the REC, in address order (rule 2), and its enter half read
    # under that lock (nsbuf.unpack_held_ns): the entry uses the page as it is when the command
    # takes effect. A copy made before the REC's lock could be older than that: a host that
    # rewrote the page and then made the REC runnable (PSCI_COMPLETE) while this command ran
    # got an entry with the old contents, which no serial order gives.
    pair = rmm.granules.lock_two(rec_addr, REC, run_ptr, NS)
    if pair is None:        # run_align, run_bound, run_pas, rec_align, rec_bound, rec_gran_state
        raise RmiError.input()
    g, run_g = pair
    run_idx = run_g.idx     # the exit is written there (NsAccess.pack_values): no second find of run_ptr
    granules = rmm.granules     # the guards' unlock and refcount, through the table: one call each
    # Unpacked in place, gprs and gicv3_lrs as their bytes (copied, not read as ints): the dict
    # holds values, nothing that still reads the page once it is unlocked.
    enter = unpack_held_ns(rmm, run_g, RMI_REC_ENTER_RAW)
    granules.unlock(run_idx)
    if enter is None:       # run_pas: NS in the granule table, not in the NS PAS
        g.unlock()
        raise RmiError.input()
    if granules.refcount(g.idx) != 0:     # running on another CPU
        g.unlock()
        raise RmiError.rec()
    rec = rmm.recs.get(g.idx)
    if rec is None:
        rec = _kept(rmm.recs, g.idx, Rec(rmm.memory, g.idx))
    # The REC's words, read once under its lock for the checks and the run: only a command that
    # holds the lock and sees no running reference writes them (REC_DESTROY, PSCI_COMPLETE,
    # RTT_SET_RIPAS), so the run reads what it would read after the unlock.
    head = rec.run_state()
    rd = rmm.rds.get(head[H_OWNER])     # by PA: a hit needs no _index (a bad PA is never kept)
    if rd is None:
        rd = _kept(rmm.rds, head[H_OWNER], Rd(rmm.memory, _index(rmm, head[H_OWNER])))
    refusal = _entry_refusal(rmm, rd, rec, enter, head)
    if refusal is not None:
        g.unlock()
        raise refusal
    granules.refcount_add(g.idx, 1)
    granules.unlock(g.idx)
    try:
        fields = realm_run.run_rec(rmm, rec, rd, enter, head)
        # A4.3.3: the realm has run even if the exit cannot be delivered. The page's lock is
        # taken again (rule 8: no other lock is held), the run page found NS by lock_two above.
        try:
            rmm.ns.pack_values(run_idx, REC_EXIT_OFFSET, RMI_REC_EXIT_RAW, fields)
        except GranuleProtectionFault:
            raise RmiError.input() from None
    finally:
        granules.refcount_add(g.idx, -1)
