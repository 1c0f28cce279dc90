"""The operations a stress CPU draws from: every RMI path, and realms running with RSI calls.

Each operation is a few RMI calls on the shared population (stress.population), made by the
KVM-like host where one exists (rmm_mp.host: run loop, realm build and teardown, fault-in) and
directly otherwise. Every status is checked against what a correct RMM may answer in that race
(``allowed``): anything else is a functional finding, as is a HostError from the host library
or a guest realm that ends without a passing report.

    vcpu       take a vCPU from the run queue and run it once (REC_ENTER, exit handling: faults,
               RIPAS changes, MMIO, host calls, PSCI_COMPLETE); relaunch a finished guest
    tables     RTT_CREATE / RTT_DESTROY / RTT_FOLD of T's level-3 tables
    data       runs of DATA_CREATE_UNKNOWN or DATA_DESTROY in T's contested ranges
    map        RTT_MAP_UNPROTECTED / RTT_UNMAP_UNPROTECTED of T's unprotected page; READ_ENTRY
    recs       REC_CREATE (index from a shared hint) / REC_DESTROY / REC_AUX_COUNT on N, and
               REALM_DESTROY of N (refused: N has RECs); a CPU keeps at most MY_RECS of its
               RECs alive, destroying one instead of creating another when it has that many
    measured   DATA_CREATE (measured) / DATA_DESTROY / RTT_INIT_RIPAS on N's 32 shared pages
    delegate   DELEGATE / UNDELEGATE of the shared pool
    wrong      calls naming objects of the wrong kind (the RMM must refuse them without harm)
    lifecycle  build a one-REC realm and tear it down in either order
    guest-tables
               on a guest realm this CPU owns, while other CPUs run its vCPUs: DATA_CREATE_UNKNOWN
               / DATA_DESTROY of pages, RTT_DESTROY / RTT_FOLD of the level-3 table and
               RTT_DESTROY of the level-2 one, in an unused RIPAS EMPTY range (GUEST_CHURN_BASE),
               and RTT_READ_ENTRY of its RAM

This module owns the operations and their allowed answers. It must not check locks.
"""

from __future__ import annotations

import random
import re
from typing import TYPE_CHECKING, Callable

from rmm_mp.abi.rmi import RmiFid
from rmm_mp.abi.structs import RMI_REC_PARAMS, rec_index_to_mpidr
from rmm_mp.host import NsAllocator, RealmSpec, RunLoop, create_realm, destroy_realm, realm_status
from rmm_mp.host.realm import create_rtt_levels, status_name
from rmm_mp.host.realm_entry import DONE
from rmm_mp.stress.findings import Finding, call_text, fid_name
from rmm_mp.stress.population import G, MiB, NEW_BASE, NEW_PAGES, TABLE_BASE, Population, guest_specs

if TYPE_CHECKING:
    from rmm_mp.host.devices import RealmStatus
    from rmm_mp.machine import Cpu
    from rmm_mp.stress.shared import StressSegment

F = RmiFid
SUCCESS, INPUT, REALM = 0, 1, 2
NS_ATTRS = (0x6 << 2) | (0x3 << 6)


def rtt(level: int) -> int:
    return 4 | level << 8


WORKLOADS: dict[str, dict[str, float]] = {
    "mixed": {"vcpu": 5, "tables": 2, "data": 2, "map": 1, "recs": 1, "measured": 2, "delegate": 2, "wrong": 1,
              "lifecycle": 0.05},
    "tables": {"tables": 4, "data": 3, "map": 1},
    "rtts": {"tables": 1},
    "realms": {"vcpu": 1},
    "lifecycle": {"recs": 3, "measured": 2, "delegate": 2, "wrong": 1, "lifecycle": 0.3},
    "running": {"vcpu": 3, "guest-tables": 2},
}
"""Bundled stress workloads: the weight of each operation."""

