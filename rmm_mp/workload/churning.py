"""The churn activities: stage-2 tables, shared pages and granule delegation, one unit per step.

    rtt-churn       in this CPU's 2 MiB window of a realm's protected space below its RAM (RIPAS
                    EMPTY, never touched by the guest; windows of different CPUs share their
                    level-2 table), one of: RTT_CREATE of the level-3 table (which unfolds a
                    folded block), RTT_FOLD of it, RTT_DESTROY of it, or DATA_CREATE_UNKNOWN /
                    DATA_DESTROY of a run of pages (backed by a 2 MiB aligned run of granules, so
                    a full table folds into an assigned block)
    map-shared      one of 16 unprotected pages of this CPU's window in the realm's shared half:
                    RTT_MAP_UNPROTECTED of an NS page (tables created as needed) if it is not
                    mapped, else RTT_UNMAP_UNPROTECTED
    delegate-churn  one iteration of host.churn.ChurnStep: DELEGATE / UNDELEGATE of granules
                    shared by every CPU (a lost race is ERROR_INPUT), or a private
                    write-delegate-undelegate-read-back round

Each unit picks its realm from the realms this CPU may churn (resident ones and the lifecycle
instances it owns) with its own seeded generator. Every status is checked against what a
correct RMM can answer given what this CPU alone did in its window (no other CPU touches it);
anything else raises ChurnError, which fails the CPU and the run.

This module owns these activities. It speaks SMC only (through the host library).
"""

from __future__ import annotations

from rmm_mp.abi.rmi import RmiFid
from rmm_mp.host.churn import PRIVATE_ROUNDS, ChurnStep
from rmm_mp.host.realm import create_rtt_levels, delegated_granule, map_unprotected, release_granule
from rmm_mp.workload.cpustate import Host, Window
from rmm_mp.workload.plan import activity_rng

F = RmiFid
SUCCESS = 0
G = 4096
NS_ATTRS = (0x6 << 2) | (0x3 << 6)
MAP_PAGES = 16


def rtt(level: int) -> int:
    return 4 | level << 8


ALLOWED = {
    F.RMI_RTT_CREATE: {SUCCESS, rtt(2)},
    F.RMI_RTT_DESTROY: {SUCCESS, rtt(2), rtt(3)},
    F.RMI_RTT_FOLD: {SUCCESS, rtt(2), rtt(3)},
    F.RMI_DATA_CREATE_UNKNOWN: {SUCCESS, rtt(2), rtt(3)},
    F.RMI_DATA_DESTROY: {SUCCESS, rtt(2), rtt(3)},
}
"""What the RMM may answer in a window: whether the level-3 table exists, is folded into a
block, is live, and whether a page is assigned, depends on this CPU's own earlier steps only."""


class ChurnError(AssertionError):
    """The RMM answered a churn call with something no correct RMM can."""


