"""Realm instances of a workload: building one, reading what it did, its token, and tearing it down.

    Instance     a realm built from a [[realm]] template, registered in the run queue (picklable:
                 the parent builds the first instances and hands them to the CPUs that own them)
    build        create_realm + RunQueue.add_realm in its run queue (an attest realm gets its own
                 challenge)
    finish       what the instance did, from its realm-table entry -> Finished; an attest
                 realm's token is read from the shared page its LOG named, verified, and saved
    destroy      destroy_realm in the instance's teardown order + RunQueue.release_realm
    drain        end every queued vCPU, in every run queue (after the CPUs stopped), so every
                 realm is DONE
    outcome      Finished + the vCPU errors seen on any CPU -> report.RealmOutcome
    Folded       torn-down lifecycle instances of one template and outcome that a CPU did not
                 list one by one (report.MAX_LISTED_PER_CPU), summed; folded_outcomes -> rows
    unreported   the outcome of a realm whose owner CPU returned no result (it died)

An instance's name is its template's name, with ``[index]`` when the template has several
instances and ``#generation`` when it is a lifecycle realm (rebuilt: generation 0 is the one the
parent built before the run): ``vm``, ``vm[2]``, ``vm#7``, ``vm[1]#3``.

This module owns instance records and outcomes. It speaks SMC only (through the host library);
besides, it reads the exception count the RMM keeps in an instance's RD (realm_desc.Rd.exceptions,
a model statistic for the report, as the invariant checker reads every granule).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from rmm_mp.attest.verify import VerificationResult, verify_token
from rmm_mp.host import RealmSpec, create_realm, destroy_realm, realm_status
from rmm_mp.host.devices import RealmStatus
from rmm_mp.host.realm import HostRealm
from rmm_mp.host.realm_entry import DONE, R_GEN, VEND_DRAINED
from rmm_mp.host.runqueue import MAX_QUEUES, RunQueue
from rmm_mp.outpaths import replacing
from rmm_mp.printable import shown_path
from rmm_mp.rmm.realm_desc import Rd
from rmm_mp.words import count as _count
from rmm_mp.workload import programs
from rmm_mp.workload.report import LOG_SHOWN, MAX_LISTED_PER_CPU, GuestOutput, RealmOutcome, exception_loop
from rmm_mp.workload.spec import RealmTemplate

if TYPE_CHECKING:
    from rmm_mp.host import NsAllocator
    from rmm_mp.machine import Cpu, Machine

TOKEN_TAG = 0x4E45_4B4F_54
"""X0 of the attest guest's LOG host call that names its token ("TOKEN")."""
GRANULE = 4096


@dataclass(frozen=True)
class Instance:
    realm: int
    """Index of its [[realm]] template; -1 for a CPU's private ripas-churn realm."""
    index: int
    generation: int
    name: str
    host: HostRealm
    slot: int
    gen: int
    """The run-queue slot's generation when it was registered (vCPU errors carry it)."""
    challenge: bytes | None = None
    built_ns: int = 0
    """time.perf_counter_ns when its build ended: from then until it is destroyed its RD and
    REC granules are its own (the trace names them only from then: aftermath.pa_names)."""


@dataclass(frozen=True)
class Finished:
    """What an instance did, read when it was torn down (or at the end of the run)."""

    name: str
    recs: int
    slot: int
    gen: int
    state: str
    end: str
    reports: int
    result: tuple[int, int]
    counters: dict[str, int]
    turned_off: bool = False
    """The lifecycle turned it off (its lifetime was reached)."""
    token: int = 0
    """Bytes of the token the instance produced (attest realms)."""
    token_problem: str = ""
    token_file: str = ""
    token_write_error: str = ""
    """Why the token could not be saved to --save-tokens' directory (a report-file failure)."""
    order: tuple[int, int, int] = (0, 0, 0)
    """(template, instance, generation): how the report sorts realms (private realms last)."""
    output: GuestOutput | None = None
    """Its guest's console tail and last LOG records, when finish was asked to keep them."""
    exceptions: int = 0
    """Synchronous exceptions its guest took in the realm (its RD's count)."""
    output_dropped: bool = False
    """It failed but its output was not kept (the CPU that tore it down had kept enough)."""
    report_cut_short: bool = False
    """A REPORT after its last whole one was cut short by a killed CPU (RealmStatus)."""

    @property
    def failed(self) -> bool:
        """What outcome() calls a failure, as far as the instance itself tells (outcome also counts
        the vCPU errors its CPUs reported, each of which the vcpu_errors counter counts too)."""
        return bool(self.counters.get("vcpu_errors") or self.end == "ERROR" or (self.reports and self.result[0] != 0)
                    or self.token_problem or self.report_cut_short)


