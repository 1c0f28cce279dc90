"""Realm life cycles and stage-2 table races on 4 CPU processes.

(a) Every CPU builds and destroys its own realms over and over with the KVM-like host (shared
    NS allocator, mixed teardown orders, lazily faulted pages and an unprotected mapping): the
    realms' RTT walks, RECs and VMIDs interleave on the shared granule table.
(b) One realm, built by the parent, whose level-3 tables 4 CPUs fight over: RTT_CREATE,
    RTT_DESTROY, RTT_FOLD, DATA_CREATE_UNKNOWN and DATA_DESTROY on the same two 2 MiB ranges.
    Every status must be one a correct RMM can return for that call in that situation; the
    parent then checks the invariants and tears the realm down.

The CPU targets live in this module: spawned CPU processes import it by name (spawn passes the
parent's sys.path to its children).
"""

from __future__ import annotations

import os
import random
from collections import Counter
from dataclasses import dataclass

import pytest

from rmm_mp import Machine
from rmm_mp.abi.rmi import RmiFid
from rmm_mp.check import invariants
from rmm_mp.host import (
    NsAllocator, RealmSpec, create_realm, destroy_realm, fault_in, map_unprotected,
)
from rmm_mp.hw.cpuarea import OFF_COUNTERS
from rmm_mp.runtime import run_cpus
from table_churn import TableChurner

pytestmark = pytest.mark.multiprocess

F = RmiFid
G = 4096
MiB = 1 << 20
SUCCESS, INPUT = 0, 1


def rtt(level: int) -> int:
    return 4 | level << 8


def start_together(cpu) -> None:  # type: ignore[no-untyped-def]
    """Barrier: mark this CPU ready in its activity counters, wait until every CPU is."""
    view, size = cpu.area.view, cpu.machine.control.area_size
    view.store_u64(cpu.id * size + OFF_COUNTERS, 1)
    while not all(view.load_u64(c * size + OFF_COUNTERS) for c in range(cpu.machine.cpus)):
        os.sched_yield()


def _all_ns_and_allocator_empty(m: Machine) -> None:
    report = invariants(m)
    assert report.ok, str(report)
    assert report.state_counts == {"NS": m.granule_count}, report.state_counts
    stats = NsAllocator(m, 0).statistics()
    assert stats.granules_in_use == 0 and stats.vmids_in_use == 0, stats


# -- (a) life cycles -------------------------------------------------------------------------------

WIDTHS = (32, 39, 40, 48)


def life_cycles(cpu, rounds: int, seed: int) -> Counter:  # type: ignore[no-untyped-def]
    """CPU target: ``rounds`` times, build two realms of random shape, fault pages into both,
    map one NS page, and destroy them (in opposite orders, the second before the first)."""
    rng = random.Random(seed * 1009 + cpu.id)
    alloc = NsAllocator.for_cpu(cpu)
    start_together(cpu)
    done: Counter = Counter()
    image = bytes(rng.randrange(256) for _ in range(3 * G))
    for r in range(rounds):
        realms = []
        for k in range(2):
            spec = RealmSpec(ipa_width=rng.choice(WIDTHS), ram_base=0x4000_0000, ram_size=rng.choice((2, 4)) * MiB,
                             hash_algo=rng.randrange(2), num_recs=rng.randint(1, 3),
                             image=image[:rng.randint(1, 3) * G], teardown=("legacy", "v12")[(r + k) % 2])
            realm = create_realm(cpu, alloc, spec)
            for _ in range(4):
                fault_in(cpu, alloc, realm, 0x4000_0000 + MiB + rng.randrange(256) * G)
            realms.append(realm)
        ns = alloc.alloc()
        map_unprotected(cpu, alloc, realms[0], realms[0].par_size + rng.randrange(1024) * G, ns)
        for realm in reversed(realms):
            destroy_realm(cpu, alloc, realm)
            done[realm.teardown] += 1
        alloc.free(ns)
    return done


def test_cpus_build_and_destroy_their_own_realms() -> None:
    """4 CPU processes, 5 rounds of two realms each, all through one shared allocator: every
    realm is built and destroyed in both orders, then the invariants hold, no granule is left
    outside the NS state and the allocator and VMID bitmap are empty."""
    with Machine.create("host", cpus=4) as m:
        result = run_cpus(m, life_cycles, args=(5, 11))
        assert result.ok, [f.describe() for f in result.failures]
        total = sum(result.results.values(), Counter())
        assert total == Counter({"legacy": 20, "v12": 20})
        _all_ns_and_allocator_empty(m)


