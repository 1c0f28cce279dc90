"""How a resident realm ended, as the parent reads it at the end of a run (aftermath.finish), when its
guest turned it off but a vCPU of it was still queued: the realm is off (SYSTEM_OFF), not yet
DONE (the teardown drains that vCPU), and its row must say how it ended, not "running when the
run ended".

The run's steps are made in this process on CPU 0 (the realm built by run._prepare, its vCPUs
entered with the host's RunLoop), so the realm is caught in that state every time: a run of
CPU processes ends there only when its last step happens to be the guest's SYSTEM_OFF.
"""

from __future__ import annotations

from pathlib import Path

from realm_guests import PRELUDE, REPORT_TAIL
from rmm_mp import Machine
from rmm_mp.host import RunLoop
from rmm_mp.host.realm_entry import DONE, END_NONE, RUNNING, SYSTEM_OFF
from rmm_mp.hw.quiesce import Participant
from rmm_mp.interrupts import Interrupts
from rmm_mp.workload import aftermath, realms, run, spec
from rmm_mp.workload.report import RealmOutcome
from rmm_mp.workload.resolve import resolve

START_REC_1 = """
start:
    mov x0, =PSCI_CPU_ON
    mov x1, #1                      // REC 1 (MPIDR Aff0 1), which spins for ever
    adr x2, spin
    mov x3, #0
    smc #0
"""
SPIN = """
spin:
    b spin
"""
OFF_AFTER_A_PASS = f"""{PRELUDE}{START_REC_1}
    mov x19, #0                     // REPORT pass, detail 7, then SYSTEM_OFF
    mov x20, #7
    b report
{SPIN}{REPORT_TAIL}"""
RESET = f"""{PRELUDE}{START_REC_1}
    mov x0, =PSCI_SYSTEM_RESET
    smc #0
    b .
{SPIN}"""


def ended(tmp_path: Path, guest: str, race_only: bool = False) -> RealmOutcome:
    """The outcome of a 2-REC realm running ``guest``, read as at the end of a run once the guest
    has turned the realm off (REC 1 still queued). ``race_only``: the realm is marked off with
    no end reason before any step, as when another vCPU's REC_ENTER found it off and the vCPU
    that turned it off died with its CPU before its exit was handled."""
    (tmp_path / "g.s").write_text(guest)
    path = tmp_path / "w.toml"
    path.write_text('cpus = 1\niterations = 1\nactivities = { run = 1 }\n'
                    '[[realm]]\nname = "vm"\nguest = "g.s"\nrecs = 2\n')
    w = resolve(spec.load(str(path)))
    with Machine.create(w.platform, w.cpus, time_slice=w.time_slice) as machine, \
            Interrupts(sigterm=False) as stop, Participant(machine.control) as part:
        plan, _, pools = run._prepare(machine, w, run.RunOptions(progress=False), part)
        (inst,) = plan.resident
        cpu = machine.cpu(0)
        try:
            loop = RunLoop(cpu, (0,))
            if race_only:
                loop.queue.system_off(inst.slot, END_NONE)
            for _ in range(20):
                if loop.queue.realm_state(inst.slot) != RUNNING:
                    break
                vcpu = loop.queue.take(0)
                assert vcpu is not None
                loop.step(vcpu)
            # Off, with REC 1 still queued: only the teardown's drain makes it DONE.
            assert loop.queue.realm_state(inst.slot) == SYSTEM_OFF, loop.queue.realm_state(inst.slot)
            assert loop.queue.realm_state(inst.slot) != DONE
        finally:
            cpu.close()
        outcomes, problems, *_ = aftermath.finish(machine, w, plan, [inst], [], realms.Errors(), {}, pools, False, part,
                                             stop)
    assert problems == []
    (outcome,) = outcomes
    return outcome


def test_a_realm_its_guest_turned_off_is_not_reported_running(tmp_path: Path) -> None:
    """REC 0 starts REC 1 (which spins), REPORTs pass and calls SYSTEM_OFF: read while REC 1 is
    still queued, the realm "turned itself off, reported pass (detail 0x7)" (it said "running
    when the run ended (3 REC entries)", and the guest's pass was not shown)."""
    outcome = ended(tmp_path, OFF_AFTER_A_PASS)
    assert outcome.ok and outcome.detail == "turned itself off, reported pass (detail 0x7)", outcome.detail


def test_a_realm_its_guest_reset_is_done(tmp_path: Path) -> None:
    """REC 0 starts REC 1 (which spins) and calls SYSTEM_RESET: read while REC 1 is still
    queued, the realm is "done (SYSTEM_RESET)", as one whose vCPUs were all ended is."""
    outcome = ended(tmp_path, RESET)
    assert outcome.ok and outcome.detail == "done (SYSTEM_RESET)", outcome.detail


def test_a_realm_off_with_no_end_reason_says_it_turned_itself_off(tmp_path: Path) -> None:
    """A realm whose run-queue state is SYSTEM_OFF with no end reason (a REC_ENTER of another
    vCPU found it off; the exit of the vCPU that called SYSTEM_OFF or SYSTEM_RESET was never
    handled, its CPU having died): its row says the guest turned it off and that the call's
    exit was not handled. Since only a RUNNING realm counts as running it read "system_off (no
    end)", a state name and nothing a reader could act on."""
    outcome = ended(tmp_path, OFF_AFTER_A_PASS, race_only=True)
    assert outcome.ok and outcome.detail == ("turned itself off (SYSTEM_OFF or SYSTEM_RESET: the exit of the vCPU "
                                             "that called it was not handled)"), outcome.detail
