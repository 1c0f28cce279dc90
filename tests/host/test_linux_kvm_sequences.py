"""Linux KVM's RMI call sequences, replayed against rmm-mp unchanged ("a host that behaves like
Linux KVM must run against us unchanged").

The host here is a transcription of what the Linux CCA host patches (series v5..v12, the ones
that target DEN0137 1.0-rel0: arch/arm64/kvm/rme.c, rme-exit.c, mmio.c, psci.c, vgic.c and
asm/rmi_smc.h, rmi_cmds.h) do at the SMC level, written from reading that code, not copied:

- the calls, their order and argument values (RMI_VERSION with the host's 1.0; FEATURES(0);
  DELEGATE of the RD then of every stage-2 root page; REALM_CREATE; REC_AUX_COUNT right after;
  the INIT_RIPAS loop on `out_top` that creates RTTs from the error level down to
  find_map_level(); DATA_CREATE and DATA_CREATE_UNKNOWN that create RTTs down to level 3 on
  RMI_ERROR_RTT and retry once; REC_CREATE after delegating the REC then its aux granules;
  REALM_ACTIVATE; REC_ENTER; the RTT_SET_RIPAS loop; PSCI_COMPLETE; the v5 teardown:
  UNMAP_UNPROTECTED and DATA_DESTROY walks driven by the returned `top`, RTT_FOLD passes,
  RTT_DESTROY leaf-first over the whole IPA space, REC_DESTROY, REALM_DESTROY, UNDELEGATEs);
- the structures byte for byte at KVM's offsets, packed here with `struct` rather than with
  rmm_mp.abi.structs, so a layout mistake on either side shows: RealmParams as a zeroed page
  with flags (PMU), s2sz, num_bps/num_wps (KVM passes the FEATURES encodings it put in the
  vCPU's ID_AA64DFR0_EL1), pmu_num_ctrs, hash_algo, rpv, vmid (KVM's bitmap hands out VMID 0
  first), rtt_base, rtt_level_start = 4 - (ia_bits - 8) / 9 and rtt_num_start for KVM's
  concatenated stage-2 pgd; RecParams as a zeroed page with RUNNABLE for vCPU 0 only, the
  MPIDR affinity fields, pc, gprs[0..7] and num_rec_aux/aux[] from REC_AUX_COUNT;
- the run page as KVM keeps it: one zeroed page reused for every entry; enter.flags cleared
  on every exit, EMULATED_MMIO and enter.gprs[0] for an emulated MMIO read, all of x0..x30
  copied into enter.gprs before the entry that follows a HOST_CALL or PSCI exit, gicv3_hcr =
  ICH_HCR_EL2 (with En) masked by KVM's RMI_PERMITTED_GICV3_HCR_BITS, and the LRs KVM's vgic
  writes (pending, group 1, priority 0xa0, EOI for a level interrupt);
- the exits as rme-exit.c reads them: esr/far/hpfar, exit.gprs[0] as an MMIO write's data,
  exit.gprs[0..30] for HOST_CALL and PSCI, ripas_base/top/value.

Each test ends with every granule undelegated and the invariants checked. None of the 1.0
paths replayed here relies on a later spec. Host-side quirks seen while reading KVM, which are
KVM's and need nothing from the RMM (so they are not rmm-mp deviations):

- one KVM version's realm_create_rtt_levels() takes RTT_CREATE's (RMI_ERROR_RTT, level) as "the
  RTT already exists"; 1.0-rel0 and TF-RMM report level - 1 for that case (pinned below), so that
  KVM frees its spare and fails the map instead of continuing (only reachable in a race);
- realm_unmap_shared_range() (v5 and v12 alike) ORs the shared bit into start and end, so for
  the whole protected range [0, 2^(ia_bits-1)) it issues no RTT_UNMAP_UNPROTECTED at all:
  per-memslot unmaps do work, but at VM teardown the shared pages are still mapped when the
  RTT_DESTROY pass reaches their tables, which are not live (A5.5.8) and so are destroyed with
  their ASSIGNED_NS entries in them (both replayed below);
- v5's realm_fold_rtt_level() rounds the IPA *up* to the parent block (later versions round
  down), so a fold after a small RIPAS change usually asks about the next 1 GiB: harmless;
- the 1.0 series from v12 populate before INIT_RIPAS and create every REC before it too
  (kvm_activate_realm on the first KVM_RUN: kvm_create_rec per vCPU, INIT_RIPAS over each
  guest_memfd memslot, REALM_ACTIVATE); 1.0-rel0's RTT_INIT_RIPAS (rtte_state) and TF-RMM refuse
  an ASSIGNED entry at `base` with (RMI_ERROR_RTT, 3), and v12's ripas_change() then steps one
  page on ("FIXME: Ugly hack to skip regions which are already RIPAS_RAM"). Replayed below as the
  "v12" order (read in the stored copy of that rme.c, Copyright 2023-2025, whose RealmParams
  still carry a VMID, so RMM 1.0);
- the RMI_FEATURES field GICV3_NUM_LRS is "the number of list registers, minus one" (B4.4.6);
  KVM's kvm_realm_vgic_nr_lr() takes it as the count, so its vGIC uses one LR fewer than the RMM
  offers (the unused one stays zero, which REC_ENTER accepts);
- the v12-era rmi-exit.c rec_exit_sys_reg() reads a trapped system-register write from
  exit.gprs[rt] and returns a read in enter.gprs[rt]; TF-RMM rel0 forwards only writes of
  ICC_DIR and ICC_SGI0R/SGI1R_EL1, with the value in exit.gprs[0] (runtime/core/sysregs.c), which
  is where the older rme-exit.c reads it (the 1.0-rel0 text defines no such exit). rmm-mp's
  realms make no system-register exits, so nothing here depends on it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import pytest

from realm_guests import PRELUDE
from rmm_mp import Machine
from rmm_mp.check import invariants
from rmm_mp.guest.assembler import assemble

G = 4096
MiB = 1 << 20


def _fid(n: int) -> int:
    return 0xC400_0000 | n


# SMC_RMI_* (asm/rmi_smc.h, 1.0-rel0)
VERSION, DELEGATE, UNDELEGATE = _fid(0x150), _fid(0x151), _fid(0x152)
DATA_CREATE, DATA_CREATE_UNKNOWN, DATA_DESTROY = _fid(0x153), _fid(0x154), _fid(0x155)
REALM_ACTIVATE, REALM_CREATE, REALM_DESTROY = _fid(0x157), _fid(0x158), _fid(0x159)
REC_CREATE, REC_DESTROY, REC_ENTER = _fid(0x15A), _fid(0x15B), _fid(0x15C)
RTT_CREATE, RTT_DESTROY, RTT_MAP_UNPROTECTED = _fid(0x15D), _fid(0x15E), _fid(0x15F)
RTT_READ_ENTRY, RTT_UNMAP_UNPROTECTED = _fid(0x161), _fid(0x162)
PSCI_COMPLETE, FEATURES, RTT_FOLD, REC_AUX_COUNT = _fid(0x164), _fid(0x165), _fid(0x166), _fid(0x167)
RTT_INIT_RIPAS, RTT_SET_RIPAS = _fid(0x168), _fid(0x169)

SMCCC_RET_NOT_SUPPORTED = (1 << 64) - 1
RMI_SUCCESS, RMI_ERROR_INPUT, RMI_ERROR_REALM, RMI_ERROR_REC, RMI_ERROR_RTT = 0, 1, 2, 3, 4
RMI_EMPTY, RMI_RAM = 0, 1
RMI_MEASURE_CONTENT = 1
RMI_REALM_PARAM_FLAG_PMU = 1 << 2
REC_PARAMS_FLAG_RUNNABLE = 1
REC_ENTER_FLAG_EMULATED_MMIO = 1 << 0
RMI_EXIT_SYNC, RMI_EXIT_IRQ, RMI_EXIT_FIQ, RMI_EXIT_PSCI, RMI_EXIT_RIPAS_CHANGE, RMI_EXIT_HOST_CALL = range(6)
ICH_HCR_EL2_EN, ICH_HCR_EL2_UIE = 1 << 0, 1 << 1
RMI_PERMITTED_GICV3_HCR_BITS = 0x40FE      # UIE, LRENPIE, NPIE, VGrp0EIE/DIE, VGrp1EIE/DIE, TDIR
ESR_ELx_EC_DABT_LOW = 0x24
PSCI_CPU_OFF, PSCI_CPU_ON, PSCI_AFFINITY_INFO, PSCI_SYSTEM_OFF = 0x8400_0002, 0xC400_0003, 0xC400_0004, 0x8400_0008
PSCI_AFFINITY_OFF = 1
PSCI_RET_SUCCESS, PSCI_RET_INVALID_PARAMS = 0, (1 << 64) - 2
MPIDR_HWID_BITMASK = 0xFF_00FF_FFFF
ARM_SMCCC_VERSION_FUNC_ID, ARM_SMCCC_VERSION_1_1 = 0x8000_0000, 0x1_0001

RMM_RTT_MAX_LEVEL = 3


def status(x0: int) -> int:
    return x0 & 0xFF


def index(x0: int) -> int:
    return (x0 >> 8) & 0xFF


def mapsize(level: int) -> int:
    """rme_rtt_level_mapsize(): bytes an RTT entry at ``level`` maps (4 KiB granules)."""
    return 1 << ((12 - 3) * (4 - level) + 3)


def align_down(x: int, a: int) -> int:
    return x & ~(a - 1)


def align_up(x: int, a: int) -> int:
    return (x + a - 1) & ~(a - 1)


# -- structures at KVM's offsets (struct realm_params / rec_params / rec_enter / rec_exit) ---------

def realm_params(*, flags: int, s2sz: int, num_bps: int, num_wps: int, pmu_num_ctrs: int, hash_algo: int,
                 rpv: bytes, vmid: int, rtt_base: int, rtt_level_start: int, rtt_num_start: int) -> bytes:
    page = bytearray(G)                                   # get_zeroed_page()
    struct.pack_into("<7Q", page, 0x000, flags, s2sz, 0, num_bps, num_wps, pmu_num_ctrs, hash_algo)
    page[0x400:0x400 + len(rpv)] = rpv
    struct.pack_into("<QQqQ", page, 0x800, vmid, rtt_base, rtt_level_start, rtt_num_start)
    return bytes(page)


def rec_params(*, flags: int, mpidr: int, pc: int, gprs: list[int], aux: list[int]) -> bytes:
    page = bytearray(G)                                   # get_zeroed_page()
    struct.pack_into("<Q", page, 0x000, flags)
    struct.pack_into("<Q", page, 0x100, mpidr)
    struct.pack_into("<Q", page, 0x200, pc)
    struct.pack_into("<8Q", page, 0x300, *gprs)
    struct.pack_into(f"<Q{len(aux)}Q", page, 0x800, len(aux), *aux)
    return bytes(page)


ENTER_FLAGS, ENTER_GPRS, ENTER_GICV3_HCR, ENTER_GICV3_LRS = 0x000, 0x200, 0x300, 0x308
EXIT = 0x800
EXIT_REASON, EXIT_ESR, EXIT_FAR, EXIT_HPFAR, EXIT_GPRS = 0x000, 0x100, 0x108, 0x110, 0x200
EXIT_GICV3_LRS = 0x308
EXIT_RIPAS_BASE, EXIT_RIPAS_TOP, EXIT_RIPAS_VALUE, EXIT_IMM = 0x500, 0x508, 0x510, 0x600


def kvm_mpidr(vcpu_id: int) -> int:
    """reset_mpidr() affinity fields, as kvm_vcpu_get_mpidr_aff() returns them (no RES1 bit 31)."""
    return (vcpu_id & 0xF) | (((vcpu_id >> 4) & 0xFF) << 8) | (((vcpu_id >> 12) & 0xFF) << 16)


def get_start_level(ia_bits: int) -> int:
    return 4 - ((ia_bits - 8) // (12 - 3))


def realm_num_root_rtts(ia_bits: int) -> int:
    levels = 3 - get_start_level(ia_bits)
    sl_ipa_bits = (levels + 1) * (12 - 3) + 12
    return 1 if sl_ipa_bits >= ia_bits else 1 << (ia_bits - sl_ipa_bits)


def find_map_level(ia_bits: int, start: int, end: int) -> int:
    level = RMM_RTT_MAX_LEVEL
    while level > get_start_level(ia_bits):
        size = mapsize(level - 1)
        if start % size or start + size > end:
            break
        level -= 1
    return level


# -- the host -----------------------------------------------------------------------------------

class Pages:
    """The kernel's page allocator over the NS DRAM (alloc_pages / free_page)."""

    def __init__(self, m: Machine) -> None:
        secure = [(b, b + s) for b, s in m.secure_regions]
        self.free_list = [pa for pa in range(m.dram_base, m.dram_base + m.granule_count * G, G)
                          if not any(lo <= pa < hi for lo, hi in secure)]
        self.out: set[int] = set()

    def alloc(self, count: int = 1) -> int:
        """``count`` contiguous pages aligned to their total size (alloc_pages_exact of an order)."""
        for pa in self.free_list:
            if pa % (count * G) == 0 and all(pa + i * G in self.free_list for i in range(count)):
                for i in range(count):
                    self.free_list.remove(pa + i * G)
                    self.out.add(pa + i * G)
                return pa
        raise MemoryError

    def free(self, pa: int) -> None:
        self.out.remove(pa)
        self.free_list.insert(0, pa)


