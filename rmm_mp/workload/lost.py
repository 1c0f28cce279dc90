"""What a report says of the realms and tokens only a CPU that returned no result knew (a CPU
process killed, or one that raised): its lifecycle instances and private ripas-churn realm, read
from the lifecycle tally it published as it went (hw.cpuarea, 0x800), and the CPUs each realm's
vCPUs were kept to (RealmOutcome.cpus). And what the parent set aside for a CPU that was never
started (RunResult.not_started: a Ctrl-C or SIGTERM during the start-up), which the parent's
teardown takes back as it takes back what a returning CPU hands it (``unstarted_share``).

This module owns those rows and that share. It reads a lost CPU's area; it must not touch a CPU
that returned its result, nor the machine's realms."""

from __future__ import annotations

import dataclasses

from rmm_mp.hw.cpuarea import LIFECYCLE_UNSAVED_SHIFT
from rmm_mp.machine import Machine
from rmm_mp.workload import realms
from rmm_mp.workload.cpustate import CpuPart
from rmm_mp.workload.report import RealmOutcome
from rmm_mp.workload.realms import Instance
from rmm_mp.workload.resolve import Workload


def kept_to(w: Workload, realm: int, index: int) -> tuple[int, ...] | None:
    """The CPUs that ran the vCPUs of template ``realm``'s instances (``realm`` past the
    templates: CPU ``index``'s private ripas-churn realm, which only that CPU enters), or None
    when every CPU of the run did (RealmOutcome.cpus)."""
    on = w.runs_on(realm) if 0 <= realm < len(w.realms) else (index,)
    return None if len(on) == w.cpus else on


def unreported(machine: Machine, w: Workload, parts: tuple[CpuPart, ...],
                lost: list[int]) -> tuple[list[RealmOutcome], int, dict[int, int]]:
    """The realms only a CPU that returned no result knew: the lifecycle instances it owned
    (every generation after the parent's first was its own) and its private ripas-churn realm.
    Left out, the report would count the other realms as if they were all there were.

    What the CPU did with its lifecycle instances came with its result: the rows of those it
    tore down are lost with it. Its lifecycle tally (hw.cpuarea, published as it went) still
    says how many of each it tore down, ok and failed, and whether one was still built (or
    being built or torn down) when it stopped: so many rows, saying what is not known; and how
    many tokens it saved to --save-tokens' directory (the second value) and how many it could
    not write there, per CPU that could not (the third), which the first of an instance's rows
    says too."""
    out = []
    tokens = 0
    unsaved: dict[int, int] = {}
    for cpu in lost:
        owned = parts[cpu].owned
        area = machine.cpu_area(cpu)
        try:
            tallies = area.lifecycle_tally(len(owned))
        finally:
            area.release()
        for inst, (built, ok, failed, token_counts) in zip(owned, tallies):
            saved = token_counts & ((1 << LIFECYCLE_UNSAVED_SHIFT) - 1)
            not_written = token_counts >> LIFECYCLE_UNSAVED_SHIFT
            tokens += saved
            if not_written:
                unsaved[cpu] = unsaved.get(cpu, 0) + not_written
            t = w.realms[inst.realm]
            name = f"{t.name}[{inst.index}]" if t.instances > 1 else t.name
            kept = kept_to(w, inst.realm, inst.index)
            rows = []
            for count, good in ((ok, True), (failed, False)):
                if count:
                    rows.append(dataclasses.replace(
                        realms.torn_down_unreported(name, t.recs, cpu, count, good, ok + failed), cpus=kept))
            # Generation #0 is the parent's; the CPU built #1 on, each after the last's teardown.
            if 1 + built > ok + failed:
                what = "built, or being built or torn down, when it stopped"
                lost_realm = realms.unreported(realms.instance_name(t, inst.index, ok + failed), t.recs, cpu, what)
                rows.append(dataclasses.replace(lost_realm, cpus=kept))
            if rows and (saved or not_written):
                # Which of the rows each token was of is not known (a token is saved for an
                # instance that failed too, and for one cut off in its teardown): on the first.
                note = (f"; CPU {cpu} saved {saved:,} token{'s' if saved != 1 else ''} of {name}'s instances to "
                        f"--save-tokens' directory"
                        + (f", {not_written:,} could not be written" if not_written else ""))
                rows[0] = dataclasses.replace(rows[0], detail=rows[0].detail + note)
            out += rows
        if w.uses("ripas-churn", cpu):
            lost_realm = realms.unreported(f"ripas-churn.cpu{cpu}", 1, cpu, "what it did is unknown")
            out.append(dataclasses.replace(lost_realm, cpus=kept_to(w, -1, cpu)))
    return out, tokens, unsaved


def unstarted_share(w: Workload, parts: tuple[CpuPart, ...],
                    cpus: tuple[int, ...]) -> tuple[list[Instance], list[int]]:
    """What run._prepare set aside for ``cpus``, CPUs never started (killed in their start-up,
    before they bound their CPU: they did nothing): the lifecycle instances each owned, still
    in their generation #0, which the parent built (to be torn down with the live realms), and
    the NS granules each held, to be freed after the teardown as a CPU's CpuResult.leftovers
    are: its rtt-churn windows' 2 MiB runs and its root runs (its lifecycle instances' and its
    ripas-churn realm's, which it never built). Its delegate-churn pool is freed with the
    others' (it never delegated any of it)."""
    owned: list[Instance] = []
    pages: list[int] = []
    for cpu in cpus:
        owned += parts[cpu].owned
        pages += parts[cpu].reserved(w.realms)
    return owned, pages
