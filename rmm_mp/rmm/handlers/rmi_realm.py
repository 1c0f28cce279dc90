"""RMI_REALM_CREATE, RMI_REALM_ACTIVATE and RMI_REALM_DESTROY (DEN0137 B4.3.9, B4.3.8, B4.3.10).

Checks run in TF-RMM rel0's order (the spec fixes no order for these commands), with the
specification's rtt_align check that rel0 lacks, except that REALM_CREATE reserves its VMID
(vmid_valid) last, with every granule locked, and looks at the params page's PAS again there
(docs/deviations.md): all of these failures are RMI_ERROR_INPUT.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rmm_mp.abi.structs import RMI_REALM_PARAMS, RmiRealmFlags
from rmm_mp.abi.rmi import FeatureRegister0 as FR0
from rmm_mp.rmm import s2tt, vmid
from rmm_mp.rmm.errors import RmiError
from rmm_mp.rmm.granule_state import GranuleState
from rmm_mp.rmm.measurement import rim_init
from rmm_mp.rmm.nsbuf import read_ns, still_ns
from rmm_mp.rmm.realm_desc import NUM_REC_AUX, RIM_SLOT, RealmParams, RealmState, Rd

if TYPE_CHECKING:
    from rmm_mp.rmm.cpu import RmmCpu

DELEGATED, RD, RTT = GranuleState.DELEGATED, GranuleState.RD, GranuleState.RTT

LOCK_SEQUENCES = {
    "RMI_REALM_CREATE": ("the RD and every root RTT, all DELEGATED, in ascending address order",
                         "external granules only, taken in address order (rule 2)"),
    "RMI_REALM_ACTIVATE": ("the RD", "one lock"),
    "RMI_REALM_DESTROY": ("the RD; then each root RTT in turn (lock, read refcount, unlock); then each "
                          "root RTT again (zero, DELEGATED); the RD last becomes DELEGATED",
                          "external before internal (rule 1); one root at a time, RD -> RTT only"),
}
FAILURE_CONDITIONS = {
    "RMI_REALM_CREATE": ("params_align", "params_bound", "params_pas", "params_valid", "params_supp",
                         "rtt_num_level", "alias", "rtt_align", "rd_align", "rd_bound", "rd_state",
                         "rtt_state", "params_pas", "vmid_valid"),
    "RMI_REALM_ACTIVATE": ("rd_align", "rd_bound", "rd_state", "realm_state"),
    "RMI_REALM_DESTROY": ("rd_align", "rd_bound", "rd_state", "realm_live"),
}


def _params_supported(rmm: "RmmCpu", p: dict[str, int]) -> bool:
    """params_valid / params_supp / rtt_num_level, in TF-RMM's validate_realm_params order."""
    fr0 = rmm.features0
    flags = p["flags"]
    if flags & RmiRealmFlags.LPA2 and not FR0.field(fr0, "LPA2"):
        return False
    if not s2tt.MIN_IPA_BITS <= p["s2sz"] <= FR0.field(fr0, "S2SZ"):
        return False
    if not 0 < p["num_bps"] <= FR0.field(fr0, "NUM_BPS") or not 0 < p["num_wps"] <= FR0.field(fr0, "NUM_WPS"):
        return False
    if flags & RmiRealmFlags.SVE and (not FR0.field(fr0, "SVE_EN") or p["sve_vl"] > FR0.field(fr0, "SVE_VL")):
        return False
    # PMU: no FEAT_HPMN0 is modelled, so a PMU with zero counters is refused, as TF-RMM does.
    if flags & RmiRealmFlags.PMU and not 0 < p["pmu_num_ctrs"] <= FR0.field(fr0, "PMU_NUM_CTRS"):
        return False
    if not s2tt.start_level_consistent(p["s2sz"], p["rtt_level_start"], rmm.pa_bits):
        return False
    if s2tt.num_root_rtts(p["s2sz"], p["rtt_level_start"]) != p["rtt_num_start"]:
        return False
    return p["hash_algo"] in (0, 1) and bool(FR0.field(fr0, "HASH_SHA_256" if p["hash_algo"] == 0 else "HASH_SHA_512"))


