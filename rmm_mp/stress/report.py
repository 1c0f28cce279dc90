"""The result of a stress run: findings, what ran, and how to replay it.

``StressReport.text()`` is what `rmm-mp stress` prints. Its findings part
(``findings_text``) holds nothing that differs between two runs of one schedule but a few
watchdog times and pids, so a replay is checked by comparing it (stress.schedule.compare,
without those values, nor source line numbers, which an edit of the code moves). ``to_json``
is the machine-readable form.

This module owns the report's shape and its text. It must not run anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from rmm_mp import words
from rmm_mp.printable import columns, shell_word
from rmm_mp.stress.config import StressConfig
from rmm_mp.stress.findings import Finding
from rmm_mp.stress.lockdep import Edge
from rmm_mp.words import count as _count
from rmm_mp.workload.describe import WIDTH, wrapped


def _figure(value: float) -> str:
    """``value`` to three significant digits in plain notation (1,230 and 0.00002): %g writes
    1.23e+03 and 2e-05, which a long run's total wait and a short one's both reach."""
    return format(Decimal(f"{value:.3g}"), ",f")


@dataclass(frozen=True)
class StressReport:
    """What one stress run found and did.

    Attributes:
        ended: why the run ended: "time" (free-running time was up), "budget" (the step budget
            was spent and the CPUs finished their operation), "finding" (a finding stopped it),
            "aborted" (deadlock, crash, internal error or watchdog), "timeout" (a deterministic
            run hit its safety limit in seconds), "interrupted" (Ctrl-C or SIGTERM stopped it
            before its end, without a finding), "stopped" (its stop flag was raised by neither the
            run nor a signal, but from outside: the caller's on_tick, another process attached to
            the machine; the CPUs stopped between operations before the budget or time).
        schedule: context switches (step, CPU to run next) of a deterministic run.
        points: per CPU, every schedule point (step, kind, argument) when the run logged them.
    """

    config: StressConfig
    findings: tuple[Finding, ...]
    ended: str
    elapsed_s: float
    ops: dict[int, int]
    steps: int = 0
    switches: int = 0
    preemptions: int = 0
    quiescent_checks: int = 0
    schedule: tuple[tuple[int, int], ...] = ()
    points: dict[int, list[tuple[int, int, int]]] = field(default_factory=dict)
    edges: tuple[Edge, ...] = ()
    counts: dict[str, int] = field(default_factory=dict)
    """Operations and events by kind, over the CPUs that returned a result (rec-enter, relaunch, ...)."""
    cpu_seconds: float = 0.0
    """CPU time (user + system) the CPU processes used, as each measured itself at its end."""
    stopped_at: int | None = None
    """A deterministic run stopped by Ctrl-C, SIGTERM or its time limit: the step at which the
    first CPU saw the stop between operations. Where the stop lands depends on wall time; from
    this step on the CPUs behave as at the end of a step budget, so it is the budget that
    replays the run (stress.schedule writes it). None for a run not stopped so."""
    interrupted: bool = False
    """Ctrl-C or SIGTERM stopped the run before its end (``ended`` says "interrupted" only when
    there was no finding: a finding made before the stop takes precedence there)."""
    startup_s: float | None = None
    """Of ``elapsed_s``, the seconds from spawning the CPU processes until every one was ready
    (its operations set up; a free-running run's --seconds count from there); None when they
    never all were (Ctrl-C during the start, a CPU that died starting)."""
    not_done: tuple[str, ...] = ()
    """What a Ctrl-C or SIGTERM outside the CPUs' run left undone (the CPUs' start, when it came
    while the population was built; the lock-order analysis or the final invariant check, when
    it came after the CPUs had stopped), and the CPUs killed without a finding of their own: by
    a second Ctrl-C or SIGTERM, or (deterministic) after the grace time while they waited for
    their turn in a run another CPU's finding had aborted."""

    unreported: tuple[int, ...] = ()
    """The CPUs that returned no result (their process died: killed, or an error it could not
    report; or it exited normally and its result was lost on the way, ``lost_results``). A
    deterministic run's switch log is kept by each CPU and returned with its result, so the
    switches these CPUs made are not in ``schedule``."""
    lost_results: tuple[int, ...] = ()
    """Of ``unreported``, the CPUs whose process exited normally (status 0): it sent a result
    that never reached the parent, or one the parent could not read (a ``result-lost``
    finding says which). Their process did not die, and the report must not say it did."""
    bug_calls: dict[str, int] = field(default_factory=dict)
    """How many times each injected bug's code ran, over the CPUs that returned a result."""
    interrupted_by: str = ""
    """With ``interrupted``, what came first ("Ctrl-C", "SIGTERM"); "" when not known."""
    locks: dict[int, tuple[int, int, int, int]] = field(default_factory=dict)
    """Per CPU that returned a result: its granule lock acquisitions during the run
    (stress.worker.CpuResult.locks: acquired, contended, wait_ns, max_wait_ns). A run whose
    locks were never contended tested no race on them."""
    cpu_warnings: dict[int, str] = field(default_factory=dict)
    """Per CPU whose closing of its machine handle failed after its result was sent
    (rmm_mp.cpu_exit.close_machine, RunResult.warnings): what failed. The CPU counts as returned
    (its result arrived); its process wrote the traceback to its standard error."""
    unreported_ops: dict[int, int] = field(default_factory=dict)
    """Per CPU of ``unreported``: the operations it had completed, the sum of its counters by
    operation kind in the stress segment (StressSegment.completed), which outlives its process,
    so that it is what ``unreported_counts``' operation kinds add up to. Its counts by kind are
    ``unreported_counts``, its lock figures ``unreported_locks`` and its bugs' calls
    ``unreported_bug_calls``."""
    unreported_counts: dict[int, dict[str, int]] = field(default_factory=dict)
    """Per CPU of ``unreported``: its operations by kind and its events, as ``counts`` holds them for
    the CPUs that returned a result, read from its counters in the stress segment
    (StressSegment.counts); not added to ``counts``."""
    unreported_locks: dict[int, tuple[int, int, int, int]] = field(default_factory=dict)
    """Per CPU of ``unreported``: its lock figures as ``locks`` has them, but partial: those its
    EL3 had last published in its CPU area (el3.monitor publish_lock_stats, at each flush of its
    latency figures, some every 50 ms; none with recording off), of its own granule locks only,
    not its host's NS copies'. Not added to ``locks``; without them a killed CPU's contention
    was in no figure."""
    unreported_bug_calls: dict[int, dict[str, int]] = field(default_factory=dict)
    """Per CPU of ``unreported``: each injected bug's calls on it, counted in the stress segment
    as they happened (StressSegment.bug_calls), each call before the bug's code runs
    (stress.bugs.install), so a 0 here proves the bug never ran on that CPU. Not added to
    ``bug_calls``; ``calls`` adds them for the never-ran and checker-off lines."""

    def warnings(self) -> list[str]:
        """The report's warnings: for now each CPU's failed close of its machine handle, worded as
        `rmm-mp run` words it (workload.render_json.warnings)."""
        return [f"CPU {cpu}: {what} (its result arrived and counts; its process wrote the traceback to stderr)"
                for cpu, what in sorted(self.cpu_warnings.items())]

    def lock_contention(self) -> str:
        """The text line on lock contention ("" when no CPU returned its figures or published any)."""
        if not self.locks:
            partial = self._partial_locks()
            return f"lock contention: no CPU returned its figures{partial}" if partial else ""
        acquired = sum(v[0] for v in self.locks.values())
        contended = sum(v[1] for v in self.locks.values())
        line = f"lock contention: {contended:,} of {_count(acquired, 'lock acquisition')} contended"
        if self.config.deterministic:
            # A schedule's CPU waits for its turn, not for time: a contended acquisition is one
            # that blocked on a held lock (the scheduler's blocked-on) and its wait is 0.
            line += " (blocked on a held lock until the schedule let its holder release it)"
        elif contended:
            wait_ns = sum(v[2] for v in self.locks.values())
            longest = max(v[3] for v in self.locks.values())
            line += f", {_figure(wait_ns / 1e9)} s waited (longest {_figure(longest / 1e6)} ms)"
        if self.unreported:
            line += " (over the CPUs that returned a result)" + self._partial_locks()
        return line

    def _partial_locks(self) -> str:
        """What the CPUs that returned no result had published of their lock figures: partial,
        and said apart from the figures of those that did ("" when none had published)."""
        if not self.unreported_locks:
            return ""
        # "had": "CPU 1 107 of 295,291" read as one run of numbers.
        parts = [f"CPU {c} had {f[1]:,} of {f[0]:,}" for c, f in sorted(self.unreported_locks.items())]
        return (f"; partial figures, as last published in shared memory by {words.cpus(sorted(self.unreported_locks))}"
                f", which returned none: {', '.join(parts)} contended")

    def calls(self, name: str) -> int:
        """The calls of injected bug ``name`` over every CPU: ``bug_calls``, plus those the CPUs
        that returned no result had counted in the stress segment (``unreported_bug_calls``)."""
        return self.bug_calls.get(name, 0) + sum(c.get(name, 0) for c in self.unreported_bug_calls.values())

    def unreached(self) -> list[str]:
        """The injected bugs whose code never ran in this run, on any CPU: a CPU that returned no
        result counts, by its calls in the stress segment, which are counted before the bug's code
        runs. None when such a CPU's calls were not read (it may have run the bug) or when no
        operation completed, which the report says already. (Until 2026-11 a run with any CPU
        that returned no result named no bug here.)"""
        if any(c not in self.unreported_bug_calls for c in self.unreported):
            return []
        if not sum(self.ops.values()) + sum(self.unreported_ops.values()):
            return []
        return [name for name in self.config.inject if not self.calls(name)]

    def no_result(self) -> str:
        """"CPU n returned no result (why)" for the CPUs in ``unreported``, grouped by why; ""
        when every CPU returned one."""
        died = [c for c in self.unreported if c not in self.lost_results]
        lost = [c for c in self.unreported if c in self.lost_results]
        parts = []
        if died:
            parts.append(f"CPU {', '.join(map(str, died))} returned no result (its process died)")
        if lost:
            parts.append(f"CPU {', '.join(map(str, lost))} returned no result (its process exited normally, "
                         "but the result did not reach the parent)")
        return "; ".join(parts)

    def unreplayable(self) -> str:
        """Why this deterministic run's schedule cannot replay it, "" if it can: a replay of an
        empty schedule, or of one missing a dead CPU's switches, follows another interleaving
        and says DIVERGED, as it would anyway for a kill from outside (no schedule replays that)."""
        if not self.steps:
            return "the run took no step, so it has no schedule to follow"
        if self.unreported:
            return f"{self.no_result()}, so the switches it made are lost and a replay could not follow the run"
        return ""

    def marked_interrupted(self, not_done: tuple[str, ...] = (), by: str = "") -> "StressReport":
        """This report with Ctrl-C or SIGTERM noted: ``interrupted``, and ``ended`` "interrupted"
        where it said the run reached its end ("budget", "time"); a finding, an abort, a
        timeout or its stop flag ("stopped") keep their end, as they do when the signal stops
        the CPUs. ``not_done`` is
        added to what was left undone; ``by`` names the signal, unless one was named before."""
        ended = "interrupted" if self.ended in ("budget", "time") else self.ended
        return replace(self, ended=ended, interrupted=True, not_done=self.not_done + not_done,
                       interrupted_by=self.interrupted_by or by)

    @property
    def cut_short(self) -> bool:
        """Stopped before its budget or time by a signal or by its stop flag from outside (ended
        "stopped"): its length did not end it, so more --seconds or --steps is no advice for it."""
        return self.interrupted or self.ended == "stopped"

    @property
    def ok(self) -> bool:
        return not self.findings

    def first(self) -> Finding | None:
        return self.findings[0] if self.findings else None

    def checkers_fired(self) -> set[str]:
        return {f.checker for f in self.findings}

    def findings_text(self) -> str:
        return "\n".join(f.text() for f in self.findings)

    def idle_operations(self) -> int:
        """The operations that found nothing to do (stress.ops): a `vcpu` that found the run
        queue empty (``vcpu-idle``) and no finished guest to rebuild (a ``relaunch``, made only
        then), and a `guest-tables` on a CPU that owns no guest realm (``guest-tables-idle``)."""
        c = self.counts
        return c.get("vcpu-idle", 0) - c.get("relaunch", 0) + c.get("guest-tables-idle", 0)

    def summary(self) -> str:
        cfg = self.config
        mode = "free-running" if not cfg.deterministic else f"deterministic ({cfg.schedule})"
        ops = sum(self.ops.values())
        line = f"stress {cfg.workload}: {cfg.cpus} CPUs, {mode}, seed {cfg.seed}; {_count(ops, 'operation')}"
        if self.unreported:
            # As the lock line: a CPU that returned no result took its count with it, and "0
            # operations" of a run whose CPUs were all terminated read as if they did nothing.
            # Its total is still in the stress segment, and is said beside.
            line += " (over the CPUs that returned a result"
            if self.unreported_ops:
                # The CPUs that added to "N more" are named beside it, those that counted 0 apart:
                # named all together, a CPU that had counted nothing read as one that added some.
                counted = sorted(c for c, n in self.unreported_ops.items() if n)
                nothing = sorted(c for c, n in self.unreported_ops.items() if not n)
                if counted:
                    line += (f"; {sum(self.unreported_ops.values()):,} more counted in shared memory by "
                             f"{words.cpus(counted)}, which returned none")
                    if nothing:
                        line += f"; {words.cpus(nothing)}, which returned none too, had counted none"
                else:
                    # "0 more counted by" read as if those CPUs had added something.
                    line += f"; {words.cpus(nothing)}, which returned none, had counted none in shared memory"
            line += ")"
        idle = self.idle_operations()
        if idle:
            # Operations that found nothing to do are cheap, so on more CPUs than the guests
            # give work to they are most of the count (`running`, 16 CPUs, 5 s: 857,819
            # operations, 775 REC entries), which the total alone passed off as work.
            line += (f" ({idle:,} of them idle: an empty run queue and no guest to rebuild, or no guest realm "
                     "of its own)")
        line += f" in {self.elapsed_s:.1f} s"
        if self.startup_s is not None:
            line += f" ({self.startup_s:.1f} s of it start-up)"
        if cfg.deterministic:
            line += f"; {_count(self.steps, 'step')}"
            if self.ended == "budget" and self.steps > cfg.steps:
                # The budget is where the run starts to end, not a bound: the operations under
                # way finish (their schedule points count on) and each CPU takes two steps to
                # stop. Said here, so that 20,088 steps of a 20,000-step run read as intended.
                line += f" (budget {cfg.steps:,}: {self.steps - cfg.steps:,} to finish the operations under way)"
            line += (f", {_count(self.switches, 'switch', 'switches')} "
                     f"({_count(self.preemptions, 'preemption')})")
        if cfg.inject:
            line += f"; injected: {', '.join(cfg.inject)}"
        line += f"; checkers: {', '.join(cfg.checkers) or 'none'}"
        if self.quiescent_checks:
            line += f"; {_count(self.quiescent_checks, 'quiescent invariant check')}"
        line += f"; ended: {self.ended}"
        if self.interrupted and self.ended != "interrupted":
            # A finding, an abort or a timeout keeps its end when a signal also came; without
            # this the text never said the run was interrupted, where the JSON did.
            line += f"; interrupted ({self.interrupted_by or 'Ctrl-C or SIGTERM'})"
        elif self.ended == "interrupted" and self.interrupted_by:
            # Which signal, as `rmm-mp run`'s header names it: "ended: interrupted" alone left the
            # reader of a run stopped by a script's SIGTERM (or a `timeout`) to guess.
            line += f" ({self.interrupted_by})"
        return line

    def text(self) -> str:
        lines = _phrase_lines(self.summary())
        # After the summary, as `rmm-mp run` puts its WARNING lines under its header: before, a
        # CPU's failed close was on stderr only (its traceback, from its process), so a report
        # or a JSON read later never showed it.
        # Wrapped as `rmm-mp run` wraps them (describe.wrapped: 118 terminal columns, a wide
        # character counting two, later lines indented by 4, broken at spaces): textwrap counted
        # characters, and a warning naming a CJK path ran past the width. Other whitespace is a
        # space, as textwrap read it.
        lines.extend(line for w in self.warnings() for line in wrapped(f"WARNING: {w}"))
        if self.locks or self.unreported_locks:
            # Before the verdict: the verdict ends the report (the line a script reads last, and
            # the one interrupts.give holds back against a signal as it appears).
            lines.append(self.lock_contention())
        # The verdict ends the report when there is no finding (the line a script reads last, and
        # the one interrupts.give holds back), after the lines on what was not done and on the
        # injected bugs: they followed it, so an interrupted run's last line was one of them, or
        # a bare "no findings" with exit status 1. A finding's text follows its own count.
        verdict: list[str] = []
        cut = (f"the run was interrupted ({self.interrupted_by or 'Ctrl-C or SIGTERM'})" if self.interrupted else
               "the run was stopped from outside (its stop flag)" if self.ended == "stopped" else "")
        if self.ok and not sum(self.ops.values()):
            # As pytest says when it collected nothing: a pass that tested nothing is not one.
            verdict.append("no findings, but no operation completed" + (f" before {cut}" if cut else "")
                           + ": nothing was tested"
                           + ("" if self.cut_short else " (give the run more --seconds or --steps)"))
        elif self.ok and self.ended == "stopped" and not self.interrupted:
            # Its stop flag, raised from outside, ended it before its budget or time: a bare "no
            # findings" read as a clean pass of the whole run asked for (exit status 1, as cli says).
            verdict.append("no findings, but the run was stopped from outside (its stop flag) before its "
                           + ("step budget" if self.config.deterministic else "time") + " was up: no pass")
        elif self.ok and self.interrupted:
            verdict.append(f"no findings, but {cut} before its end: no pass")
        elif self.ok:
            verdict.append("no findings")
        else:
            # "rule 1" means nothing to a reader who has not read the rules: say where they are.
            rules = any(f.checker == "lockdep" and f.rule.startswith("rule") for f in self.findings)
            verdict.append(f"{len(self.findings)} finding(s)"
                           + (" (lockdep's rules are numbered as in docs/locking.md):" if rules else ":"))
            verdict.append(self.findings_text())
            lines.extend(verdict)
        lines.extend(f"not done: {what}" for what in self.not_done)
        from rmm_mp.stress.bugs import BUGS
        for name in self.unreached():
            # "no findings" with the bug listed as injected read as the bug not being caught,
            # where the workload never called the code the bug replaces.
            bug = BUGS[name]
            if bug.workload != self.config.workload:
                hint = f"; its own workload is {bug.workload} (`rmm-mp stress --inject {name}`)"
            elif self.ended in ("finding", "aborted"):
                # A finding (another bug's) stops every CPU, so a larger budget would end at
                # the same finding again: the bug has to run without the one found first.
                hint = (f"; the run ended at a finding before it got there (`rmm-mp stress --inject {name}` "
                        "runs it alone)")
            elif self.cut_short:
                hint = ""
            else:
                hint = "; more --steps or --seconds may reach it"
            lines.append(f"injected {name} never ran: this run made no call of {bug.target_text()}, so it "
                         f"tested nothing of the bug{hint}")
        if self.ok:
            for name in self.config.inject:
                bug = BUGS[name]
                # "no findings" read as the bug not being caught, where the checker that
                # catches it was not on (`--inject rec-create-no-rd-lock --checkers lockdep`).
                # A bug more than one checker catches was tested if any of them was on.
                if self.calls(name) and not set(bug.catchers()) & set(self.config.checkers):
                    caught = [f"{bug.checker} ({bug.rule})", *(f"{c} ({r})" for c, r in bug.also)]
                    which = (f"the checker that catches it, {caught[0]}, was" if len(caught) == 1 else
                             f"the checkers that catch it, {', '.join(caught[:-1])} and {caught[-1]}, were")
                    lines.append(f"injected {name} ran, but {which} off "
                                 f"(checkers: {', '.join(self.config.checkers) or 'none'}), "
                                 "so \"no findings\" says nothing of the bug")
        if self.ok:
            lines.extend(verdict)
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "ok": self.ok,
            "workload": cfg.workload, "cpus": cfg.cpus, "seed": cfg.seed, "schedule": cfg.schedule,
            # A free-running run has no step budget (its length is in seconds).
            "steps_budget": cfg.steps if cfg.deterministic else None,
            # Which guest population ran (a replay of a file saved before population 2 runs 1).
            "population": cfg.population,
            "inject": list(cfg.inject), "checkers": list(cfg.checkers),
            # ``ended`` keeps a finding's "finding" when a signal also came: this says it came.
            "ended": self.ended, "interrupted": self.interrupted, "elapsed_s": round(self.elapsed_s, 3),
            "startup_s": None if self.startup_s is None else round(self.startup_s, 3),
            "operations": self.ops, "operations_unreported": self.unreported_ops,
            "counts_unreported": self.unreported_counts,
            "steps": self.steps, "switches": self.switches, "preemptions": self.preemptions,
            "quiescent_checks": self.quiescent_checks, "counts": self.counts,
            "cpu_seconds": round(self.cpu_seconds, 3),
            "findings": [f.to_json() for f in self.findings],
            "lock_edges": [e.to_json() for e in self.edges],
            "not_done": list(self.not_done),
            # Over the CPUs that returned a result: 0 for a bug whose code none of them reached (a CPU
            # that returned none may have: bug_calls_unreported).
            "bug_calls": {name: self.bug_calls.get(name, 0) for name in cfg.inject},
            "locks": self._locks_json(),
            # Per CPU that returned no result: what it had published, partial (unreported_locks' docstring).
            "locks_unreported": {str(c): {**self._figures(*f), "partial": True}
                                 for c, f in sorted(self.unreported_locks.items())},
            "bug_calls_unreported": {str(c): calls for c, calls in sorted(self.unreported_bug_calls.items())},
            "warnings": self.warnings(),
        }

    def _locks_json(self) -> dict[str, Any] | None:
        """Lock acquisitions in total and per CPU (keys are CPU numbers as strings, as JSON
        has them); None when no CPU returned its figures. Waits are null in a deterministic
        run, where waiting takes no real time."""
        if not self.locks:
            return None
        figures = self._figures
        v = self.locks.values()
        total = figures(sum(f[0] for f in v), sum(f[1] for f in v), sum(f[2] for f in v), max(f[3] for f in v))
        return {**total, "per_cpu": {str(c): figures(*f) for c, f in self.locks.items()}}

    def _figures(self, acquired: int, contended: int, wait_ns: int, max_wait_ns: int) -> dict[str, Any]:
        """One CPU's (or the total's) lock figures as the JSON has them: waits null in a
        deterministic run."""
        timed = not self.config.deterministic
        return {"acquired": acquired, "contended": contended, "wait_ns": wait_ns if timed else None,
                "max_wait_ns": max_wait_ns if timed else None}

    def replay_command(self, schedule_file: str) -> str:
        """The command that replays this run, quoted for a POSIX shell: a path with a space or
        a quote in it must paste as one argument, and one with a control character must not act
        on the terminal (printable.shell_word)."""
        return f"rmm-mp stress --replay {shell_word(schedule_file)}"


def _phrase_lines(line: str) -> list[str]:
    """The summary ``line`` in lines of at most WIDTH terminal columns, as `rmm-mp run` and
    `workloads show` keep theirs: broken after a phrase's "; ", later lines indented by 4, and a
    phrase wider than a line broken at its spaces (describe.wrapped). Read together, the lines
    give ``line``. On one line it ran to 187-234 columns in real runs."""
    phrases = line.split("; ")
    out: list[str] = []
    current = ""
    for i, phrase in enumerate(phrases):
        piece = phrase + (";" if i < len(phrases) - 1 else "")
        if not current:
            current = piece
        elif columns(current) + 1 + columns(piece) <= WIDTH:
            current += " " + piece
        else:
            out.append(current)
            current = "    " + piece
    out.append(current)
    return [part for one in out
            for part in (wrapped(one.lstrip(" "), "    ", one[:len(one) - len(one.lstrip(" "))])
                         if columns(one) > WIDTH else [one])]
