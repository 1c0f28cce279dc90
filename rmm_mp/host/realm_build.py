"""Building a realm the way Linux KVM does on RMM 1.0 (kvm-client.md section 1.2).

    create_realm   VMID; DELEGATE RD; DELEGATE the root RTTs (contiguous, aligned to their
                   number; allocated, or a run the caller keeps); REALM_CREATE; REC_AUX_COUNT;
                   RTT_INIT_RIPAS over the RAM; DATA_CREATE per image granule; per REC:
                   DELEGATE REC + aux, REC_CREATE; REALM_ACTIVATE

The order is KVM's (kvmtool's CREATE_REALM, INIT_RIPAS, POPULATE, vCPU finalize, ACTIVATE),
and it decides the RIM: REALM_CREATE, each INIT_RIPAS entry, each measured DATA_CREATE and the
runnable REC 0 extend it in that order. RTTs are created lazily, only when a call reports the
level at which its walk stopped: INIT_RIPAS builds tables down to find_map_level (level 2 for
2 MiB aligned RAM, with RIPAS RAM on block entries), DATA_CREATE down to level 3. RAM outside
the image is left unassigned (RIPAS RAM) for fault_in at run time.

If anything fails after REALM_CREATE, the partial realm is torn down (destroy_realm) before the
error propagates, as KVM rolls back a failed creation; the granules go back to the allocator.

This module owns the build sequence. It speaks SMC only.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from rmm_mp.abi.rmi import FeatureRegister0 as FR0
from rmm_mp.abi.rmi import RmiFid as F
from rmm_mp.abi.structs import (
    RMI_REALM_PARAMS, RMI_REC_PARAMS, RmiDataFlags, RmiRealmFlags, RmiRecCreateFlags, rec_index_to_mpidr,
)
from rmm_mp.hw.faults import RmmInternalError
from rmm_mp.host.realm import (
    ERROR_RTT, GRANULE, PAGE_LEVEL, SUCCESS, HostError, HostRealm, HostRec, RealmSpec, create_rtt_levels,
    delegated_granule, find_map_level, host_features, index, num_roots, release_granule, start_level, status,
    undelegate_granule,
)
from rmm_mp.host.realm_teardown import destroy_realm

if TYPE_CHECKING:
    from rmm_mp.host.nsalloc import NsAllocator
    from rmm_mp.machine import Cpu

REALM_CREATE = int(F.RMI_REALM_CREATE)
REALM_ACTIVATE = int(F.RMI_REALM_ACTIVATE)
REC_AUX_COUNT = int(F.RMI_REC_AUX_COUNT)
REC_CREATE = int(F.RMI_REC_CREATE)
DELEGATE = int(F.RMI_GRANULE_DELEGATE)
INIT_RIPAS = int(F.RMI_RTT_INIT_RIPAS)
DATA_CREATE = int(F.RMI_DATA_CREATE)
MAX_AUX = 16
"""RmiRecParams has room for 16 aux granules."""


def create_realm(cpu: "Cpu", alloc: "NsAllocator", spec: RealmSpec, rtt_base: int | None = None) -> HostRealm:
    """Build the realm ``spec`` describes on ``cpu``; returns its record.

    ``rtt_base``: a run of NS granules the caller allocated for the root RTTs (num_roots of
    them, aligned to their number) and keeps for the realm's next generation: the build
    delegates it instead of allocating one, and destroy_realm (or a failed build) undelegates
    it but does not free it (HostRealm.roots_kept). A caller that rebuilds realms keeps the run
    because a fragmented allocator may have single free granules enough but no aligned run.

    Raises:
        ValueError if the platform cannot host the spec (IPA width, hash algorithm);
        HostError if the RMM answers what a correct RMM cannot; OutOfGranules / OutOfVmids
        from the allocator. Whatever was built is torn down first.
    """
    fr0 = host_features(cpu)
    _check_supported(spec, fr0)
    realm = _create_rd(cpu, alloc, spec, fr0, rtt_base)
    recs: list[HostRec] = []
    try:
        x0, num_aux = cpu.smc(REC_AUX_COUNT, realm.rd)[:2]
        if x0 != SUCCESS or num_aux > MAX_AUX:
            raise HostError(REC_AUX_COUNT, (realm.rd,), x0, f"a live RD has an aux count of at most {MAX_AUX} "
                                                            f"(X1 = {num_aux})")
        realm = replace(realm, num_aux=num_aux)
        _init_ripas(cpu, alloc, realm, spec.ram_base, spec.ram_base + spec.ram_size)
        _populate(cpu, alloc, realm, spec)
        for i in range(spec.num_recs):
            recs.append(_create_rec(cpu, alloc, realm, spec, i))
        realm = replace(realm, recs=tuple(recs))
        if spec.activate:
            x0 = cpu.smc(REALM_ACTIVATE, realm.rd)[0]
            if x0 != SUCCESS:
                raise HostError(REALM_ACTIVATE, (realm.rd,), x0, "the realm was NEW")
    except RmmInternalError:
        raise
    except Exception as exc:
        try:
            destroy_realm(cpu, alloc, replace(realm, recs=tuple(recs)))
        except RmmInternalError:
            raise
        except Exception as undo:
            exc.add_note(f"rolling the partial realm back failed too: {undo}")
        raise
    return realm


def _check_supported(spec: RealmSpec, fr0: int) -> None:
    if spec.ipa_width > FR0.field(fr0, "S2SZ"):
        raise ValueError(f"RealmSpec.ipa_width = {spec.ipa_width}: the RMM supports at most "
                         f"{FR0.field(fr0, 'S2SZ')} bits (RMI_FEATURES S2SZ)")
    name = "HASH_SHA_256" if spec.hash_algo == 0 else "HASH_SHA_512"
    if not FR0.field(fr0, name):
        raise ValueError(f"RealmSpec.hash_algo = {spec.hash_algo}: the RMM does not offer {name} (RMI_FEATURES)")


def realm_params(spec: RealmSpec, fr0: int, vmid: int, rtt_base: int) -> bytes:
    """The RmiRealmParams page KVM writes: breakpoints, watchpoints and PMU counters as the RMM
    offers them in feature register 0 (a PMU only if it has counters: no FEAT_HPMN0)."""
    level = start_level(spec.ipa_width)
    pmu = bool(FR0.field(fr0, "PMU_EN")) and FR0.field(fr0, "PMU_NUM_CTRS") > 0
    return bytes(RMI_REALM_PARAMS.pack(
        flags=int(RmiRealmFlags.PMU) if pmu else 0, s2sz=spec.ipa_width,
        num_bps=FR0.field(fr0, "NUM_BPS"), num_wps=FR0.field(fr0, "NUM_WPS"),
        pmu_num_ctrs=FR0.field(fr0, "PMU_NUM_CTRS") if pmu else 0, hash_algo=spec.hash_algo,
        rpv=spec.rpv.ljust(64, b"\0"), vmid=vmid, rtt_base=rtt_base, rtt_level_start=level,
        rtt_num_start=num_roots(spec.ipa_width, level)))


def _create_rd(cpu: "Cpu", alloc: "NsAllocator", spec: RealmSpec, fr0: int, rtt_base: int | None) -> HostRealm:
    """VMID, RD and roots delegated, REALM_CREATE; everything is undone if it fails (a root
    run the caller gave is undelegated, not freed)."""
    level = start_level(spec.ipa_width)
    count = num_roots(spec.ipa_width, level)
    kept = rtt_base is not None
    if rtt_base is not None and (rtt_base < 0 or rtt_base % (count * GRANULE)):
        raise ValueError(f"rtt_base = {rtt_base:#x}: expected the PA of a run of {count} NS granules aligned to "
                         f"{count} granules (rtt_num_start of a {spec.ipa_width}-bit realm)")
    vmid = alloc.alloc_vmid()
    rd = -1
    roots: list[int] = []
    try:
        rd = delegated_granule(cpu, alloc)
        base = rtt_base if rtt_base is not None else alloc.alloc(count, count)
        for i in range(count):
            pa = base + i * GRANULE
            x0 = cpu.smc(DELEGATE, pa)[0]
            if x0 != SUCCESS:
                if not kept:
                    alloc.free(pa, count - i)
                raise HostError(DELEGATE, (pa,), x0, "an allocated root RTT granule must be NS")
            roots.append(pa)
        params = alloc.alloc()
        try:
            cpu.machine.ns_write(params, realm_params(spec, fr0, vmid, base))
            x0 = cpu.smc(REALM_CREATE, rd, params)[0]
        finally:
            alloc.free(params)
        if x0 != SUCCESS:
            raise HostError(REALM_CREATE, (rd, params), x0, "the parameters are ones RMI_FEATURES offers, the "
                                                            "VMID is free and RD and roots are DELEGATED")
    except RmmInternalError:
        raise
    except Exception:
        if rd >= 0:
            release_granule(cpu, alloc, rd)
        for pa in roots:
            if kept:
                undelegate_granule(cpu, pa)
            else:
                release_granule(cpu, alloc, pa)
        alloc.free_vmid(vmid)
        raise
    return HostRealm(rd, base, count, level, spec.ipa_width, vmid, spec.hash_algo, teardown=spec.teardown,
                     ram=(spec.ram_base, spec.ram_size), image=(spec.load_ipa, spec.image_granules), roots_kept=kept)


def _init_ripas(cpu: "Cpu", alloc: "NsAllocator", realm: HostRealm, ipa: int, end: int) -> None:
    """RTT_INIT_RIPAS over [ipa, end), continuing from each call's output; on (ERROR_RTT, L)
    create the tables from level L + 1 down to find_map_level and retry (KVM realm_init_ipa_state)."""
    while ipa < end:
        x0, done = cpu.smc(INIT_RIPAS, realm.rd, ipa, end)[:2]
        if x0 == SUCCESS:
            if not ipa < done <= end:
                raise HostError(INIT_RIPAS, (realm.rd, ipa, end), x0, f"progress lies in ({ipa:#x}, {end:#x}], "
                                                                      f"X1 is {done:#x}")
            ipa = done
            continue
        level = find_map_level(realm, ipa, end)
        if status(x0) != ERROR_RTT or index(x0) >= level:
            raise HostError(INIT_RIPAS, (realm.rd, ipa, end), x0,
                            f"only a missing table above level {level} stops a NEW realm's INIT_RIPAS")
        create_rtt_levels(cpu, alloc, realm, ipa, index(x0), level)


def _populate(cpu: "Cpu", alloc: "NsAllocator", realm: HostRealm, spec: RealmSpec) -> None:
    """DELEGATE + DATA_CREATE per image granule (KVM realm_create_protected_data_page); the
    bytes pass through one NS staging page."""
    if not spec.image:
        return
    flags = int(RmiDataFlags.RMI_MEASURE_CONTENT if spec.measure else RmiDataFlags.RMI_NO_MEASURE_CONTENT)
    src = alloc.alloc()
    try:
        for n in range(spec.image_granules):
            chunk = spec.image[n * GRANULE:(n + 1) * GRANULE]
            cpu.machine.ns_write(src, chunk.ljust(GRANULE, b"\0"))
            _data_create(cpu, alloc, realm, spec.load_ipa + n * GRANULE, src, flags)
    finally:
        alloc.free(src)


def _data_create(cpu: "Cpu", alloc: "NsAllocator", realm: HostRealm, ipa: int, src: int, flags: int) -> None:
    data = delegated_granule(cpu, alloc)
    try:
        x0 = cpu.smc(DATA_CREATE, realm.rd, data, ipa, src, flags)[0]
        if status(x0) == ERROR_RTT and index(x0) < PAGE_LEVEL:
            create_rtt_levels(cpu, alloc, realm, ipa, index(x0), PAGE_LEVEL)
            x0 = cpu.smc(DATA_CREATE, realm.rd, data, ipa, src, flags)[0]
        if x0 != SUCCESS:
            raise HostError(DATA_CREATE, (realm.rd, data, ipa, src, flags), x0,
                            "the level-3 table exists and nothing is mapped at the IPA of a NEW realm")
    except RmmInternalError:
        raise
    except Exception:
        release_granule(cpu, alloc, data)
        raise


def _create_rec(cpu: "Cpu", alloc: "NsAllocator", realm: HostRealm, spec: RealmSpec, i: int) -> HostRec:
    """DELEGATE the REC and its aux granules, REC_CREATE (KVM kvm_create_rec): REC 0 runnable."""
    held: list[int] = []
    try:
        for _ in range(1 + realm.num_aux):
            held.append(delegated_granule(cpu, alloc))
        rec, aux = held[0], tuple(held[1:])
        mpidr = rec_index_to_mpidr(i)
        params = alloc.alloc()
        try:
            cpu.machine.ns_write(params, bytes(RMI_REC_PARAMS.pack(
                flags=int(RmiRecCreateFlags.RUNNABLE) if i == 0 else 0, mpidr=mpidr, pc=spec.entry_pc,
                gprs=spec.gprs if i == 0 else (), num_aux=len(aux), aux=aux)))
            x0 = cpu.smc(REC_CREATE, realm.rd, rec, params)[0]
        finally:
            alloc.free(params)
        if x0 != SUCCESS:
            raise HostError(REC_CREATE, (realm.rd, rec, params), x0,
                            f"REC {i} of a NEW realm with {i} RECs, {len(aux)} DELEGATED aux granules")
    except RmmInternalError:
        raise
    except Exception:
        for pa in held:
            release_granule(cpu, alloc, pa)
        raise
    return HostRec(rec, aux, mpidr)
