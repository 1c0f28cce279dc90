"""The GIC virtual CPU interface a REC sees (DEN0137 A6.1; GICv3 ICH_HCR_EL2, ICH_LR<n>_EL2,
ICH_MISR_EL2): REC_ENTER's validity check of what the host programs, and the state reported at
REC exit. Realms get no virtual interrupts delivered by the model, so the interface holds what
the host programmed.
"""

from __future__ import annotations

import struct
from typing import Any

from rmm_mp.abi.structs import RMI_REC_EXIT

ICH_HCR_NS_MASK = 0x40FE
"""ICH_HCR_EL2 bits the host controls (A6.1): UIE, LRENPIE, NPIE, VGrp0EIE, VGrp0DIE, VGrp1EIE,
VGrp1DIE (bits 1..7) and TDIR (bit 14). REC_ENTER refuses any other bit set."""
_HCR_UIE, _HCR_NPIE, _HCR_VGRP0DIE, _HCR_VGRP1DIE = 1 << 1, 1 << 3, 1 << 5, 1 << 7
_MISR_EOI, _MISR_U, _MISR_NP, _MISR_VGRP0D, _MISR_VGRP1D = 1 << 0, 1 << 1, 1 << 3, 1 << 5, 1 << 7

LR_STATE_SHIFT = 62
LR_STATE_PENDING = 1
LR_HW = 1 << 61
LR_PRIORITY_SHIFT = 48
LR_PINTID_MASK = 0x1FFF << 32
LR_EOI = 1 << 41
LR_VINTID_MASK = 0xFFFF_FFFF

GIC_PRIORITY_BITS = 5
"""Virtual priority bits implemented (ICH_VTR_EL2.PRIbits + 1): the GICv3 minimum of 32 levels.
The unimplemented low-order bits of an LR's priority are RES0. (A platform fact the platform
files do not carry yet.)"""
GIC_PRIORITY_RES0 = (1 << (8 - GIC_PRIORITY_BITS)) - 1
GIC_MAX_VINTID = (1 << 16) - 1
"""16 virtual INTID bits (ICH_VTR_EL2.IDbits = 0); no extended INTID range (ICC_CTLR_EL1.ExtRange 0)."""
_MAX_SPI, _MIN_LPI = 1019, 8192
EXIT_LRS = RMI_REC_EXIT.fields["gicv3_lrs"].count
"""RmiRecExit's gicv3_lrs[16]: gic_exit_state gives all of them, the unimplemented ones 0."""
LRS = struct.Struct(f"<{EXIT_LRS}Q")
"""gicv3_lrs[16] as their bytes, as REC_ENTER carries them from RmiRecEnter to RmiRecExit
(structs.RMI_REC_ENTER_RAW): the checks unpack them once per GIC state, through run_rec's memos."""


def _vintid_valid(intid: int) -> bool:
    """SGI, PPI, SPI (0..1019) or LPI (8192..max); the extended PPI/SPI ranges are not implemented."""
    return intid <= _MAX_SPI or _MIN_LPI <= intid <= GIC_MAX_VINTID


def gic_state_valid(hcr: int, lrs: tuple[int, ...], num_lrs: int) -> bool:
    """Gicv3ConfigIsValid (B3.18, A6.1) over the implemented LRs 0..num_lrs (FR0.GICV3_NUM_LRS).

    The rules are TF-RMM rel0's gic_validate_state: no ICH_HCR_EL2 bit outside the host's set;
    for every LR not in the Invalid state: HW clear, no RES0 priority bit, no pINTID bit but EOI,
    a vINTID in an implemented range, and no two such LRs with the same vINTID.
    """
    if hcr & ~ICH_HCR_NS_MASK:
        return False
    seen: set[int] = set()
    for lr in lrs[:num_lrs + 1]:
        if lr >> LR_STATE_SHIFT == 0:
            continue
        intid = lr & LR_VINTID_MASK
        if (lr & LR_HW or (lr >> LR_PRIORITY_SHIFT) & GIC_PRIORITY_RES0 or lr & LR_PINTID_MASK & ~LR_EOI
                or not _vintid_valid(intid) or intid in seen):
            return False
        seen.add(intid)
    return True


def _misr(hcr: int, lrs: tuple[int, ...]) -> int:
    """ICH_MISR_EL2 for these LRs and HCR with EOIcount 0 and VMCR 0 (both virtual groups off)."""
    states = [lr >> LR_STATE_SHIFT for lr in lrs]
    misr = 0
    if any(s == 0 and not lr & LR_HW and lr & LR_EOI for s, lr in zip(states, lrs)):
        misr |= _MISR_EOI
    if hcr & _HCR_UIE and sum(1 for s in states if s) <= 1:
        misr |= _MISR_U
    if hcr & _HCR_NPIE and LR_STATE_PENDING not in states:
        misr |= _MISR_NP
    if hcr & _HCR_VGRP0DIE:     # virtual group 0 disabled (VMCR.VENG0 = 0)
        misr |= _MISR_VGRP0D
    if hcr & _HCR_VGRP1DIE:     # virtual group 1 disabled (VMCR.VENG1 = 0)
        misr |= _MISR_VGRP1D
    return misr


def gic_exit_state(hcr: int, lrs: tuple[int, ...], num_lrs: int) -> dict[str, Any]:
    """The gicv3_* exit fields when the interface holds what the entry programmed (A6.1):
    gicv3_lrs as the whole array of RmiRecExit, the LRs above num_lrs 0 (as the host reads
    them). The whole array, not the implemented LRs alone: the exit's layout packs its fields
    with one call only when every array has its full length (structs.Layout.pack_bytes), and
    REC_ENTER packs these on every exit."""
    implemented = tuple(lrs[:num_lrs + 1])
    host_bits = hcr & ICH_HCR_NS_MASK
    return {"gicv3_hcr": host_bits, "gicv3_lrs": implemented + (0,) * (EXIT_LRS - len(implemented)),
            "gicv3_misr": _misr(host_bits, implemented), "gicv3_vmcr": 0}


def gic_exit_state_raw(hcr: int, lrs: bytes, num_lrs: int) -> dict[str, Any]:
    """gic_exit_state of the LRs as their bytes (LRS), gicv3_lrs given back as bytes too: what
    RMI_REC_EXIT_RAW packs."""
    state = gic_exit_state(hcr, LRS.unpack(lrs), num_lrs)
    state["gicv3_lrs"] = LRS.pack(*state["gicv3_lrs"])
    return state
