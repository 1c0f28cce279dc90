"""The locking rules of docs/locking.md, checked over every RMI command and realm call in the
ordinary test run (not only under `rmm-mp stress`).

The stress tool's lock-order checker (rmm_mp.stress.lockdep: rules 1 to 5 and 8 on every
acquisition, and cycles between lock classes) and its ownership checker (rule 6: states,
refcounts and contents touched only by their owner) are installed in this process on CPU 0,
as `rmm-mp stress` installs them in each CPU process, and then:

- the fuzz tests' population is built (tests/rmm/test_fuzz_rmi.py ``build``: REALM_CREATE,
  RTT_CREATE, INIT_RIPAS, DATA_CREATE, DATA_CREATE_UNKNOWN, DATA_DESTROY, RTT_FOLD,
  MAP_UNPROTECTED, REC_CREATE, REALM_ACTIVATE ...) and each of its fixed SCENARIOS replayed,
  successes and failures, every RMI command with locks among them;
- a guest realm makes every realm call that takes a lock (and the host completes the host call,
  after moving the realm's TLB generation so the completion takes its locked walk, and the
  RIPAS change), then the realm is destroyed.

A finding of either checker, or a cycle in the lock-class graph, fails the test. The checkers
see one CPU only: a rule broken on a path these calls do not take is not found here (the
stress tool's free-running and explorer runs look for those).
"""

from __future__ import annotations

import re
from typing import Iterator

import pytest

from footprint import Snapshot
from realm_guests import CODE, EMPTY_IPA, UNPROTECTED, Guest, copy_loop, extend_code, init_code
from rmm_mp import Machine
from rmm_mp.abi.rmi import RmiFid
from rmm_mp.abi.structs import RmiRecExitReason
from rmm_mp.rmm import realm_run, rsi_dispatch
from rmm_mp.rmm.realm_call import RealmCall, RealmPage
from rmm_mp.stress import instrument, lockdep, ownership
from rmm_mp.stress.probe import Held, Probe
import test_fuzz_rmi
from test_fuzz_rmi import SCENARIOS, Runner, build

F = RmiFid
SUCCESS = 0


def _checked(m: Machine) -> tuple[Probe, set[str]]:
    """CPU 0 of ``m`` under the lock-order and ownership checkers; the set is filled with the
    names of the calls (``RMI_X`` or ``RMI_REC_ENTER; realm call RSI_Y``) during which a lock
    was taken, to show what the checkers saw."""
    probe = instrument.install(m.cpu(0))
    order = lockdep.LockOrder(probe)
    probe.lockdep = order
    ownership.install(probe)
    seen: set[str] = set()
    check = order.check

    def check_and_note(new: Held, held: list[Held]) -> None:
        seen.add(re.sub(r"\([^)]*\)", "", probe.current_call()))
        check(new, held)

    order.check = check_and_note    # type: ignore[method-assign]
    return probe, seen


def _problems(probe: Probe) -> list[str]:
    assert probe.lockdep is not None
    return [f.text() for f in probe.findings.items] + [f.text() for f in lockdep.analyse(probe.lockdep.edges)]


@pytest.fixture
def unchecked_white_box(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Probe]]:
    """The population's white-box writes into B's RECs (what realm exits would leave, written by
    the test without the REC's lock) are not the RMM's: made with the checkers paused."""
    current: list[Probe] = []
    white_box = test_fuzz_rmi._white_box

    def paused(pop: test_fuzz_rmi.Population) -> None:
        current[0].checking = False
        try:
            white_box(pop)
        finally:
            current[0].checking = True

    monkeypatch.setattr(test_fuzz_rmi, "_white_box", paused)
    yield current


class _Runner(Runner):
    """The fuzz tests' Runner, its footprint snapshots (the test's own reads of every granule)
    taken with the checkers paused."""

    def __init__(self, pop: test_fuzz_rmi.Population, probe: Probe) -> None:
        self.probe = probe
        super().__init__(pop, log=False)

    def _state(self) -> tuple[Snapshot, bytes]:
        self.probe.checking = False
        try:
            return super()._state()
        finally:
            self.probe.checking = True


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_rmi_commands_keep_the_locking_rules(name: str, unchecked_white_box: list[Probe]) -> None:
    """The fuzz population built and one fixed scenario replayed (each call returning its noted
    X0) under the lock-order and ownership checkers: no finding, no cycle between lock
    classes, and every command of the scenario seen taking a lock."""
    with Machine.create("host", cpus=1) as m:
        probe, seen = _checked(m)
        unchecked_white_box.append(probe)
        try:
            runner = _Runner(build(m), probe)
            got = [runner.call(call, args)[0] for call, args, _ in SCENARIOS[name]]
        finally:
            instrument.uninstall(probe)
    assert got == [want for _, _, want in SCENARIOS[name]]
    assert _problems(probe) == []
    assert {call for call, _, _ in SCENARIOS[name]} <= seen, seen


