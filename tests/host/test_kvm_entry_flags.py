"""More of Linux KVM's CCA host, replayed with test_linux_kvm_sequences' transcription (its Kvm
class, extended here where a KVM version does more than the v5..v12 1.0 series it follows):

- the entry flags of the later series' rec_enter_sync(): every REC_ENTER carries TRAP_WFI and
  TRAP_WFE when the vCPU's HCR_EL2 has TWI/TWE (KVM's default), ORed onto EMULATED_MMIO after an
  emulated MMIO read or write; a WFx exit (EC 0x01) goes to kvm_handle_wfx() and the REC is
  entered again, and an MMIO abort KVM cannot emulate (no ISV, an ldp) gets INJECT_SEA when the
  VMM asks for an external data abort (kvm_inject_dabt() -> __kvm_inject_sea() for a REC);
- PSCI completions with a status other than plain success: the later series'
  kvm_rec_complete_psci() completes CPU_ON with PSCI_DENIED when the VMM's handling failed and
  with PSCI_SUCCESS when KVM found the target already on (the RMM then answers ALREADY_ON);
- RIPAS changes that KVM completes only in part before entering again: realm_set_ipa_state()
  stopping on -ENOMEM (no RTT page to hand) with no progress or part of the range done, after
  which the realm sees X1 = the first IPA not changed and asks again for the rest;
- KVM_CAP_ARM_RME_INIT_IPA_REALM over ranges whose ends are not block aligned and that cross
  a 1 GiB (level 1) boundary, so the INIT_RIPAS loop creates tables at levels 2 and 3 around it.

Each test ends with every granule undelegated and the invariants checked (finish()).
"""

from __future__ import annotations

import pytest

from realm_guests import HOST_CALL_THEN_OFF, PRELUDE
from rmm_mp import Machine
from rmm_mp.guest.assembler import assemble
from test_linux_kvm_sequences import (
    ENTER_FLAGS, EXIT, EXIT_ESR, PSCI_COMPLETE, RAM, RMI_EMPTY, RMI_EXIT_RIPAS_CHANGE, RMI_EXIT_SYNC,
    RMI_ERROR_REC, RMI_RAM, RMI_SUCCESS, RTT_CREATE, RTT_READ_ENTRY, RTT_SET_RIPAS, G, Kvm, MiB, Realm, Vcpu,
    align_down, finish)

REC_ENTER_FLAG_INJECT_SEA, REC_ENTER_FLAG_TRAP_WFI, REC_ENTER_FLAG_TRAP_WFE = 1 << 1, 1 << 2, 1 << 3
ESR_ELx_EC_WFx = 0x01
PSCI_RET_DENIED, PSCI_RET_ALREADY_ON = (1 << 64) - 3, (1 << 64) - 4
PSCI_CPU_ON, PSCI_AFFINITY_INFO = 0xC400_0003, 0xC400_0004


