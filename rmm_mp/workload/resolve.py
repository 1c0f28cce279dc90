"""A checked workload file plus the platform and the command line: the workload that runs.

    resolve(file, platform=, cpus=, seconds=, iterations=, seed=) -> Workload

The platform is platform_of.py's. Command-line options override the file and are checked the
same way (their errors name the option, e.g. ``command line: --cpus = 9: expected ...``). Then
what depends on the platform and the CPU count is checked: realm IPA widths, hash algorithms and
REC counts against RMI_FEATURES; each CPU's activity weights in each phase; which CPU owns each
lifecycle realm; that every activity has something to work on; which run queue each realm's
vCPUs go into (its `cpus`) and which queues each CPU takes from; the run queue's capacity; and
an upper bound of the host memory the run needs against the platform's DRAM. Every error is a
ConfigError; nothing has been created yet.

This module owns resolution and the limits. It must not create a machine.
"""

from __future__ import annotations

import heapq
import os
from dataclasses import dataclass

from rmm_mp.host.nsalloc import WORD_BITS
from rmm_mp.host.realm import num_roots, start_level
from rmm_mp.host.runqueue import MAX_CPUS, MAX_QUEUES, MAX_REALMS
from rmm_mp.hw.platform import Platform
from rmm_mp.hw.tomlsrc import MISSING, ConfigError
from rmm_mp.words import count as _count
from rmm_mp.workload import programs
from rmm_mp.workload.fields import ACTIVITIES, U64, Fields, cpu_set_text
from rmm_mp.workload.spec import (MAX_ITERATIONS, MAX_SECONDS, MIN_IPA_WIDTH, MIN_SECONDS, SECONDS_WHAT, PhaseSpec,
                                  RealmTemplate, Weights, WorkloadFile)
from rmm_mp.workload.platform_of import platform_of

GRANULE = 4096
RIPAS_CHURN_IPA_WIDTH = 40
"""IPA width of each CPU's ripas-churn realm (run.ripas_template): 2 root RTTs."""
RIPAS_CHURN_ROOTS = num_roots(RIPAS_CHURN_IPA_WIDTH, start_level(RIPAS_CHURN_IPA_WIDTH))
"""Root RTTs of each CPU's ripas-churn realm (REALM_CREATE's rtt_num_start)."""
RIPAS_CHURN_HASH = "sha256"
"""Measurement algorithm of each CPU's ripas-churn realm (run.ripas_template)."""
WINDOW_RUN = 512
"""Granules of one rtt-churn window's backing run (cpustate.WINDOW_GRANULES): 2 MiB, 2 MiB aligned."""
CHURN_WINDOW_GRANULES = WINDOW_RUN + 4
"""rtt-churn: one 2 MiB run of backing pages per CPU and realm, plus its tables."""
MAP_WINDOW_GRANULES = 16 + 4
"""map-shared: the NS pages one CPU maps into one realm at most, plus tables."""
DELEGATE_SHARED, DELEGATE_PRIVATE = 32, 32
"""delegate-churn pools: granules every CPU races on, and granules each CPU has to itself."""
MAX_AUX = 16
HELD_PER_CPU = 2
"""Granules one CPU can hold at once that _memory does not count (reserve)."""


@dataclass(frozen=True)
class Phase:
    name: str
    seconds: float | None
    iterations: int | None
    weights: tuple[Weights, ...]
    """Per CPU id: the activities with a weight > 0, in ACTIVITIES order."""