# -- (b) one realm, shared tables ------------------------------------------------------------------

@dataclass(frozen=True)
class RacePlan:
    rd: int
    base: int            # first IPA of the contested range (2 MiB aligned)
    blocks: int          # 2 MiB ranges in it
    backing: int         # PA of the 2 MiB aligned NS run backing the range: pa(ipa) = backing + (ipa - base)
    ops: int
    seed: int


ALLOWED = {
    "RTT_CREATE": {SUCCESS, rtt(2)},
    "RTT_DESTROY": {SUCCESS, rtt(2), rtt(3)},
    "RTT_FOLD": {SUCCESS, rtt(2), rtt(3)},
    "DELEGATE": {SUCCESS, INPUT},
    "DATA_CREATE_UNKNOWN": {SUCCESS, rtt(2), rtt(3)},
    "DATA_DESTROY": {SUCCESS, rtt(2), rtt(3)},
}
"""What a correct RMM may answer in this race. The level-2 table always exists; whether the
level-3 table does (or the range is folded into a block), and whether an entry is assigned,
depends on the other CPUs. RTT_CREATE: made, or already a table (2). RTT_DESTROY: destroyed,
no table there (2), or live (3). RTT_FOLD: folded, no table (2), or not foldable (3).
DELEGATE of a backing page: ours, or another CPU holds it (INPUT). DATA_CREATE_UNKNOWN and
DATA_DESTROY: done, no level-3 table (2), or the entry is (not) assigned (3)."""


def race_tables(cpu, plan: RacePlan) -> Counter:  # type: ignore[no-untyped-def]
    """CPU target: first RTT_CREATE on every block, then ``plan.ops`` random operations: table
    create / destroy / fold, and runs of DATA_CREATE_UNKNOWN or DATA_DESTROY (a whole block
    now and then, so that folds of full tables happen)."""
    rng = random.Random(plan.seed * 7919 + cpu.id)
    me = TableChurner(cpu, plan.rd, plan.base, plan.backing, ALLOWED)
    start_together(cpu)
    for b in range(plan.blocks):
        me.create_table(plan.base + b * 2 * MiB)
    for _ in range(plan.ops):
        block = plan.base + rng.randrange(plan.blocks) * 2 * MiB
        op = rng.random()
        if op < 0.15:
            me.create_table(block)
        elif op < 0.25:
            me.drop_table("RTT_DESTROY", block)
        elif op < 0.4:
            me.drop_table("RTT_FOLD", block)
        else:
            first, count = (0, 512) if rng.random() < 0.2 else (rng.randrange(512), rng.randint(1, 48))
            work = me.fill if op < 0.75 else me.empty
            for i in range(first, min(first + count, 512)):
                work(block + i * G)
    return me.seen


@pytest.mark.parametrize("order", ["legacy", "v12"])
def test_cpus_race_on_one_realms_tables(order: str) -> None:
    """4 CPU processes race table and data commands over two 2 MiB ranges of one realm; every
    status is allowed (the targets assert it), at least one RTT_CREATE succeeded and some calls
    lost a race; afterwards the invariants hold, the parent's teardown (splitting any folded
    block) succeeds and nothing is left delegated or allocated."""
    with Machine.create("host", cpus=4) as m:
        alloc = NsAllocator(m, 0)
        cpu = m.cpu(0)
        realm = create_realm(cpu, alloc, RealmSpec(ipa_width=40, ram_base=0x8000_0000, ram_size=4 * MiB,
                                                   num_recs=1, image=bytes(G), image_ipa=0x8000_0000 + 8 * MiB))
        backing = alloc.alloc(1024, 512)
        plan = RacePlan(realm.rd, 0x8000_0000, 2, backing, ops=120, seed=5 if order == "legacy" else 6)
        cpu.close()
        result = run_cpus(m, race_tables, args=(plan,))
        assert result.ok, [f.describe() for f in result.failures]
        seen = sum(result.results.values(), Counter())
        assert seen[("RTT_CREATE", SUCCESS)] >= 1
        assert sum(n for (_, x0), n in seen.items() if x0 != SUCCESS) > 0
        report = invariants(m)
        assert report.ok, str(report)
        assert report.state_counts.get("DELEGATED", 0) == 0
        cpu = m.cpu(0)
        destroy_realm(cpu, alloc, realm, order)
        for i in range(1024):
            if alloc.allocated(backing + i * G):
                alloc.free(backing + i * G)
        _all_ns_and_allocator_empty(m)