class LaterKvm(Kvm):
    """Kvm with the later series' entry discipline and PSCI completion, and knobs for the VMM's
    answers: ``inject_nisv`` (an MMIO abort with no syndrome gets an external abort),
    ``deny_cpu_on`` (how many CPU_ON requests the VMM refuses), ``ripas_budget`` (RTT_SET_RIPAS
    calls KVM gets through per RIPAS_CHANGE exit before running out of memory)."""

    def __init__(self, m: Machine) -> None:
        super().__init__(m)
        self.wfx_exits: list[int] = []                 # ESR.TI of each WFx exit
        self.injected: list[int] = []                  # IPAs KVM injected an SEA for
        self.inject_nisv = True
        self.deny_cpu_on = 0
        self.ripas_budget: int | None = None
        self.ripas_exits: list[tuple[int, int]] = []
        self.entries = 0

    def rec_enter(self, realm: Realm, vcpu: Vcpu, lrs: tuple[int, ...] = (), hcr: int = 1) -> int:
        # rec_enter_sync(): "sync WFx traps" from HCR_EL2.TWI/TWE, on top of whatever the exit
        # handling set (EMULATED_MMIO, INJECT_SEA).
        flags = self.q(vcpu.run, ENTER_FLAGS) | REC_ENTER_FLAG_TRAP_WFI | REC_ENTER_FLAG_TRAP_WFE
        self.set_q(vcpu.run, ENTER_FLAGS, flags)
        self.entries += 1
        return super().rec_enter(realm, vcpu, lrs, hcr)

    def handle_rec_exit(self, realm: Realm, vcpu: Vcpu, ret: int) -> str:
        if ret == 0 and self.m.ns_read(vcpu.run + EXIT, 1)[0] == RMI_EXIT_SYNC:
            esr = self.q(vcpu.run, EXIT + EXIT_ESR)
            if (esr >> 26) & 0x3F == ESR_ELx_EC_WFx:   # kvm_handle_wfx(): block, then run again
                self.set_q(vcpu.run, ENTER_FLAGS, 0)
                vcpu.last_exit = RMI_EXIT_SYNC
                self.wfx_exits.append(esr & 1)
                return "enter"
        if ret == 0 and self.m.ns_read(vcpu.run + EXIT, 1)[0] == RMI_EXIT_RIPAS_CHANGE:
            base = self.q(vcpu.run, EXIT + 0x500)
            top = self.q(vcpu.run, EXIT + 0x508)
            self.ripas_exits.append((base, top))
        return super().handle_rec_exit(realm, vcpu, ret)

    def dabt(self, realm: Realm, vcpu: Vcpu, esr: int, far: int, hpfar: int, gpr0: int) -> str:
        ipa = ((hpfar & ((1 << 44) - 1)) >> 4 << 12) | (far & 0xFFF)
        if ipa & (1 << (realm.ia_bits - 1)) and not esr & (1 << 24) and self.inject_nisv:
            # io_mem_abort() without a syndrome: the VMM (KVM_EXIT_ARM_NISV) asks for an external
            # data abort, and kvm_inject_dabt() on a REC sets INJECT_SEA for the next entry.
            self.injected.append(ipa)
            self.set_q(vcpu.run, ENTER_FLAGS, self.q(vcpu.run, ENTER_FLAGS) | REC_ENTER_FLAG_INJECT_SEA)
            return "enter"
        return super().dabt(realm, vcpu, esr, far, hpfar, gpr0)

    def psci(self, realm: Realm, vcpu: Vcpu) -> str:
        fid, mpidr = vcpu.regs[0], vcpu.regs[1]
        target = next((v for v in realm.vcpus if v.vcpu_id == mpidr), None)
        if fid == PSCI_CPU_ON and target is not None:
            if self.deny_cpu_on:                       # the VMM failed it: kvm_rec_complete_psci()
                self.deny_cpu_on -= 1
                status = PSCI_RET_DENIED
            else:                                      # SUCCESS, and ALREADY_ON taken as SUCCESS
                status = 0
            x0 = self.smc(PSCI_COMPLETE, vcpu.rec, target.rec, status)[0]
            assert x0 == RMI_SUCCESS, hex(x0)
            if status == 0 and target.stopped:
                target.stopped = False
                return "cpu_on"
            return "enter"
        return super().psci(realm, vcpu)

    def ripas_change(self, realm: Realm, vcpu: Vcpu, base: int, top: int, ripas: int) -> None:
        if self.ripas_budget is None:
            return super().ripas_change(realm, vcpu, base, top, ripas)
        # kvm_complete_ripas_change() when realm_set_ipa_state() runs out of pages: whatever
        # RTT_SET_RIPAS calls went through stand, the exit's ripas_base is moved on, and the
        # REC is entered again (the RMM reports the progress to the realm).
        ipa, calls = base, 0
        while ipa < top and calls < self.ripas_budget:
            x0, nxt = self.smc(RTT_SET_RIPAS, realm.rd, vcpu.rec, ipa, top)[:2]
            calls += 1
            if x0 & 0xFF == 4:                         # RMI_ERROR_RTT: make the tables, no budget used
                self.create_rtt_levels(realm, ipa, (x0 >> 8) & 0xFF, 3)
                calls -= 1
                continue
            assert x0 == RMI_SUCCESS and nxt > ipa, (hex(x0), hex(nxt))
            ipa = nxt
        if ripas == RMI_EMPTY and ipa != base:
            self.unmap_private_range(realm, base, ipa)
        self.set_q(vcpu.run, EXIT + 0x500, ipa)