GUEST_CHURN_BASE = 0x4000_0000
"""The 2 MiB range of every guest realm that `guest-tables` works on: protected and RIPAS EMPTY
(below the guests' RAM, population.GUEST_BASE), so no guest ever touches it, while its commands
walk the realm's tables and invalidate its TLBs as the guest's vCPUs run."""
GUEST_CHURN_PAGES = 4
GUEST_TABLE_ALLOWED = frozenset({SUCCESS, rtt(1), rtt(2), rtt(3)})
"""DATA_DESTROY, RTT_DESTROY and RTT_FOLD in that range: done; no table on the way (the walk
stops at level 1 while the level-2 table is gone, at level 2 while the level-3 one is); or the
entry or table is not in the state the command needs (an unassigned page, a live table: 2 or 3)."""

MY_RECS = 8
"""RECs of realm N one CPU keeps alive at most. Creating is drawn more often than destroying
(a REC_CREATE may be refused in a race), so without a bound a long run kept adding RECs, each
with its aux granules, until the host ran out of memory (a false finding, OutOfGranules)."""


_VCPU_PREFIX = re.compile(r"^realm slot \d+ REC \d+: ")
"""The vCPU a run-loop error names (RunLoop._fail), another on a replay."""
_VCPU_VALUES = re.compile(r"\b(IPA|ESR) 0x[0-9a-fA-F]+")
"""The address and syndrome a run-loop error names (host.exits): the only values it names after
a word (no error of the run loop names a PA, an RD or a REC by address)."""


def vcpu_identity(error: str) -> str:
    """A failed vCPU's identity (Finding.identity; it has no site): the run loop's error without
    the vCPU's realm slot and REC index and without the addresses and syndrome it names (``IPA ?``,
    ``ESR ?``), which a shrunk run's replay has others of; what kind of exit failed stays (its
    reason, an ESR's EC). Without it every failed vCPU was one problem to --shrink."""
    return "RMI_REC_ENTER: " + _VCPU_VALUES.sub(r"\1 ?", _VCPU_PREFIX.sub("", error))


def _guest_identity(name: str, status: RealmStatus) -> str:
    """A failed guest's identity: the guest, how it ended and its result code (not the detail: an
    address, a count), not its slot or RD, another on a replay. A guest that never reported failed
    with a result code of 0 it never sent; one whose last report was cut short, with the code of
    the report before it (RealmStatus.result), maybe 0, while what it reported last is unknown
    (RealmStatus.passed): said so, or either was one problem with a guest that reported a pass and
    failed otherwise, or with one whose whole last report sent that code."""
    if not status.reports:
        how = "no report"
    elif status.report_cut_short:
        how = "its last report cut short"
    else:
        how = f"result code {status.result[0]}"
    return f"guest {name} ended {status.end} with {how}"


