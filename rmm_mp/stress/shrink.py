"""Shrinking a failing deterministic run: a schedule with fewer preemptions (then an earlier
finding, then fewer switches) that still produces the same finding.

The target is the first finding's key (checker, rule, source site; for a finding with no site,
a deadlock, a leaked lock, a lockdep cycle, a stuck call, a dead CPU, a crash, an exception a
CPU ended on, a wrong status or a broken invariant, Finding.identity: the calls and the kinds of
lock they wait for or hold, the cycle's classes, how the CPU failed and where, the command and
status, the rule and the kind of granule). A candidate schedule is the
recorded switch list with some switches removed (delta debugging: halves first, then quarters,
down to single switches); it is replayed (stress.sched replay: where a removed switch leaves a
CPU that cannot run, the next runnable CPU takes over), and kept if the replay reports the same
key with fewer preemptions, or as many and an earlier finding, or as many and the finding at the
same step with fewer switches (a schedule without preemptions whose finding comes some steps
later is smaller: what a reader follows is the preemptions). The step budget shrinks with it: a
replay stops starting operations at the step of the best run's finding, or at that run's own
budget if lower, so a kept run's finding, made in an operation under way there, may come after
its budget (its schedule replays all the same: the budget is part of it). Each candidate is a
full run of the CPU processes (about a second), so the number of attempts is bounded. Ctrl-C
(or, with ``sigterm_stops``, SIGTERM) ends the search, whether it lands during a replay or
between two: the candidate it stopped is dropped and the smallest run found so far is the
result.

This module owns the search. It must not change how a run is checked.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from rmm_mp.stress.config import StressConfig
from rmm_mp.stress.report import StressReport
from rmm_mp.stress.runner import run
from rmm_mp.interrupts import Interrupts
from rmm_mp.words import count


@dataclass(frozen=True)
class ShrinkResult:
    """The smallest failing run found, and the search that found it."""

    original: StressReport
    report: StressReport
    attempts: int
    accepted: int
    interrupted: bool = False
    """Ctrl-C or SIGTERM ended the search before it was done."""
    interrupted_by: str = ""
    """With ``interrupted``, the signal that ended it ("Ctrl-C", "SIGTERM")."""
    limit: str = ""
    """The limit that ended the search before it had tried every cut ("40 replays", "120 s"):
    a search of the result's schedule may cut more. "" when it was done (or interrupted)."""
    cut_short: bool = False
    """The signal that ended the search came during a replay, which was dropped: it is not in
    ``attempts``, which counts the replays that finished, each with its verdict."""

    def describe(self) -> str:
        o, r = self.original, self.report
        f, g = o.first(), r.first()
        how = "shrinking interrupted after" if self.interrupted else "shrunk in"
        # A search cut short by its bounds read as a finished one: say so, and (cli) how to go on.
        limited = f", stopped at its limit of {self.limit} with cuts left to try" if self.limit else ""
        return (f"{how} {count(self.attempts, 'replay')} ({self.accepted} kept{self._cut()}){limited}: finding at step "
                f"{f.step if f else '?'} -> {g.step if g else '?'}, {o.switches} -> {r.switches} switches, "
                f"{o.preemptions} -> {r.preemptions} preemptions")


    def unfinished(self) -> str:
        """What an interrupted search left undone (the report's ``not_done``)."""
        return (f"shrinking interrupted after {count(self.attempts, 'replay')} ({self.accepted} kept{self._cut()}): "
                "the smallest failing run found by then is the one reported")

    def _cut(self) -> str:
        # The replay a signal stopped is no replay of the count (until 2026-11 it was, so one
        # cut short at once read "after 1 replay" with no attempt line printed).
        return ", and one cut short" if self.cut_short else ""

    def to_json(self) -> dict[str, Any]:
        """The search for the JSON report: replays made and kept, whether it was interrupted,
        the limit that stopped it with cuts left to try (``limit``'s text, null when none did),
        and the original and shrunk runs' figures. ``replays`` counts the finished ones;
        ``cut_short`` says a signal stopped one more, dropped."""
        return {"replays": self.attempts, "kept": self.accepted, "interrupted": self.interrupted,
                "cut_short": self.cut_short, "limit": self.limit or None, "original": _figures(self.original),
                "shrunk": _figures(self.report)}


