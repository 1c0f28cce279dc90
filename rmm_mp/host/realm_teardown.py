"""Tearing a realm down in either of KVM's orders (kvm-client.md section 1.4).

    "legacy"  (KVM v5..v9: mmu-notifier release first) stage 2, then RECs, then the realm:
              unmap the unprotected half; DATA_DESTROY + UNDELEGATE every data granule;
              RTT_DESTROY leaf first; REC_DESTROY + UNDELEGATE aux and REC; REALM_DESTROY
    "v12"     RECs first, then the same stage-2 teardown, then REALM_DESTROY

RMM 1.0 allows both: RTT_DESTROY only needs a non-live table, and REALM_DESTROY needs no RECs and
no live root entry, whatever the order in which they went.

The IPA space is walked with the ``top`` outputs of RTT_UNMAP_UNPROTECTED, DATA_DESTROY and
RTT_DESTROY, which name the next IPA worth visiting (skip_non_live), so holes cost one call per
table rather than one per granule. A walk that stops above level 3 at a live entry has met a
block: an ASSIGNED_NS block is unmapped at its own level; a protected block (left by RTT_FOLD)
is split with DELEGATE + RTT_CREATE one level down and the walk retried, as KVM does.

Every granule the RMM gives back (DATA, RTT, REC, aux, RD, roots) is undelegated and freed in
the allocator, and the VMID released, so the allocator's count drops by exactly what the realm
held. The NS pages the caller mapped with map_unprotected stay the caller's.

This module owns the teardown sequences. It speaks SMC only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rmm_mp.abi.rmi import RmiFid as F
from rmm_mp.host.realm import (
    ERROR_RTT, GRANULE, PAGE_LEVEL, SUCCESS, TEARDOWN_ORDERS, HostError, HostRealm, block_size, delegated_granule,
    index, release_granule, status,
)

if TYPE_CHECKING:
    from rmm_mp.host.nsalloc import NsAllocator
    from rmm_mp.machine import Cpu

UNDELEGATE = int(F.RMI_GRANULE_UNDELEGATE)
DATA_DESTROY = int(F.RMI_DATA_DESTROY)
RTT_CREATE = int(F.RMI_RTT_CREATE)
RTT_DESTROY = int(F.RMI_RTT_DESTROY)
UNMAP_UNPROTECTED = int(F.RMI_RTT_UNMAP_UNPROTECTED)
REC_DESTROY = int(F.RMI_REC_DESTROY)
REALM_DESTROY = int(F.RMI_REALM_DESTROY)


def destroy_realm(cpu: "Cpu", alloc: "NsAllocator", realm: HostRealm, order: str | None = None) -> None:
    """Tear ``realm`` down in ``order`` (default: the order its spec named).

    Raises:
        ValueError for an unknown order; HostError if the RMM refuses a step a correct RMM
        must allow (a REC still running is one: REC_DESTROY fails with ERROR_REC).
    """
    order = realm.teardown if order is None else order
    if order not in TEARDOWN_ORDERS:
        raise ValueError(f"destroy_realm(order={order!r}): expected one of {TEARDOWN_ORDERS}")
    if order == "v12":
        destroy_recs(cpu, alloc, realm)
    unmap_unprotected(cpu, alloc, realm)
    destroy_protected(cpu, alloc, realm)
    destroy_rtts(cpu, alloc, realm)
    if order == "legacy":
        destroy_recs(cpu, alloc, realm)
    _destroy_rd(cpu, alloc, realm)


def unmap_unprotected(cpu: "Cpu", alloc: "NsAllocator", realm: HostRealm) -> None:
    """RTT_UNMAP_UNPROTECTED over the unprotected half (KVM realm_unmap_shared_range), asking at
    level 3 and following ``top``; an entry still live where the walk stopped is a block, unmapped
    at its own level."""
    ipa, end = realm.par_size, realm.ipa_size
    while ipa < end:
        x0, top = cpu.smc(UNMAP_UNPROTECTED, realm.rd, ipa, PAGE_LEVEL)[:2]
        if status(x0) == ERROR_RTT and top == ipa and 1 <= index(x0) < PAGE_LEVEL:
            level = index(x0)
            x0, top = cpu.smc(UNMAP_UNPROTECTED, realm.rd, ipa, level)[:2]
            if x0 != SUCCESS:
                raise HostError(UNMAP_UNPROTECTED, (realm.rd, ipa, level), x0,
                                f"a level-3 walk stopped at a live level-{level} entry, an NS block")
        elif x0 != SUCCESS and status(x0) != ERROR_RTT:
            raise HostError(UNMAP_UNPROTECTED, (realm.rd, ipa, PAGE_LEVEL), x0, "the IPA is unprotected and aligned")
        if top <= ipa:
            raise HostError(UNMAP_UNPROTECTED, (realm.rd, ipa, PAGE_LEVEL), x0,
                            f"top ({top:#x}) lies past the IPA once nothing live is left there")
        ipa = top


def destroy_protected(cpu: "Cpu", alloc: "NsAllocator", realm: HostRealm) -> None:
    """DATA_DESTROY + UNDELEGATE every data granule of the protected half (KVM
    realm_unmap_private_range), following ``top`` over holes; a protected block is split."""
    ipa, end = 0, realm.par_size
    while ipa < end:
        x0, pa, top = cpu.smc(DATA_DESTROY, realm.rd, ipa)[:3]
        if x0 == SUCCESS:
            release_granule(cpu, alloc, pa)
        elif status(x0) == ERROR_RTT and top == ipa and index(x0) < PAGE_LEVEL:
            split_block(cpu, alloc, realm, ipa, index(x0))
            continue
        elif status(x0) != ERROR_RTT:
            raise HostError(DATA_DESTROY, (realm.rd, ipa), x0, "the IPA is protected and aligned")
        if top <= ipa:
            raise HostError(DATA_DESTROY, (realm.rd, ipa), x0,
                            f"top ({top:#x}) lies past the IPA once nothing live is left there")
        ipa = top


def split_block(cpu: "Cpu", alloc: "NsAllocator", realm: HostRealm, ipa: int, level: int) -> None:
    """Unfold the protected block at ``level`` covering ``ipa`` into a new level + 1 table."""
    rtt = delegated_granule(cpu, alloc)
    base = ipa & ~(block_size(level) - 1)
    x0 = cpu.smc(RTT_CREATE, realm.rd, rtt, base, level + 1)[0]
    if x0 != SUCCESS:
        release_granule(cpu, alloc, rtt)
        raise HostError(RTT_CREATE, (realm.rd, rtt, base, level + 1), x0,
                        f"DATA_DESTROY found a live level-{level} block there, which RTT_CREATE unfolds")


def destroy_rtts(cpu: "Cpu", alloc: "NsAllocator", realm: HostRealm) -> None:
    """RTT_DESTROY every table below the roots, leaf first (KVM kvm_realm_destroy_rtts)."""
    _destroy_level(cpu, alloc, realm, realm.start_level + 1, 0, realm.ipa_size)


def _destroy_level(cpu: "Cpu", alloc: "NsAllocator", realm: HostRealm, level: int, start: int, end: int) -> None:
    """Destroy the level-``level`` tables in [start, end) (KVM realm_tear_down_rtt_level): a live
    one (ERROR_RTT at ``level``, top unchanged) is emptied one level down, then destroyed."""
    size = block_size(level - 1)
    ipa = start
    retried = -1
    while ipa < end:
        x0, rtt, top = cpu.smc(RTT_DESTROY, realm.rd, ipa, level)[:3]
        if x0 == SUCCESS:
            release_granule(cpu, alloc, rtt)
        elif status(x0) == ERROR_RTT and top == ipa and index(x0) == level < PAGE_LEVEL and retried != ipa:
            _destroy_level(cpu, alloc, realm, level + 1, ipa, ipa + size)
            retried = ipa
            continue
        elif status(x0) != ERROR_RTT or top == ipa:
            raise HostError(RTT_DESTROY, (realm.rd, ipa, level), x0,
                            "after the data is gone a table is missing (top moves on) or emptied by destroying "
                            "its own tables")
        if top <= ipa:
            raise HostError(RTT_DESTROY, (realm.rd, ipa, level), x0, f"top ({top:#x}) lies past the IPA")
        ipa = top


def destroy_recs(cpu: "Cpu", alloc: "NsAllocator", realm: HostRealm) -> None:
    """REC_DESTROY, then UNDELEGATE the aux granules and the REC (KVM kvm_destroy_rec)."""
    for rec in realm.recs:
        x0 = cpu.smc(REC_DESTROY, rec.rec)[0]
        if x0 != SUCCESS:
            raise HostError(REC_DESTROY, (rec.rec,), x0, "the REC exists and no CPU is running it")
        for pa in rec.aux:
            release_granule(cpu, alloc, pa)
        release_granule(cpu, alloc, rec.rec)


def _destroy_rd(cpu: "Cpu", alloc: "NsAllocator", realm: HostRealm) -> None:
    """REALM_DESTROY, UNDELEGATE the RD, release the VMID, UNDELEGATE the roots (kvm_destroy_realm);
    the roots are freed unless the caller keeps them (HostRealm.roots_kept)."""
    x0 = cpu.smc(REALM_DESTROY, realm.rd)[0]
    if x0 != SUCCESS:
        raise HostError(REALM_DESTROY, (realm.rd,), x0, "the realm has no REC left and no live root entry")
    release_granule(cpu, alloc, realm.rd)
    alloc.free_vmid(realm.vmid)
    for i in range(realm.num_roots):
        x0 = cpu.smc(UNDELEGATE, realm.rtt_base + i * GRANULE)[0]
        if x0 != SUCCESS:
            raise HostError(UNDELEGATE, (realm.rtt_base + i * GRANULE,), x0, "REALM_DESTROY returned the roots")
    if not realm.roots_kept:
        alloc.free(realm.rtt_base, realm.num_roots)
