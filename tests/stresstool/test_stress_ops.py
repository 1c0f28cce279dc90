"""The stress operations keep what they hold bounded, so a long run cannot exhaust the host's
memory (an OutOfGranules there is a false finding, not an RMM bug)."""

from __future__ import annotations

import dataclasses
import random

import pytest

from rmm_mp import Machine
from rmm_mp.abi.rmi import RmiFid
from rmm_mp.host import NsAllocator
from rmm_mp.stress import population
from rmm_mp.stress.ops import MY_RECS, Operations, Unexpected


class _Hint:
    """The one part of the stress segment that `recs` uses: the shared REC index hint (and the
    per-CPU counters, which Operations.count adds to: not looked at here)."""

    def __init__(self) -> None:
        self.last = 0

    def rec_hint(self) -> int:
        return self.last + 1

    def count(self, cpu: int, name: str) -> None:
        pass

    def advance_rec_hint(self, index: int) -> None:
        if index == self.last + 1:
            self.last = index


def test_recs_keeps_at_most_my_recs_alive(machine: Machine) -> None:
    """400 `recs` operations on one CPU, where no race refuses a REC_CREATE: the CPU never holds
    more than MY_RECS RECs of realm N, it still creates and destroys them (the race stays
    covered), and the granules it holds stay bounded. Before the bound, creating was drawn
    more often than destroying and the RECs (with their aux granules) only grew."""
    pop = population.build(machine, guests=False)
    ops = Operations(machine.cpu(1), pop, _Hint())  # type: ignore[arg-type]
    alloc = NsAllocator.for_cpu(ops.cpu)
    before = alloc.in_use
    rng = random.Random(5)
    most = 0
    for _ in range(400):
        ops.recs(rng)
        most = max(most, len(ops.my_recs))
    assert most == MY_RECS
    assert pop.new_realm.num_aux > 0
    per_rec = 1 + pop.new_realm.num_aux
    assert alloc.in_use - before == len(ops.my_recs) * per_rec <= MY_RECS * per_rec


def test_guest_tables_without_a_guest_of_its_own_counts_an_idle_event(machine: Machine) -> None:
    """A CPU that owns no guest realm (more CPUs than the 4 guests; here a population without
    guests) does nothing in `guest-tables`: each such draw is counted as a `guest-tables-idle`
    event, as an empty run queue is a `vcpu-idle` one, so the report's counts tell empty
    operations from real ones; it makes no call."""
    pop = population.build(machine, guests=False)
    ops = Operations(machine.cpu(1), pop, _Hint())  # type: ignore[arg-type]
    calls: list[int] = []
    ops.smc = lambda fid, *args: calls.append(fid)  # type: ignore[assignment, misc, return-value]
    for _ in range(3):
        ops.guest_tables(random.Random(1))
    assert ops.counts == {"guest-tables-idle": 3}
    assert calls == []


class _Choose(random.Random):
    """A Random whose randrange always picks ``pick`` (the `wrong` operation's case)."""

    def __init__(self, pick: int) -> None:
        super().__init__(0)
        self.pick = pick

    def randrange(self, *args: object, **kwargs: object) -> int:  # type: ignore[override]
        return self.pick


def test_rec_enter_of_a_new_realms_rec_must_fail_with_error_realm(machine: Machine,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """`wrong`'s REC_ENTER of the NEW realm's REC: the RMM answers ERROR_REALM and the operation
    accepts it; ERROR_REC is a finding, since REC_ENTER checks the realm's state before it takes
    the running reference, so no CPU can hold that REC running (the operation once allowed
    ERROR_REC, which would have hidden that ordering bug coming back)."""
    pop = population.build(machine, guests=False)
    ops = Operations(machine.cpu(1), pop, _Hint())  # type: ignore[arg-type]
    ops.wrong(_Choose(1))
    real = ops.smc
    monkeypatch.setattr(ops, "smc", lambda fid, *args: (3, 0, 0, 0, 0) if fid == RmiFid.RMI_REC_ENTER
                        else real(fid, *args))
    with pytest.raises(Unexpected) as info:
        ops.wrong(_Choose(1))
    assert "RMI_REC_ENTER" in info.value.finding.call and "X0 = 0x3" in info.value.finding.message


def test_wrong_keeps_its_run_page_at_pa_0(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a platform whose DRAM starts at PA 0, `wrong` gets PA 0 as its run page (the granule
    at PA 0, reserved before the population was built, so it is an NS page nobody else uses):
    its second REC_ENTER reuses that page, one allocation in all. Before, `run_page = 0` also
    meant "no page yet", so each `wrong` allocated (and zeroed) another page."""
    from rmm_mp.hw.platform import Region, load as load_platform
    dram0 = dataclasses.replace(load_platform("host"), dram=Region(0, 64 << 20),
                                secure=(Region(0x3F0_0000, 1 << 20),))
    with Machine.create(dram0, cpus=2) as machine:
        assert NsAllocator.for_cpu(machine.cpu(0)).alloc() == 0
        pop = population.build(machine, guests=False)
        ops = Operations(machine.cpu(1), pop, _Hint())  # type: ignore[arg-type]
        real = ops.alloc.alloc
        handed: list[int] = []

        def alloc(count: int = 1, align: int = 1) -> int:
            handed.append(real(count, align) if handed else 0)
            return handed[-1]

        monkeypatch.setattr(ops.alloc, "alloc", alloc)
        ops.wrong(_Choose(1))
        ops.wrong(_Choose(1))
        assert handed == [0] and ops.run_page == 0


def test_a_failed_vcpu_is_named_by_its_rec_and_its_rec_enter(machine: Machine,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A vCPU the run loop fails (as on REC_ENTER's ERROR_REALM): the `vcpu` finding names the
    REC's PA in its message and the REC_ENTER (REC and run page) as its call. It said only
    "realm slot S REC n: ...", with no call: no granule a reader could find in a lock line,
    an invariant or the trace."""
    pop = population.build(machine, guests=True)
    ops = Operations(machine.cpu(1), pop, _Hint())  # type: ignore[arg-type]
    failed: list[int] = []

    def step(vcpu: int) -> None:
        failed.append(vcpu)
        ops.loop._fail(vcpu, "REC_ENTER returned ERROR_REALM")

    monkeypatch.setattr(ops.loop, "step", step)
    with pytest.raises(Unexpected) as info:
        for _ in range(50):         # until the run queue hands this CPU a vCPU
            ops.vcpu(random.Random(0))
    finding = info.value.finding
    rec, run = ops.queue.vcpu_pages(failed[-1])
    assert (finding.cpu, finding.call) == (1, f"RMI_REC_ENTER({rec:#x}, {run:#x})"), finding
    assert finding.message.startswith(f"a vCPU failed (REC {rec:#x}): realm slot "), finding.message
    assert finding.message.endswith("REC_ENTER returned ERROR_REALM"), finding.message