@dataclass(frozen=True)
class Workload:
    """A workload ready to run: every value final and checked."""

    file: WorkloadFile
    platform: Platform
    cpus: int
    seed: int
    time_slice: int | None
    phases: tuple[Phase, ...]
    owners: tuple[tuple[tuple[int, int], int], ...]
    """((realm index, instance index), CPU) of every lifecycle realm instance."""
    overrides: tuple[str, ...] = ()
    """The command-line options that replaced values of the file."""
    queues: tuple[int, ...] = ()
    """Per [[realm]] entry: the run queue its vCPUs go into (0: every CPU runs them; empty: all 0)."""
    serves: tuple[tuple[int, ...], ...] = ()
    """Per CPU: the run queues it takes vCPUs from (queue 0 first if some realm is in it; empty:
    queue 0 only)."""

    @property
    def name(self) -> str:
        return self.file.name

    @property
    def realms(self) -> tuple[RealmTemplate, ...]:
        return self.file.realms

    @property
    def seconds(self) -> float | None:
        return sum(p.seconds for p in self.phases) if self.phases[0].seconds is not None else None  # type: ignore[misc]

    @property
    def iterations(self) -> int | None:
        if self.phases[0].iterations is None:
            return None
        return sum(p.iterations for p in self.phases)  # type: ignore[misc]

    def queue_of(self, realm: int) -> int:
        """The run queue the vCPUs of [[realm]] entry ``realm`` go into."""
        return self.queues[realm] if self.queues else 0

    def served_by(self, cpu: int) -> tuple[int, ...]:
        """The run queues CPU ``cpu`` takes vCPUs from."""
        return self.serves[cpu] if self.serves else (0,)

    def runs_on(self, realm: int) -> tuple[int, ...]:
        """The CPUs of this run that run the vCPUs of [[realm]] entry ``realm``."""
        cpus = self.realms[realm].cpus
        return tuple(c for c in range(self.cpus) if cpus is None or c in cpus)

    def owner(self, realm: int, index: int) -> int | None:
        return dict(self.owners).get((realm, index))

    def inputs(self) -> tuple[tuple[str, str], ...]:
        """The files the run reads, as (what it is, path): the workload file, the platform
        file and each guest file, so that no report is written over one (outpaths)."""
        return (("the workload file", self.file.source), ("the platform file", self.platform.source),
                *((f"a guest file of realm {t.name!r}", t.guest) for t in self.realms if os.path.isabs(t.guest)))

    def uses(self, activity: str, cpu: int | None = None) -> bool:
        """Whether ``cpu`` (or any CPU) has a weight for ``activity`` in some phase."""
        cpus = range(self.cpus) if cpu is None else (cpu,)
        return any(activity in dict(p.weights[c]) for p in self.phases for c in cpus)


def resolve(file: WorkloadFile, platform: str | None = None, cpus: int | None = None, seconds: float | None = None,
            iterations: int | None = None, seed: int | None = None) -> Workload:
    f, cl = file.fields, Fields("", "command line")
    # Which options were given, before ``cpus`` takes the file's value when the option was not.
    overrides = tuple(name for name, value in (("--platform", platform), ("--cpus", cpus), ("--seconds", seconds),
                                               ("--iterations", iterations), ("--seed", seed)) if value is not None)
    plat = platform_of(file, platform)
    limit = min(plat.cpus, MAX_CPUS)
    expected = f"an integer in 1..{limit:,} (platform {plat.name!r} has {_count(plat.cpus, 'CPU')})"
    if cpus is not None:
        cpus = cl.integer(cpus, "--cpus", 1, limit, f"the number of CPU processes (platform {plat.name!r} has "
                                                    f"{_count(plat.cpus, 'CPU')})")
    elif file.cpus is not None:
        if file.cpus > limit:
            # The file's count is a default the run may change: say how, or a user running a
            # bundled workload on a smaller platform was sent to edit a file that is not theirs.
            # Named with its command: `workloads validate` says this too, and takes no --cpus.
            raise f.fail("cpus", file.cpus, f"{expected}; `rmm-mp run --cpus N` runs it on fewer")
        cpus = file.cpus
    count = cpus if cpus is not None else limit
    if seed is not None:
        seed = cl.integer(seed, "--seed", 0, U64, "the seed of every random choice")
    phases = _phases(file, count, _length(file, cl, seconds, iterations))
    for realm in file.realms:
        _fits_platform(f, realm, plat)
    queues, serves = _queues(file, phases, count)
    workload = Workload(file, plat, count, seed if seed is not None else file.seed or 0, file.time_slice,
                        phases, _owners(file, phases, count), overrides, queues, serves)
    _targets(workload)
    _capacity(workload)
    return workload