def rmi_realm_create(rmm: "RmmCpu", rd_addr: int, params_ptr: int) -> None:
    """Create a realm: the RD at rd_addr (DELEGATED -> RD) and its root RTTs (DELEGATED -> RTT)."""
    raw = read_ns(rmm, params_ptr, RMI_REALM_PARAMS.size)
    if raw is None:
        raise RmiError.input()
    p = RMI_REALM_PARAMS.unpack(raw)
    if not _params_supported(rmm, p):
        raise RmiError.input()
    base, count = p["rtt_base"], p["rtt_num_start"]
    locked = None
    if not base <= rd_addr < base + count * 4096 and base % (count * 4096) == 0:
        locked = rmm.granules.lock_sorted([(rd_addr, DELEGATED)] + [(base + i * 4096, DELEGATED) for i in range(count)])
    # params_pas again, then vmid_valid, with every granule of the command locked (its moment):
    # - the params were copied before any lock (rule 8): nsbuf.still_ns (delegated since, even
    #   as this RD or a root, they fail params_pas);
    # - the VMID is reserved only now, by a command that cannot fail any more: reserved earlier
    #   (as TF-RMM rel0 does, in validate_realm_params), a command bound to fail on its RD or
    #   roots held it for a moment, and a concurrent valid REALM_CREATE naming it failed too.
    # Every failure here is RMI_ERROR_INPUT, as are the checks it moved past, so no outcome of
    # a single command changes (docs/deviations.md).
    if locked is not None and (not still_ns(rmm, params_ptr)
                               or not vmid.reserve(rmm.control, p["vmid"], rmm.vmid_bits)):
        for g in locked:
            g.unlock()
        locked = None
    if locked is None:
        raise RmiError.input()
    rd_g, roots = locked[0], locked[1:]
    params = RealmParams(p["s2sz"], p["rtt_level_start"], count, base, p["vmid"], p["hash_algo"], p["flags"],
                         p["sve_vl"], p["num_bps"], p["num_wps"], p["pmu_num_ctrs"])
    rd = Rd(rmm.memory, rd_g.idx)
    rd.initialise(params, p["rpv"], NUM_REC_AUX)
    _init_roots(rmm, params.s2ctx(), [g.idx for g in roots])
    rd.set_measurement(RIM_SLOT, rim_init(p["hash_algo"], p))
    rd_g.unlock_transition(RD)
    for root in roots:
        root.unlock_transition(RTT)


def _init_roots(rmm: "RmmCpu", ctx: s2tt.S2Ctx, roots: list[int]) -> None:
    """Root entries: UNASSIGNED EMPTY over the protected half, UNASSIGNED_NS over the rest, and
    0 past the IPA space (never reached: every IPA at or above 2^ipa_width is refused)."""
    size = s2tt.block_size(ctx.start_level)
    protected, total = ctx.par_size // size, ctx.ipa_size // size
    for n, idx in enumerate(roots):
        first = n * s2tt.ENTRIES
        empty = max(0, min(s2tt.ENTRIES, protected - first))
        ns = max(0, min(s2tt.ENTRIES, total - first) - empty)
        descs = [s2tt.UNASSIGNED_EMPTY] * empty + [s2tt.UNASSIGNED_NS] * ns
        s2tt.fill(rmm.memory, idx, descs + [0] * (s2tt.ENTRIES - len(descs)))


def rmi_realm_activate(rmm: "RmmCpu", rd_addr: int) -> None:
    """NEW -> ACTIVE; the RIM is final from here on."""
    g = rmm.granules.find_lock(rd_addr, RD)
    if g is None:
        raise RmiError.input()
    rd = Rd(rmm.memory, g.idx)
    if rd.state != RealmState.NEW:
        g.unlock()
        raise RmiError.realm()
    rd.set_state(RealmState.ACTIVE)
    g.unlock()


def rmi_realm_destroy(rmm: "RmmCpu", rd_addr: int) -> None:
    """Destroy a realm that has no RECs and whose root RTTs hold no live entry."""
    g = rmm.granules.find_lock(rd_addr, RD)
    if g is None:
        raise RmiError.input()
    if g.refcount != 0:
        g.unlock()
        raise RmiError.realm()
    rd = Rd(rmm.memory, g.idx)
    params = rd.params()
    first = rmm.granules.find(params.rtt_base)
    roots = range(first, first + params.rtt_num_start)
    live = 0
    for idx in roots:
        root = rmm.granules.lock_known(idx, RTT, s2tt.root_hint(params.s2ctx()))
        live += root.refcount
        root.unlock()
    if live:
        g.unlock()
        raise RmiError.realm()
    vmid.free(rmm.control, params.vmid)
    # Before the RD and the roots can be reused: a CPU keeps its cached translations across REC
    # entries while the realm's TLB generation stays put, and a realm made on these granules
    # would start that generation again from 0 (hw/tlb.py); a root may also still hold
    # ASSIGNED_NS entries (not live, A5.5), whose translations no unmap invalidated. TF-RMM
    # rel0 takes no step here: its TLB entries are tagged with the VMID, which it frees, taking
    # every mapping for removed with its TLBI (a root's ASSIGNED_NS entries were not).
    rmm.tlb.end_stage2()
    for idx in roots:
        root = rmm.granules.lock_known(idx, RTT, s2tt.root_hint(params.s2ctx()))
        rmm.memory.zero(idx)
        root.unlock_transition(DELEGATED)
    rmm.memory.zero(g.idx)
    g.unlock_transition(DELEGATED)
