"""Two more paths of Linux KVM's CCA host, from the later 1.0 series' rme.c (the stored copy
"Copyright (C) 2023-2025 ARM Ltd." whose RealmParams still carry a VMID), replayed with
test_linux_kvm_sequences' transcription (its Kvm class, extended here):

- ripas_change(RIPAS_SET) as that version loops it: RMI_SUCCESS moves on to the returned top;
  (RMI_ERROR_RTT, level) below find_map_level() creates the missing RTTs; (RMI_ERROR_RTT, level)
  at or below it steps one page on ("FIXME: Ugly hack to skip regions which are already
  RIPAS_RAM"); any other answer is a WARN that ends the loop, and kvm_complete_ripas_change()
  enters the REC again with what was done. A realm that asks for RIPAS RAM over a page KVM has
  DATA_DESTROYed (a guest_memfd hole punch: kvm_realm_unmap_range(unmap_private=true) on a
  running realm) without RSI_CHANGE_DESTROYED meets that path: RTT_SET_RIPAS answers
  no_progress (RMI_ERROR_RTT, 3), KVM steps on, the next RTT_SET_RIPAS names a base that is not
  rec.ripas_addr (base_bound: RMI_ERROR_INPUT), KVM WARNs and the realm sees no progress and
  RSI_ACCEPT (A5.4). Asked again with RSI_CHANGE_DESTROYED, the change goes through and the
  page faults in as a fresh DATA_CREATE_UNKNOWN page;
- realm_unmap_shared_range() as that version ends every (recursive) call: with
  realm_fold_rtt_level() over the shared range, so unmapping a memslot's shared pages folds the
  level-3 RTT of UNASSIGNED_NS entries into its level-2 parent and then, the level-2 RTT now
  being all UNASSIGNED_NS, that one into the level-1 root entry; KVM frees both RTTs;
- kvm_activate_realm() with 18 vCPUs: REC_CREATE's MPIDR from kvm_vcpu_get_mpidr_aff() puts
  vCPUs 16 and 17 at Aff1 1, and the realm powers them on by those affinities;
- realm_map_protected() for a 2 MiB folio inside a level-1 RIPAS RAM block (a 1 GiB memslot):
  its pre-create of the level-3 RTT through realm_create_rtt_levels(), which takes only
  (RMI_ERROR_RTT, level - 1) from RTT_CREATE for "exists" and WARNs on the (RMI_ERROR_RTT, 1)
  the RMM gives there, then the DATA_CREATE_UNKNOWN loop and fold_rtt();
- a protected memslot removed from a running realm: the DATA_DESTROY walk (from one faulted
  page to the next by DATA_DESTROY's top), then the fold pass
  that folds a level-3 RTT left all UNASSIGNED DESTROYED (A5.5: homogeneous, same RIPAS);
- the IPA widths KVM may pick that test_linux_kvm_sequences leaves out, with KVM's start level
  and concatenated root count for each.

Each test ends with every granule undelegated and the invariants checked (finish()).
"""

from __future__ import annotations

import pytest

from realm_guests import HOST_CALL_THEN_OFF, PRELUDE
from rmm_mp import Machine
from rmm_mp.guest.assembler import assemble
from test_linux_kvm_sequences import (
    DATA_CREATE_UNKNOWN, DATA_DESTROY, PSCI_AFFINITY_OFF, PSCI_COMPLETE, RAM, RMI_EMPTY, RMI_ERROR_INPUT,
    RMI_ERROR_RTT, RMI_RAM, RMI_SUCCESS, RTT_CREATE, RTT_FOLD, RTT_READ_ENTRY, RTT_SET_RIPAS, RTT_UNMAP_UNPROTECTED,
    G, Kvm, KvmError, MiB, Realm, Vcpu, find_map_level, finish, get_start_level, index, mapsize, status)

RSI_ACCEPT = 0
PSCI_AFFINITY_ON = 0
RSI_NO_CHANGE_DESTROYED, RSI_CHANGE_DESTROYED = 0, 1
UNASSIGNED, ASSIGNED, TABLE = 0, 1, 2