def _figures(report: StressReport) -> dict[str, int | None]:
    first = report.first()
    return {"finding_step": first.step if first is not None else None, "steps": report.steps,
            "switches": report.switches, "preemptions": report.preemptions}


def _score(report: StressReport) -> tuple[int, int, int]:
    first = report.first()
    return (first.step if first is not None and first.step is not None else 1 << 62, report.preemptions,
            len(report.schedule))


def _smaller(candidate: StressReport, best: StressReport) -> bool:
    """The candidate is kept if it has fewer preemptions, or as many and an earlier finding, or
    as many and its finding at the same step with fewer switches: preemptions are what a reader
    of the interleaving must follow, and steps only count the work done on the way. (An earlier
    finding alone used to be enough, so a candidate whose dropped switches turned blocked
    hand-overs into preemptions could be kept with more preemptions than the run it shrank; then
    a finding no later was required, so the run without a single preemption was refused when its
    finding came some steps later: `--inject data-create-copy-under-rd --schedule random
    --shrink` kept 147 of 393 preemptions though the first attempt, with none, found the same
    bug.)"""
    (step, preemptions, switches), (best_step, best_preemptions, best_switches) = _score(candidate), _score(best)
    return (preemptions, step, switches) < (best_preemptions, best_step, best_switches)