def build(kvm: LaterKvm, source: str, *, vcpus: int = 1) -> tuple[Realm, list[Vcpu]]:
    """An active realm of 40 IPA bits, [RAM, RAM + 8 MiB) RIPAS RAM, the image at RAM."""
    image = assemble(PRELUDE + source, base=RAM)
    realm = kvm.create_realm(40)
    kvm.init_ipa_state(realm, RAM, RAM + 8 * MiB)
    kvm.populate(realm, RAM, image)
    made = [kvm.create_rec(realm, i, pc=RAM if i == 0 else 0) for i in range(vcpus)]
    kvm.activate(realm)
    return realm, made


def run_until(kvm: LaterKvm, realm: Realm, vcpu: Vcpu, until: str = "off", hostcalls: int = -1) -> None:
    """KVM_RUN until the exit handling says ``until`` or, with ``hostcalls`` >= 0, until that many
    host calls have been seen."""
    for _ in range(200):
        outcome = kvm.handle_rec_exit(realm, vcpu, kvm.rec_enter(realm, vcpu))
        if outcome == until or len(kvm.hostcalls) == hostcalls:
            return
        assert outcome == "enter", outcome
    raise AssertionError("the vCPU never stopped")


ENTRY_FLAGS_GUEST = """
.equ MMIO, {mmio}
start:
    adr x9, vectors
    msr vbar, x9
    mov x21, =MMIO
    mov x19, =0x1122334455667788
    str x19, [x21]                  // MMIO write: EMULATED_MMIO (and the trap flags) next entry
    ldr x22, [x21, #8]              // MMIO read: EMULATED_MMIO with enter.gprs[0]
    wfi                             // trapped: a WFx exit, then on past it
    wfe                             // trapped too (TI = 1)
    mov x23, #0x5a
ldp_at:
    ldp x24, x25, [x21, #16]        // no ISV: KVM's VMM injects an SEA
after:
    adr x1, hostcall
    str x22, [x1, #8]
    str x23, [x1, #16]
    str x20, [x1, #24]              // ESR_EL1 of the SEA
    str x26, [x1, #32]              // ELR_EL1
    str x27, [x1, #40]              // FAR_EL1
    str x24, [x1, #48]
    adr x9, ldp_at
    str x9, [x1, #56]""" + HOST_CALL_THEN_OFF + """    .org 0x800
vectors:
    .org 0xA00                      // synchronous exception from the current EL
    mrs x20, esr
    mrs x26, elr
    mrs x27, far
    adr x9, after
    msr elr, x9
    eret
"""


def test_later_kvm_sets_wfx_traps_on_every_entry_and_injects_sea(machine: Machine) -> None:
    """Every entry with TRAP_WFI | TRAP_WFE (alone, with EMULATED_MMIO after an MMIO write and a
    read, with INJECT_SEA after an ldp at an MMIO address): the MMIO values go both ways, WFI and
    WFE each make one WFx exit (TI 0, then 1) and the realm goes on past them, and the ldp's SEA
    is taken at the ldp (EC 0x25, EA, DFSC 0x10, FAR the IPA) with x24 left alone."""
    kvm = LaterKvm(machine)
    kvm.init_rme()
    mmio = (1 << 39) | 0x0A00_0000
    realm, (vcpu,) = build(kvm, ENTRY_FLAGS_GUEST.format(mmio=mmio))
    kvm.mmio_read_value = 0xCAFE_F00D_1234_5678
    run_until(kvm, realm, vcpu)
    assert kvm.mmio == [("w", mmio, 8, 0x1122334455667788), ("r", mmio + 8, 8, 0xCAFE_F00D_1234_5678)]
    assert kvm.wfx_exits == [0, 1]
    assert kvm.injected == [mmio]       # a non-emulatable abort's exit.far is zero (A4.3.4.3)
    ldp_at = kvm.hostcalls[0][6]
    assert ldp_at > RAM
    esr, elr, far = kvm.hostcalls[0][2:5]
    assert kvm.hostcalls[0][0:2] == [0xCAFE_F00D_1234_5678, 0x5A]
    assert (esr >> 26, bool(esr & (1 << 9)), esr & 0x3F, elr, far) == (0x25, True, 0x10, ldp_at, mmio + 16), \
        [hex(v) for v in (esr, elr, far)]
    assert kvm.hostcalls[0][5] == 0
    # exits: MMIO w, MMIO r, WFI, WFE, the ldp, the host call, SYSTEM_OFF
    assert kvm.entries == 7
    kvm.destroy_vm(realm)
    finish(kvm)