@dataclass
class Folded:
    """Torn-down lifecycle instances of template ``realm`` with one outcome (``ok``) that one CPU
    did not list one by one (report.MAX_LISTED_PER_CPU): what the report needs of them, summed,
    in a size that does not grow with their number."""

    realm: int
    name: str
    """The template's name."""
    recs: int
    ok: bool
    instances: int = 0
    counters: dict[str, int] = field(default_factory=dict)
    exceptions: int = 0
    first: str = ""
    """The first one's name and, when they failed, why (its outcome's detail)."""
    last: str = ""
    """The last one's name."""
    tokens_saved: int = 0
    unsaved: int = 0
    """Tokens that could not be saved to --save-tokens' directory; ``unsaved_first`` says why."""
    unsaved_first: str = ""
    looping: int = 0
    """Instances that were each in an exception loop (report.exception_loop on their own counts)."""

    def add(self, f: Finished, detail: str) -> None:
        """Fold instance ``f``, whose outcome's detail is ``detail``."""
        if not self.instances:
            self.first = f"{f.name}: {detail}" if not self.ok else f.name
        self.last = f.name
        self.instances += 1
        for k, v in f.counters.items():
            self.counters[k] = self.counters.get(k, 0) + v
        self.exceptions += f.exceptions
        self.looping += exception_loop(f.exceptions, f.counters.get("entries", 0))
        self.tokens_saved += bool(f.token_file)
        if f.token_write_error:
            self.unsaved_first = self.unsaved_first or f.token_write_error
            self.unsaved += 1

    def merge(self, other: "Folded") -> None:
        """Add another CPU's fold of the same template and outcome."""
        if not self.instances:
            self.first = other.first
        self.last = other.last or self.last
        self.instances += other.instances
        for k, v in other.counters.items():
            self.counters[k] = self.counters.get(k, 0) + v
        self.exceptions += other.exceptions
        self.looping += other.looping
        self.tokens_saved += other.tokens_saved
        self.unsaved_first = self.unsaved_first or other.unsaved_first
        self.unsaved += other.unsaved


def folded_outcome(fold: Folded) -> RealmOutcome:
    """The report's row for the instances of ``fold``: named after the template with their
    number, ``instances`` saying how many; counters and exceptions their sums."""
    if fold.ok:
        detail = f"{fold.instances:,} more instances of {fold.name}, not listed one by one, all ok"
    else:
        detail = (f"{fold.instances:,} more instances of {fold.name}, not listed one by one, all failed; "
                  f"the first, {fold.first}")
    detail += f" (a CPU lists its first {MAX_LISTED_PER_CPU} that succeeded and its first {MAX_LISTED_PER_CPU} " \
              f"that failed; the last of these: {fold.last})"
    if fold.tokens_saved or fold.unsaved:
        # A listed instance names its token file; these had theirs counted in the Written: line
        # only, and a reader of the row could not tell that they made tokens.
        detail += (f"; {_count(fold.tokens_saved, 'token')} saved to --save-tokens' directory"
                   + (f", {fold.unsaved:,} could not be written" if fold.unsaved else "")
                   + (f" (the first: {shown_path(fold.unsaved_first)})" if fold.unsaved and fold.unsaved_first else ""))
    return RealmOutcome(f"{fold.name} ({_count(fold.instances, 'instance')})", fold.recs, fold.ok, detail,
                        dict(fold.counters), None, fold.exceptions, output_dropped=not fold.ok,
                        instances=fold.instances, looping=fold.looping)


def instance_name(t: RealmTemplate, index: int, generation: int) -> str:
    name = f"{t.name}[{index}]" if t.instances > 1 else t.name
    return f"{name}#{generation}" if t.lifecycle else name


