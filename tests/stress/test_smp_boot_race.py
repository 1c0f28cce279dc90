"""A 4-REC realm boots on 4 CPU processes while a fifth churns the same realm's stage 2.

CPUs 0..3 run the host's run loop (rmm_mp.host.run_loop, started together) on one realm running
the smp-boot guest: REC 0 CPU_ONs RECs 1..3, each secondary spins through several time slices
(IRQ exits, so vCPUs go back to the shared queue and any CPU may take them next), faults its own
page in, logs and turns itself off; REC 0 polls AFFINITY_INFO until all are off and turns the
realm off. Meanwhile CPU 4 works on parts of the same realm's IPA space the guest never uses,
with every status checked against what a correct RMM may answer: RTT_CREATE, RTT_FOLD and
RTT_DESTROY of level-3 tables, DATA_CREATE_UNKNOWN and DATA_DESTROY of pages in two 2 MiB blocks
of protected (RIPAS EMPTY) space, and RTT_MAP_UNPROTECTED / RTT_UNMAP_UNPROTECTED of one NS page.
So RTT walks, the RD lock, and the TLB invalidations that DATA_DESTROY and UNMAP make while the
realm executes all meet the running RECs.

Afterwards the realm must have passed its own checks, every exit is accounted for, the invariant
checker is content on the quiescent machine, and a teardown leaves every granule NS and the
allocator empty. The CPU targets live in this module: spawned CPU processes import it by name.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections import Counter
from dataclasses import dataclass

import pytest

from rmm_mp import Machine
from rmm_mp.abi.rmi import RmiFid
from rmm_mp.check import invariants
from rmm_mp.host import (
    LoopPlan, NsAllocator, RealmSpec, RunQueue, create_realm, destroy_realm, load_guest, realm_status, run_loop,
)
from rmm_mp.host.realm import create_rtt_levels
from rmm_mp.host.runloop import exit_counts
from rmm_mp.host.runqueue import OFF_ARRIVED
from rmm_mp.hw.platform import load as load_platform
from rmm_mp.runtime import run_cpus
from table_churn import TableChurner

pytestmark = pytest.mark.multiprocess

F = RmiFid
G = 4096
MiB = 1 << 20
BASE = 0x8000_0000
LOOPS = 4
CHURN_BASE = 0x4000_0000            # protected, outside RAM (RIPAS EMPTY): the guest never goes there
NS_IPA = (1 << 39) + 0x4000_0000    # unprotected, neither shared RAM nor the device window
SUCCESS, INPUT = 0, 1
NS_ATTRS = (0x6 << 2) | (0x3 << 6)


def rtt(level: int) -> int:
    return 4 | level << 8


ALLOWED = {
    "RTT_CREATE": {SUCCESS, rtt(2)},
    "RTT_DESTROY": {SUCCESS, rtt(2), rtt(3)},
    "RTT_FOLD": {SUCCESS, rtt(2), rtt(3)},
    "DELEGATE": {SUCCESS, INPUT},
    "DATA_CREATE_UNKNOWN": {SUCCESS, rtt(2), rtt(3)},
    "DATA_DESTROY": {SUCCESS, rtt(2), rtt(3)},
    "RTT_MAP_UNPROTECTED": {SUCCESS, rtt(3)},
    "RTT_UNMAP_UNPROTECTED": {SUCCESS, rtt(3)},
}
"""What the RMM may answer the churning CPU. Whether a level-3 table exists at a block (or it is
folded into a block entry), and whether an entry is assigned, depends on the churn's own earlier
steps; a running REC of the realm changes none of it, so anything else is an RMM bug (DELEGATE of
a backing page: done, or the page is assigned already, INPUT)."""


@dataclass(frozen=True)
class ChurnPlan:
    rd: int
    backing: int        # 2 MiB aligned NS run: the page for IPA CHURN_BASE + n is backing + n
    ns_page: int
    min_ops: int
    max_ops: int
    seed: int


class Churn(TableChurner):
    def __init__(self, cpu, plan: ChurnPlan) -> None:  # type: ignore[no-untyped-def]
        super().__init__(cpu, plan.rd, CHURN_BASE, plan.backing, ALLOWED)
        self.ns_page = plan.ns_page

    def step(self, rng: random.Random) -> None:
        block = CHURN_BASE + rng.randrange(2) * 2 * MiB
        op = rng.random()
        if op < 0.15:
            self.create_table(block)
        elif op < 0.22:
            self.drop_table("RTT_DESTROY", block)
        elif op < 0.3:
            self.drop_table("RTT_FOLD", block)
        elif op < 0.4:
            if rng.random() < 0.5:
                self.call("RTT_MAP_UNPROTECTED", self.rd, NS_IPA, 3, self.ns_page | NS_ATTRS)
            else:
                self.call("RTT_UNMAP_UNPROTECTED", self.rd, NS_IPA, 3)
        else:
            first, count = (0, 512) if rng.random() < 0.1 else (rng.randrange(512), rng.randint(1, 24))
            work = self.fill if op < 0.75 else self.empty
            for i in range(first, min(first + count, 512)):
                work(block + i * G)


def churn(cpu, plan: ChurnPlan) -> tuple[Counter, int, int]:  # type: ignore[no-untyped-def]
    """CPU target: once the run loops have started, churn until the realm is done (at least
    ``min_ops`` steps, at most ``max_ops``); returns (statuses seen, steps, steps while live)."""
    queue = RunQueue(cpu.machine)
    control = cpu.machine.control
    rng = random.Random(plan.seed)
    me = Churn(cpu, plan)
    while queue.view.load_u64(OFF_ARRIVED) < LOOPS and not control.stop_requested:
        time.sleep(0.001)
    ops = during = 0
    while ops < plan.max_ops and not control.stop_requested:
        live = queue.live_realms > 0
        if not live and ops >= plan.min_ops:
            break
        me.step(rng)
        ops += 1
        during += live
    return me.seen, ops, during


def target(cpu, plan: ChurnPlan):  # type: ignore[no-untyped-def]
    """CPUs 0..LOOPS-1 run the host's run loop; the next one churns."""
    if cpu.id < LOOPS:
        return run_loop(cpu, LoopPlan(gather=LOOPS))
    return churn(cpu, plan)