def shrink(report: StressReport, max_attempts: int = 40, max_seconds: float = 120.0,
           on_attempt: Callable[[int, StressReport, str], object] | None = None,
           sigterm_stops: bool = False) -> ShrinkResult:
    """Shrink a deterministic run that produced a finding (see the module docstring).
    ``sigterm_stops`` is run's: SIGTERM then ends the search as Ctrl-C does."""
    first = report.first()
    if not report.config.deterministic or first is None or not report.schedule:
        raise ValueError("only a deterministic run with a finding can be shrunk")
    # A signal between two replays (in this loop, the progress callback) is noted and ends the
    # search; one during a replay is run's (it returns a report marked interrupted).
    with Interrupts(sigterm_stops) as stop:
        target = first.key()
        best = report
        attempts = accepted = 0
        interrupted = dropped = False
        done = False        # every cut tried (or none left): no limit stopped the search
        by = ""     # the signal a replay's run took: the search's own guard does not hear it
        deadline = time.monotonic() + max_seconds

        def over() -> bool:
            return interrupted or bool(stop.by) or attempts >= max_attempts or time.monotonic() >= deadline

        tried: set[tuple[tuple[int, int], ...]] = set()

        def attempt(switches: tuple[tuple[int, int], ...]) -> bool:
            nonlocal best, attempts, accepted, interrupted, by, dropped
            if switches in tried:
                return False
            if stop.by:                   # a signal came as this attempt began: no replay for it
                return False
            tried.add(switches)
            attempts += 1
            step = best.first().step if best.first() is not None else None  # type: ignore[union-attr]
            cfg = _replay_config(best.config, switches, step)
            ran, candidate = stop.passthrough(lambda: run(cfg, sigterm_stops=sigterm_stops))
            if not ran or candidate.interrupted:
                # Not ran: a signal escaped run (its machine's create or close), which cleaned up;
                # interrupted: stopped part-way. Either says nothing of this schedule, and is no
                # finished replay of the count.
                interrupted = dropped = True
                attempts -= 1
                if ran:
                    by = candidate.interrupted_by
                return False
            found = candidate.first()
            if found is None:
                verdict = "not kept: no finding"
            elif found.key() != target and found.identity and first.identity and found.key()[:2] == target[:2]:
                # The headlines of two deadlocks (or leaks, lockdep cycles, stuck calls, dead CPUs, ...)
                # read alike: say how they differ.
                kind = {"cycle": "lock-order cycle", "leaked-lock": "leaked lock", "stuck-call": "stuck call",
                        "cpu-died": "dead CPU", "result-lost": "lost result",
                        "status": "wrong status"}.get(found.rule, found.rule)
                if found.checker == "invariants":
                    kind = "broken invariant"
                verdict = f"not kept: another {kind} ({found.identity}) than the one being shrunk ({first.identity})"
            elif found.key() != target:
                # Two findings of one checker and rule at other sites read alike in the progress
                # line's cut headline: name the part of the key that differs.
                ours, theirs = _differing(found.key(), target)
                verdict = f"not kept: another finding ({ours}) than the one being shrunk ({theirs})"
            elif not _smaller(candidate, best):
                verdict = ("not kept: same finding, not smaller (more preemptions, or as many at a later "
                           "step, or at the same step with no fewer switches)")
            else:
                verdict = "kept"
            if on_attempt is not None:
                on_attempt(attempts, candidate, verdict)
            if verdict == "kept":
                best = candidate
                accepted += 1
                return True
            return False

        # No preemption at all: one CPU runs until it blocks or finishes (the finder's CPU first).
        # Tried again by a search of a shrunk run's schedule (cli's "shrink further"), which the
        # first search tried them against: nothing says a schedule is a shrink's result (its file's
        # strategy is "replay", as any replay's), and the budget is now the shrunk finding's step,
        # lower, so these are other runs: one that met another finding past that step may be kept.
        cpus = sorted(range(report.config.cpus), key=lambda c: c != first.cpu)
        for cpu in cpus:
            if over() or attempts >= report.config.cpus:
                break
            if attempt(((0, cpu),)):
                break
        chunks = 2
        while not over():
            switches = best.schedule[1:]
            if not switches:
                done = True
                break
            size = max(1, len(switches) // chunks)
            removed = cut_short = False
            for start in range(len(switches) - size, -1, -size) if size else ():
                if over():
                    cut_short = True
                    break
                kept = best.schedule[:1] + switches[:start] + switches[start + size:]
                if attempt(kept):
                    removed = True
                    break
            if interrupted:
                break
            if removed:
                chunks = max(2, chunks - 1)
            elif size == 1:
                done = not cut_short        # every single switch tried, none could go
                break
            else:
                chunks = min(len(switches), chunks * 2)
        stopped = interrupted or bool(stop.by)
        limit = ""
        if not done and not stopped and best.schedule[1:]:
            limit = count(max_attempts, "replay") if attempts >= max_attempts else f"{max_seconds:g} s"
        return ShrinkResult(report, best, attempts, accepted, stopped, by or stop.by, limit, dropped)


def _differing(found: tuple[str, str, str], target: tuple[str, str, str]) -> tuple[str, str]:
    """The part of two findings' keys (Finding.key) that differs, as a shrink verdict names it:
    checker and rule ("lockdep: rule 3"), else the site or identity, each cut to 60 characters,
    from a little before where the two differ when that is past the first 57."""
    if found[:2] != target[:2]:
        return f"{found[0]}: {found[1]}", f"{target[0]}: {target[1]}"

    def brief(where: str, other: str) -> str:
        if not where:
            return "no site"
        if len(where) <= 60:
            return where
        same = next((i for i, (a, b) in enumerate(zip(where, other)) if a != b), min(len(where), len(other)))
        if same < 57:
            return where[:57] + "..."
        # Two sites in one helper reached from two handlers (findings.site: "inner <- handler")
        # differ only in the handler's frame: cut at 57 both read "rmm_mp/rmm/s2tt.py:298
        # (walk) <- rmm_mp/rmm/handlers/rmi_...". Shown from the path part or word it differs in.
        start = max(0, same - 20)
        edge = max(where.rfind(" ", start, same), where.rfind("/", start, same))
        if edge >= 0:
            start = edge + 1
        return "..." + where[start:start + 54] + ("..." if start + 54 < len(where) else "")
    return brief(found[2], target[2]), brief(target[2], found[2])


def _replay_config(cfg: StressConfig, switches: tuple[tuple[int, int], ...], step: int | None) -> StressConfig:
    budget = min(cfg.steps, step) if step else cfg.steps
    return cfg.replace(schedule="replay", switches=switches, steps=max(1, budget))