PSCI_GUEST = """
start:
    mov x0, =PSCI_CPU_ON            // the VMM fails it: DENIED
    mov x1, #1
    adr x2, secondary
    mov x3, #0x77
    smc #0
    mov x17, x0
    mov x0, =PSCI_AFFINITY_INFO     // still OFF
    mov x1, #1
    mov x2, #0
    smc #0
    mov x18, x0
    mov x0, =PSCI_CPU_ON            // granted
    mov x1, #1
    adr x2, secondary
    mov x3, #0x78
    smc #0
    mov x19, x0
    mov x0, =PSCI_CPU_ON            // KVM finds vCPU 1 on: SUCCESS given, ALREADY_ON seen
    mov x1, #1
    adr x2, secondary
    mov x3, #0x79
    smc #0
    mov x20, x0
    mov x0, =PSCI_AFFINITY_INFO     // ON
    mov x1, #1
    mov x2, #0
    smc #0
    adr x1, hostcall
    str x17, [x1, #8]
    str x18, [x1, #16]
    str x19, [x1, #24]
    str x20, [x1, #32]
    str x0, [x1, #40]
    mov x0, =RSI_HOST_CALL
    smc #0
    mov x0, =PSCI_SYSTEM_OFF
    smc #0
    b .
secondary:
    adr x1, hostcall2
    str x0, [x1, #8]                // the context id of the CPU_ON that started it
    mov x0, =RSI_HOST_CALL
    smc #0
idle:
    wfi                             // stays on: the third CPU_ON finds it so
    b idle
    .align 256
hostcall:
    .zero 256
hostcall2:
    .zero 256
"""


def test_psci_completed_denied_then_success_then_already_on(machine: Machine) -> None:
    """CPU_ON completed with PSCI_DENIED leaves vCPU 1 off (AFFINITY_INFO says OFF, its
    REC_ENTER fails as for any non-runnable REC); the next CPU_ON starts it with its own context
    id; a third, completed with SUCCESS while vCPU 1 is on, reads ALREADY_ON; AFFINITY_INFO then
    says ON."""
    kvm = LaterKvm(machine)
    kvm.init_rme()
    kvm.deny_cpu_on = 1
    realm, (vcpu0, vcpu1) = build(kvm, PSCI_GUEST, vcpus=2)
    assert kvm.rec_enter(realm, vcpu1) == RMI_ERROR_REC       # not runnable
    run_until(kvm, realm, vcpu0, "cpu_on")                   # DENIED, OFF, then the granted one
    assert kvm.rec_enter(realm, vcpu1) == RMI_SUCCESS          # the entry the denial refused
    kvm.handle_rec_exit(realm, vcpu1, RMI_SUCCESS)
    run_until(kvm, realm, vcpu1, hostcalls=1)
    assert kvm.hostcalls[0][0] == 0x78
    run_until(kvm, realm, vcpu0)
    statuses = [args[2] for args in kvm.calls(PSCI_COMPLETE)]
    assert statuses == [PSCI_RET_DENIED, 0, 0, 0, 0]
    assert kvm.hostcalls[1][0:5] == [PSCI_RET_DENIED, 1, 0, PSCI_RET_ALREADY_ON, 0], \
        [hex(v) for v in kvm.hostcalls[1][0:5]]
    kvm.destroy_vm(realm)
    finish(kvm)


RIPAS_GUEST = """
start:
    mov x25, #0                     // RSI_IPA_STATE_SET calls made
    mov x1, ={base}
set:
    mov x2, ={top}
    mov x3, #{ripas}
    mov x4, #0
    mov x0, =RSI_IPA_STATE_SET
    smc #0
    add x25, x25, #1
    cbnz x0, out                    // an RSI error: report it
    cbnz x2, out                    // REJECT: report it
    mov x10, ={top}
    cmp x1, x10
    b.ne set                        // X1 = the first IPA not changed: ask for the rest
out:
    adr x9, hostcall
    str x0, [x9, #8]
    str x1, [x9, #16]
    str x2, [x9, #24]
    str x25, [x9, #32]
    mov x1, x9""" + HOST_CALL_THEN_OFF