def _length(file: WorkloadFile, cl: Fields, seconds: float | None,
            iterations: int | None) -> tuple[float | None, int | None, bool]:
    """(seconds, iterations, from the command line)."""
    if seconds is not None and iterations is not None:
        raise cl.fail("--iterations", iterations, "either --seconds or --iterations, not both")
    if seconds is not None:
        length = cl.number(seconds, "--seconds", MIN_SECONDS, MAX_SECONDS, SECONDS_WHAT)
        short = shortest_phase(file.phases, length)
        if short is not None:
            phase, sec = short
            raise cl.fail("--seconds", seconds, f"{SECONDS_WHAT} that gives each of the file's "
                                                f"{len(file.phases)} phases at least 0.000000001 s ({phase.key} "
                                                f"{phase.name!r} would last {sec:.3g} s)")
        return length, None, True
    if iterations is not None:
        return None, cl.integer(iterations, "--iterations", 1, MAX_ITERATIONS, "activity steps per CPU"), True
    return file.seconds, file.iterations, False


def shortest_phase(phases: tuple[PhaseSpec, ...], length: float) -> tuple[PhaseSpec, float] | None:
    """The first phase a run of ``length`` s (`--seconds`) gives less than MIN_SECONDS, and what
    it gets; else None. The phases keep their proportions (_phases, the same expression): a share
    under a nanosecond is no time to the CPUs. Also asked by `--seconds 2e-9s`'s unit hint."""
    shares = [p.seconds if p.seconds is not None else float(p.iterations or 0) for p in phases]
    # The total added up once: added again for each phase, 15,000 phases took 1 to 2 s.
    total = sum(shares)
    return next(((p, length * share / total) for p, share in zip(phases, shares)
                 if length * share / total < MIN_SECONDS), None)


def _phases(file: WorkloadFile, cpus: int, length: tuple[float | None, int | None, bool]) -> tuple[Phase, ...]:
    seconds, iterations, from_cli = length
    specs = file.phases or (PhaseSpec("", "main", seconds, iterations, None, ()),)
    if not file.phases and seconds is None and iterations is None:
        raise ConfigError(file.source, "seconds", MISSING, "a length: seconds or iterations in the file, or "
                                                           "--seconds / --iterations on the command line")
    shares = [p.seconds if p.seconds is not None else float(p.iterations or 0) for p in specs]
    total = sum(shares)
    steps: list[int | None] = [p.iterations for p in specs]
    if from_cli and file.phases and seconds is not None:
        steps = [None] * len(specs)        # --seconds times counted phases: their counts no longer apply
    if from_cli and file.phases and iterations is not None:
        if iterations < len(specs):
            raise ConfigError("command line", "--iterations", iterations,
                              f"at least {len(specs)}: one activity step per CPU for each of the file's phases")
        steps = list(_apportion(iterations, shares))
    out = []
    for spec, share, its in zip(specs, shares, steps):
        sec = spec.seconds
        if from_cli and file.phases:         # the phases keep their proportions of the new length
            sec = seconds * share / total if seconds is not None else None
        out.append(Phase(spec.name, sec, its, tuple(_weights(file, spec, cpu)[0] for cpu in range(cpus))))
    return tuple(out)


def _apportion(steps: int, shares: list[float]) -> tuple[int, ...]:
    """Split ``steps`` (at least one per share) into whole parts proportional to ``shares`` that
    add up to ``steps`` exactly: each part starts at its exact share rounded down (at least 1),
    and the steps left go to the largest remainders, earlier phases first on a tie."""
    total = sum(shares)
    exact = [steps * share / total for share in shares]
    parts = [max(1, int(e)) for e in exact]
    # One step at a time to the part whose key is largest, as before, but the keys in a heap
    # (smallest first, so negated) and the sum kept: looking for the largest over all parts and
    # adding the parts up again for each step took time quadratic in the phases (15,000 phases
    # and `--iterations 1000000000000`: 36 s).
    left = steps - sum(parts)
    if left > 0:
        up = [(parts[n] - exact[n], n) for n in range(len(parts))]       # -(exact - parts), then n: -n largest
        heapq.heapify(up)
        for _ in range(left):
            _, i = heapq.heappop(up)
            parts[i] += 1
            heapq.heappush(up, (parts[i] - exact[i], i))
    elif left < 0:                    # only when a minimum of 1 lifted a part above its share
        down = [(exact[n] - parts[n], n) for n in range(len(parts)) if parts[n] > 1]
        heapq.heapify(down)
        for _ in range(-left):
            _, i = heapq.heappop(down)
            parts[i] -= 1
            if parts[i] > 1:
                heapq.heappush(down, (exact[i] - parts[i], i))
    return tuple(parts)