PROGRAM = f"""
    mov x1, =cfg
    mov x0, =RSI_REALM_CONFIG
    smc #0
    mov x1, ={EMPTY_IPA}
    mov x0, =RSI_REALM_CONFIG
    smc #0
{extend_code(1, b"lock order")}
    mov x1, #1
    mov x0, =RSI_MEASUREMENT_READ
    smc #0
    mov x1, ={CODE}
    mov x2, ={CODE + 0x2000}
    mov x0, =RSI_IPA_STATE_GET
    smc #0
{init_code(bytes(range(64)))}
{copy_loop("token", CODE + 0x4000, 4096)}
    mov x1, =host_call
    mov x0, =RSI_HOST_CALL
    smc #0
    mov x1, ={CODE + 0x10_0000}
    mov x2, ={CODE + 0x10_1000}
    mov x3, #0
    mov x4, #0
    mov x0, =RSI_IPA_STATE_SET
    smc #0
    mov x0, =PSCI_SYSTEM_OFF
    smc #0
.org 0x4000
.quad 0
.org 0x6000
cfg: .quad 0
.org 0x7000
host_call: .quad 0
.org 0x8000
"""
"""Every realm call that takes a lock, each once (REALM_CONFIG twice: a RAM page, then an EMPTY
one, the walk's failure path), then the host call and a RIPAS change the host completes, then
SYSTEM_OFF."""


def test_realm_calls_keep_the_locking_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    """A guest realm runs PROGRAM under the lock-order and ownership checkers, on CPU 0: the
    host call exit, after which the host maps and unmaps an unprotected page (the unmap moves
    the realm's TLB generation, so the host call's completion at the next entry takes its
    locked walk, counted out, rather than the lock-free copy), the RIPAS change exit (carried
    out by RMI_RTT_SET_RIPAS), then the PSCI exit of SYSTEM_OFF; the realm is then destroyed.
    No finding (a lock taken counted in as executing the realm among them), no cycle between
    lock classes, every realm call whose lock sequence is not "none" seen taking a lock, and
    the completion's locked walk made once."""
    exits = []
    completion_walks: list[int] = []
    walk = realm_run.lock_realm_page

    def counted_walk(call: RealmCall, ipa: int) -> RealmPage:
        completion_walks.append(ipa)
        return walk(call, ipa)

    monkeypatch.setattr(realm_run, "lock_realm_page", counted_walk)
    with Machine.create("host", cpus=1) as m:
        probe, seen = _checked(m)
        try:
            with Guest.build(m, PROGRAM) as g:
                for _ in range(3):
                    x0, ex = g.enter()
                    exits.append((x0, ex["exit_reason"]))
                    if ex["exit_reason"] == RmiRecExitReason.RMI_EXIT_HOST_CALL:
                        g.map_unprotected(UNPROTECTED + 0x1000)
                        assert g.smc(F.RMI_RTT_UNMAP_UNPROTECTED, g.realm.rd, UNPROTECTED + 0x1000, 3)[0] == SUCCESS
                    if ex["exit_reason"] == RmiRecExitReason.RMI_EXIT_RIPAS_CHANGE:
                        args = (g.realm.rd, g.rec_pa(0), ex["ripas_base"], ex["ripas_top"])
                        assert g.smc(F.RMI_RTT_SET_RIPAS, *args)[0] == SUCCESS
        finally:
            instrument.uninstall(probe)
    assert exits == [(SUCCESS, RmiRecExitReason.RMI_EXIT_HOST_CALL), (SUCCESS, RmiRecExitReason.RMI_EXIT_RIPAS_CHANGE),
                     (SUCCESS, RmiRecExitReason.RMI_EXIT_PSCI)]
    assert len(completion_walks) == 1, completion_walks
    assert _problems(probe) == []
    locking = {name for name, (sequence, _) in rsi_dispatch.lock_sequences().items() if not sequence.startswith("none")}
    realm_calls = {call.split("realm call ")[1] for call in seen if "realm call " in call}
    assert "PSCI_SYSTEM_OFF, PSCI_SYSTEM_RESET" in locking
    assert locking - {"PSCI_SYSTEM_OFF, PSCI_SYSTEM_RESET"} | {"PSCI_SYSTEM_OFF"} <= realm_calls, realm_calls
    assert {"RMI_RTT_SET_RIPAS", "RMI_REALM_DESTROY", "RMI_REC_DESTROY", "RMI_RTT_DESTROY"} <= seen, seen