@pytest.mark.parametrize("budget", [0, 1])
def test_ripas_change_completed_in_part(machine: Machine, budget: int) -> None:
    """The realm asks for [2 MiB - 8 KiB, 2 MiB + 8 KiB) above RAM, which spans two level-3
    tables, so one RTT_SET_RIPAS covers only the first half. KVM gets ``budget`` calls through
    per exit (after one entry with no progress at all when the budget is 0, it is raised to 1):
    each entry reports X1 = how far the change got, and the realm asks again from there until the
    whole range is EMPTY (RIPAS_CHANGE exits based where the last one stopped)."""
    kvm = LaterKvm(machine)
    kvm.init_rme()
    base, top = RAM + 2 * MiB - 2 * G, RAM + 2 * MiB + 2 * G
    realm, (vcpu,) = build(kvm, RIPAS_GUEST.format(base=base, top=top, ripas=RMI_EMPTY))
    kvm.ripas_budget = budget
    for _ in range(50):
        outcome = kvm.handle_rec_exit(realm, vcpu, kvm.rec_enter(realm, vcpu))
        if kvm.ripas_budget == 0 and kvm.ripas_exits:
            kvm.ripas_budget = 1                # the next exit's completion finds memory again
        if outcome == "off":
            break
    else:
        raise AssertionError("the vCPU never stopped")
    status, reached, response, calls = kvm.hostcalls[0][0:4]
    assert (status, reached, response) == (0, top, 0), [hex(v) for v in (status, reached, response)]
    mid = RAM + 2 * MiB
    expected = [(base, top), (base, top), (mid, top)] if budget == 0 else [(base, top), (mid, top)]
    assert kvm.ripas_exits == expected
    assert calls == len(expected)
    for ipa in range(base, top, G):
        x0, level, _, _, value = machine.cpu(0).smc(RTT_READ_ENTRY, realm.rd, ipa, 3)
        assert (x0, level, value) == (0, 3, RMI_EMPTY), hex(ipa)
    kvm.destroy_vm(realm)
    finish(kvm)


GiB = 1 << 30


@pytest.mark.parametrize("start, end", [
    (RAM + GiB - MiB - G, RAM + GiB + 2 * MiB + 3 * G),     # 4 KiB pages on both sides of 1 GiB
    (RAM + GiB - 4 * MiB, RAM + GiB + 6 * MiB),             # 2 MiB blocks on both sides
    (RAM + 3 * G, RAM + 2 * GiB + 5 * G),                   # pages, blocks, a 1 GiB entry, blocks, pages
])
def test_init_ripas_across_a_level_1_boundary(machine: Machine, start: int, end: int) -> None:
    """KVM's INIT_RIPAS loop over a range whose ends are not block aligned and that crosses a
    1 GiB boundary: every page of it reads RIPAS RAM, the pages just outside read EMPTY, and the
    RTTs KVM made are only those find_map_level() asks for (level 3 only where an end is not
    2 MiB aligned)."""
    kvm = Kvm(machine)
    kvm.init_rme()
    realm = kvm.create_realm(40)
    kvm.init_ipa_state(realm, start, end)
    level3 = {args[2] for args in kvm.calls(RTT_CREATE) if args[3] == 3}
    ragged = {align_down(x, 2 * MiB) for x in (start, end) if x % (2 * MiB)}
    assert level3 == ragged, sorted(hex(v) for v in level3)
    span = end - start
    probes = {start, start + G, end - G, start + span // 2 & ~(G - 1), align_down(RAM + GiB, G), RAM + GiB - G}
    for ipa in sorted(p for p in probes if start <= p < end):
        x0, _, state, _, value = machine.cpu(0).smc(RTT_READ_ENTRY, realm.rd, ipa, 3)
        assert (x0, state, value) == (0, 0, RMI_RAM), hex(ipa)
    for ipa in (start - G, end):
        x0, _, state, _, value = machine.cpu(0).smc(RTT_READ_ENTRY, realm.rd, ipa, 3)
        assert (x0, state, value) == (0, 0, RMI_EMPTY), hex(ipa)
    kvm.destroy_vm(realm)
    finish(kvm)