def build(cpu: "Cpu", alloc: "NsAllocator", queue: "RunQueue", t: RealmTemplate, realm: int, index: int,
          generation: int, seed: int, vcpus: int | None = None, name: str | None = None,
          rtt_base: int | None = None, run_queue: int = 0) -> Instance:
    """Build instance ``index`` (``generation``) of template ``t`` (the file's realm number
    ``realm``; -1 for a CPU's private ripas-churn realm) and register it. ``rtt_base``: the
    root run the caller keeps for the instance (create_realm), or None to allocate one.
    ``run_queue``: the run queue its vCPUs go into (resolve.Workload.queue_of)."""
    challenge = programs.challenge(seed, t.name, index, generation) if t.attest else None
    image = t.image
    if challenge is not None:
        constants = {**dict(t.constants), **programs.attest_constants(challenge)}
        image = programs.image(programs.guest_text(t.guest), constants)
    spec = RealmSpec(ipa_width=t.ipa_width, ram_base=programs.RAM_BASE, ram_size=t.ram, hash_algo=t.hash_algo,
                     rpv=t.rpv, num_recs=t.recs, image=image, measure=t.measure, teardown=t.teardown_for(generation))
    host = create_realm(cpu, alloc, spec, rtt_base=rtt_base)
    try:
        slot = queue.add_realm(alloc, host, vcpus=vcpus, queue=run_queue)
    except BaseException:
        destroy_realm(cpu, alloc, host)
        raise
    gen = queue.view.load_u32(queue.realm_offset(slot) + R_GEN)
    return Instance(realm, index, generation, name or instance_name(t, index, generation), host, slot, gen, challenge,
                    time.perf_counter_ns())


OUTPUT_KEEP = ("failed", "all", "none")
"""finish's ``output``: keep the guest's output when the instance failed, always, or never."""


def guest_output(st: RealmStatus) -> GuestOutput:
    """The report's copy of what the guest wrote (report.GuestOutput)."""
    console = st.console
    if st.device[0] > len(console):
        # The console ring dropped older bytes, so its oldest kept byte may be the middle of a
        # character the guest wrote: leave out those continuation bytes (at most 3), which would
        # decode as U+FFFD each, a garbage start that the guest never printed.
        cut = 0
        while cut < min(3, len(console)) and console[cut] & 0xC0 == 0x80:
            cut += 1
        console = console[cut:]
    return GuestOutput(console.decode("utf-8", "replace"), st.device[0],
                       tuple((r.rec, r.values) for r in st.log[-LOG_SHOWN:]), st.log_count)


def finish(machine: "Machine", queue: "RunQueue", inst: Instance, t: RealmTemplate | None, *,
           platform_key: bytes | None = None, tokens_dir: str | None = None, turned_off: bool = False,
           output: str = "failed") -> Finished:
    """Read what ``inst`` did (before it is destroyed: its shared pages hold an attest token).
    ``output`` (OUTPUT_KEEP) says when the guest's console tail and LOG records are kept: only
    what is kept travels to the parent, which is what bounds a long lifecycle run's memory."""
    st = realm_status(queue, inst.slot)
    done = _finish(machine, st, inst, t, platform_key, tokens_dir, turned_off)
    if output == "all" or (output == "failed" and done.failed):
        done = replace(done, output=guest_output(st))
    return done


