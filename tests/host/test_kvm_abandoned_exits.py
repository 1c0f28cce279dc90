"""A VM torn down with a REC exit the host never completed, as Linux KVM does when the VMM dies
(or closes the VM) between KVM_RUN calls: kvm_destroy_vm runs whatever state the last REC exit
left in the RMM, and KVM's teardown (v5 and v12 orders alike) makes no REC_ENTER first.

Each scenario leaves REC 0 with one pending completion the RMM keeps for the next entry:

    psci       CPU_ON of REC 1: a PSCI request pending (REC_ENTER of REC 0 fails ERROR_REC)
    ripas      RSI_IPA_STATE_SET(EMPTY) over two image pages, RTT_SET_RIPAS applied to one of
               them (the REC's progress is mid-range; RIPAS_RESPONSE never given)
    host_call  RSI_HOST_CALL with its RsiHostCall in an image page (the "legacy" order
               DATA_DESTROYs that page while the call is pending, then REC_DESTROYs the REC)
    mmio       an emulatable MMIO read at an unprotected IPA (EMULATED_MMIO never given)

The host model's teardown (rmm_mp.host.destroy_realm) then runs in both of KVM's orders: every
call must succeed, and afterwards every granule is NS and the invariant checker is content.
"""

from __future__ import annotations

import pytest

from realm_guests import UNPROTECTED, Guest
from rmm_mp import Machine
from rmm_mp.abi.rmi import RmiFid as F
from rmm_mp.abi.structs import RmiRecExitReason as Reason
from rmm_mp.check import invariants
from rmm_mp.host import destroy_realm

G = 4096

PROGRAM = """
    mov x9, =SCENARIO
    cmp x9, #0
    b.eq psci
    cmp x9, #1
    b.eq ripas
    cmp x9, #2
    b.eq host_call
    mov x21, =MMIO
    ldr x22, [x21]
    b .
psci:
    mov x0, =PSCI_CPU_ON
    mov x1, #1
    adr x2, secondary
    mov x3, #0
    smc #0
    b .
ripas:
    adr x1, pages
    adr x2, pages_end
    mov x3, #0
    mov x4, #0
    mov x0, =RSI_IPA_STATE_SET
    smc #0
    b .
host_call:
    adr x1, call
    mov x0, =RSI_HOST_CALL
    smc #0
    b .
secondary:
    b .
    .align 4096
pages:
    .zero 8192
pages_end:
call:
    .zero 256
"""

SCENARIOS = ("psci", "ripas", "host_call", "mmio")


def _leave_pending(g: Guest, scenario: str) -> None:
    """Run REC 0 to the exit that leaves ``scenario``'s completion pending, as far as KVM goes
    before the VMM stops calling KVM_RUN."""
    x0, ex = g.enter()
    assert x0 == 0
    if scenario == "psci":
        assert ex["exit_reason"] == Reason.RMI_EXIT_PSCI
        assert g.enter()[0] == 3                    # RMI_ERROR_REC: the request is pending
    elif scenario == "ripas":
        assert ex["exit_reason"] == Reason.RMI_EXIT_RIPAS_CHANGE
        base = g.label("pages")
        assert (ex["ripas_base"], ex["ripas_top"]) == (base, base + 2 * G)
        x0, done = g.smc(F.RMI_RTT_SET_RIPAS, g.realm.rd, g.rec_pa(0), base, base + G)[:2]
        assert (x0, done) == (0, base + G)
    elif scenario == "host_call":
        assert ex["exit_reason"] == Reason.RMI_EXIT_HOST_CALL
    else:
        assert ex["exit_reason"] == Reason.RMI_EXIT_SYNC and ex["esr"] >> 26 == 0x24 and ex["esr"] & 1 << 24


@pytest.mark.parametrize("order", ["legacy", "v12"])
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_teardown_with_an_exit_left_uncompleted(machine: Machine, scenario: str, order: str) -> None:
    """REC 0 of a two-REC realm is left at ``scenario``'s pending completion; destroy_realm in
    ``order`` (KVM's v5 stage-2-first or v12 RECs-first teardown) succeeds at every call, with
    RTT_DESTROY, DATA_DESTROY and REC_DESTROY paying no heed to the pending request, and leaves
    every granule NS with the RMM's invariants intact."""
    program = PROGRAM.replace("SCENARIO", str(SCENARIOS.index(scenario))).replace("MMIO", hex(UNPROTECTED | 0x100_0000))
    g = Guest.build(machine, program, num_recs=2)
    _leave_pending(g, scenario)
    destroy_realm(g.cpu, g.alloc, g.realm, order)
    g.alloc.free(g.run)
    report = invariants(machine)
    assert report.ok, str(report)
    assert report.state_counts == {"NS": machine.granule_count}, report.state_counts
    assert g.alloc.in_use == 0