class Unexpected(Exception):
    """An operation saw what a correct RMM cannot produce (carries the finding)."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(finding.message)
        self.finding = finding


class Operations:
    """One CPU's operations on the population."""

    def __init__(self, cpu: "Cpu", pop: Population, seg: "StressSegment") -> None:
        self.cpu = cpu
        self.smc = cpu.smc
        self.pop = pop
        self.seg = seg
        self.alloc = NsAllocator.for_cpu(cpu)
        self.loop = RunLoop(cpu)
        self.queue = self.loop.queue
        self.errors_seen = 0
        self.counts: dict[str, int] = {}
        """Operations completed by kind (counted by the worker) and vCPU events ("rec-enter",
        "vcpu-idle", "relaunch", and "guest-tables-idle": a `guest-tables` with no guest realm of its own)."""
        self.idle = False
        """The operation just made found nothing to do (an empty run queue and no guest to
        rebuild, or no guest realm of its own): set by the operation, cleared by the worker
        before each one. A free-running CPU backs off after it (stress.worker.idle_pause); a
        deterministic one does not look at it."""
        n = cpu.machine.cpus
        self.guests = {slot: (name, realm) for i, (name, slot, realm) in enumerate(pop.guests) if i % n == cpu.id}
        self.my_recs: list[tuple[int, tuple[int, ...]]] = []
        self.run_page: int | None = None
        """The NS run page `wrong` enters RECs with, once allocated (None: not yet; 0 is a page
        on a platform whose DRAM starts at PA 0)."""
        self.table = {
            "vcpu": self.vcpu, "tables": self.tables, "data": self.data, "map": self.map, "recs": self.recs,
            "measured": self.measured, "delegate": self.delegate, "wrong": self.wrong, "lifecycle": self.lifecycle,
            "guest-tables": self.guest_tables,
        }

    def pick(self, weights: dict[str, float]) -> "list[Callable[[random.Random], None]]":
        return [self.table[name] for name in weights]

    def count(self, what: str) -> None:
        """One more operation of kind ``what`` completed, or one more event (``"rec-enter"``, ...)."""
        self.counts[what] = self.counts.get(what, 0) + 1
        # Also in the stress segment, which outlives this process: a CPU killed or dead returns
        # no result, and its counts by kind were lost with it.
        self.seg.count(self.cpu.id, what)

    def call(self, fid: int, allowed: "set[int] | frozenset[int]", *args: int) -> tuple[int, ...]:
        regs = self.smc(fid, *args)
        if regs[0] not in allowed:
            shown = ", ".join(f"{a:#x}" for a in sorted(allowed))
            # Its identity (Finding.identity; it has no site): the command and the status, no
            # arguments nor an RMI_ERROR_RTT's level, so a shrinking keeps no other command's.
            raise Unexpected(Finding("functional", "status", f"returned X0 = {regs[0]:#x}; a correct RMM answers one "
                                     f"of {{{shown}}} here", self.cpu.id, call_text(fid, args, len(args)),
                                     identity=f"{fid_name(fid)} returned {status_name(regs[0])}"))
        return regs

    def delegated(self) -> int:
        pa = self.alloc.alloc()
        self.call(F.RMI_GRANULE_DELEGATE, {SUCCESS}, pa)
        return pa

    def release(self, pa: int) -> None:
        self.call(F.RMI_GRANULE_UNDELEGATE, {SUCCESS}, pa)
        self.alloc.free(pa)

    # -- realms running ---------------------------------------------------------------------

    def vcpu(self, rng: random.Random) -> None:
        vcpu = self.queue.take(self.cpu.id)
        if vcpu is None:
            self.count("vcpu-idle")
            self.idle = not self._relaunch()
            return
        self.count("rec-enter")
        self.loop.step(vcpu)
        if len(self.loop.errors) > self.errors_seen:
            self.errors_seen = len(self.loop.errors)
            # Named by its REC and run page too, the REC_ENTER that failed: the run loop's error
            # names the vCPU by its realm slot and REC index alone, which no other finding,
            # lock line or invariant uses.
            rec, run = self.queue.vcpu_pages(vcpu)
            raise Unexpected(Finding("functional", "vcpu", f"a vCPU failed (REC {rec:#x}): {self.loop.errors[-1]}",
                                     self.cpu.id, call_text(F.RMI_REC_ENTER, (rec, run), 2),
                                     identity=vcpu_identity(self.loop.errors[-1])))

    def _relaunch(self) -> bool:
        """Rebuild a finished guest realm whose slot this CPU owns (after checking its result);
        False if none had finished."""
        for slot, (name, realm) in list(self.guests.items()):
            if self.queue.realm_state(slot) != DONE:
                continue
            status = realm_status(self.queue, slot)
            if not status.passed:
                raise Unexpected(Finding("functional", "realm", f"guest {name} (slot {slot}, RD {realm.rd:#x}) ended "
                                         f"{status.end} with result {status.result} and vCPUs {status.vcpu_ends}",
                                         self.cpu.id, identity=_guest_identity(name, status)))
            destroy_realm(self.cpu, self.alloc, realm)
            self.queue.release_realm(self.alloc, slot)
            fresh = create_realm(self.cpu, self.alloc, guest_specs()[name])
            del self.guests[slot]
            self.count("relaunch")
            self.guests[self.queue.add_realm(self.alloc, fresh)] = (name, fresh)
            return True
        return False

    def guest_tables(self, rng: random.Random) -> None:
        """Stage-2 work on a running guest realm's unused range (GUEST_CHURN_BASE). Only this CPU
        (the realm's owner, which alone rebuilds it) touches the range, so the statuses follow
        from its own earlier operations; what races is everything else on the realm: the other
        CPUs' vCPUs walking its tables lock-free and in RSI calls, the host's fault-ins, and
        the TLB invalidations of DATA_DESTROY, RTT_DESTROY and RTT_FOLD, which wait for every
        CPU executing the realm."""
        if not self.guests:
            # More CPUs than guest realms (population.MAX_GUESTS, or 4 for a population of
            # version 1): this one owns none and does nothing. Counted as an event too, as an
            # empty run queue is (vcpu-idle): with 16 CPUs and 4 guests, 12 of them drew some
            # 340,000 such empty operations in 5 s, which the operation count alone passed off
            # as work.
            self.count("guest-tables-idle")
            self.idle = True
            return
        _, realm = self.guests[rng.choice(sorted(self.guests))]
        rd = realm.rd
        op = rng.random()
        if op < 0.4:
            ipa = GUEST_CHURN_BASE + rng.randrange(GUEST_CHURN_PAGES) * G
            create_rtt_levels(self.cpu, self.alloc, realm, ipa, realm.start_level, 3)
            pa = self.delegated()
            if self.call(F.RMI_DATA_CREATE_UNKNOWN, {SUCCESS, rtt(3)}, rd, pa, ipa)[0] != SUCCESS:
                self.release(pa)
        elif op < 0.65:
            self._guest_data_destroy(rd, GUEST_CHURN_BASE + rng.randrange(GUEST_CHURN_PAGES) * G)
        elif op < 0.8:
            # The whole range: its pages, its level-3 table (destroyed or folded), and where the
            # start level allows, its level-2 table, whose parent is the table (a root RTT, for
            # the guests' start level 1) the guest's own RAM is reached through: that TLB
            # invalidation runs holding the table every RSI walk and host fault-in must pass.
            for i in range(GUEST_CHURN_PAGES):
                self._guest_data_destroy(rd, GUEST_CHURN_BASE + i * G)
            fid = F.RMI_RTT_DESTROY if rng.random() < 0.5 else F.RMI_RTT_FOLD
            levels = ((fid, 3), (F.RMI_RTT_DESTROY, 2)) if realm.start_level < 2 else ((fid, 3),)
            for fid, level in levels:
                x0, pa = self.call(fid, GUEST_TABLE_ALLOWED, rd, GUEST_CHURN_BASE, level)[:2]
                if x0 == SUCCESS:
                    self.release(pa)
        else:
            base, size = realm.ram
            self.call(F.RMI_RTT_READ_ENTRY, {SUCCESS}, rd, base + rng.randrange(size // G) * G, 3)

    def _guest_data_destroy(self, rd: int, ipa: int) -> None:
        x0, pa = self.call(F.RMI_DATA_DESTROY, GUEST_TABLE_ALLOWED, rd, ipa)[:2]
        if x0 == SUCCESS:
            self.release(pa)

    # -- realm T: tables, data, unprotected mappings --------------------------------------------

    def tables(self, rng: random.Random) -> None:
        block = rng.choice((*self.pop.table_ranges, self.pop.bare_range, self.pop.bare_range))
        rd = self.pop.table_realm.rd
        op = rng.random()
        if op < 0.5:
            pa = self.delegated()
            if self.call(F.RMI_RTT_CREATE, {SUCCESS, rtt(2)}, rd, pa, block, 3)[0] != SUCCESS:
                self.release(pa)
            return
        fid = F.RMI_RTT_DESTROY if op < 0.75 else F.RMI_RTT_FOLD
        x0, pa = self.call(fid, {SUCCESS, rtt(2), rtt(3)}, rd, block, 3)[:2]
        if x0 == SUCCESS:
            self.release(pa)

    def data(self, rng: random.Random) -> None:
        block = rng.choice(self.pop.table_ranges)
        first, count = (0, 512) if rng.random() < 0.03 else (rng.randrange(512), rng.randint(1, 8))
        fill = rng.random() < 0.55
        rd = self.pop.table_realm.rd
        for i in range(first, min(first + count, 512)):
            ipa = block + i * G
            pa = self.pop.table_backing + (ipa - TABLE_BASE)
            if fill:
                if self.call(F.RMI_GRANULE_DELEGATE, {SUCCESS, INPUT}, pa)[0] != SUCCESS:
                    continue
                if self.call(F.RMI_DATA_CREATE_UNKNOWN, {SUCCESS, rtt(2), rtt(3)}, rd, pa, ipa)[0] != SUCCESS:
                    self.call(F.RMI_GRANULE_UNDELEGATE, {SUCCESS}, pa)
            else:
                x0, out = self.call(F.RMI_DATA_DESTROY, {SUCCESS, rtt(2), rtt(3)}, rd, ipa)[:2]
                if x0 == SUCCESS:
                    if out != pa:
                        raise Unexpected(Finding("functional", "output", f"DATA_DESTROY returned {out:#x}, but "
                                                 f"{pa:#x} was mapped there", self.cpu.id, call_text(F.RMI_DATA_DESTROY,
                                                                                                     (rd, ipa)),
                                                 identity="RMI_DATA_DESTROY returned another PA than was mapped"))
                    self.call(F.RMI_GRANULE_UNDELEGATE, {SUCCESS}, pa)

    def map(self, rng: random.Random) -> None:
        pop, rd = self.pop, self.pop.table_realm.rd
        op = rng.random()
        if op < 0.4:
            self.call(F.RMI_RTT_MAP_UNPROTECTED, {SUCCESS, rtt(3)}, rd, pop.ns_ipa, 3, pop.ns_page | NS_ATTRS)
        elif op < 0.8:
            self.call(F.RMI_RTT_UNMAP_UNPROTECTED, {SUCCESS, rtt(3)}, rd, pop.ns_ipa, 3)
        else:
            ipa = rng.choice(pop.table_ranges) + rng.randrange(512) * G
            self.call(F.RMI_RTT_READ_ENTRY, {SUCCESS}, rd, ipa, 3)

    # -- realm N: RECs, measured data, RIPAS ------------------------------------------------------

    def recs(self, rng: random.Random) -> None:
        rd = self.pop.new_realm.rd
        op = rng.random()
        full = len(self.my_recs) >= MY_RECS
        if op < 0.45 and not full or not self.my_recs and op < 0.8:
            self._rec_create(rd)
        elif op < 0.8:
            rec, aux = self.my_recs.pop(rng.randrange(len(self.my_recs)))
            self.call(F.RMI_REC_DESTROY, {SUCCESS}, rec)
            for pa in (rec, *aux):
                self.release(pa)
        elif op < 0.9:
            self.call(F.RMI_REC_AUX_COUNT, {SUCCESS}, rd)
        else:
            self.call(F.RMI_REALM_DESTROY, {REALM}, rd)

    def _rec_create(self, rd: int) -> None:
        index = self.seg.rec_hint()
        granules = [self.delegated() for _ in range(1 + self.pop.new_realm.num_aux)]
        params = self.alloc.alloc()
        try:
            self.cpu.machine.ns_write(params, bytes(RMI_REC_PARAMS.pack(
                flags=0, mpidr=rec_index_to_mpidr(index), pc=0, gprs=(), num_aux=len(granules) - 1,
                aux=tuple(granules[1:]))))
            x0 = self.call(F.RMI_REC_CREATE, {SUCCESS, INPUT, REALM}, rd, granules[0], params)[0]
        finally:
            self.alloc.free(params)
        if x0 == SUCCESS:
            self.seg.advance_rec_hint(index)
            self.my_recs.append((granules[0], tuple(granules[1:])))
            return
        for pa in granules:
            self.release(pa)

    def measured(self, rng: random.Random) -> None:
        pop, rd = self.pop, self.pop.new_realm.rd
        ipa = NEW_BASE + rng.randrange(NEW_PAGES) * G
        op = rng.random()
        if op < 0.45:
            pa = self.delegated()
            if self.call(F.RMI_DATA_CREATE, {SUCCESS, rtt(3)}, rd, pa, ipa, pop.src_page, rng.randrange(2))[0]:
                self.release(pa)
        elif op < 0.85:
            x0, pa = self.call(F.RMI_DATA_DESTROY, {SUCCESS, rtt(3)}, rd, ipa)[:2]
            if x0 == SUCCESS:
                self.release(pa)
        else:
            top = min(ipa + rng.randint(1, 8) * G, NEW_BASE + NEW_PAGES * G)
            self.call(F.RMI_RTT_INIT_RIPAS, {SUCCESS, rtt(3)}, rd, ipa, top)

    # -- granules, wrong objects, whole realms ------------------------------------------------------

    def delegate(self, rng: random.Random) -> None:
        pa = rng.choice(self.pop.pool)
        fid = F.RMI_GRANULE_DELEGATE if rng.random() < 0.5 else F.RMI_GRANULE_UNDELEGATE
        self.call(fid, {SUCCESS, INPUT}, pa)

    def wrong(self, rng: random.Random) -> None:
        t, n = self.pop.table_realm, self.pop.new_realm
        recs = [t.recs[0].rec, n.recs[0].rec]
        rng.shuffle(recs)
        if self.run_page is None:
            self.run_page = self.alloc.alloc()
            self.cpu.machine.ns_write(self.run_page, bytes(G))
        choice = rng.randrange(6)
        if choice == 0:
            self.call(F.RMI_PSCI_COMPLETE, {INPUT}, recs[0], recs[1], 0)
        elif choice == 1:
            # Only ERROR_REALM: REC_ENTER checks the realm's state with the REC locked, before it
            # takes the running reference, so no CPU can hold a NEW realm's REC running (ERROR_REC
            # here would be that ordering bug come back).
            self.call(F.RMI_REC_ENTER, {REALM}, n.recs[0].rec, self.run_page)
        elif choice == 2:
            self.call(F.RMI_GRANULE_DELEGATE if rng.random() < 0.5 else F.RMI_GRANULE_UNDELEGATE, {INPUT}, n.rd)
        elif choice == 3:
            self.call(F.RMI_REALM_ACTIVATE, {REALM}, t.rd)
        elif choice == 4:
            self.call(F.RMI_DATA_CREATE_UNKNOWN, {INPUT}, t.rd, n.rd, TABLE_BASE)
        else:
            self.call(F.RMI_RTT_CREATE, {INPUT}, n.rd, recs[0], NEW_BASE, 3)

    def lifecycle(self, rng: random.Random) -> None:
        spec = RealmSpec(ipa_width=rng.choice((33, 40)), ram_base=0x8000_0000, ram_size=MiB, num_recs=rng.randint(1, 2),
                         image=bytes(G), teardown=rng.choice(("legacy", "v12")))
        destroy_realm(self.cpu, self.alloc, create_realm(self.cpu, self.alloc, spec))