def _finish(machine: "Machine", st: RealmStatus, inst: Instance, t: RealmTemplate | None,
            platform_key: bytes | None, tokens_dir: str | None, turned_off: bool) -> Finished:
    counters = {k: v for k, v in st.counters.items() if v}
    # The RMM's count in the RD (Realm PAS, which no host could read): the simulator reads it for
    # the report, as the invariant checker reads every granule; the realm is not destroyed yet.
    exceptions = Rd(machine.memory, (inst.host.rd - machine.memory.base) >> 12).exceptions
    base = Finished(inst.name, len(inst.host.recs), inst.slot, inst.gen, st.state, st.end, st.reports, st.result,
                    counters, turned_off,
                    order=(inst.realm if inst.realm >= 0 else 1 << 30, inst.index, inst.generation),
                    exceptions=exceptions, report_cut_short=st.report_cut_short)
    if t is None or not t.attest:
        return base
    token, problem = _token(machine, st)
    if token is None:
        ended_well = st.state == "DONE" and st.end == "SYSTEM_OFF" and st.reports and st.result[0] == 0
        return replace(base, token_problem=problem if ended_well else "")
    result = verify_token(token, platform_key, expected_challenge=inst.challenge)
    path, write_error = "", ""
    if tokens_dir is not None:
        path = os.path.join(tokens_dir, f"{t.name}-{inst.index}-{inst.generation:06d}.cbor")
        try:
            with replacing(path) as temp, open(temp, "wb") as out:
                out.write(token)
        except OSError as exc:  # the directory went away, the disk is full: a file not written
            path, write_error = "", f"{path}: {exc.strerror or exc}"
    return replace(base, token=len(token), token_file=path, token_write_error=write_error,
                    token_problem="" if result.ok else _verify_problem(result))


def _verify_problem(result: "VerificationResult") -> str:
    """Why a saved token does not verify: the verdict and each check that did not pass."""
    checks = "; ".join(f"{c.name}: {c.reason}" for c in result.checks if c.passed is not True)
    return f"the token does not verify ({result.verdict}): {checks}"


def _token(machine: "Machine", st: RealmStatus) -> tuple[bytes | None, str]:
    """The token an attest realm copied to its shared page, from the LOG record naming it."""
    named = [r.values for r in st.log if r.values[0] == TOKEN_TAG]
    if not named:
        return None, "it reported a pass but logged no token"
    _, ipa, length, _ = named[-1]
    pages = dict(st.shared_pages)
    data = b""
    at = ipa
    # The copy starts wherever SHARED_OFFSET puts it, not necessarily on a page boundary; the
    # host mapped whole pages (keyed by their page's IPA), so read it page piece by page piece.
    while len(data) < length:
        page = at & ~(GRANULE - 1)
        pa = pages.get(page)
        if pa is None:
            return None, f"its token at IPA {at:#x} is on no page the host shared with it"
        piece = min(page + GRANULE - at, length - len(data))
        data += machine.ns_read(pa + at - page, piece)
        at += piece
    return data, ""


def destroy(cpu: "Cpu", alloc: "NsAllocator", queue: "RunQueue", inst: Instance) -> None:
    """Tear a DONE instance down in its order and free its run-queue slot and pages."""
    destroy_realm(cpu, alloc, inst.host)
    queue.release_realm(alloc, inst.slot)


def drain(queue: "RunQueue", cpu: int) -> int:
    """End every vCPU still queued in any run queue (no CPU runs any more), so that every realm
    becomes DONE."""
    every = RunQueue(queue.machine, range(MAX_QUEUES))
    drained = 0
    while (vcpu := every.take(cpu)) is not None:
        every.end(vcpu, VEND_DRAINED)
        drained += 1
    return drained


def is_done(queue: "RunQueue", inst: Instance) -> bool:
    return queue.realm_state(inst.slot) == DONE


@dataclass
class Errors:
    """vCPU failures reported by the CPUs, by (slot, slot generation)."""

    by_instance: dict[tuple[int, int], list[str]] = field(default_factory=dict)

    def add(self, slot: int, gen: int, message: str) -> None:
        self.by_instance.setdefault((slot, gen), []).append(message)

    def of(self, f: Finished) -> list[str]:
        return self.by_instance.get((f.slot, f.gen), [])