@pytest.mark.parametrize("order", ["legacy", "v12"])
def test_smp_boot_races_stage2_churn(order: str) -> None:
    """smp-boot (4 RECs, each secondary spinning 9,000 instructions on a 2,000-instruction time
    slice) on 4 CPU processes, stage-2 churn on a fifth: the realm reports 4 secondaries booted
    and turns itself off, no vCPU fails, every exit is counted once (per CPU in the run queue's
    area, per realm in its entry), the churn saw only allowed statuses, the invariants hold, and
    teardown in KVM's ``order`` leaves every granule NS and the allocator empty."""
    platform = dataclasses.replace(load_platform("host"), cpus=LOOPS + 1)
    with Machine.create(platform, time_slice=2000) as m:
        cpu = m.cpu(0)
        alloc = NsAllocator(m, 0)
        realm = create_realm(cpu, alloc, RealmSpec(ipa_width=40, ram_base=BASE, ram_size=2 * MiB, num_recs=4,
                                                   image=load_guest("smp-boot", WORK=3000), teardown=order))
        create_rtt_levels(cpu, alloc, realm, CHURN_BASE, realm.start_level, 2)
        create_rtt_levels(cpu, alloc, realm, NS_IPA, realm.start_level, 3)
        backing, ns_page = alloc.alloc(1024, 512), alloc.alloc()
        queue = RunQueue(m)
        slot = queue.add_realm(alloc, realm)
        queue.view.store_u64(OFF_ARRIVED, 0)
        cpu.close()
        plan = ChurnPlan(realm.rd, backing, ns_page, min_ops=40, max_ops=400, seed=7 if order == "legacy" else 8)
        result = run_cpus(m, target, args=(plan,), timeout_s=60)
        assert result.ok, [f.describe() for f in result.failures]

        loops = [result.results[c] for c in range(LOOPS)]
        seen, ops, _ = result.results[LOOPS]
        st = realm_status(queue, slot)
        assert st.passed and st.result == (0, 4), st
        assert st.end == "SYSTEM_OFF" and st.vcpu_states == ("DONE", "OFF", "OFF", "OFF")
        assert [loop.errors for loop in loops] == [()] * LOOPS and {loop.ended for loop in loops} == {"done"}
        assert sorted(r.rec for r in st.log) == [1, 2, 3]
        for loop in loops:
            assert loop.exits == exit_counts(queue, loop.cpu)
        exits = [sum(loop.exits[r] for loop in loops) for r in range(8)]
        assert sum(exits) == sum(loop.entries for loop in loops) == st.counters["entries"]
        assert exits[1] >= 12 and exits[3] == 3 + 3 + st.counters["affinity_info"] + 1 and exits[5] == 5
        assert st.counters["cpu_on"] == 3 and st.counters["faults"] == 3
        assert ops >= plan.min_ops and seen[("RTT_CREATE", SUCCESS)] >= 1
        assert seen[("DATA_CREATE_UNKNOWN", SUCCESS)] >= 1

        report = invariants(m)
        assert report.ok, str(report)
        cpu = m.cpu(0)
        destroy_realm(cpu, alloc, realm)
        queue.release_realm(alloc, slot)
        alloc.free(ns_page)
        for i in range(1024):
            if alloc.allocated(backing + i * G):
                alloc.free(backing + i * G)
        report = invariants(m)
        assert report.ok, str(report)
        assert report.state_counts == {"NS": m.granule_count}, report.state_counts
        stats = alloc.statistics()
        assert stats.granules_in_use == 0 and stats.vmids_in_use == 0, stats