def _weights(file: WorkloadFile, phase: PhaseSpec, cpu: int) -> tuple[Weights, str]:
    """CPU ``cpu``'s weights in ``phase`` and the key they come from: the phase's group naming
    the CPU, the phase's activities, the file's group naming the CPU, the file's activities."""
    for group in phase.groups:
        if group.cpus is None or cpu in group.cpus:
            return group.weights, f"{group.key}.activities"
    if phase.activities is not None:
        return phase.activities, f"{phase.key}.activities"
    for group in file.groups:
        if group.cpus is None or cpu in group.cpus:
            return group.weights, f"{group.key}.activities"
    if file.activities is not None:
        return file.activities, "activities"
    raise file.fields.fail(f"{phase.key}.activities" if phase.key else "activities", MISSING,
                           f"activity weights for CPU {cpu}" + (f" in phase {phase.name!r}" if phase.key else "")
                           + ": an activities table, or a group naming the CPU")


def _fits_platform(f: Fields, realm: RealmTemplate, plat: Platform) -> None:
    feat = plat.features
    if feat.s2sz < MIN_IPA_WIDTH:
        # "at most 32" would contradict the range 33..48 the key was checked against: say that
        # no width fits. The platform itself is valid (RMM 1.0 takes 32-bit realms, which the
        # Python API can build with their RAM below 2 GiB); a workload realm is not one.
        raise f.fail(f"{realm.key}.ipa_width", realm.ipa_width,
                     f"an IPA width in {MIN_IPA_WIDTH}..{feat.s2sz}, which is empty: platform {plat.name!r} has "
                     f"features.s2sz = {feat.s2sz} (RMI_FEATURES S2SZ), and a workload realm needs at least "
                     f"{MIN_IPA_WIDTH} bits (its RAM starts at IPA 2 GiB): no realm of a workload fits this platform")
    if realm.ipa_width > feat.s2sz:
        raise f.fail(f"{realm.key}.ipa_width", realm.ipa_width, f"at most {feat.s2sz} (RMI_FEATURES S2SZ of "
                                                                f"platform {plat.name!r})")
    if realm.hash.replace("sha", "sha-") not in feat.hash_algorithms:
        raise f.fail(f"{realm.key}.hash", realm.hash, f"a hash algorithm platform {plat.name!r} offers: "
                                                      f"{', '.join(h.replace('-', '') for h in feat.hash_algorithms)}")
    most = (1 << feat.max_recs_order) - 1
    if realm.recs > most:
        raise f.fail(f"{realm.key}.recs", realm.recs, f"at most {most} (MAX_RECS of platform {plat.name!r})")


def _owners(file: WorkloadFile, phases: tuple[Phase, ...], cpus: int) -> tuple[tuple[tuple[int, int], int], ...]:
    """Lifecycle instances go round-robin to the CPUs with a weight for their activity ("attest"
    for attest realms, else "lifecycle") in some phase, in file order."""
    owners: list[tuple[tuple[int, int], int]] = []
    turn = {"lifecycle": 0, "attest": 0}
    for r, realm in enumerate(file.realms):
        if not realm.lifecycle:
            continue
        activity = "attest" if realm.attest else "lifecycle"
        able = [c for c in range(cpus) if any(activity in dict(p.weights[c]) for p in phases)]
        if not able:
            raise file.fields.fail(f"{realm.key}.lifecycle", True,
                                   f"a CPU with a weight for {activity!r} to build, run and destroy it (the run has "
                                   f"{cpus} CPU{'s' * (cpus != 1)} and none has one; group CPU ids from {cpus} up "
                                   "are ignored)")
        for index in range(realm.instances):
            owners.append(((r, index), able[turn[activity] % len(able)]))
            turn[activity] += 1
    return tuple(owners)


RUNNERS = ("run", "lifecycle", "attest")
"""Activities whose steps run queued vCPUs (lifecycle and attest when their realms need nothing)."""