class LaterKvm(Kvm):
    """Kvm with the later series' ripas_change(RIPAS_SET) and realm_unmap_shared_range()."""

    def __init__(self, m: Machine) -> None:
        super().__init__(m)
        self.warned: list[tuple[int, int]] = []      # (ipa, X0) of each RTT_SET_RIPAS KVM WARNed on
        self.stepped: list[int] = []                 # IPAs the "ugly hack" stepped over

    def ripas_change(self, realm: Realm, vcpu: Vcpu, base: int, top: int, ripas: int) -> None:
        ipa, failed = base, False
        for _ in range(10_000):
            if ipa >= top:
                break
            x0, nxt = self.smc(RTT_SET_RIPAS, realm.rd, vcpu.rec, ipa, top)[:2]
            if x0 == RMI_SUCCESS:
                ipa = nxt
                continue
            if status(x0) == RMI_ERROR_RTT:
                err_level, level = index(x0), find_map_level(realm.ia_bits, ipa, top)
                if err_level >= level:
                    self.stepped.append(ipa)
                    ipa += G
                    continue
                self.create_rtt_levels(realm, ipa, err_level, level)
                continue
            self.warned.append((ipa, x0))            # WARN_ON(1); return -ENXIO
            failed = True
            break
        else:
            raise AssertionError("the RTT_SET_RIPAS loop does not end")
        if ripas == RMI_EMPTY and not failed and ipa != base:
            self.unmap_private_range(realm, base, ipa)
            self.fold_rtt_level(realm, get_start_level(realm.ia_bits) + 1, base, ipa)

    def create_rtt_levels_later(self, realm: Realm, ipa: int, level: int, max_level: int) -> None:
        """The later realm_create_rtt_levels(): (RMI_ERROR_RTT, level - 1) from RTT_CREATE is "the RTT
        already exists, continue"; any other failure is a WARN that ends it (recorded in ``warned``)."""
        while level < max_level:
            level += 1
            rtt = self.alloc_delegated()
            x0 = self.rtt_create(realm, ipa, level, rtt)
            if x0 == RMI_SUCCESS:
                continue
            self.free_delegated(rtt)
            if x0 == RMI_ERROR_RTT | (level - 1) << 8:
                continue
            self.warned.append((ipa, x0))
            return

    def map_protected_block_later(self, realm: Realm, ipa: int) -> None:
        """The later realm_map_protected() for a 2 MiB folio: pre-create the level-3 RTT (errors
        ignored, "handled below"), DELEGATE + DATA_CREATE_UNKNOWN per page creating RTTs on
        RMI_ERROR_RTT, then fold_rtt(base, 3)."""
        block = mapsize(2)
        phys = self.pages.alloc(block // G)
        self.create_rtt_levels_later(realm, ipa, 2, 3)
        for off in range(0, block, G):
            self.delegate(phys + off)
            x0 = self.smc(DATA_CREATE_UNKNOWN, realm.rd, phys + off, ipa + off)[0]
            if status(x0) == RMI_ERROR_RTT:
                self.create_rtt_levels_later(realm, ipa + off, index(x0), 3)
                x0 = self.smc(DATA_CREATE_UNKNOWN, realm.rd, phys + off, ipa + off)[0]
            if x0 != RMI_SUCCESS:
                raise KvmError(f"DATA_CREATE_UNKNOWN({ipa + off:#x}) -> {x0:#x}")
            realm.data[ipa + off] = phys + off
        x0, folded = self.smc(RTT_FOLD, realm.rd, ipa, 3)[:2]
        if x0 != RMI_SUCCESS:
            raise KvmError(f"RTT_FOLD({ipa:#x}, 3) -> {x0:#x}")
        self.free_delegated(folded)

    def unmap_shared_range(self, realm: Realm, level: int, start: int, end: int) -> None:
        super().unmap_shared_range(realm, level, start, end)   # recursive calls come back here
        shared = 1 << (realm.ia_bits - 1)
        self.fold_rtt_level(realm, get_start_level(realm.ia_bits) + 1, start | shared, end | shared)


def run_to(kvm: LaterKvm, realm: Realm, vcpu: Vcpu, hostcalls: int) -> str:
    """KVM_RUN until the vCPU stops or ``hostcalls`` host calls have been handled."""
    for _ in range(200):
        outcome = kvm.handle_rec_exit(realm, vcpu, kvm.rec_enter(realm, vcpu))
        if outcome != "enter" or len(kvm.hostcalls) == hostcalls:
            return outcome
    raise AssertionError("the vCPU never stopped")


DESTROYED_GUEST = """
start:
    adr x1, hostcall
    adr x9, victim
    str x9, [x1, #8]                // tell the host which page to punch out
    mov x0, =RSI_HOST_CALL
    smc #0
    adr x1, victim
    adr x2, victim_end
    mov x3, #1                      // RIPAS RAM
    mov x4, #0                      // RSI_NO_CHANGE_DESTROYED
    mov x0, =RSI_IPA_STATE_SET
    smc #0
    mov x20, x0
    mov x21, x1
    mov x22, x2
    adr x1, victim
    adr x2, victim_end
    mov x3, #1
    mov x4, #1                      // RSI_CHANGE_DESTROYED
    mov x0, =RSI_IPA_STATE_SET
    smc #0
    mov x23, x0
    mov x24, x1
    mov x25, x2
    adr x9, victim
    ldr x26, [x9]                   // UNASSIGNED RAM now: a stage-2 fault KVM fills
    adr x9, victim_end
    ldr x27, [x9, #-8]              // the page KVM kept: still the image's bytes
    adr x1, hostcall
    str x20, [x1, #8]
    str x21, [x1, #16]
    str x22, [x1, #24]
    str x23, [x1, #32]
    str x24, [x1, #40]
    str x25, [x1, #48]
    str x26, [x1, #56]
    str x27, [x1, #64]""" + HOST_CALL_THEN_OFF + """
    .align 4096
victim:
    .zero 4096
    .zero 4088
    .quad 0x5151515151515151
victim_end:
"""


def test_ripas_ram_over_a_punched_page_without_and_with_change_destroyed(machine: Machine) -> None:
    """KVM DATA_DESTROYs a populated page of the running realm (hole punch), making it DESTROYED.
    RSI_IPA_STATE_SET(RAM) over it and the next page without RSI_CHANGE_DESTROYED: RTT_SET_RIPAS
    gives (RMI_ERROR_RTT, 3), KVM's hack steps one page on, RTT_SET_RIPAS at the next page is
    RMI_ERROR_INPUT (base_bound, B4.3.21), KVM WARNs and enters the REC again, and the realm gets
    RSI_SUCCESS, X1 = base (no progress) and RSI_ACCEPT. With RSI_CHANGE_DESTROYED the one
    RTT_SET_RIPAS covers both pages; the punched page then faults in through DATA_CREATE_UNKNOWN
    and reads 0, the other still holds its image bytes."""
    kvm = LaterKvm(machine)
    kvm.init_rme()
    realm = kvm.create_realm(40)
    kvm.init_ipa_state(realm, RAM, RAM + 8 * MiB)
    kvm.populate(realm, RAM, assemble(PRELUDE + DESTROYED_GUEST, base=RAM))
    vcpu = kvm.create_rec(realm, 0, pc=RAM)
    kvm.activate(realm)

    assert run_to(kvm, realm, vcpu, hostcalls=1) == "enter"
    victim = kvm.hostcalls[0][0]
    assert victim in realm.data and victim + G in realm.data
    kvm.unmap_range(realm, victim, G)                        # kvm_gmem_punch_hole -> unmap_private
    assert (RMI_SUCCESS, victim) in [(x0, a[1]) for f, a, x0 in kvm.log if f == DATA_DESTROY]
    assert victim not in realm.data
    x0, level, state, _, ripas = machine.cpu(0).smc(RTT_READ_ENTRY, realm.rd, victim, 3)
    assert (x0, level, state, ripas) == (RMI_SUCCESS, 3, UNASSIGNED, 2)     # DESTROYED

    assert run_to(kvm, realm, vcpu, hostcalls=2) == "enter"
    top = victim + 2 * G
    assert [(a[2:], x0) for f, a, x0 in kvm.log if f == RTT_SET_RIPAS] == [
        ((victim, top), RMI_ERROR_RTT | 3 << 8),           # no_progress: DESTROYED at base
        ((victim + G, top), RMI_ERROR_INPUT),              # base_bound: KVM's step past it
        ((victim, top), RMI_SUCCESS)]                      # asked again with CHANGE_DESTROYED
    assert kvm.stepped == [victim] and kvm.warned == [(victim + G, RMI_ERROR_INPUT)]
    report = kvm.hostcalls[1][:8]
    assert report == [0, victim, RSI_ACCEPT, 0, top, RSI_ACCEPT, 0, 0x5151515151515151], [hex(v) for v in report]
    assert [a[2] for f, a, x0 in kvm.log if f == DATA_CREATE_UNKNOWN and x0 == 0] == [victim]
    x0, level, state, _, ripas = machine.cpu(0).smc(RTT_READ_ENTRY, realm.rd, victim, 3)
    assert (x0, level, state, ripas) == (RMI_SUCCESS, 3, ASSIGNED, RMI_RAM)

    assert run_to(kvm, realm, vcpu, hostcalls=-1) == "off"
    kvm.destroy_vm(realm, "v12")
    finish(kvm)


def test_unmapping_a_shared_memslot_folds_its_rtts_up_to_the_root(machine: Machine) -> None:
    """A shared memslot at a 1 GiB-aligned IPA with three pages mapped (RTT_MAP_UNPROTECTED at
    level 3, KVM creating the level-2 and level-3 RTTs). Unmapping the memslot's first 2 MiB as
    the later realm_unmap_shared_range() does: RTT_UNMAP_UNPROTECTED at level 2 meets the table
    ((RMI_ERROR_RTT, 2) with top == the address), so KVM goes down to level 3 and unmaps the
    three pages; the fold pass then folds the level-3 RTT (all UNASSIGNED_NS) into the level-2
    RTT and that one, now homogeneous, into the root: the shared IPA reads UNASSIGNED at level
    1 again and KVM has both RTTs back."""
    kvm = LaterKvm(machine)
    kvm.init_rme()
    realm = kvm.create_realm(40)
    kvm.init_ipa_state(realm, RAM, RAM + 8 * MiB)
    kvm.create_rec(realm, 0, pc=RAM)
    kvm.activate(realm)
    gpa = 0xC000_0000
    shared = (1 << 39) | gpa
    pages = [kvm.pages.alloc() for _ in range(3)]
    for i, page in enumerate(pages):
        kvm.map_non_secure(realm, shared + i * G, page)
    rtts_before = len(kvm.pages.out)
    x0, level, state = machine.cpu(0).smc(RTT_READ_ENTRY, realm.rd, shared, 3)[:3]
    assert (x0, level, state) == (RMI_SUCCESS, 3, ASSIGNED)

    kvm.unmap_range(realm, gpa, 2 * MiB)
    unmaps = [(a[1:], x0) for f, a, x0 in kvm.log if f == RTT_UNMAP_UNPROTECTED]
    assert unmaps[0] == ((shared, 2), RMI_ERROR_RTT | 2 << 8)
    assert [u for u in unmaps if u[1] == RMI_SUCCESS] == [((shared + i * G, 3), RMI_SUCCESS) for i in range(3)]
    folds = [(a[1:], x0) for f, a, x0 in kvm.log if f == RTT_FOLD and x0 == RMI_SUCCESS]
    assert folds == [((shared, 3), RMI_SUCCESS), ((shared, 2), RMI_SUCCESS)]
    assert len(kvm.pages.out) == rtts_before - 2
    x0, level, state = machine.cpu(0).smc(RTT_READ_ENTRY, realm.rd, shared, 3)[:3]
    assert (x0, level, state) == (RMI_SUCCESS, 1, UNASSIGNED)

    for page in pages:
        kvm.pages.free(page)
    kvm.destroy_vm(realm, "v12")
    finish(kvm)


MANY_VCPUS_GUEST = """
start:
    mov x0, =PSCI_CPU_ON
    mov x1, #0x101                  // vCPU 17 as KVM's MPIDR (and so the DT) names it: Aff1 1, Aff0 1
    adr x2, secondary
    mov x3, #0x17
    smc #0
    mov x17, x0
    mov x0, =PSCI_AFFINITY_INFO
    mov x1, #0x101
    mov x2, #0
    smc #0
    mov x18, x0
    mov x0, =PSCI_CPU_ON
    mov x1, #0x100                  // vCPU 16: Aff1 1, Aff0 0
    adr x2, parked
    mov x3, #0
    smc #0
    mov x19, x0
    mov x0, =PSCI_AFFINITY_INFO
    mov x1, #0x100
    mov x2, #0
    smc #0
    mov x20, x0
    mrs x21, mpidr
    adr x1, hostcall
    str x17, [x1, #8]
    str x18, [x1, #16]
    str x19, [x1, #24]
    str x20, [x1, #32]
    str x21, [x1, #40]
    mov x0, =RSI_HOST_CALL
    smc #0
    mov x0, =PSCI_SYSTEM_OFF
    smc #0
    b .
secondary:
    mov x19, x0
    mrs x20, mpidr
    adr x1, hostcall2
    str x19, [x1, #8]
    str x20, [x1, #16]
    mov x0, =RSI_HOST_CALL
    smc #0
    mov x0, =PSCI_CPU_OFF
    smc #0
    b .
parked:
    wfi
    b parked
    .align 256
hostcall:
    .zero 256
hostcall2:
    .zero 256
"""


def test_eighteen_vcpus_with_kvm_mpidrs_power_on_by_affinity(machine: Machine) -> None:
    """KVM's later activation order with 18 vCPUs: a REC per vCPU (REC_CREATE's MPIDR from
    kvm_vcpu_get_mpidr_aff(): vCPU 16 is 0x100 (Aff1 1), vCPU 17 0x101, each equal to the
    RMM's RecIndex order), INIT_RIPAS, REALM_ACTIVATE. The realm powers on vCPU 17 and vCPU 16 by
    those affinities; KVM resolves them to their RECs by exact match for RMI_PSCI_COMPLETE;
    vCPU 17 starts with its context id and reads MPIDR_EL1 = RES1 bit 31 | 0x101, the value
    KVM's own vCPU MPIDR has (reset_mpidr()), and vCPU 0 reads 0x80000000."""
    kvm = LaterKvm(machine)
    kvm.init_rme()
    realm = kvm.create_realm(40)
    kvm.populate(realm, RAM, assemble(PRELUDE + MANY_VCPUS_GUEST, base=RAM))
    vcpus = [kvm.create_rec(realm, i, pc=RAM if i == 0 else 0) for i in range(18)]
    kvm.init_ipa_state(realm, RAM, RAM + 2 * MiB, skip_populated=True)
    kvm.activate(realm)
    assert kvm.run_vcpu(realm, vcpus[0]) == "cpu_on"
    assert kvm.run_vcpu(realm, vcpus[17]) == "off"
    assert kvm.run_vcpu(realm, vcpus[0]) == "cpu_on"
    assert kvm.run_vcpu(realm, vcpus[0]) == "off"
    rec = {v.rec: v.vcpu_id for v in vcpus}
    completes = [(rec[a[0]], rec[a[1]], a[2]) for a in kvm.calls(PSCI_COMPLETE)]
    assert completes == [(0, 17, 0), (0, 17, 0), (0, 16, 0), (0, 16, 0)]
    assert kvm.hostcalls[0][:2] == [0x17, (1 << 31) | 0x101]
    assert kvm.hostcalls[1][:5] == [0, PSCI_AFFINITY_OFF, 0, PSCI_AFFINITY_ON, 1 << 31]
    kvm.destroy_vm(realm, "v12")
    finish(kvm)


def test_faults_inside_a_level_1_ram_block(machine: Machine) -> None:
    """A 1 GiB memslot at a 1 GiB-aligned IPA: KVM's INIT_RIPAS loop makes it one level-1 RIPAS RAM
    entry with no RTT below. A 2 MiB fault there as the later realm_map_protected() takes it: the
    pre-create RTT_CREATE(level 3) answers (RMI_ERROR_RTT, 1), the level the walk reached (B4.3.15
    rtt_walk; TF-RMM alike), which that KVM's realm_create_rtt_levels() does not take for "exists"
    (it wants level - 1 = 2), so it WARNs (a KVM quirk: harmless, the first DATA_CREATE_UNKNOWN
    then creates the level-2 and level-3 RTTs, each inheriting RIPAS RAM from the block); the 512
    pages fold into an ASSIGNED level-2 block. A 4 KiB fault elsewhere in the block then needs only
    a level-3 RTT. Teardown (v12 order) splits the block again and leaves only NS granules."""
    kvm = LaterKvm(machine)
    kvm.init_rme()
    realm = kvm.create_realm(40)
    kvm.init_ipa_state(realm, RAM, RAM + (1 << 30))
    assert kvm.calls(RTT_CREATE) == []
    kvm.create_rec(realm, 0, pc=RAM)
    kvm.activate(realm)

    block = RAM + 6 * MiB
    kvm.map_protected_block_later(realm, block)
    assert kvm.warned == [(block, RMI_ERROR_RTT | 1 << 8)]
    made = [(a[2], a[3], x0) for f, a, x0 in kvm.log if f == RTT_CREATE]
    assert made == [(block, 3, RMI_ERROR_RTT | 1 << 8), (RAM, 2, RMI_SUCCESS), (block, 3, RMI_SUCCESS)]
    x0, level, state, _, ripas = machine.cpu(0).smc(RTT_READ_ENTRY, realm.rd, block + 77 * G, 3)
    assert (x0, level, state, ripas) == (RMI_SUCCESS, 2, ASSIGNED, RMI_RAM)
    x0, level, state, _, ripas = machine.cpu(0).smc(RTT_READ_ENTRY, realm.rd, RAM + 512 * MiB, 3)
    assert (x0, level, state, ripas) == (RMI_SUCCESS, 2, UNASSIGNED, RMI_RAM)

    page = RAM + 300 * MiB + 5 * G
    kvm.map_protected(realm, page)
    assert [(a[2], a[3]) for f, a, x0 in kvm.log if f == RTT_CREATE][3:] == [(RAM + 300 * MiB, 3)]
    x0, level, state, _, ripas = machine.cpu(0).smc(RTT_READ_ENTRY, realm.rd, page + G, 3)
    assert (x0, level, state, ripas) == (RMI_SUCCESS, 3, UNASSIGNED, RMI_RAM)
    # realm_create_rtt_levels() where the level-3 RTT exists (a fault that raced this one): the
    # RMM answers (RMI_ERROR_RTT, level - 1), the one answer that KVM takes for "exists", so no WARN.
    kvm.create_rtt_levels_later(realm, page + G, 2, 3)
    assert [(a[2], a[3], x0) for f, a, x0 in kvm.log if f == RTT_CREATE][4:] == [
        (RAM + 300 * MiB, 3, RMI_ERROR_RTT | 2 << 8)]
    assert len(kvm.warned) == 1

    kvm.destroy_vm(realm, "v12")
    finish(kvm)


def test_memslot_removed_from_a_running_realm_folds_a_destroyed_table(machine: Machine) -> None:
    """A protected memslot [RAM, RAM + 8 MiB) of an active realm, its 2 MiB at RAM + 2 MiB faulted
    in page by page (a level-3 RTT of 512 ASSIGNED entries), is removed (kvm_realm_unmap_range with
    unmap_private): 512 DATA_DESTROYs leave the table all UNASSIGNED DESTROYED, and the fold pass
    KVM runs from level 2 (RTT_FOLD(RAM, 2) not homogeneous, (RMI_ERROR_RTT, 2), so down to level
    3) folds it into a level-2 DESTROYED block and frees the RTT; the other level-2 entries are
    the INIT_RIPAS RAM blocks, so the level-2 RTT stays."""
    kvm = LaterKvm(machine)
    kvm.init_rme()
    realm = kvm.create_realm(40)
    kvm.init_ipa_state(realm, RAM, RAM + 8 * MiB)
    kvm.create_rec(realm, 0, pc=RAM)
    kvm.activate(realm)
    for ipa in range(RAM + 2 * MiB, RAM + 4 * MiB, G):
        kvm.map_protected(realm, ipa)
    kvm.unmap_range(realm, RAM, 8 * MiB)
    assert realm.data == {}
    folds = [(a[1:], x0) for f, a, x0 in kvm.log if f == RTT_FOLD and a[1] < 1 << 39]   # the private pass
    assert folds[0] == ((RAM, 2), RMI_ERROR_RTT | 2 << 8)
    assert ((RAM + 2 * MiB, 3), RMI_SUCCESS) in folds
    x0, level, state, _, ripas = machine.cpu(0).smc(RTT_READ_ENTRY, realm.rd, RAM + 3 * MiB, 3)
    assert (x0, level, state, ripas) == (RMI_SUCCESS, 2, UNASSIGNED, 2)          # DESTROYED
    x0, level, state, _, ripas = machine.cpu(0).smc(RTT_READ_ENTRY, realm.rd, RAM + 5 * MiB, 3)
    assert (x0, level, state, ripas) == (RMI_SUCCESS, 2, UNASSIGNED, RMI_RAM)
    # What stays is the RMM's refusal, not KVM's choice: that level-2 RTT (RAM blocks, the
    # DESTROYED block, EMPTY past the memslot) is not homogeneous, and RTT_FOLD refuses it.
    assert machine.cpu(0).smc(RTT_FOLD, realm.rd, RAM, 2)[0] == RMI_ERROR_RTT | 2 << 8
    kvm.destroy_vm(realm, "v12")
    finish(kvm)


def test_removing_pages_with_unfaulted_ones_between_steps_by_top(machine: Machine) -> None:
    """Three pages of a 2 MiB RIPAS RAM range faulted in (its first, its fourth and its last), the
    range removed: KVM's DATA_DESTROY walk goes from each page to the ``top`` that DATA_DESTROY
    returned (B4.3.3: the next entry holding a PA, or the end of the RTT), so it calls
    DATA_DESTROY at the three pages and nowhere between."""
    kvm = LaterKvm(machine)
    kvm.init_rme()
    realm = kvm.create_realm(40)
    kvm.init_ipa_state(realm, RAM, RAM + 8 * MiB)
    kvm.create_rec(realm, 0, pc=RAM)
    kvm.activate(realm)
    base = RAM + 2 * MiB
    pages = [base, base + 3 * G, base + 2 * MiB - G]
    for ipa in pages:
        kvm.map_protected(realm, ipa)
    kvm.unmap_range(realm, base, 2 * MiB)
    assert realm.data == {}
    assert [(a[1], x0) for f, a, x0 in kvm.log if f == DATA_DESTROY] == [(ipa, RMI_SUCCESS) for ipa in pages]
    kvm.destroy_vm(realm, "v12")
    finish(kvm)


@pytest.mark.parametrize("ia_bits", [33, 34, 35, 37, 38, 39, 41, 43, 45, 46, 47])
def test_every_other_kvm_ipa_width(machine: Machine, ia_bits: int) -> None:
    """The IPA widths test_linux_kvm_sequences leaves out (KVM takes any from 32 to FEATURES.S2SZ):
    KVM's start level and concatenated root count (16 roots at level 2 for 34 bits and at level 1
    for 43) are accepted, INIT_RIPAS runs over 2 MiB at the top of the protected space, and the VM
    is torn down."""
    kvm = LaterKvm(machine)
    kvm.init_rme()
    realm = kvm.create_realm(ia_bits)
    assert realm.pgd_pages == {34: 16, 43: 16}.get(ia_bits, realm.pgd_pages)
    top = 1 << (ia_bits - 1)
    kvm.init_ipa_state(realm, top - 2 * MiB, top)
    x0, _, state, _, ripas = machine.cpu(0).smc(RTT_READ_ENTRY, realm.rd, top - G, 3)
    assert (x0, state, ripas) == (RMI_SUCCESS, UNASSIGNED, RMI_RAM)
    kvm.destroy_vm(realm, "v12")
    finish(kvm)