class KvmError(AssertionError):
    """Where KVM would WARN_ON or fail the ioctl: rmm-mp answered something KVM does not expect."""


@dataclass
class Vcpu:
    vcpu_id: int
    rec: int = 0
    aux: list[int] = field(default_factory=list)
    run: int = 0
    regs: list[int] = field(default_factory=lambda: [0] * 31)
    last_exit: int = -1
    stopped: bool = True
    mmio_read: tuple[int, int] | None = None    # (address, length) of a pending MMIO read


@dataclass
class Realm:
    ia_bits: int
    rd: int = 0
    pgd: int = 0
    pgd_pages: int = 0
    vmid: int = 0
    num_aux: int = 0
    vcpus: list[Vcpu] = field(default_factory=list)
    data: dict[int, int] = field(default_factory=dict)   # ipa -> PA of private pages KVM owns


class Kvm:
    """The SMCs Linux KVM issues, in its order, with its arguments (see the module docstring)."""

    def __init__(self, m: Machine, cpu: int = 0) -> None:
        self.m = m
        self.cpu = m.cpu(cpu)
        self.pages = Pages(m)
        self.log: list[tuple[int, tuple[int, ...], int]] = []
        self.vmid_bitmap: set[int] = set()
        self.feat_reg0 = 0
        self.mmio: list[tuple[str, int, int, int]] = []   # ("w"/"r", ipa, len, data) the VMM saw
        self.mmio_read_value = 0
        self.hostcalls: list[list[int]] = []               # exit.gprs of each HOST_CALL exit

    def smc(self, fid: int, *args: int) -> tuple[int, ...]:
        regs = self.cpu.smc(fid, *args)
        self.log.append((fid, args, regs[0]))
        return regs

    def calls(self, fid: int) -> list[tuple[int, ...]]:
        return [args for f, args, _ in self.log if f == fid]

    def delegate(self, pa: int) -> None:
        if self.smc(DELEGATE, pa)[0] != RMI_SUCCESS:
            raise KvmError(f"rmi_granule_delegate({pa:#x}) failed")

    def undelegate(self, pa: int) -> None:
        x0 = self.smc(UNDELEGATE, pa)[0]
        if x0 != RMI_SUCCESS:                   # WARN_ON(rmi_granule_undelegate()): the page leaks
            raise KvmError(f"rmi_granule_undelegate({pa:#x}) -> {x0:#x}")

    def alloc_delegated(self) -> int:
        pa = self.pages.alloc()
        self.delegate(pa)
        return pa

    def free_delegated(self, pa: int) -> None:
        self.undelegate(pa)
        self.pages.free(pa)

    # -- kvm_init_rme ---------------------------------------------------------------------------

    def init_rme(self) -> None:
        """rmi_check_version(), then rmi_features(0, &rmm_feat_reg0)."""
        x0, lower, higher = self.smc(VERSION, (1 << 16) | 0)[:3]
        if x0 == SMCCC_RET_NOT_SUPPORTED or x0 != RMI_SUCCESS:
            raise KvmError(f"Unsupported RMI ABI: {x0:#x} ({lower:#x} - {higher:#x}), we want v1.0")
        self.rmi_version = lower
        x0, reg0 = self.smc(FEATURES, 0)[:2]
        if x0 != RMI_SUCCESS:
            raise KvmError(f"rmi_features(0) -> {x0:#x}")
        self.feat_reg0 = reg0

    def feat(self, lsb: int, width: int) -> int:
        return (self.feat_reg0 >> lsb) & ((1 << width) - 1)

    # -- kvm_create_realm -----------------------------------------------------------------------

    def create_realm(self, ia_bits: int, *, hash_algo: int = 0, rpv: bytes = b"", pmu: bool = True,
                     pmcr_n: int | None = None) -> Realm:
        vmid = min(set(range(1 << 16)) - self.vmid_bitmap)      # bitmap_find_free_region(): from 0
        self.vmid_bitmap.add(vmid)
        realm = Realm(ia_bits, vmid=vmid)
        realm.pgd_pages = realm_num_root_rtts(ia_bits)          # kvm_pgtable_stage2_pgd_size() / PAGE_SIZE
        realm.rd = self.pages.alloc()
        realm.pgd = self.pages.alloc(realm.pgd_pages)
        self.delegate(realm.rd)
        for i in range(realm.pgd_pages):
            self.delegate(realm.pgd + i * G)
        num_bps, num_wps = self.feat(14, 6), self.feat(20, 6)   # ID_AA64DFR0_EL1.BRPs/WRPs as reset
        flags, ctrs = 0, 0
        if pmu:
            flags |= RMI_REALM_PARAM_FLAG_PMU
            ctrs = self.feat(27, 5) if pmcr_n is None else pmcr_n
        params = self.pages.alloc()
        self.m.ns_write(params, realm_params(
            flags=flags, s2sz=ia_bits, num_bps=num_bps, num_wps=num_wps, pmu_num_ctrs=ctrs, hash_algo=hash_algo,
            rpv=rpv, vmid=vmid, rtt_base=realm.pgd, rtt_level_start=get_start_level(ia_bits),
            rtt_num_start=realm_num_root_rtts(ia_bits)))
        x0 = self.smc(REALM_CREATE, realm.rd, params)[0]
        if x0 != RMI_SUCCESS:
            raise KvmError(f"rmi_realm_create() -> {x0:#x}")
        x0, num_aux = self.smc(REC_AUX_COUNT, realm.rd)[:2]
        if x0 != RMI_SUCCESS:
            raise KvmError(f"rmi_rec_aux_count() -> {x0:#x}")
        realm.num_aux = num_aux
        self.pages.free(params)                                 # "The realm is up, free the parameters"
        return realm

    # -- RTTs -----------------------------------------------------------------------------------

    def rtt_create(self, realm: Realm, ipa: int, level: int, rtt: int) -> int:
        return self.smc(RTT_CREATE, realm.rd, rtt, align_down(ipa, mapsize(level - 1)), level)[0]

    def create_rtt_levels(self, realm: Realm, ipa: int, level: int, max_level: int) -> None:
        """realm_create_rtt_levels(): one new RTT per level below ``level`` down to ``max_level``."""
        if level == max_level:
            raise KvmError("realm_create_rtt_levels() called with nothing to create")
        while level < max_level:
            level += 1
            rtt = self.alloc_delegated()
            x0 = self.rtt_create(realm, ipa, level, rtt)
            if x0 != RMI_SUCCESS:
                self.free_delegated(rtt)
                raise KvmError(f"RTT_CREATE({ipa:#x}, level {level}) -> {x0:#x}")

    def init_ipa_state(self, realm: Realm, ipa: int, end: int, skip_populated: bool = False) -> None:
        """realm_init_ipa_state(): the RTT_INIT_RIPAS loop on out_top. ``skip_populated``: v12's
        ripas_change(RIPAS_INIT), run after populating, steps over an entry the walk reaches at
        or below find_map_level() with (RMI_ERROR_RTT, level) one page at a time (its "FIXME"
        for pages DATA_CREATE already made ASSIGNED); earlier versions fail the ioctl there."""
        for _ in range(10_000):
            if ipa >= end:
                return
            x0, top = self.smc(RTT_INIT_RIPAS, realm.rd, ipa, end)[:2]
            if status(x0) == RMI_ERROR_RTT:
                err_level, level = index(x0), find_map_level(realm.ia_bits, ipa, end)
                if err_level >= level and skip_populated:
                    ipa += G
                    continue
                if err_level >= level:
                    raise KvmError(f"INIT_RIPAS({ipa:#x}, {end:#x}) -> RTT error at level {err_level} >= {level}")
                self.create_rtt_levels(realm, ipa, err_level, level)
                continue
            if x0 != RMI_SUCCESS:
                raise KvmError(f"INIT_RIPAS({ipa:#x}, {end:#x}) -> {x0:#x}")
            if top <= ipa:
                raise KvmError(f"INIT_RIPAS({ipa:#x}, {end:#x}) made no progress: top {top:#x}")
            ipa = top
        raise KvmError("INIT_RIPAS loop does not end")

    # -- populate (DATA_CREATE) and faults (DATA_CREATE_UNKNOWN) ----------------------------------

    def create_protected_data_page(self, realm: Realm, ipa: int, src: int, flags: int) -> None:
        dst = self.pages.alloc()
        self.delegate(dst)
        x0 = self.smc(DATA_CREATE, realm.rd, dst, ipa, src, flags)[0]
        if status(x0) == RMI_ERROR_RTT:
            self.create_rtt_levels(realm, ipa, index(x0), RMM_RTT_MAX_LEVEL)
            x0 = self.smc(DATA_CREATE, realm.rd, dst, ipa, src, flags)[0]
        if x0 != RMI_SUCCESS:
            raise KvmError(f"DATA_CREATE({ipa:#x}) -> {x0:#x}")
        realm.data[ipa] = dst

    def populate(self, realm: Realm, ipa_base: int, image: bytes, measure: bool = True) -> None:
        """kvm_populate_realm(): DATA_CREATE per 4 KiB page from an NS copy of the image."""
        src = self.pages.alloc()
        for off in range(0, align_up(len(image), G), G):
            self.m.ns_write(src, image[off:off + G].ljust(G, b"\0"))
            self.create_protected_data_page(realm, ipa_base + off, src, RMI_MEASURE_CONTENT if measure else 0)
        self.pages.free(src)

    def map_protected(self, realm: Realm, ipa: int) -> None:
        """realm_map_protected() for one 4 KiB page: DELEGATE + DATA_CREATE_UNKNOWN."""
        phys = self.pages.alloc()
        self.delegate(phys)
        x0 = self.smc(DATA_CREATE_UNKNOWN, realm.rd, phys, ipa)[0]
        if status(x0) == RMI_ERROR_RTT:
            self.create_rtt_levels(realm, ipa, index(x0), RMM_RTT_MAX_LEVEL)
            x0 = self.smc(DATA_CREATE_UNKNOWN, realm.rd, phys, ipa)[0]
        if x0 != RMI_SUCCESS:
            raise KvmError(f"DATA_CREATE_UNKNOWN({ipa:#x}) -> {x0:#x}")
        realm.data[ipa] = phys

    def map_protected_block(self, realm: Realm, ipa: int) -> int:
        """realm_map_protected() for a 2 MiB backing page: pre-create the L3 RTT, 512 x (DELEGATE +
        DATA_CREATE_UNKNOWN), then fold_rtt(): RTT_FOLD(ipa, level 3), undelegating the folded RTT."""
        block = mapsize(2)
        phys = self.pages.alloc(block // G)
        rtt = self.alloc_delegated()
        if self.rtt_create(realm, ipa, 3, rtt):
            self.free_delegated(rtt)
        for off in range(0, block, G):
            self.delegate(phys + off)
            x0 = self.smc(DATA_CREATE_UNKNOWN, realm.rd, phys + off, ipa + off)[0]
            if x0 != RMI_SUCCESS:
                raise KvmError(f"DATA_CREATE_UNKNOWN({ipa + off:#x}) -> {x0:#x}")
            realm.data[ipa + off] = phys + off
        x0, folded = self.smc(RTT_FOLD, realm.rd, ipa, 3)[:2]
        if x0 != RMI_SUCCESS:
            raise KvmError(f"RTT_FOLD({ipa:#x}, 3) -> {x0:#x}")
        self.free_delegated(folded)
        return phys

    def map_non_secure(self, realm: Realm, ipa: int, page: int) -> None:
        """realm_map_non_secure() at level 3: desc = PA | S2 MemAttr Normal (FWB) | S2AP RW."""
        desc = page | (0x6 << 2) | (3 << 6)
        x0 = self.smc(RTT_MAP_UNPROTECTED, realm.rd, ipa, 3, desc)[0]
        if status(x0) == RMI_ERROR_RTT:
            self.create_rtt_levels(realm, ipa, index(x0), 3)
            x0 = self.smc(RTT_MAP_UNPROTECTED, realm.rd, ipa, 3, desc)[0]
        if x0 != RMI_SUCCESS:
            raise KvmError(f"RTT_MAP_UNPROTECTED({ipa:#x}, {desc:#x}) -> {x0:#x}")

    # -- RECs -----------------------------------------------------------------------------------

    def create_rec(self, realm: Realm, vcpu_id: int, pc: int = 0, gprs: tuple[int, ...] = ()) -> Vcpu:
        """kvm_create_rec(): params from the vCPU's reset state, REC page then aux pages delegated."""
        vcpu = Vcpu(vcpu_id)
        params = self.pages.alloc()
        vcpu.rec = self.pages.alloc()
        vcpu.run = self.pages.alloc()
        self.m.ns_write(vcpu.run, bytes(G))                     # get_zeroed_page()
        vcpu.regs[:len(gprs)] = gprs
        self.delegate(vcpu.rec)
        vcpu.aux = [self.alloc_delegated() for _ in range(realm.num_aux)]
        self.m.ns_write(params, rec_params(
            flags=REC_PARAMS_FLAG_RUNNABLE if vcpu_id == 0 else 0, mpidr=kvm_mpidr(vcpu_id), pc=pc,
            gprs=vcpu.regs[:8], aux=vcpu.aux))
        x0 = self.smc(REC_CREATE, realm.rd, vcpu.rec, params)[0]
        if x0 != RMI_SUCCESS:
            raise KvmError(f"REC_CREATE(vcpu {vcpu_id}) -> {x0:#x}")
        self.pages.free(params)
        vcpu.stopped = vcpu_id != 0
        realm.vcpus.append(vcpu)
        return vcpu

    def activate(self, realm: Realm) -> None:
        x0 = self.smc(REALM_ACTIVATE, realm.rd)[0]
        if x0 != RMI_SUCCESS:
            raise KvmError(f"REALM_ACTIVATE -> {x0:#x}")

    # -- running --------------------------------------------------------------------------------

    def q(self, pa: int, off: int) -> int:
        return int.from_bytes(self.m.ns_read(pa + off, 8), "little")

    def set_q(self, pa: int, off: int, value: int) -> None:
        self.m.ns_write(pa + off, value.to_bytes(8, "little"))

    def rec_enter(self, realm: Realm, vcpu: Vcpu, lrs: tuple[int, ...] = (), hcr: int = ICH_HCR_EL2_EN) -> int:
        """kvm_rec_enter() after vgic_rmm_restore_state(); returns REC_ENTER's X0."""
        if vcpu.last_exit in (RMI_EXIT_HOST_CALL, RMI_EXIT_PSCI):
            self.m.ns_write(vcpu.run + ENTER_GPRS, struct.pack("<31Q", *vcpu.regs))
        for i, lr in enumerate(lrs):                              # the used LRs only
            self.set_q(vcpu.run, ENTER_GICV3_LRS + 8 * i, lr)
            self.set_q(vcpu.run, EXIT + EXIT_GICV3_LRS + 8 * i, lr)
        self.set_q(vcpu.run, ENTER_GICV3_HCR, hcr & RMI_PERMITTED_GICV3_HCR_BITS)
        return self.smc(REC_ENTER, vcpu.rec, vcpu.run)[0]

    def handle_rec_exit(self, realm: Realm, vcpu: Vcpu, ret: int) -> str:
        """handle_rec_exit(): 'enter' to re-enter, 'off' for SYSTEM_OFF, 'system_off_race'."""
        if status(ret) == RMI_ERROR_REALM and index(ret) == 1:
            return "system_off_race"
        if ret:
            raise KvmError(f"REC_ENTER(vcpu {vcpu.vcpu_id}) -> {ret:#x}")
        run = vcpu.run
        esr, far, hpfar = (self.q(run, EXIT + o) for o in (EXIT_ESR, EXIT_FAR, EXIT_HPFAR))
        self.set_q(run, ENTER_FLAGS, 0)                           # "Reset the emulation flags"
        reason = self.m.ns_read(run + EXIT + EXIT_REASON, 1)[0]
        vcpu.last_exit = reason
        exit_gprs = list(struct.unpack("<31Q", self.m.ns_read(run + EXIT + EXIT_GPRS, 31 * 8)))
        if reason == RMI_EXIT_SYNC and (esr >> 26) & 0x3F == ESR_ELx_EC_DABT_LOW:
            return self.dabt(realm, vcpu, esr, far, hpfar, exit_gprs[0])
        if reason in (RMI_EXIT_IRQ, RMI_EXIT_FIQ):
            return "enter"
        if reason == RMI_EXIT_HOST_CALL:
            vcpu.regs = exit_gprs
            self.hostcalls.append(list(exit_gprs))
            if vcpu.regs[0] == ARM_SMCCC_VERSION_FUNC_ID:          # kvm_smccc_call_handler()
                vcpu.regs[0] = ARM_SMCCC_VERSION_1_1
            else:
                vcpu.regs[0] = SMCCC_RET_NOT_SUPPORTED
            return "enter"
        if reason == RMI_EXIT_PSCI:
            vcpu.regs = exit_gprs
            return self.psci(realm, vcpu)
        if reason == RMI_EXIT_RIPAS_CHANGE:
            base, top, ripas = (self.q(run, EXIT + o) for o in (EXIT_RIPAS_BASE, EXIT_RIPAS_TOP, EXIT_RIPAS_VALUE))
            self.ripas_change(realm, vcpu, base, top, ripas)
            return "enter"
        raise KvmError(f"unsupported exit reason {reason} (esr {esr:#x})")

    def dabt(self, realm: Realm, vcpu: Vcpu, esr: int, far: int, hpfar: int, gpr0: int) -> str:
        """rec_exit_sync_dabt() -> kvm_handle_guest_abort(): MMIO on the shared alias, else a fault."""
        ipa = ((hpfar & ((1 << 44) - 1)) >> 4 << 12) | (far & 0xFFF)
        isv, wnr = bool(esr & (1 << 24)), bool(esr & (1 << 6))
        if ipa & (1 << (realm.ia_bits - 1)):                      # not a memslot: io_mem_abort()
            if not isv:
                raise KvmError(f"MMIO abort at {ipa:#x} without a valid syndrome (esr {esr:#x})")
            length = 1 << ((esr >> 22) & 3)
            if wnr:
                self.mmio.append(("w", ipa, length, gpr0))        # vcpu_set_reg(rt, exit.gprs[0])
            else:
                self.mmio.append(("r", ipa, length, self.mmio_read_value))
                self.set_q(vcpu.run, ENTER_GPRS, self.mmio_read_value)
            flags = self.q(vcpu.run, ENTER_FLAGS)                 # kvm_handle_mmio_return()
            self.set_q(vcpu.run, ENTER_FLAGS, flags | REC_ENTER_FLAG_EMULATED_MMIO)
            return "enter"
        self.map_protected(realm, align_down(ipa, G))
        return "enter"

    def psci(self, realm: Realm, vcpu: Vcpu) -> str:
        """kvm_psci_call() for a REC: complete CPU_ON / AFFINITY_INFO with RMI_PSCI_COMPLETE."""
        fid, target_mpidr = vcpu.regs[0], vcpu.regs[1]
        if fid == PSCI_SYSTEM_OFF:
            return "off"
        if fid == PSCI_CPU_OFF:
            vcpu.stopped = True
            return "off"
        # kvm_psci_valid_affinity(), then kvm_mpidr_to_vcpu(): an exact match of the affinity
        # fields. A target it cannot resolve gets PSCI_RET_INVALID_PARAMS with no PSCI_COMPLETE,
        # so the request stays pending and the next REC_ENTER fails with RMI_ERROR_REC.
        target = None if target_mpidr & ~MPIDR_HWID_BITMASK else \
            next((v for v in realm.vcpus if kvm_mpidr(v.vcpu_id) == target_mpidr), None)
        if target is None and fid in (PSCI_CPU_ON, PSCI_AFFINITY_INFO):
            vcpu.regs[0] = PSCI_RET_INVALID_PARAMS
            return "enter"
        assert target is not None
        if fid == PSCI_CPU_ON:
            x0 = self.smc(PSCI_COMPLETE, vcpu.rec, target.rec, PSCI_RET_SUCCESS)[0]
            if x0:
                raise KvmError(f"PSCI_COMPLETE(CPU_ON) -> {x0:#x}")
            target.stopped = False
            vcpu.regs[0] = PSCI_RET_SUCCESS
            return "cpu_on"
        if fid == PSCI_AFFINITY_INFO:
            x0 = self.smc(PSCI_COMPLETE, vcpu.rec, target.rec, PSCI_RET_SUCCESS)[0]
            if x0:
                raise KvmError(f"PSCI_COMPLETE(AFFINITY_INFO) -> {x0:#x}")
            vcpu.regs[0] = PSCI_RET_SUCCESS
            return "enter"
        raise KvmError(f"PSCI {fid:#x} not replayed")

    def ripas_change(self, realm: Realm, vcpu: Vcpu, base: int, top: int, ripas: int) -> None:
        """rec_exit_ripas_change() -> realm_set_ipa_state(): the RTT_SET_RIPAS loop on out_top."""
        shared = 1 << (realm.ia_bits - 1)
        if base & ~(shared - 1) or (top - 1) & ~(shared - 1):
            raise KvmError(f"Invalid RIPAS_CHANGE for {base:#x} - {top:#x}")
        ipa = base
        for _ in range(10_000):
            if ipa >= top:
                break
            x0, nxt = self.smc(RTT_SET_RIPAS, realm.rd, vcpu.rec, ipa, top)[:2]
            if status(x0) == RMI_ERROR_RTT:
                walk_level, level = index(x0), find_map_level(realm.ia_bits, ipa, top)
                if walk_level >= level:
                    raise KvmError(f"RTT_SET_RIPAS({ipa:#x}, {top:#x}) -> RTT error at {walk_level} >= {level}")
                self.create_rtt_levels(realm, ipa, walk_level, level)
                continue
            if x0 != RMI_SUCCESS:
                raise KvmError(f"RTT_SET_RIPAS({ipa:#x}, {top:#x}) -> {x0:#x}")
            if nxt <= ipa:
                raise KvmError(f"RTT_SET_RIPAS({ipa:#x}) made no progress: {nxt:#x}")
            ipa = nxt
        if ripas == RMI_EMPTY and ipa != base:
            self.unmap_private_range(realm, base, ipa)
            self.fold_rtt_level(realm, get_start_level(realm.ia_bits) + 1, base, ipa)
        # Later 1.0 series (kvm_complete_ripas_change) store the progress in the exit half of the
        # run page, relying on "The RMM ignores the contents of the rec_exit structure".
        self.set_q(vcpu.run, EXIT + EXIT_RIPAS_BASE, ipa)

    def run_vcpu(self, realm: Realm, vcpu: Vcpu, limit: int = 200, **enter: object) -> str:
        """KVM_RUN until the vCPU stops (CPU_OFF, SYSTEM_OFF, the SYSTEM_OFF race) or, so that the
        test can schedule the target next, has handled a CPU_ON."""
        for _ in range(limit):
            outcome = self.handle_rec_exit(realm, vcpu, self.rec_enter(realm, vcpu, **enter))  # type: ignore[arg-type]
            if outcome != "enter":
                return outcome
        raise KvmError("the vCPU never stopped")

    # -- teardown (v5 order: stage 2, RTTs, RECs, realm) ----------------------------------------

    def unmap_shared_range(self, realm: Realm, level: int, start: int, end: int) -> None:
        """realm_unmap_shared_range(): RTT_UNMAP_UNPROTECTED driven by the returned top."""
        size = mapsize(level)
        shared = 1 << (realm.ia_bits - 1)
        addr, end = start | shared, end | shared
        while addr < end:
            nxt = align_up(addr + 1, size)
            if align_up(addr, size) != addr or nxt > end:
                if addr < align_up(addr, size):
                    nxt = align_up(addr, size)
                self.unmap_shared_range(realm, level + 1, addr, min(nxt, end))
                addr = nxt
                continue
            x0, top = self.smc(RTT_UNMAP_UNPROTECTED, realm.rd, addr, level)[:2]
            if status(x0) == RMI_SUCCESS:
                nxt = top
            elif status(x0) == RMI_ERROR_RTT:
                if top == addr:
                    nxt = align_up(addr + 1, size)
                    self.unmap_shared_range(realm, level + 1, addr, nxt)
                else:
                    nxt = top
            else:
                raise KvmError(f"RTT_UNMAP_UNPROTECTED({addr:#x}, {level}) -> {x0:#x}")
            if nxt <= addr:
                raise KvmError(f"RTT_UNMAP_UNPROTECTED({addr:#x}, {level}) top {nxt:#x} does not move on")
            addr = nxt

    def destroy_private_granule(self, realm: Realm, ipa: int) -> int:
        """realm_destroy_private_granule(); returns next_addr."""
        for _ in range(3):
            x0, data, top = self.smc(DATA_DESTROY, realm.rd, ipa)[:3]
            if status(x0) == RMI_ERROR_RTT:
                if top > ipa:
                    return top                               # UNASSIGNED
                if index(x0) != 2:
                    raise KvmError(f"DATA_DESTROY({ipa:#x}) -> {x0:#x}, top {top:#x}: not an L2 block")
                rtt = self.alloc_delegated()                   # split the block and retry
                if self.rtt_create(realm, ipa, 3, rtt):
                    raise KvmError("RTT_CREATE to split a block failed")
                continue
            if x0 != RMI_SUCCESS:
                raise KvmError(f"DATA_DESTROY({ipa:#x}) -> {x0:#x}")
            self.undelegate(data)
            self.pages.free(data)
            assert realm.data.pop(ipa) == data
            return top
        raise KvmError("DATA_DESTROY retry loop")

    def unmap_private_range(self, realm: Realm, start: int, end: int) -> None:
        addr = start
        for _ in range(100_000):
            if addr >= end:
                return
            page_end = align_up(addr + 1, G)
            a = addr
            while a < page_end:
                a = self.destroy_private_granule(realm, a)
            addr = a
        raise KvmError("private unmap loop does not end")

    def fold_rtt_level(self, realm: Realm, level: int, start: int, end: int) -> int:
        """realm_fold_rtt_level(); returns how many tables were not folded."""
        not_folded = 0
        size = mapsize(level - 1)
        addr = start
        while addr < end:
            nxt = align_up(addr + 1, size)
            x0, rtt = self.smc(RTT_FOLD, realm.rd, align_up(addr, size), level)[:2]
            if status(x0) == RMI_SUCCESS:
                self.free_delegated(rtt)
            elif status(x0) == RMI_ERROR_RTT:
                if level == RMM_RTT_MAX_LEVEL or index(x0) < level:
                    not_folded += 1
                else:
                    deeper = self.fold_rtt_level(realm, level + 1, addr, nxt)
                    if deeper == 0:
                        nxt = addr
            else:
                raise KvmError(f"RTT_FOLD({addr:#x}, {level}) -> {x0:#x}")
            addr = nxt
        return not_folded

    def unmap_range(self, realm: Realm, start: int, size: int) -> None:
        """kvm_realm_unmap_range(..., unmap_private=true)."""
        end = min(1 << (realm.ia_bits - 1), start + size)
        self.unmap_shared_range(realm, find_map_level(realm.ia_bits, start, end), start, end)
        self.unmap_private_range(realm, start, end)
        self.fold_rtt_level(realm, get_start_level(realm.ia_bits) + 1, start, end)

    def tear_down_rtt_level(self, realm: Realm, level: int, start: int, end: int) -> None:
        """realm_tear_down_rtt_level(): RTT_DESTROY leaf-first, skipping missing RTTs via top."""
        if level > RMM_RTT_MAX_LEVEL:
            raise KvmError("tear down below level 3")
        size = mapsize(level - 1)
        addr = start
        while addr < end:
            nxt = align_up(addr + 1, size)
            if nxt > end or align_up(addr, size) != addr:
                self.tear_down_rtt_level(realm, level + 1, addr, min(nxt, end))
                addr = nxt
                continue
            x0, rtt, top = self.smc(RTT_DESTROY, realm.rd, addr, level)[:3]
            nxt = top
            if status(x0) == RMI_SUCCESS:
                self.free_delegated(rtt)
            elif status(x0) == RMI_ERROR_RTT:
                if nxt <= addr:
                    if index(x0) != level or level == RMM_RTT_MAX_LEVEL:
                        raise KvmError(f"RTT_DESTROY({addr:#x}, {level}) -> {x0:#x}, top {top:#x}")
                    nxt = align_up(addr + 1, size)
                    self.tear_down_rtt_level(realm, level + 1, addr, nxt)
                    nxt = addr
            else:
                raise KvmError(f"RTT_DESTROY({addr:#x}, {level}) -> {x0:#x}")
            if status(x0) == RMI_SUCCESS and nxt <= addr:
                raise KvmError(f"RTT_DESTROY({addr:#x}, {level}) succeeded with top {nxt:#x}")
            addr = nxt

    def destroy_rec(self, realm: Realm, vcpu: Vcpu) -> None:
        """kvm_destroy_rec(): REC_DESTROY, the aux granules, then the REC granule."""
        self.pages.free(vcpu.run)
        x0 = self.smc(REC_DESTROY, vcpu.rec)[0]
        if x0:
            raise KvmError(f"REC_DESTROY -> {x0:#x}")
        for aux in vcpu.aux:
            self.free_delegated(aux)
        self.free_delegated(vcpu.rec)

    def destroy_vm(self, realm: Realm, order: str = "v5") -> None:
        """v5: kvm_free_stage2_pgd() (unmap, destroy RTTs), kvm_destroy_vcpus(), kvm_destroy_realm();
        v12: the vCPUs first, then unmap and RTTs inside kvm_destroy_realm()."""
        if order == "v12":
            for vcpu in realm.vcpus:
                self.destroy_rec(realm, vcpu)
        self.unmap_range(realm, 0, 1 << (realm.ia_bits - 1))
        self.tear_down_rtt_level(realm, get_start_level(realm.ia_bits) + 1, 0, 1 << realm.ia_bits)
        if order == "v5":
            for vcpu in realm.vcpus:
                self.destroy_rec(realm, vcpu)
        x0 = self.smc(REALM_DESTROY, realm.rd)[0]
        if x0:
            raise KvmError(f"REALM_DESTROY -> {x0:#x}")
        self.free_delegated(realm.rd)
        self.vmid_bitmap.discard(realm.vmid)
        for i in range(realm.pgd_pages):
            self.free_delegated(realm.pgd + i * G)


# -- tests --------------------------------------------------------------------------------------

def finish(kvm: Kvm) -> None:
    """Everything KVM allocated is back in its allocator, and the RMM's invariants hold."""
    assert not kvm.pages.out, sorted(hex(p) for p in kvm.pages.out)
    report = invariants(kvm.m)
    assert report.ok, str(report)
    assert report.state_counts == {"NS": kvm.m.granule_count}, report.state_counts


def active_realm(machine: Machine) -> tuple[Kvm, Realm]:
    """KVM initialised and an active realm of 40 IPA bits with its RAM memslot [RAM, RAM + 8 MiB)
    RIPAS RAM and one vCPU starting at RAM: what the teardown tests start from."""
    kvm = Kvm(machine)
    kvm.init_rme()
    realm = kvm.create_realm(40)
    kvm.init_ipa_state(realm, RAM, RAM + 8 * MiB)
    kvm.create_rec(realm, 0, pc=RAM)
    kvm.activate(realm)
    return kvm, realm


def test_version_and_features_as_kvm_reads_them(machine: Machine) -> None:
    """KVM's init: RMI_VERSION answers 1.0 and the FEATURES(0) fields KVM extracts read as this machine
    has them (48-bit PA, SHA-256 and SHA-512, a PMU with 31 counters, 4 list registers, the BP/WP
    encodings)."""
    kvm = Kvm(machine)
    kvm.init_rme()
    assert kvm.rmi_version == 1 << 16                     # "RMI ABI version 1.0"
    assert kvm.feat(0, 8) == machine.pa_bits == 48        # kvm_realm_ipa_limit()
    assert kvm.feat(32, 1) and kvm.feat(33, 1)            # SHA-256 and SHA-512 for CONFIG_REALM
    assert kvm.feat(26, 1) and kvm.feat(27, 5) == 31      # PMU and its counters
    assert kvm.feat(34, 4) == 3                            # GICV3_NUM_LRS: 4 list registers
    assert kvm.feat(14, 6) == 5 and kvm.feat(20, 6) == 3  # NUM_BPS / NUM_WPS encodings


@pytest.mark.parametrize("ia_bits", [32, 36, 40, 42, 44, 48])
def test_realm_create_with_kvm_params_then_destroy(machine: Machine, ia_bits: int) -> None:
    """KVM's start level and concatenated root count for every IPA width it may pick, VMID 0,
    the FEATURES encodings of BPs/WPs, the PMU with all counters, SHA-512 and an RPV."""
    kvm = Kvm(machine)
    kvm.init_rme()
    realm = kvm.create_realm(ia_bits, hash_algo=1, rpv=bytes(range(64)))
    assert realm.vmid == 0
    assert 0 < realm.num_aux <= 16
    kvm.destroy_vm(realm)
    finish(kvm)


def test_realm_create_with_fewer_pmu_counters_and_no_pmu(machine: Machine) -> None:
    """Two realms made as KVM makes them, one with 6 PMU counters and one without a PMU: both are
    created, take VMIDs 0 and 1, and are destroyed with nothing left over."""
    kvm = Kvm(machine)
    kvm.init_rme()
    a = kvm.create_realm(40, pmcr_n=6)
    b = kvm.create_realm(40, pmu=False)
    assert (a.vmid, b.vmid) == (0, 1)
    kvm.destroy_vm(b)
    kvm.destroy_vm(a)
    finish(kvm)


RAM = 0x8000_0000


@pytest.mark.parametrize("ram_size", [4 * MiB, 3 * MiB + 5 * G, 1 << 30])
def test_init_ripas_over_ram_as_kvm_loops(machine: Machine, ram_size: int) -> None:
    """KVM_CAP_ARM_RME_INIT_IPA_REALM over the RAM: RTTs only down to find_map_level()."""
    kvm = Kvm(machine)
    kvm.init_rme()
    realm = kvm.create_realm(40)
    kvm.init_ipa_state(realm, RAM, RAM + ram_size)
    made = [(args[3], args[2]) for args in kvm.calls(RTT_CREATE)]
    deepest = 3 if ram_size % (2 * MiB) else (2 if ram_size < 1 << 30 else None)
    assert max((lvl for lvl, _ in made), default=None) == deepest
    for ipa in range(RAM, RAM + ram_size, align_up(ram_size // 64, G)):
        x0, _, state, _, ripas = machine.cpu(0).smc(RTT_READ_ENTRY, realm.rd, ipa, 3)
        assert (x0, state, ripas) == (0, 0, RMI_RAM), hex(ipa)
    kvm.destroy_vm(realm)
    finish(kvm)


GUEST = """
.equ MMIO, {mmio}
.equ SCRATCH_PAGE, {scratch}
start:
    mov x21, =MMIO
    mov x19, =0x1122334455667788
    str x19, [x21]                  // MMIO write: exit.gprs[0] carries x19
    ldrw x22, [x21, #8]             // MMIO read: the VMM's value lands in x22
    adr x1, hostcall
    mov x2, =0x80000000             // SMCCC_VERSION asked of the host
    str x2, [x1, #8]
    mov x2, #0x55
    str x2, [x1, #16]
    mov x0, =RSI_HOST_CALL
    smc #0
    adr x1, hostcall
    ldr x23, [x1, #8]               // what KVM answered
    ldr x24, [x1, #16]              // what KVM left alone
    mov x1, =SCRATCH_PAGE           // give an image page back: RIPAS EMPTY
    mov x2, =SCRATCH_PAGE + 0x1000
    mov x3, #0
    mov x4, #0
    mov x0, =RSI_IPA_STATE_SET
    smc #0
    mov x25, x0
    mov x26, x1
    mov x27, x2
    mov x1, =0x80601000             // two pages inside an unassigned RAM block: KVM needs an L3 RTT
    mov x2, =0x80603000
    mov x3, #0
    mov x4, #0
    mov x0, =RSI_IPA_STATE_SET
    smc #0
    mov x1, =0x80601000             // and back to RAM
    mov x2, =0x80603000
    mov x3, #1
    mov x4, #0
    mov x0, =RSI_IPA_STATE_SET
    smc #0
    mov x1, =0x80200000             // and a RAM block with no data: RIPAS EMPTY too
    mov x2, =0x80400000
    mov x3, #0
    mov x4, #0
    mov x0, =RSI_IPA_STATE_SET
    smc #0
    mov x28, x1
    mov x0, =PSCI_CPU_ON
    mov x1, #1
    adr x2, secondary
    mov x3, #0x77
    smc #0
    mov x17, x0
    mov x0, =PSCI_AFFINITY_INFO
    mov x1, #1
    mov x2, #0
    smc #0
    mov x18, x0
    adr x1, hostcall                // report x17, x18, x22..x28 in a host call
    str x17, [x1, #8]
    str x18, [x1, #16]
    str x22, [x1, #24]
    str x23, [x1, #32]
    str x24, [x1, #40]
    str x25, [x1, #48]
    str x26, [x1, #56]
    str x27, [x1, #64]
    str x28, [x1, #72]
    mov x0, =RSI_HOST_CALL
    smc #0
    mov x0, =PSCI_SYSTEM_OFF
    smc #0
    b .
secondary:
    mov x19, x0                     // the context id
    mov x20, =0x80100000            // touch unbacked RAM: a stage-2 fault KVM fills
    ldr x21, [x20]
    adr x1, hostcall2
    str x19, [x1, #8]
    str x21, [x1, #16]
    mov x0, =RSI_HOST_CALL
    smc #0
    mov x0, =PSCI_CPU_OFF
    smc #0
    b .
    .align 4096
scratch:
    .zero 4096
    .align 256
hostcall:
    .zero 256
hostcall2:
    .zero 256
"""


@pytest.mark.parametrize("order", ["v5", "v12"])
def test_kvm_builds_runs_and_tears_down_a_realm(machine: Machine, order: str) -> None:
    """A two-vCPU realm built and run as KVM does: the guest's MMIO, host calls, RIPAS changes (one needing
    an L3 RTT KVM creates), CPU_ON of a vCPU that takes a stage-2 fault, then SYSTEM_OFF; every value the
    guest reports is right, and teardown in v5's or v12's order leaves only NS granules. v12 also builds
    in its own order: populate, create the RECs, then INIT_RIPAS over the memslot, where every populated
    page answers (RMI_ERROR_RTT, 3) and KVM steps over it."""
    kvm = Kvm(machine)
    kvm.init_rme()
    ia_bits = 40
    shared = 1 << (ia_bits - 1)
    mmio = shared | 0x0A00_0000
    draft = assemble(PRELUDE + GUEST.format(mmio=mmio, scratch=0) + "\n.quad scratch", base=RAM)
    scratch = int.from_bytes(draft[-8:], "little")
    image = assemble(PRELUDE + GUEST.format(mmio=mmio, scratch=scratch), base=RAM)

    realm = kvm.create_realm(ia_bits)
    dtb = RAM + 2 * MiB - G
    if order == "v5":
        kvm.init_ipa_state(realm, RAM, RAM + 8 * MiB)             # kvmtool: INIT_IPA, then POPULATE
        kvm.populate(realm, RAM, image)
        vcpu0 = kvm.create_rec(realm, 0, pc=RAM, gprs=(dtb,))
        vcpu1 = kvm.create_rec(realm, 1)
    else:                                                         # v12: POPULATE, then the first KVM_RUN
        kvm.populate(realm, RAM, image)
        vcpu0 = kvm.create_rec(realm, 0, pc=RAM, gprs=(dtb,))
        vcpu1 = kvm.create_rec(realm, 1)
        kvm.init_ipa_state(realm, RAM, RAM + 8 * MiB, skip_populated=True)
        stepped = [args[1] for f, args, x0 in kvm.log if f == RTT_INIT_RIPAS and x0 == RMI_ERROR_RTT | 3 << 8]
        assert stepped == sorted(realm.data) == list(range(RAM, RAM + align_up(len(image), G), G))
    kvm.activate(realm)

    kvm.mmio_read_value = 0xCAFE_F00D
    lrs = ((1 << 62) | (1 << 60) | (0xA0 << 48) | (1 << 41) | 40,)   # pending level SPI 40, group 1
    assert kvm.run_vcpu(realm, vcpu0, lrs=lrs, hcr=ICH_HCR_EL2_EN | ICH_HCR_EL2_UIE) == "cpu_on"
    assert kvm.mmio == [("w", mmio, 8, 0x1122334455667788), ("r", mmio + 8, 4, 0xCAFE_F00D)]
    assert kvm.hostcalls[0][:2] == [ARM_SMCCC_VERSION_FUNC_ID, 0x55]
    set_ripas = kvm.calls(RTT_SET_RIPAS)
    assert set_ripas[0] == (realm.rd, vcpu0.rec, scratch, scratch + G)
    assert set_ripas[-1][3] == 0x8040_0000
    assert (realm.rd, vcpu0.rec, 0x8060_1000, 0x8060_3000) in set_ripas
    assert (0x8060_0000, 3) in [(a[2], a[3]) for a in kvm.calls(RTT_CREATE)]  # the L3 RTT KVM made
    for ipa in (0x8060_1000, 0x8060_2000):
        x0, level, state, _, ripas = machine.cpu(0).smc(RTT_READ_ENTRY, realm.rd, ipa, 3)
        assert (x0, level, state, ripas) == (0, 3, 0, RMI_RAM)
    assert scratch not in realm.data                                 # DATA_DESTROYed after EMPTY
    assert kvm.calls(PSCI_COMPLETE) == [(vcpu0.rec, vcpu1.rec, PSCI_RET_SUCCESS)]

    assert kvm.run_vcpu(realm, vcpu1) == "off"                      # CPU_OFF
    assert kvm.hostcalls[1][:2] == [0x77, 0]                       # context id; the faulted-in page reads 0
    assert 0x8010_0000 in realm.data

    assert kvm.run_vcpu(realm, vcpu0) == "off"                      # SYSTEM_OFF
    report = kvm.hostcalls[2][:9]
    assert report == [PSCI_RET_SUCCESS, PSCI_AFFINITY_OFF, 0xCAFE_F00D, ARM_SMCCC_VERSION_1_1, 0x55,
                      0, scratch + G, 0, 0x8040_0000], [hex(v) for v in report]
    assert kvm.handle_rec_exit(realm, vcpu1, kvm.rec_enter(realm, vcpu1)) == "system_off_race"

    kvm.destroy_vm(realm, order)
    finish(kvm)


def test_kvm_2mib_block_fault_and_teardown_split(machine: Machine) -> None:
    """realm_map_protected() with a 2 MiB page: RTT_FOLD into an ASSIGNED level-2 block; at
    teardown DATA_DESTROY reports (RMI_ERROR_RTT, 2) with top == ipa, which is how KVM tells a
    block from an unassigned entry before splitting it with RTT_CREATE(level 3)."""
    kvm, realm = active_realm(machine)
    block = RAM + 4 * MiB
    phys = kvm.map_protected_block(realm, block)
    x0, level, state, desc, ripas = machine.cpu(0).smc(RTT_READ_ENTRY, realm.rd, block, 3)
    assert (x0, level, state, ripas) == (0, 2, 1, RMI_RAM) and desc & ((1 << 48) - 1) & ~0x1FFFFF == phys
    x0, _, top = machine.cpu(0).smc(DATA_DESTROY, realm.rd, block + 5 * G)[:3]
    assert (x0, top <= block + 5 * G) == (RMI_ERROR_RTT | 2 << 8, True)
    shared_page = kvm.pages.alloc()
    kvm.map_non_secure(realm, (1 << 39) | (RAM + 8 * MiB), shared_page)
    kvm.unmap_range(realm, RAM + 8 * MiB, G)                         # the memslot's shared alias
    assert [a[1:] for a in kvm.calls(RTT_UNMAP_UNPROTECTED)] == [((1 << 39) | (RAM + 8 * MiB), 3)]
    kvm.pages.free(shared_page)
    kvm.destroy_vm(realm)
    splits = [a for a in kvm.calls(RTT_CREATE) if a[2:] == (block, 3)]
    assert len(splits) == 2                                          # the pre-created one, the split
    finish(kvm)


@pytest.mark.parametrize("order", ["v5", "v12"])
def test_kvm_teardown_with_shared_pages_still_mapped(machine: Machine, order: str) -> None:
    """The VM is destroyed while shared pages are still mapped, as with Linux: the whole-range
    unmap of KVM's teardown (v5 kvm_free_stage2_pgd, v12 kvm_destroy_realm) ORs the shared bit
    into both ends of [0, 2^(ia_bits-1)) and so makes no RTT_UNMAP_UNPROTECTED call; the
    leaf-first RTT_DESTROY pass then meets the level-3 table of ASSIGNED_NS entries. Such a table
    is not live (A5.5.8: only ASSIGNED and TABLE entries make an RTT live), so RTT_DESTROY must
    succeed there, or KVM WARNs (-EBUSY at level 3) and REALM_DESTROY finds a live root entry."""
    kvm, realm = active_realm(machine)
    shared = (1 << 39) | (RAM + 8 * MiB)
    pages = [kvm.pages.alloc() for _ in range(3)]
    for i, page in enumerate(pages):
        kvm.map_non_secure(realm, shared + i * G, page)
    kvm.destroy_vm(realm, order)
    assert kvm.calls(RTT_UNMAP_UNPROTECTED) == []
    destroyed = [x0 for fid, args, x0 in kvm.log if fid == RTT_DESTROY and args[1:] == (shared, 3)]
    assert destroyed == [RMI_SUCCESS]                                # the table of ASSIGNED_NS entries
    for page in pages:
        kvm.pages.free(page)
    finish(kvm)


def test_rtt_create_of_an_existing_rtt_reports_the_parent_level(machine: Machine) -> None:
    """Some KVM versions treat RTT_CREATE's (RMI_ERROR_RTT, level) as "the RTT already exists,
    continue"; DEN0137 1.0-rel0 (RttWalk to level - 1, rtte_state) and TF-RMM report level - 1,
    so those versions take the error path instead (a KVM quirk, see docs/deviations.md)."""
    kvm = Kvm(machine)
    kvm.init_rme()
    realm = kvm.create_realm(40)
    kvm.create_rtt_levels(realm, RAM, 1, 3)
    spare = kvm.alloc_delegated()
    assert kvm.rtt_create(realm, RAM, 3, spare) == RMI_ERROR_RTT | 2 << 8
    kvm.free_delegated(spare)
    kvm.destroy_vm(realm)
    finish(kvm)


PSCI_GUEST = """
start:
    mov x0, =PSCI_CPU_ON
    mov x1, ={mpidr}
    adr x2, secondary
    mov x3, #0x77
    smc #0
    mov x17, x0
    mov x0, =PSCI_AFFINITY_INFO
    mov x1, ={mpidr}
    mov x2, #0
    smc #0
    adr x1, hostcall
    str x17, [x1, #8]
    str x0, [x1, #16]
    mov x0, =RSI_HOST_CALL
    smc #0
    mov x0, =PSCI_SYSTEM_OFF
    smc #0
    b .
secondary:
    adr x1, hostcall
    str x0, [x1, #8]
    mov x0, =RSI_HOST_CALL
    smc #0
    mov x0, =PSCI_CPU_OFF
    smc #0
    b .
    .align 256
hostcall:
    .zero 256
"""


def test_kvm_completes_psci_naming_a_vcpu_with_junk_mpidr_bits(machine: Machine) -> None:
    """The realm names vCPU 1 in CPU_ON and AFFINITY_INFO with bits the RMM ignores (RES1 bit 31,
    MT, Aff0[7:4]). KVM finds the target by exact affinity and, for a value it cannot resolve,
    answers PSCI_RET_INVALID_PARAMS without RMI_PSCI_COMPLETE, after which the caller's REC_ENTER
    fails with ERROR_REC for ever; the exit's canonical MPIDR lets it complete both: CPU_ON
    succeeds, vCPU 1 starts with the context id and turns itself off, then AFFINITY_INFO says
    OFF."""
    kvm = Kvm(machine)
    kvm.init_rme()
    junk = 1 | 1 << 31 | 1 << 24 | 0xF0
    image = assemble(PRELUDE + PSCI_GUEST.format(mpidr=junk), base=RAM)
    realm = kvm.create_realm(40)
    kvm.init_ipa_state(realm, RAM, RAM + 2 * MiB)
    kvm.populate(realm, RAM, image)
    vcpu0 = kvm.create_rec(realm, 0, pc=RAM)
    vcpu1 = kvm.create_rec(realm, 1)
    kvm.activate(realm)
    assert kvm.run_vcpu(realm, vcpu0) == "cpu_on"
    assert kvm.run_vcpu(realm, vcpu1) == "off"
    assert kvm.run_vcpu(realm, vcpu0) == "off"
    assert [h[:2] for h in kvm.hostcalls] == [[0x77, 0], [PSCI_RET_SUCCESS, PSCI_AFFINITY_OFF]]
    assert kvm.calls(PSCI_COMPLETE) == [(vcpu0.rec, vcpu1.rec, PSCI_RET_SUCCESS)] * 2
    kvm.destroy_vm(realm)
    finish(kvm)