def _queues(file: WorkloadFile, phases: tuple[Phase, ...],
            cpus: int) -> tuple[tuple[int, ...], tuple[tuple[int, ...], ...]]:
    """The run queue of each [[realm]] entry and the queues each CPU serves. Realms that every
    CPU of the run may run share queue 0, which every CPU serves if some realm is in it; each
    other distinct set of the run's CPUs gets a queue of its own (in file order), served by the
    CPUs in it. So a CPU in one set, with no realm in queue 0, serves one queue: the run queue's
    fast path (a CPU that serves no queue gets queue 0, which stays empty). A set with no CPU of
    the run, or none with a weight for an activity that runs vCPUs in some phase, is refused:
    the realm's vCPUs would never run."""
    f = file.fields
    numbers: dict[frozenset[int], int] = {}
    queues: list[int] = []
    run_cpus = f"the run's CPUs are {cpu_set_text(range(cpus))}" if cpus > 1 else "the run has only CPU 0"
    for t in file.realms:
        if t.cpus is None:
            queues.append(0)
            continue
        shown = list(t.cpus_written) if isinstance(t.cpus_written, tuple) else t.cpus_written
        mine = frozenset(c for c in t.cpus if c < cpus)
        if not mine:
            raise f.fail(f"{t.key}.cpus", shown, f"at least one CPU of this run to run the vCPUs of realm {t.name!r}: "
                                                 f"{run_cpus} (ids from {cpus} up are ignored)")
        runners = [c for c in sorted(mine) if any(a in dict(p.weights[c]) for p in phases for a in RUNNERS)]
        if not runners:
            raise f.fail(f"{t.key}.cpus", shown, f"a CPU whose weights include 'run' (or 'lifecycle', 'attest') "
                                                 f"in some phase, to run the vCPUs of realm {t.name!r}: CPU"
                                                 f"{'s' * (len(mine) > 1)} {cpu_set_text(sorted(mine))} of the set "
                                                 f"{'have' if len(mine) > 1 else 'has'} none")
        if len(mine) == cpus:
            queues.append(0)
            continue
        if mine not in numbers:
            if len(numbers) + 1 >= MAX_QUEUES:
                raise f.fail(f"{t.key}.cpus", shown, f"one of at most {MAX_QUEUES - 1} distinct CPU sets short of "
                                                     f"all the run's CPUs in the file's realms (the host has "
                                                     f"{MAX_QUEUES} run queues, one for realms every CPU runs); "
                                                     f"{run_cpus}")
            numbers[mine] = len(numbers) + 1
        queues.append(numbers[mine])
    common = (0,) if 0 in queues else ()
    serves = tuple((*common, *(k for s, k in sorted(numbers.items(), key=lambda i: i[1]) if c in s)) or (0,)
                   for c in range(cpus))
    return tuple(queues), serves


def _targets(w: Workload) -> None:
    """Every activity a CPU may pick has something to work on."""
    f = w.file.fields
    resident = [r for r in w.realms if not r.lifecycle]
    owned = {cpu for _, cpu in w.owners}
    specs = w.file.phases or (PhaseSpec("", "main", None, None, None, ()),)
    for phase, spec in zip(w.phases, specs):
        for cpu in range(w.cpus):
            for activity, weight in phase.weights[cpu]:
                why = ""
                if activity in ("run", "lifecycle", "attest") and not w.realms:
                    why = "the file has no [[realm]] to run"
                elif activity == "lifecycle" and not any(r.lifecycle and not r.attest for r in w.realms):
                    why = "no realm has lifecycle = true (attest realms go to the 'attest' activity)"
                elif activity == "attest" and not any(r.lifecycle and r.attest for r in w.realms):
                    why = "no realm with guest = 'attest' has lifecycle = true"
                elif activity == "run" and cpu not in {c for r in range(len(w.realms)) for c in w.runs_on(r)}:
                    why = (f"CPU {cpu} may run no realm's vCPUs (every realm's cpus leaves it out: "
                           + ", ".join(f"{t.name} on {cpu_set_text(list(w.runs_on(r)))}"
                                       for r, t in enumerate(w.realms))
                           + ")")
                elif activity in ("rtt-churn", "map-shared") and not resident and cpu not in owned:
                    why = (f"CPU {cpu} may only churn resident realms (lifecycle = false) or lifecycle realms it "
                           f"owns, and there are none")
                # ripas-churn's realm is the engine's, not the file's: _fits_platform never sees it,
                # and the CPUs failed at run time with RealmSpec's ValueError.
                unfit = _ripas_churn_unfit(w.platform) if activity == "ripas-churn" else ""
                if why or unfit:
                    # A whole weight as an integer, unless past 2^53 (1e300 read as a 997-bit one).
                    shown = int(weight) if weight.is_integer() and weight < 2**53 else weight
                    raise f.fail(f"{_weights(w.file, spec, cpu)[1]}.{activity}", shown,
                                 f"an activity with something to work on: {why}" if why else
                                 f"an activity the platform can run: ripas-churn builds each CPU a realm of ipa_width "
                                 f"{RIPAS_CHURN_IPA_WIDTH} measured with SHA-256, and {unfit}")