def outcome(f: Finished, errors: list[str], running: bool, not_run: str = "") -> RealmOutcome:
    """The report's record of one instance: failed if a vCPU failed, the guest REPORTed a
    failure or its last REPORT was cut short by a killed CPU, or an attest realm's token is
    missing or does not verify. ``not_run``: why none of its vCPUs could have run (the CPUs
    that run them were never started), for its detail."""
    problems = []
    if errors or f.counters.get("vcpu_errors") or f.end == "ERROR":
        problems.append("a vCPU failed: "
                        + ("; ".join(errors) or _count(f.counters.get("vcpu_errors", 0), "vCPU error")))
    if f.report_cut_short:
        # The lost report may have said anything, so the last whole one decides nothing.
        before = (f"; its last whole report was code {f.result[0]} (detail {f.result[1]:#x})" if f.reports
                  else "; it made no whole report")
        problems.append("its last REPORT was cut short by a CPU process killed while storing it, so what the guest "
                        "reported last is unknown" + before)
    elif f.reports and f.result[0] != 0:
        problems.append(f"the guest reported failure code {f.result[0]} (detail {f.result[1]:#x})")
    if f.token_problem:
        problems.append(f.token_problem)
    if problems:
        return RealmOutcome(f.name, f.recs, False, "; ".join(problems), f.counters, f.output, f.exceptions,
                            f.output_dropped)
    entries = _count(f.counters.get("entries", 0), "REC entry", "REC entries")
    if f.turned_off:
        detail = f"turned off by the lifecycle after {entries}"
    elif not_run:
        # "running when the run ended (0 REC entries)" read as a realm the CPUs had left
        # waiting, in a run whose CPUs were killed in their start-up, before any could enter it.
        detail = f"not run: {not_run}"
    elif running:
        detail = f"running when the run ended ({entries})"
    elif f.end == "SYSTEM_OFF":
        detail = "turned itself off" + (f", reported pass (detail {f.result[1]:#x})" if f.reports else "")
    elif f.end:
        # SYSTEM_RESET, ALL_OFF: the realm ended, DONE or (read at the end of the run) off with a
        # vCPU still queued, which the teardown's drain ends.
        detail = f"done ({f.end})"
    elif f.state == "SYSTEM_OFF":
        # Off with no end reason: another vCPU's REC_ENTER found the realm off (the RMM's
        # SYSTEM_OFF state), but the exit of the vCPU that turned it off, which says whether by
        # SYSTEM_OFF or SYSTEM_RESET, was never handled (its CPU died with it). Read at the end
        # of the run, this said "system_off (no end)".
        detail = ("turned itself off (SYSTEM_OFF or SYSTEM_RESET: the exit of the vCPU that called it was not "
                  "handled)" + (f", reported pass (detail {f.result[1]:#x})" if f.reports else ""))
    else:
        detail = f"{f.state.lower()} (no end)"
    if f.token:
        detail += f"; token of {f.token:,} bytes verified"
        if f.token_file:
            detail += f", saved as {shown_path(f.token_file)}"
        elif f.token_write_error:
            # The realm did its part (its result stays ok), but its row said no more than that
            # of a run without --save-tokens, so a reader looking for the file found no word of
            # why it is missing: only the run's "Report files not written" had the first reason.
            detail += f", but saving it failed: {shown_path(f.token_write_error)}"
    return RealmOutcome(f.name, f.recs, True, detail, f.counters, f.output, f.exceptions)


def unreported(name: str, recs: int, cpu: int, what: str = "what its instances did is unknown") -> RealmOutcome:
    """The outcome of a realm owned by CPU ``cpu``, which returned no result (it died, or its
    result was lost to a signal): only that CPU knew what it did, so the report can only say
    that it does not know (``what``: what is not known)."""
    return RealmOutcome(name, recs, False, f"not reported: CPU {cpu}, which owned it, returned no result ({what})",
                        exceptions=None)


def torn_down_unreported(name: str, recs: int, cpu: int, count: int, ok: bool, torn_down: int) -> RealmOutcome:
    """The row of ``count`` instances of ``name`` (of the ``torn_down`` it tore down) that CPU
    ``cpu`` tore down, ``ok`` or failed, before it returned no result: the CPU published how many
    as it went (cpustate.Host.publish), but what each did (counters, exceptions, output, why one
    failed) was in the result that never came."""
    gens = "generation #0" if torn_down == 1 else f"generations #0 to #{torn_down - 1}"
    outcome = "ok" if ok else "failed"
    if count == torn_down:
        which = f"{gens}, torn down by CPU {cpu}, all {outcome}"
    else:
        which = f"the {outcome} ones of {gens}, torn down by CPU {cpu}"
    detail = f"{which}; it returned no result: only their number is known" + ("" if ok else ", not why they failed")
    return RealmOutcome(f"{name} ({_count(count, 'instance')})", recs, ok, detail, exceptions=None, instances=count)
