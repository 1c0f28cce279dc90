"""What one CPU process's host keeps while it runs a workload, and what it hands back.

    RunPlan    what the parent gives every CPU: the phases, the realm templates, the resident
               realms, the shared delegate-churn pool, the run options
    CpuPart    what it gives one CPU: the lifecycle instances it owns (built by the parent), its
               private delegate-churn pool, the 2 MiB runs that back its rtt-churn windows,
               the root runs of the realms it builds and which guest images follow it
    CpuJob     both, as one CPU sees them
    CpuResult  what the CPU returns: counters, the instances it tore down (Finished), the ones
               it leaves alive, vCPU errors it saw, pages to free after the final teardown
    Host       the state the activities share on this CPU: the run loop (one REC_ENTER of a
               queued vCPU at a time), owned instances and their generations, churn windows

Ownership is what keeps CPUs from tearing a realm down under each other: a lifecycle instance is
built, turned off, torn down and churned only by its owner CPU; resident realms (lifecycle =
false) live for the whole run, so any CPU may churn them; any CPU runs any vCPU of a realm whose
`cpus` holds it (the run queues it serves, CpuPart.serve, fixed when its RunLoop is made).

This module owns the per-CPU state. It speaks SMC only (through the host library).
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Sequence

from rmm_mp.abi.rmi import RmiFid
from rmm_mp.host import HostError, RunLoop
from rmm_mp.host.realm import ERROR_RTT, PAGE_LEVEL, SUCCESS, index, status
from rmm_mp.host.realm_teardown import split_block
from rmm_mp.host.realm_entry import R_GEN
from rmm_mp.host.runqueue import MAX_VCPUS
from rmm_mp.hw.cpuarea import LIFECYCLE_TOKENS, LIFECYCLE_UNSAVED_SHIFT
from rmm_mp.workload import realms
from rmm_mp.workload.realms import Finished, Folded, Instance
from rmm_mp.workload.report import MAX_ERRORS_PER_CPU, MAX_LISTED_PER_CPU, MAX_OUTPUTS_PER_CPU
from rmm_mp.workload.resolve import RIPAS_CHURN_ROOTS, Phase, root_count
from rmm_mp.workload.spec import RealmTemplate

if TYPE_CHECKING:
    from rmm_mp.machine import Cpu

WINDOW_GRANULES = 512
"""Granules of the run backing an rtt-churn window: 2 MiB, aligned to 2 MiB, so that a level-3
table full of its pages can fold into an assigned block."""
DATA_DESTROY = int(RmiFid.RMI_DATA_DESTROY)
UNDELEGATE = int(RmiFid.RMI_GRANULE_UNDELEGATE)
_YIELDS_BEFORE_SLEEP = 32
_IDLE_SLEEP_S = 0.0002


@dataclass(frozen=True)
class RunPlan:
    """What every CPU gets (sent once per CPU process; CpuPart is each one's own share)."""

    seed: int
    cpus: int
    phases: tuple[Phase, ...]
    realms: tuple[RealmTemplate, ...]
    """The workload's [[realm]] templates, without their images (run._prepare: the parent built
    every resident instance; a lifecycle realm's image goes only to the CPUs owning one of its
    instances, with their CpuPart: job puts it back)."""
    resident: tuple[Instance, ...]
    delegate_shared: tuple[int, ...] = ()
    ripas_template: RealmTemplate | None = None
    recording: bool = True
    tokens_dir: str | None = None
    platform_key: bytes | None = None
    phase_counts: bool = False
    """Count each CPU's steps per phase ("phase NAME steps"): the file has [[phase]] entries."""
    queues: tuple[int, ...] = ()
    """Per [[realm]] entry: the run queue its instances' vCPUs go into (empty: all queue 0)."""

    def job(self, cpu: int, part: "CpuPart", images: tuple[bytes, ...] = ()) -> "CpuJob":
        """CPU ``cpu``'s job; ``images``: the guest images of the realms ``part.images`` names, in
        that order, which go back into their templates."""
        if len(images) != len(part.images):
            raise ValueError(f"images: {len(images)} guest images for the {len(part.images)} realms "
                             f"CpuPart.images names ({part.images}): expected one each")
        own = dict(zip(part.images, images))
        templates = tuple(replace(t, image=own[r]) if r in own else t for r, t in enumerate(self.realms))
        return CpuJob(cpu, self.seed, self.cpus, self.phases, templates, part.owned, self.resident,
                      self.delegate_shared if part.delegate_private else (), part.delegate_private,
                      self.ripas_template, self.recording, self.tokens_dir, self.platform_key, self.phase_counts,
                      part.backings, part.roots, self.queues, part.serve)


@dataclass(frozen=True)
class CpuPart:
    """One CPU's own share of the plan: the lifecycle instances it owns, its private pool, the
    runs of its rtt-churn windows (one per realm it may churn: resolve.churn_targets), and the
    root run of each realm it builds during the run."""

    owned: tuple[Instance, ...] = ()
    delegate_private: tuple[int, ...] = ()
    backings: tuple[int, ...] = ()
    roots: tuple[tuple[tuple[int, int], int], ...] = ()
    """((realm, index), PA) of the root run every generation of that instance is built on
    (realm -1, index this CPU: its ripas-churn realm); allocated before any realm, kept by the
    CPU across generations (run._prepare: a fragmented allocator may have no aligned run left)."""
    serve: tuple[int, ...] = (0,)
    """The run queues this CPU takes vCPUs from (resolve.Workload.served_by)."""
    images: tuple[int, ...] = ()
    """The [[realm]] numbers of the lifecycle realms this CPU owns an instance of (not attest
    ones, whose image realms.build assembles anew for each generation's challenge): it rebuilds
    them, and gets their guest images (the plan has none) as its own args after this part
    (run._own_args, RunPlan.job)."""

    def reserved(self, templates: Sequence[RealmTemplate]) -> list[int]:
        """The NS granules of its window runs (``backings``) and root runs (``roots``), which
        ``templates`` (the run's [[realm]] entries) size: what the parent frees after the final
        teardown, whether the CPU returned them (CpuResult.leftovers, where ``backings`` are the
        runs no window holds then) or was never started (lost.unstarted_share)."""
        pages = [run + i * 4096 for run in self.backings for i in range(WINDOW_GRANULES)]
        for (realm, _), base in self.roots:
            # realm -1: the CPU's ripas-churn realm (run.ripas_template), of RIPAS_CHURN_ROOTS.
            count = root_count(templates[realm]) if realm >= 0 else RIPAS_CHURN_ROOTS
            pages += [base + i * 4096 for i in range(count)]
        return pages


@dataclass(frozen=True)
class CpuJob:
    cpu: int
    seed: int
    cpus: int
    phases: tuple[Phase, ...]
    realms: tuple[RealmTemplate, ...]
    owned: tuple[Instance, ...]
    resident: tuple[Instance, ...]
    delegate_shared: tuple[int, ...] = ()
    delegate_private: tuple[int, ...] = ()
    ripas_template: RealmTemplate | None = None
    recording: bool = True
    tokens_dir: str | None = None
    platform_key: bytes | None = None
    phase_counts: bool = False
    backings: tuple[int, ...] = ()
    roots: tuple[tuple[tuple[int, int], int], ...] = ()
    queues: tuple[int, ...] = ()
    serve: tuple[int, ...] = (0,)


@dataclass(frozen=True)
class CpuResult:
    cpu: int
    counters: dict[str, int]
    finished: tuple[Finished, ...]
    live: tuple[Instance, ...]
    """Instances this CPU owned that are still built (the parent tears them down)."""
    errors: tuple[tuple[int, int, str], ...]
    """(slot, slot generation, message) of every vCPU that failed on this CPU."""
    leftovers: tuple[int, ...]
    """NS pages this CPU holds for resident or still-live realms, and its root runs; free them
    after teardown."""
    delegate: tuple[int, ...] | None
    """delegate-churn's ChurnResult fields (iterations, ... private rounds), if it ran."""
    started_ns: int
    ended_ns: int
    cpu_ns: int
    """CPU time this process used from started_ns to ended_ns (time.process_time_ns)."""
    turned_off: tuple[tuple[int, int], ...] = ()
    """(slot, slot generation) of the live instances the lifecycle turned off (their lifetime
    was reached) before the run ended: their outcome says so, as a torn-down one's does."""
    folded: tuple[Folded, ...] = ()
    """The torn-down instances not in ``finished`` (MAX_LISTED_PER_CPU), per template and outcome."""
    errors_dropped: int = 0
    """vCPU errors not in ``errors`` (MAX_ERRORS_PER_CPU); the instances' vcpu_errors counters
    still count them."""
    stopped: bool = False
    """The stop flag ended its steps before its plan's end (the time or steps of its last phase);
    False when it had reached that end, whatever came after."""


@dataclass
class Window:
    """One CPU's churn space in one realm: a 2 MiB protected range for rtt-churn (backed by a
    2 MiB run of NS granules that become its DATA pages) and 16 unprotected pages for map-shared."""

    base: int
    ns_base: int
    ready: bool = False
    backing: int | None = None
    assigned: set[int] = field(default_factory=set)
    ns_pages: dict[int, int] = field(default_factory=dict)
    mapped: set[int] = field(default_factory=set)
    unprotected_ready: bool = False

    def leftovers(self) -> list[int]:
        """Pages this window holds that a teardown does not free: backing pages that are not a
        realm's DATA right now, and the NS pages mapped into the realm."""
        pages = list(self.ns_pages.values())
        if self.backing is not None:
            pages += [self.backing + i * 4096 for i in range(WINDOW_GRANULES) if i not in self.assigned]
        return pages


class Host:
    """One CPU's host: the activities' shared state."""

    def __init__(self, cpu: "Cpu", job: CpuJob) -> None:
        self.cpu = cpu
        self.job = job
        self.machine = cpu.machine
        self.smc = cpu.smc
        self.loop = RunLoop(cpu, job.serve)
        self.queue = self.loop.queue
        self.alloc = self.loop.ctx.alloc
        self.counters: Counter[str] = Counter()
        self.finished: list[Finished] = []
        """The torn-down instances it lists one by one: the first MAX_LISTED_PER_CPU of each outcome."""
        self.listed = {True: 0, False: 0}
        self.folded: dict[tuple[int, bool], Folded] = {}
        """The others, by (template, ok)."""
        self.outputs_kept = 0
        """Instances in ``finished`` that kept their guest's output (at most MAX_OUTPUTS_PER_CPU)."""
        self.errors: list[tuple[int, int, str]] = []
        self.errors_dropped = 0
        self.owned: dict[tuple[int, int], Instance | None] = {(i.realm, i.index): i for i in job.owned}
        self.generation = {key: 1 for key in self.owned}
        self.tally = {(i.realm, i.index): [0, 0, 0, 0, 0] for i in job.owned}
        """Per owned instance: generations this CPU started to build, instances it tore down that were
        ok, that failed, tokens it saved, tokens it could not write; published in its CPU area (publish) as
        they change, where the parent reads them if this process returns no result (killed): what is in
        ``finished`` and ``folded`` reaches the parent only with the result."""
        self.tally_entry = {(i.realm, i.index): n for n, i in enumerate(job.owned)}
        self.turned_off: set[tuple[int, int]] = set()
        self.private: list[Instance] = []
        self.windows: dict[tuple[int, int], Window] = {}
        self.delegate: tuple[int, ...] | None = None
        self.backings = list(job.backings)
        """Window runs no window holds now (a window takes one when it first backs a page)."""
        self.roots: dict[tuple[int, int], int] = dict(job.roots)
        """The root run each realm this CPU builds is built on, generation after generation."""
        self._idle = 0

    # -- running vCPUs -------------------------------------------------------------------------

    def run_one(self) -> bool:
        """Take a queued vCPU and enter it once (RunLoop.step); False if the queue was empty."""
        vcpu = self.queue.take(self.cpu.id)
        if vcpu is None:
            self._idle += 1
            if self._idle < _YIELDS_BEFORE_SLEEP:
                os.sched_yield()
            else:
                time.sleep(_IDLE_SLEEP_S)   # leave the core to CPUs with work
            return False
        self._idle = 0
        slot = vcpu // MAX_VCPUS
        # Read before the step: once the realm is DONE its owner may rebuild it in the slot.
        gen = self.queue.view.load_u32(self.queue.realm_offset(slot) + R_GEN)
        self.loop.step(vcpu)
        if self.loop.errors:
            for message in self.loop.errors:
                self.add_error(slot, gen, message)
            self.loop.errors.clear()    # taken over here, where they are bounded
        return True

    def add_error(self, slot: int, gen: int, message: str) -> None:
        """A vCPU of the instance in run-queue slot ``slot`` (slot generation ``gen``) failed: kept
        for the report while this CPU has kept fewer than MAX_ERRORS_PER_CPU, else counted (a
        failing lifecycle realm fails a vCPU per instance, for as long as the run lasts)."""
        if len(self.errors) < MAX_ERRORS_PER_CPU:
            self.errors.append((slot, gen, message))
        else:
            self.errors_dropped += 1

    # -- lifecycle instances -------------------------------------------------------------------

    def publish(self, key: tuple[int, int], field: int) -> None:
        """Count one more in ``field`` of ``key``'s tally (0 built, 1 torn down ok, 2 torn down
        failed, 3 tokens saved, 4 tokens not written) and publish it: one u64 store per build or teardown, each
        of which takes dozens of SMCs. The two token counts share the area's field 3
        (cpuarea.LIFECYCLE_UNSAVED_SHIFT)."""
        tally = self.tally[key]
        tally[field] += 1
        if field >= LIFECYCLE_TOKENS:
            value = tally[LIFECYCLE_TOKENS] | tally[LIFECYCLE_TOKENS + 1] << LIFECYCLE_UNSAVED_SHIFT
            self.cpu.area.publish_lifecycle(self.tally_entry[key], LIFECYCLE_TOKENS, value)
        else:
            self.cpu.area.publish_lifecycle(self.tally_entry[key], field, tally[field])

    def build(self, key: tuple[int, int]) -> Instance:
        generation = self.generation[key]
        self.generation[key] += 1
        # Counted before the build: one cut short by the process's death is an instance the
        # parent names as not reported, as a built one is.
        self.publish(key, 0)
        inst = realms.build(self.cpu, self.alloc, self.queue, self.job.realms[key[0]], key[0], key[1], generation,
                            self.job.seed, rtt_base=self.roots.get(key),
                            run_queue=self.job.queues[key[0]] if self.job.queues else 0)
        self.owned[key] = inst
        self.turned_off.discard(key)
        return inst

    def reap(self, key: tuple[int, int]) -> Finished:
        """Read what a DONE instance did, tear it down, free the pages its churn held; what it did."""
        inst = self.owned[key]
        assert inst is not None
        t = self.job.realms[key[0]]
        # Only the first MAX_OUTPUTS_PER_CPU failed instances keep their guest's output: what a
        # lifecycle run carries back to the parent stays bounded however many instances fail.
        # The later failed ones say so, or the report would show them with no output and no why.
        room = self.outputs_kept < MAX_OUTPUTS_PER_CPU
        done = realms.finish(self.machine, self.queue, inst, t, platform_key=self.job.platform_key,
                             tokens_dir=self.job.tokens_dir, turned_off=key in self.turned_off,
                             output="failed" if room else "none")
        if done.token_file:
            # Counted as soon as its file is written, not after the destroy below (dozens of
            # SMCs): a death in that destroy leaves the file in the directory all the same.
            self.publish(key, 3)
        elif done.token_write_error:
            # A report file not written: the parent names it (run), a dead CPU's from this count.
            self.publish(key, 4)
        if not room and done.failed:
            done = replace(done, output_dropped=True)
        self.outputs_kept += done.output is not None
        self._keep(done)
        pages = self.forget(inst)
        realms.destroy(self.cpu, self.alloc, self.queue, inst)
        for pa in pages:
            self.alloc.free(pa)
        self.owned[key] = None
        # Counted once it is gone: one whose teardown the process's death cut short is still the
        # instance not reported, not one of those torn down.
        self.publish(key, 2 if done.failed else 1)
        return done

    def _keep(self, done: Finished) -> None:
        """List ``done`` while fewer than MAX_LISTED_PER_CPU of its outcome are, else fold it into
        its template's row: a lifecycle run makes instances for as long as it lasts."""
        ok = not done.failed
        if self.listed[ok] < MAX_LISTED_PER_CPU:
            self.listed[ok] += 1
            self.finished.append(done)
            return
        t = self.job.realms[done.order[0]]
        fold = self.folded.setdefault((done.order[0], ok), Folded(done.order[0], t.name, t.recs, ok))
        # Only the first one's detail is kept (Folded.add): the outcome is made for that one alone,
        # with the vCPU error messages this CPU kept of it (a vCPU that failed on another CPU is
        # only counted here: "1 vCPU error"). The parent never matches a folded instance's lines.
        if fold.instances:
            fold.add(done, "")
            return
        messages = [m for slot, gen, m in self.errors if (slot, gen) == (done.slot, done.gen)]
        fold.add(done, realms.outcome(done, messages, running=False).detail)

    # -- churn -------------------------------------------------------------------------------

    def churn_targets(self) -> list[Instance]:
        """Realms this CPU may churn: every resident realm and the live instances it owns."""
        owned = [self.owned[k] for k in sorted(self.owned)]
        return list(self.job.resident) + [i for i in owned if i is not None]

    def pick_window(self, rng: random.Random, activity: str) -> tuple[Instance, Window] | None:
        """A churn target drawn with ``rng`` and this CPU's window in it; None (counted as
        "<activity> idle") when there is nothing to churn."""
        targets = self.churn_targets()
        if not targets:
            self.counters[f"{activity} idle"] += 1
            return None
        inst = targets[rng.randrange(len(targets))]
        return inst, self.window(inst)

    def window(self, inst: Instance) -> Window:
        key = (inst.slot, inst.gen)
        win = self.windows.get(key)
        if win is None:
            offset = 0x4000_0000 + self.cpu.id * (2 << 20)   # below RAM (2 GiB): RIPAS EMPTY, unused by guests
            win = self.windows[key] = Window(offset, inst.host.par_size + offset)
        return win

    def take_backing(self) -> int:
        """A window run for a window's first page: one of this CPU's, else a new one (more windows
        than resolve.churn_targets counted would be a bug; the allocator may still have one)."""
        return self.backings.pop() if self.backings else self.alloc.alloc(WINDOW_GRANULES, WINDOW_GRANULES)

    def forget(self, inst: Instance) -> list[int]:
        """Before ``inst`` is torn down: its window's run goes back to this CPU's runs, emptied
        (its pages DATA_DESTROYed and undelegated here, not freed with the realm's granules,
        which would hand them to the allocator a granule at a time); the NS pages map-shared
        mapped are returned, to be freed after the teardown."""
        win = self.windows.pop((inst.slot, inst.gen), None)
        if win is None:
            return []
        if win.backing is not None:
            self._empty_window(inst, win, win.backing)
            self.backings.append(win.backing)
        return list(win.ns_pages.values())

    def _empty_window(self, inst: Instance, win: Window, backing: int) -> None:
        """DATA_DESTROY + UNDELEGATE every page the window assigned from ``backing`` (its backing
        run); a folded block is unfolded (RTT_CREATE) first, as the teardown does."""
        realm = inst.host
        for i in sorted(win.assigned):
            ipa = win.base + i * 4096
            x0, pa = self.smc(DATA_DESTROY, realm.rd, ipa)[:2]
            if status(x0) == ERROR_RTT and index(x0) < PAGE_LEVEL:
                split_block(self.cpu, self.alloc, realm, ipa, index(x0))
                x0, pa = self.smc(DATA_DESTROY, realm.rd, ipa)[:2]
            if x0 != SUCCESS or pa != backing + i * 4096:
                raise HostError(DATA_DESTROY, (realm.rd, ipa), x0, f"this CPU assigned its window page "
                                                                    f"{backing + i * 4096:#x} there (X1 {pa:#x})")
            x0 = self.smc(UNDELEGATE, pa)[0]
            if x0 != SUCCESS:
                raise HostError(UNDELEGATE, (pa,), x0, "DATA_DESTROY has just returned it")
        win.assigned.clear()

    def result(self, started_ns: int, ended_ns: int, cpu_ns: int, stopped: bool = False) -> CpuResult:
        live = [i for i in self.owned.values() if i is not None] + self.private
        leftovers = [pa for win in self.windows.values() for pa in win.leftovers()]
        # The runs no window holds, and the root runs: live instances' are freed after the
        # parent has torn them down.
        leftovers += CpuPart(backings=tuple(self.backings), roots=tuple(self.roots.items())).reserved(self.job.realms)
        counters = dict(self.counters)
        counters["REC entries"] = self.loop.entries
        # Past MAX_ERRORS_PER_CPU only counted: the report says how many lines it does not show.
        counters["vCPU errors not kept"] = self.errors_dropped
        off = tuple((i.slot, i.gen) for k, i in self.owned.items() if i is not None and k in self.turned_off)
        return CpuResult(self.cpu.id, {k: v for k, v in counters.items() if v}, tuple(self.finished), tuple(live),
                         tuple(self.errors), tuple(leftovers), self.delegate, started_ns, ended_ns, cpu_ns, off,
                         tuple(self.folded[k] for k in sorted(self.folded)), self.errors_dropped, stopped)