def _ripas_churn_unfit(plat: Platform) -> str:
    """Why ``plat`` cannot build a CPU's ripas-churn realm, or ""."""
    if plat.features.s2sz < RIPAS_CHURN_IPA_WIDTH:
        return f"platform {plat.name!r} has S2SZ {plat.features.s2sz}"
    if RIPAS_CHURN_HASH.replace("sha", "sha-") not in plat.features.hash_algorithms:
        return f"platform {plat.name!r} does not offer SHA-256"
    return ""


def _capacity(w: Workload) -> None:
    f = w.file.fields
    ripas = sum(w.uses("ripas-churn", c) for c in range(w.cpus))
    realms = sum(r.instances for r in w.realms) + ripas
    biggest = max(w.realms, key=lambda r: r.instances, default=None)
    where = f"{biggest.key}.instances" if biggest is not None else "activities"
    # The error names the biggest kind's instances with its own value; the totals go in the text.
    if realms > MAX_REALMS:
        raise f.fail(where, biggest.instances if biggest is not None else realms,
                     f"at most {MAX_REALMS} realms alive at once, the run queue's capacity; this run would have "
                     f"{realms} (instances of every [[realm]], plus one per CPU doing ripas-churn)")
    need, parts = _memory(w)
    plat = w.platform
    usable = plat.granule_count - sum(r.size // GRANULE for r in plat.secure) - reserve(w.cpus)
    if need > usable:
        mib = f"{need * GRANULE / (1 << 20):,.1f} MiB"
        shown = ", ".join(f"{k} {v * GRANULE / (1 << 20):,.1f} MiB" for k, v in parts.items() if v)
        room = f"the {usable * GRANULE / (1 << 20):,.1f} MiB of NS DRAM platform {plat.name!r} has"
        if biggest is None:
            # No realm to blame: the activities' own pages (delegate-churn pools, ripas-churn
            # realms) are what does not fit.
            used = ", ".join(a for a in ACTIVITIES if w.uses(a))
            raise f.fail("activities", used, f"activities whose pages fit in {room}; the run would need up to "
                                             f"{mib} ({shown}); use fewer CPUs, or a bigger platform")
        big = max(w.realms, key=lambda r: r.instances * realm_granules(r))   # the kind holding the most
        ram = big.instances == 1 and os.sep in big.guest    # a lone guest file's: its RAM is counted whole
        fix = "a guest file's RAM is counted whole: use a smaller ram" if ram else "use fewer or smaller realms"
        if ram and not big.ram_written:
            # Named on the [[realm]] header's line, "ram = 2097152" read as a line the file has.
            fix = (f"a guest file's RAM is counted whole, and {big.key} does not set ram (the line named is the "
                   f"realm's): its default, {big.ram >> 20}M, is counted; set a smaller ram in it")
        text = f"realms that fit in {room}; the run would need up to {mib} ({shown}); {fix}, or a bigger platform"
        raise f.fail(f"{big.key}.{'ram' if ram else 'instances'}", big.ram if ram else big.instances, text)
    runs, have = sum(churn_targets(w, c) for c in range(w.cpus) if w.uses("rtt-churn", c)), window_runs(plat)
    if runs > have and biggest is not None:     # rtt-churn needs a realm to churn (_targets)
        raise f.fail(where, biggest.instances,
                     f"realms whose rtt-churn windows fit in platform {plat.name!r}: each needs a 2 MiB run of NS "
                     f"DRAM aligned to 2 MiB, the run would need {runs} (one per CPU doing rtt-churn and realm it "
                     f"may churn) and the platform has {have} (2 MiB blocks wholly in DRAM with no Secure granule; "
                     f"none if DRAM does not start on a 256 KiB boundary); use fewer realms or CPUs doing "
                     f"rtt-churn, or a platform with more DRAM")
    roots = root_runs(w)
    for size in sorted(set(roots)):
        # Runs of this size and the larger ones placed before them (run._prepare: largest first).
        need = sum(r for r in roots if r >= size)
        slots = root_slots(plat, size) - runs * (WINDOW_RUN // size)
        if need > size * slots:
            raise f.fail(where, biggest.instances if biggest is not None else realms,
                         f"realms whose root runs fit in platform {plat.name!r}: each realm instance and each CPU's "
                         f"ripas-churn realm keeps a run of its root RTTs (1..16 granules, aligned to their number) "
                         f"for the whole run; {need} granules are in runs of {size} or more, and the platform has "
                         f"{max(slots, 0)} runs of {size} aligned to {size} besides the rtt-churn windows' (wholly in "
                         f"DRAM, no Secure granule); use fewer realms, an ipa_width with fewer roots, or a platform "
                         f"with more DRAM")


def reserve(cpus: int) -> int:
    """Granules kept out of the memory bound for what a CPU holds for a moment beyond it: a data
    or NS page and a spare RTT while it handles a fault another CPU wins (host.realm.map_protected,
    exits._map_shared; create_rtt_levels holds one spare RTT at a time), or a parameter or
    staging page while it builds a realm (realm_build). That is HELD_PER_CPU per CPU; the floor
    of 64 is the fixed reserve this check had before it counted them."""
    return max(64, HELD_PER_CPU * cpus)


def _memory(w: Workload) -> tuple[int, dict[str, int]]:
    """An upper bound, in granules, of the NS DRAM the host hands out during the run."""
    parts = {"realms": sum(r.instances * realm_granules(r) for r in w.realms)}
    windows = maps = delegate = ripas = 0
    for cpu in range(w.cpus):
        eligible = churn_targets(w, cpu)
        windows += eligible * CHURN_WINDOW_GRANULES if w.uses("rtt-churn", cpu) else 0
        maps += eligible * MAP_WINDOW_GRANULES if w.uses("map-shared", cpu) else 0
        delegate += DELEGATE_PRIVATE if w.uses("delegate-churn", cpu) else 0
        ripas += ripas_granules() if w.uses("ripas-churn", cpu) else 0
    if delegate:
        delegate += DELEGATE_SHARED
    parts.update({"rtt-churn windows": windows, "map-shared pages": maps, "delegate-churn pools": delegate,
                  "ripas-churn realms": ripas})
    return sum(parts.values()), parts


def window_runs(plat: Platform) -> int:
    """The 2 MiB runs, aligned to 2 MiB, the host's allocator can hand out from empty DRAM (the
    run allocates the rtt-churn windows' runs first, run._prepare): 2 MiB blocks wholly inside
    DRAM with no Secure granule. None if DRAM does not start on a boundary of the allocator's
    bitmap words (256 KiB), where it hands out no run longer than a word (NsAllocator.alloc).
    Counting granules is not enough: Secure ranges, or DRAM not aligned to 2 MiB, can leave
    room for a window's granules but no aligned run of them."""
    size, dram = WINDOW_RUN * GRANULE, plat.dram
    if dram.base % (WORD_BITS * GRANULE):
        return 0
    first = -(-dram.base // size) * size
    return sum(1 for block in range(first, dram.end - size + 1, size)
               if not any(s.base < block + size and block < s.end for s in plat.secure))


def root_count(t: RealmTemplate) -> int:
    """Root RTTs of a realm of template ``t`` (rtt_num_start: 1..16, a power of two)."""
    return num_roots(t.ipa_width, start_level(t.ipa_width))


def root_runs(w: Workload) -> list[int]:
    """The root runs the run allocates before any realm (run._prepare), in granules: one per
    realm instance and one per CPU doing ripas-churn."""
    ripas = RIPAS_CHURN_ROOTS
    runs = [root_count(t) for t in w.realms for _ in range(t.instances)]
    return runs + [ripas] * sum(w.uses("ripas-churn", c) for c in range(w.cpus))


def root_slots(plat: Platform, size: int) -> int:
    """Runs of ``size`` granules (a power of two up to 16), aligned to ``size`` granules, wholly in
    DRAM, with no Secure granule and inside one word of the allocator's bitmap (no run crosses
    one). The root runs are allocated from empty DRAM after the rtt-churn windows, largest first,
    each aligned to its size: when a run of ``size`` is placed, each such slot is either wholly
    inside a run placed before it or touches none, so the runs of ``size`` and more fit exactly
    when their granules are at most ``size`` times these slots (less those in windows' 2 MiB)."""
    dram = plat.dram
    count = dram.size // GRANULE
    free = (1 << count) - 1                     # bit i: DRAM granule i is not Secure
    for s in plat.secure:
        lo, hi = max(s.base, dram.base), min(s.end, dram.end)
        if lo < hi:
            first, last = (lo - dram.base) // GRANULE, (hi - dram.base + GRANULE - 1) // GRANULE
            free &= ~(((1 << (last - first)) - 1) << first)
    runs = free                                 # bit i: granules i .. i + n - 1 are free, n doubling to size
    n = 1
    while n < size:
        runs &= runs >> n
        n *= 2
    # Where a run may start: aligned to ``size`` as a PA, not crossing a word of the bitmap. The
    # same in every word, since a word's 64 granules are a multiple of any size up to 16.
    offset = (-(dram.base // GRANULE)) % size
    pattern = sum(1 << bit for bit in range(offset, WORD_BITS - size + 1, size))
    words = (count + WORD_BITS - 1) // WORD_BITS
    starts = int.from_bytes(pattern.to_bytes(WORD_BITS // 8, "little") * words, "little")
    return (runs & starts).bit_count()


def churn_targets(w: Workload, cpu: int) -> int:
    """Realms CPU ``cpu`` may churn at once: every resident instance and the lifecycle instances
    it owns (cpustate.Host.churn_targets); it holds at most one rtt-churn window in each."""
    return sum(r.instances for r in w.realms if not r.lifecycle) + sum(1 for _, owner in w.owners if owner == cpu)


def realm_granules(r: RealmTemplate) -> int:
    """Granules one realm can hold: RD, its root RTTs (root_count: the rtt_num_start
    REALM_CREATE needs for its IPA width, 2 for 40 bits), RECs with aux granules and run pages,
    RTTs, the pages its guest touches (all of its RAM for a guest from a file), and the shared
    pages it can have the host back, with their tables."""
    # A bundled guest's image and data pages (RealmTemplate.backed), not the RAM between them,
    # which it never touches. Counted as min_ram's extent (1 MiB, 2 MiB for attest), a realm
    # counted 256 to 513 granules it never has: runs at the bound used as little as 7 % of it.
    pages = r.ram // GRANULE if os.sep in r.guest else \
        r.backed or programs.backed_pages(r.guest, r.recs, len(r.image))
    # Shared pages only as many as the guest can touch at the unprotected alias of its RAM:
    # none for hello, measure, smp-boot and ripas-loop (programs.PROTECTED_ONLY), 1 for
    # ripas-flip, 1 or 2 for attest's token copy, MAX_SHARED_PAGES (16) for a guest file. Every
    # realm that can have any counted 16: 30 granules (pages and their tables) an attest or
    # ripas-flip realm never had. map-shared's pages are counted apart (_memory).
    shared = r.shared if r.shared is not None else programs.shared_pages(r.guest)
    # The protected half's tables (a level 3 table per 2 MiB of RAM, and the levels above it),
    # and the unprotected half's: each shared page may sit in a 2 MiB block of its own, under a
    # level 2 and a level 1 table of that half.
    tables = 4 + (r.ram + (2 << 20) - 1) // (2 << 20) + (shared + 2 if shared else 0)
    # The roots as many as the realm has, not 16 for every realm: a 40-bit realm counted 14
    # granules it never has (the most any IPA width needs is 16, MAX_ROOTS).
    return 1 + root_count(r) + r.recs * (2 + MAX_AUX) + pages + tables + shared


def ripas_granules() -> int:
    """A ripas-churn realm (run.ripas_template): RD, its roots (2, for RIPAS_CHURN_IPA_WIDTH),
    one REC, the image and REC 0's pages of ripas-loop, and 8 for its tables."""
    image = len(programs.image(programs.RIPAS_LOOP, {}))
    roots = RIPAS_CHURN_ROOTS
    return 1 + roots + 2 + MAX_AUX + programs.backed_pages("ripas-loop", 1, image) + 8