class RttChurn:
    def __init__(self, host: Host) -> None:
        self.host = host
        self.rng = activity_rng(host.job.seed, host.cpu.id, "rtt-churn")

    def call(self, fid: F, *args: int) -> tuple[int, ...]:
        regs = self.host.smc(fid, *args)
        if regs[0] not in ALLOWED[fid]:
            raise ChurnError(f"{fid.name}({', '.join(hex(a) for a in args)}) returned {regs[0]:#x}; a window only "
                             f"this CPU touches allows {sorted(ALLOWED[fid])}")
        self.host.counters["rtt-churn misses" if regs[0] else "rtt-churn successes"] += 1
        return regs

    def unit(self) -> None:
        h, rng = self.host, self.rng
        picked = h.pick_window(rng, "rtt-churn")
        if picked is None:
            return
        inst, win = picked
        realm = inst.host
        if not win.ready:       # the level-2 table over the windows (another CPU may make it first)
            create_rtt_levels(h.cpu, h.alloc, realm, win.base, realm.start_level, 2)
            win.ready = True
        op = rng.random()
        if op < 0.15:
            table = delegated_granule(h.cpu, h.alloc)
            if self.call(F.RMI_RTT_CREATE, realm.rd, table, win.base, 3)[0] == SUCCESS:
                h.counters["tables created"] += 1
            else:
                release_granule(h.cpu, h.alloc, table)
        elif op < 0.3:
            fid = F.RMI_RTT_FOLD if op < 0.22 else F.RMI_RTT_DESTROY
            x0, table = self.call(fid, realm.rd, win.base, 3)[:2]
            if x0 == SUCCESS:
                release_granule(h.cpu, h.alloc, table)
                h.counters["tables folded" if fid == F.RMI_RTT_FOLD else "tables destroyed"] += 1
        else:
            first, count = (0, 512) if rng.random() < 0.1 else (rng.randrange(512), rng.randint(1, 16))
            fill = op < 0.7
            for i in range(first, min(first + count, 512)):
                self._fill(win, realm.rd, i) if fill else self._empty(win, realm.rd, i)

    def _fill(self, win: Window, rd: int, i: int) -> None:
        if i in win.assigned:
            return
        h = self.host
        if win.backing is None:
            win.backing = h.take_backing()
        pa = win.backing + i * G
        x0 = h.smc(F.RMI_GRANULE_DELEGATE, pa)[0]
        if x0 != SUCCESS:
            raise ChurnError(f"RMI_GRANULE_DELEGATE({pa:#x}) of a backing page this CPU holds returned {x0:#x}")
        if self.call(F.RMI_DATA_CREATE_UNKNOWN, rd, pa, win.base + i * G)[0] == SUCCESS:
            win.assigned.add(i)
            h.counters["pages assigned"] += 1
        elif h.smc(F.RMI_GRANULE_UNDELEGATE, pa)[0] != SUCCESS:
            raise ChurnError(f"RMI_GRANULE_UNDELEGATE({pa:#x}) after a failed DATA_CREATE_UNKNOWN did not succeed")

    def _empty(self, win: Window, rd: int, i: int) -> None:
        if i not in win.assigned:
            return
        h = self.host
        assert win.backing is not None
        x0, pa = self.call(F.RMI_DATA_DESTROY, rd, win.base + i * G)[:2]
        if x0 != SUCCESS:
            return                  # folded into a block: the page stays assigned
        if pa != win.backing + i * G:
            raise ChurnError(f"RMI_DATA_DESTROY({win.base + i * G:#x}) returned PA {pa:#x}, not the page mapped "
                             f"there ({win.backing + i * G:#x})")
        if h.smc(F.RMI_GRANULE_UNDELEGATE, pa)[0] != SUCCESS:
            raise ChurnError(f"RMI_GRANULE_UNDELEGATE({pa:#x}) after DATA_DESTROY did not succeed")
        win.assigned.discard(i)
        h.counters["pages destroyed"] += 1


class MapShared:
    def __init__(self, host: Host) -> None:
        self.host = host
        self.rng = activity_rng(host.job.seed, host.cpu.id, "map-shared")

    def unit(self) -> None:
        h, rng = self.host, self.rng
        picked = h.pick_window(rng, "map-shared")
        if picked is None:
            return
        inst, win = picked
        i = rng.randrange(MAP_PAGES)
        ipa = win.ns_base + i * G
        if i in win.mapped:
            x0 = h.smc(F.RMI_RTT_UNMAP_UNPROTECTED, inst.host.rd, ipa, 3)[0]
            if x0 != SUCCESS:
                raise ChurnError(f"RMI_RTT_UNMAP_UNPROTECTED({inst.host.rd:#x}, {ipa:#x}, 3) of a page this CPU "
                                 f"mapped returned {x0:#x}")
            win.mapped.discard(i)
            h.counters["shared unmaps"] += 1
            return
        pa = win.ns_pages.get(i)
        if pa is None:
            pa = win.ns_pages[i] = h.alloc.alloc()
        h.machine.ns_write(pa, b"rmm-mp map-shared %d:%d " % (h.cpu.id, i))
        if not map_unprotected(h.cpu, h.alloc, inst.host, ipa, pa):
            raise ChurnError(f"RTT_MAP_UNPROTECTED at {ipa:#x}, which only this CPU maps, found the entry in use")
        win.mapped.add(i)
        h.counters["shared maps"] += 1


DELEGATE_COUNTERS = ("shared delegated", "shared delegate lost", "shared undelegated", "shared undelegate lost",
                     "private rounds")
"""The report's names of ChurnStep's counts from SHARED_DELEGATED on. Its first count, ITERATIONS
(ChurnStep.step calls), is left out: the engine calls step once per delegate-churn step, so it
always equalled `delegate-churn steps`, and the report showed the same number twice, once under
the name `iterations`, which said nothing of what it counted (and reads as the run's
--iterations). Host.delegate keeps every count: the parent's balance check reads them as a
ChurnResult."""


class DelegateChurn:
    def __init__(self, host: Host) -> None:
        self.host = host
        job = host.job
        self.churn = ChurnStep(host.cpu, job.delegate_shared, job.delegate_private,
                               activity_rng(job.seed, host.cpu.id, "delegate-churn"))

    def unit(self) -> None:
        self.churn.step()
        self.host.delegate = tuple(self.churn.counts[:PRIVATE_ROUNDS + 1])
