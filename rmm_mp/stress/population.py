"""The objects a stress run shares between its CPUs, built by the parent before the CPUs start.

Every CPU races on the same granules, so the population is small and shared on purpose:

  guests    realms running bundled guest programs (workloads/guests: smp-boot with three RECs,
            so CPU_ON and AFFINITY_INFO exits and PSCI_COMPLETE; ripas-flip, so RSI IPA state
            changes, RTT_SET_RIPAS, MMIO and unprotected mappings; measure, so the RD lock from
            RSI; attest, so a REM extension and an attestation token signed across REC entries),
            registered in the host's run queue (any CPU runs any vCPU). A guest realm
            that has finished is checked (it must have reported a pass) and built anew by the
            CPU that owns it (guest i: CPU i modulo CPUs), so realms keep running all along.
            Four of them (one of each) up to 4 CPUs; on more, for a workload that runs them,
            two per CPU up to MAX_GUESTS (guest_names), so that every CPU owns some and finds
            vCPUs in the queue rather than spinning on an empty one.
  tables    realm T (ACTIVE, one REC, never run): two 2 MiB ranges whose level-3 tables and
            DATA granules every CPU creates, folds and destroys (an NS run backs them at
            a fixed offset), a third ("bare") whose empty level-3 table they create and destroy
            over and over, and an unprotected page that every CPU maps and unmaps.
  new       realm N (NEW, REC 0 created): CPUs race REC_CREATE (each proposing the index a
            shared hint names), REC_DESTROY, measured DATA_CREATE and DATA_DESTROY on 32
            pages of one level-3 table, RTT_INIT_RIPAS on them, and REALM_DESTROY (refused:
            N always has a REC).
  pool      NS granules that every CPU delegates and undelegates at random.
  src       an NS page of known bytes, the source of measured DATA_CREATEs.

This module owns the population's shape and its construction. Building is deterministic: the
same seed gives the same machine contents.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

from rmm_mp.host import NsAllocator, RealmSpec, RunQueue, create_realm, load_guest, measure_constants
from rmm_mp.host.realm import HostRealm, create_rtt_levels
from rmm_mp.host.runqueue import OFF_ARRIVED

if TYPE_CHECKING:
    from rmm_mp.machine import Machine

MiB = 1 << 20
G = 4096
GUEST_BASE = 0x8000_0000
TABLE_BASE = 0x4000_0000
TABLE_BLOCKS = 2
NEW_BASE = 0x4000_0000
NEW_PAGES = 32
POOL = 8
MEASURE_VALUE = bytes(range(64))

POPULATION = 2
"""The population's version, recorded in a schedule file (schedule.py) so that a replay builds
the population its recording ran on:

    1  the four guests (FIRST_GUESTS) at any CPU count (schedule files of version 1, written
       before the population scaled: a replay of one must build the same realms, else its
       vCPUs and addresses differ and it diverges)
    2  guest_names: on more than 4 CPUs, two guests per CPU up to MAX_GUESTS for a workload
       that runs guests"""
POPULATIONS = (1, 2)
FIRST_GUESTS = ("smp-boot", "ripas-flip", "measure", "attest")
"""The guests of a run on up to 4 CPUs (and of population 1), in the order they are built."""
GUESTS_PER_CPU = 2
"""Guest realms per CPU beyond 4 CPUs. One each (3 vCPUs in 2 guests) left `realms` on 8 CPUs
92 % idle draws (a guest's vCPU is in the queue only between its owner's relaunch and its end,
and smp-boot's secondaries are off most of the time); two each (3 vCPUs per CPU) left 3 %."""
MAX_GUESTS = 48
"""Most guest realms a population has (a run on more CPUs has CPUs that own none). Each costs
some 25 to 60 granules of the host platform's 16,128 when built (the guests fault their RAM in
as they touch it) and a few milliseconds, so start-up and memory allow more: the bound is the
host run queue's 54 realm slots (runqueue.MAX_REALMS), less a few, and at 24 CPUs and more on
a 2-core host the CPU processes' start-up (25 to 50 s at 64), not the guests, is what the run
is made of."""
GUEST_OPERATIONS = ("vcpu", "guest-tables")
"""The operations that work on the guests: a workload with neither keeps the first four."""


def guest_names(cpus: int, operations: "tuple[str, ...] | list[str]", population: int = POPULATION) -> tuple[str, ...]:
    """The guest realms (by guest_specs name, in build order: guest i is owned by CPU i mod
    ``cpus``) of a run on ``cpus`` CPUs drawing ``operations`` (a workload's operation names).

    Up to 4 CPUs, and for a workload without vCPU or guest-table operations, the four of
    FIRST_GUESTS, as always (so those runs, their figures and their schedule files are as
    before). On more CPUs GUESTS_PER_CPU per CPU up to MAX_GUESTS, the four kinds in turn:
    with 4 guests and 6 vCPUs a fifth CPU owned no guest (its `guest-tables` did nothing) and 8
    CPUs found the run queue empty in 99 % of their `vcpu` draws."""
    if population not in POPULATIONS:
        raise ValueError(f"population = {population!r}: expected one of {', '.join(map(str, POPULATIONS))}")
    if population == 1 or cpus <= len(FIRST_GUESTS) or not any(op in GUEST_OPERATIONS for op in operations):
        return FIRST_GUESTS
    return tuple(FIRST_GUESTS[i % len(FIRST_GUESTS)] for i in range(min(GUESTS_PER_CPU * cpus, MAX_GUESTS)))


@functools.cache
def guest_specs() -> Mapping[str, RealmSpec]:
    """The guest realms, by name (each is rebuilt from its spec when it finishes).

    Built once per process and kept (read-only): every relaunch of a finished guest (stress.ops)
    asked for it, and each call read and assembled all four guest programs, 9 to 14 ms of CPU
    time, for the one spec it used (a 10 s `realms` run relaunches hundreds to thousands of
    guests: 290 to 960 at 16 and 64 CPUs on a loaded 2-core host, docs/stress.md; 2,887 at 4
    CPUs, seed 2; 1,981 on 2 CPUs, seed 0, on a lightly loaded one). The specs depend on
    nothing that changes during a run."""
    ram = 2 * MiB
    return MappingProxyType({
        "smp-boot": RealmSpec(ipa_width=40, ram_base=GUEST_BASE, ram_size=ram, num_recs=3,
                              image=load_guest("smp-boot", WORK=150)),
        "ripas-flip": RealmSpec(ipa_width=40, ram_base=GUEST_BASE, ram_size=ram,
                                image=load_guest("ripas-flip")),
        "measure": RealmSpec(ipa_width=33, ram_base=GUEST_BASE, ram_size=ram,
                             image=load_guest("measure", **measure_constants(MEASURE_VALUE))),
        "attest": RealmSpec(ipa_width=40, ram_base=GUEST_BASE, ram_size=4 * MiB,
                            image=load_guest("attest", EXTEND_REM=2)),
    })


@dataclass(frozen=True)
class Population:
    """What every CPU process is told about the shared objects (picklable)."""

    guests: tuple[tuple[str, int, HostRealm], ...]
    """(spec name, run-queue slot, realm as built by the parent)."""
    table_realm: HostRealm
    table_backing: int
    """PA of the 2 MiB aligned NS run backing T's contested ranges: pa(ipa) = backing + ipa - TABLE_BASE."""
    ns_ipa: int
    ns_page: int
    new_realm: HostRealm
    src_page: int
    pool: tuple[int, ...]

    @property
    def table_ranges(self) -> tuple[int, ...]:
        return tuple(TABLE_BASE + b * 2 * MiB for b in range(TABLE_BLOCKS))

    @property
    def bare_range(self) -> int:
        """A 2 MiB range of T under the same level-2 table, never given DATA."""
        return TABLE_BASE + TABLE_BLOCKS * 2 * MiB


def build(machine: "Machine", guests: "bool | tuple[str, ...]" = True) -> Population:
    """Build the population on CPU 0 (which is released again), before any CPU process starts.
    ``guests``: the guest realms by name (guest_names), True for FIRST_GUESTS, False for none."""
    cpu = machine.cpu(0)
    try:
        alloc = NsAllocator(machine, 0)
        queue = RunQueue(machine)
        placed = []
        names: tuple[str, ...] = FIRST_GUESTS if guests is True else guests or ()
        if names:
            specs = guest_specs()
            for name in names:
                realm = create_realm(cpu, alloc, specs[name])
                placed.append((name, queue.add_realm(alloc, realm), realm))
        queue.view.store_u64(OFF_ARRIVED, 0)
        table = create_realm(cpu, alloc, RealmSpec(ipa_width=40, ram_base=GUEST_BASE, ram_size=2 * MiB,
                                                   image=bytes(G)))
        for block in range(TABLE_BLOCKS):
            create_rtt_levels(cpu, alloc, table, TABLE_BASE + block * 2 * MiB, table.start_level, 2)
        ns_ipa = table.par_size + 0x4000_0000
        create_rtt_levels(cpu, alloc, table, ns_ipa, table.start_level, 3)
        backing = alloc.alloc(TABLE_BLOCKS * 512, 512)
        new = create_realm(cpu, alloc, RealmSpec(ipa_width=40, ram_base=GUEST_BASE, ram_size=0, activate=False))
        create_rtt_levels(cpu, alloc, new, NEW_BASE, new.start_level, 3)
        src = alloc.alloc()
        machine.ns_write(src, bytes((i * 7) & 0xFF for i in range(G)))
        pool = tuple(alloc.alloc() for _ in range(POOL))
        ns_page = alloc.alloc()
        return Population(tuple(placed), table, backing, ns_ipa, ns_page, new, src, pool)
    finally:
        cpu.close()


def roles(population: Population) -> dict[int, str]:
    """The population's lasting realms by the PAs of their RD and root tables: ``realm T`` and
    ``realm N``, which live the whole run and which the build places the same way on every run
    of a configuration (its replays included), as the granules the CPUs make as they race are
    not. No guest: a finished guest is destroyed and built anew (stress.ops' relaunch), so its
    PAs go back to the allocator, may become any granule of another realm, and whether a stuck
    call in a guest had a role would depend on whether it had been relaunched yet, which a
    shrunk run's replay need not share. What a watchdog finding's identity names a realm by
    (watchdog.call_identity, cycle_identity, wait_identity), where its PA would differ on a
    shrunk run's replay."""
    out: dict[int, str] = {}
    for label, realm in (("realm T", population.table_realm), ("realm N", population.new_realm)):
        out[realm.rd] = label
        for root in range(realm.num_roots):
            out[realm.rtt_base + root * G] = label
    return out
