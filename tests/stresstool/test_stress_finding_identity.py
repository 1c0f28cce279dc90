"""The identity of a stuck call, a dead CPU, a crash and an exception a CPU ended on: findings with
no site, whose key (checker, rule, site) was the same for every one of a rule, so a shrinking could
keep another stuck call (another dead CPU, ...) than the one it was shrinking. (Deadlocks, leaked
locks and lockdep cycles: test_stress_deadlock_identity.py.)"""

from __future__ import annotations

from typing import Any

import pytest

from rmm_mp import Machine
from rmm_mp.cpu_outcome import CpuFailure
from rmm_mp.stress import StressConfig
from rmm_mp.stress import ending
from rmm_mp.stress import shrink as shrinking
from rmm_mp.stress import worker
from rmm_mp.stress.findings import Finding, failure_kind, raised_in
from rmm_mp.stress.report import StressReport
from rmm_mp.stress.shrink import ShrinkResult, shrink
from rmm_mp.stress import watchdog
from rmm_mp.stress.watchdog import CpuSnapshot, Watchdog, call_identity, cycle_identity

RD, RTT, DATA = 0x8008F000, 0x80090000, 0x804DF000
CFG = StressConfig(workload="tables", seed=0, schedule="random", steps=3000, seconds=120, checkers=("watchdog",))


def _snap(cpu: int, call: str, holds: tuple[int, ...], waits: int = -1) -> CpuSnapshot:
    names = {RD: "RD", RTT: "RTT", DATA: "DATA"}
    states = tuple((pa, names[pa]) for pa in holds + ((waits,) if waits >= 0 else ()))
    return CpuSnapshot(cpu, "running", call, waits, holds, (), states)


def test_a_stuck_calls_identity_is_its_call_and_the_kinds_of_lock() -> None:
    """The call without its arguments, what it waits for and the kinds it holds, each once and
    sorted: the same on another CPU, at other addresses, with its locks taken in another order."""
    one = call_identity(_snap(0, "RMI_RTT_CREATE(0x8008f000, 0x80091000, 0x0, 0x1)", (RTT, RD)))
    assert one == "RMI_RTT_CREATE holding RD, RTT"
    assert call_identity(_snap(1, "RMI_RTT_CREATE(0x8008f000, 0x80095000, 0x200000, 0x2)", (RD, RTT, RTT))) == one
    assert call_identity(_snap(0, "RMI_RTT_CREATE(0x8008f000, 0x80091000, 0x0, 0x1)", (RD,))) != one
    assert call_identity(_snap(0, "RMI_DATA_DESTROY(0x8008f000, 0x402db000)", (RD,), RTT)) == \
        "RMI_DATA_DESTROY waits for RTT holding RD"
    assert call_identity(_snap(0, "", ())) == "between calls"


def test_two_stuck_calls_holding_the_same_kinds_of_lock_are_told_apart_by_their_realm() -> None:
    """Two RMI_RTT_CREATEs holding an RD and an RTT, one in realm T, one in realm N: with the
    population's roles (population.roles: its realms' RDs and root tables, whose PAs the build
    makes the same on every run of a configuration), each names its realm, its RD and a root
    table by whose they are; a run-made RTT stays a kind. Both had the one identity "RMI_RTT_CREATE
    holding RD, RTT", and a shrinking of one kept the other."""
    T_RD, N_RD, N_ROOT = RD, 0x80200000, 0x80201000
    roles = {T_RD: "realm T", N_RD: "realm N", N_ROOT: "realm N"}

    def snap(rd: int, holds: tuple[int, ...], waits: int = -1) -> CpuSnapshot:
        names = {T_RD: "RD", N_RD: "RD", N_ROOT: "RTT", RTT: "RTT"}
        states = tuple((pa, names[pa]) for pa in holds + ((waits,) if waits >= 0 else ()))
        return CpuSnapshot(0, "running", f"RMI_RTT_CREATE({rd:#x}, 0x80091000, 0x0, 0x1)", waits, holds, (), states)
    in_t, in_n = snap(T_RD, (T_RD, RTT)), snap(N_RD, (N_RD, RTT))
    assert call_identity(in_t, roles) == "RMI_RTT_CREATE on realm T holding RD of realm T, RTT"
    assert call_identity(in_t, roles) != call_identity(in_n, roles)
    assert call_identity(snap(N_RD, (N_RD,), N_ROOT), roles) == \
        "RMI_RTT_CREATE on realm N waits for RTT of realm N holding RD of realm N"
    # Without roles (a population of none of the stress tool's realms), as before.
    assert call_identity(in_t) == call_identity(in_n) == "RMI_RTT_CREATE holding RD, RTT"


def test_every_watchdog_finding_with_no_site_names_the_realms(monkeypatch: pytest.MonkeyPatch) -> None:
    """Deadlocks (deterministic: stuck_finding; free-running: the Watchdog's look), a leaked lock
    seen from its waiter and a dead CPU name the realm of the population's roles, as a stuck call
    does: the same deadlock (dead CPU) in realm T and in realm N were one problem to shrinking,
    as only the stuck-call identity had the roles. (Each assertion failed before: no realm named.)"""
    T_RD, N_RD = RD, 0x80200000
    labels = {T_RD: "realm T", N_RD: "realm N"}

    def pair(rd: int) -> list[CpuSnapshot]:
        """CPU 0 holds the RD and waits for CPU 1's RTT, CPU 1 the other way round."""
        states = ((rd, "RD"), (RTT, "RTT"))
        return [CpuSnapshot(0, "blocked", f"RMI_DATA_CREATE({rd:#x}, 0x804df000)", RTT, (rd,), (), states),
                CpuSnapshot(1, "blocked", f"RMI_DATA_DESTROY({rd:#x}, 0x0)", rd, (RTT,), (), states)]
    want = "RMI_DATA_CREATE on realm {0} waits for RTT and RMI_DATA_DESTROY on realm {0} waits for RD of realm {0}"
    assert cycle_identity(pair(T_RD), [0, 1], labels) == want.format("T")
    assert cycle_identity(pair(N_RD), [1, 0], labels) == want.format("N")
    with Machine.create("host", cpus=2) as m:
        dog = Watchdog(m, roles=labels)
        found = dog._finding(("deadlock", (0, 1), ()), pair(N_RD))
        assert found.identity == want.format("N"), found.identity
        leaked = dog._finding(("leaked-lock", (1,), ()), pair(T_RD))
        assert leaked.identity == "RMI_DATA_DESTROY on realm T waits for RD of realm T", leaked.identity
        snaps = pair(T_RD)
        monkeypatch.setattr(watchdog, "snapshots", lambda machine, seg: snaps)
        monkeypatch.setattr(watchdog, "wait_cycle", lambda machine, s: [0, 1])
        stuck = watchdog.stuck_finding(m, None, 7, labels)  # type: ignore[arg-type]
        assert stuck.identity == want.format("T"), stuck.identity
        monkeypatch.setattr(ending, "snapshots", lambda machine, dead: snaps)
        died = ending._failure(CpuFailure(1, "was killed by SIGKILL", "", ()), m, {1}, (), labels)
    assert died.identity == "was killed by SIGKILL in RMI_DATA_DESTROY on realm T waits for RD of realm T holding RTT", \
        died.identity


def test_the_populations_roles_are_the_same_on_every_build() -> None:
    """The roles name PAs the population's build places the same way each time (a replay's
    machine is built anew): T's and N's RD and root table."""
    from rmm_mp.stress.population import build, roles
    found = []
    for _ in range(2):
        with Machine.create("host", cpus=2) as m:
            pop = build(m, ("smp-boot",))
            found.append(roles(pop))
    assert found[0] == found[1]
    assert found[0][pop.table_realm.rd] == "realm T" and found[0][pop.new_realm.rtt_base] == "realm N"


def test_the_populations_roles_name_no_guest() -> None:
    """A guest is destroyed and built anew when it finishes (stress.ops' relaunch): its RD and
    root tables go back to the allocator and may become another realm's granules, and whether
    a stuck call in it is named by it would hang on whether it had been relaunched yet, which a
    shrunk run's replay need not share. The roles named each guest of the build ("guest 0
    (smp-boot)") for the whole run."""
    from rmm_mp.stress.population import build, roles
    with Machine.create("host", cpus=2) as m:
        pop = build(m, ("smp-boot",))
        named = roles(pop)
    guest = pop.guests[0][2]
    assert guest.rd not in named and guest.rtt_base not in named, named
    assert set(named.values()) == {"realm T", "realm N"}, named


def test_the_watchdogs_stuck_call_has_the_identity() -> None:
    """Free-running: the watchdog's stuck-call finding carries call_identity of the stuck CPU
    (CPU time stubbed: 0 s at the first look, 20 s at the second, in the same call)."""
    with Machine.create("host", cpus=2) as m:
        dog = Watchdog(m, cpu_bound_s=10.0)
        times = iter([0.0, 0.0, 20.0, 0.0])
        dog._cpu_time = lambda cpu, pid: next(times)  # type: ignore[method-assign]
        snaps = [_snap(0, "RMI_RTT_CREATE(0x8008f000, 0x80091000, 0x0, 0x1)", (RD, RTT)), _snap(1, "", ())]
        assert dog._stuck_call(snaps) is None
        found = dog._stuck_call(snaps)
    assert found is not None and found.rule == "stuck-call", found
    assert found.key() == ("watchdog", "stuck-call", "RMI_RTT_CREATE holding RD, RTT")


def test_a_dead_cpus_identity_is_how_it_failed_where_and_in_which_call() -> None:
    """cpu-died: the kind of failure (an exception's type, not its text), the call and locks of
    the CPU's snapshot, and the innermost frame of its traceback, without line number or the
    checkout's directory; the finding's text is as it was."""
    tb = ('Traceback (most recent call last):\n  File "/work/x/rmm_mp/stress/worker.py", line 90, in stress_cpu\n'
          '  File "/work/x/rmm_mp/rmm/s2tt.py", line 298, in walk\nValueError: bad level 0x8008f000\n')
    moved = tb.replace("/work/x/", "/home/y/").replace("298", "301").replace("0x8008f000", "0x80091000")
    assert raised_in(tb) == raised_in(moved) == "rmm_mp/rmm/s2tt.py (walk)"
    assert failure_kind("raised ValueError: bad level 0x8008f000") == "raised ValueError"
    # An exception the parent raised reading the CPU's result: its type stays, in a closed bracket.
    assert failure_kind("sent a result that the parent could not read (UnpicklingError: invalid load key, "
                        "'\\x00' at 0x7f3a2c1d5e50)") == "sent a result that the parent could not read (UnpicklingError)"
    assert failure_kind("did not stop within 2 s of being asked and was terminated") == \
        failure_kind("did not stop within 12 s of being asked and was terminated")
    with Machine.create("host", cpus=2) as m:
        died = ending._failure(CpuFailure(1, "raised ValueError: bad level 0x8008f000", tb, ()), m, {1})
        killed = ending._failure(CpuFailure(0, "was killed by SIGKILL", "", ()), m, {0})
        again = ending._failure(CpuFailure(0, "raised ValueError: bad level 0x80091000", moved, ()), m, {0})
    assert died.identity == "raised ValueError in between calls at rmm_mp/rmm/s2tt.py (walk)", died.identity
    assert died.key() == again.key() != killed.key()
    assert killed.identity == "was killed by SIGKILL in between calls"
    assert died.identity not in died.text()


def test_an_exception_a_cpu_ended_on_is_known_by_where_it_was_raised() -> None:
    """functional: RunQueueError (HostError, AllocatorError): its identity is where it was
    raised, line numbers left out; two of one type raised in two places are two problems."""
    from rmm_mp.host.runqueue import RunQueueError

    def here() -> None:
        raise RunQueueError("one")

    def there() -> None:
        raise RunQueueError("two")

    def finding(raiser: Any) -> Finding:
        try:
            raiser()
        except RunQueueError as exc:
            return worker.exception_finding(exc, 0, 3)
        raise AssertionError("not raised")
    a, b = finding(here), finding(there)
    assert ":? (here)" in a.identity, a.identity
    assert a.key() != b.key()


def test_two_errors_raised_at_one_line_are_known_by_what_their_text_says_but_numbers() -> None:
    """A RunQueueError (AllocatorError) carries no status: two raised at one line (a vCPU found
    QUEUED, one found OFF) are told apart by their text with its numbers and addresses masked
    (another vCPU, slot or PA on a shrunk run's replay). Their identity was the line alone."""
    from rmm_mp.host.nsalloc import AllocatorError
    from rmm_mp.host.runqueue import RunQueueError

    def leave(vcpu: int, state: str) -> None:
        raise RunQueueError(f"vCPU {vcpu} is {state}: only the CPU running it may put it back")

    def free(pa: int, count: int) -> None:
        raise AllocatorError(f"free(pa={pa:#x}, count={count}): granule {pa + 0x1000:#x} is not allocated")

    def finding(raiser: Any, *args: Any) -> Finding:
        try:
            raiser(*args)
        except (RunQueueError, AllocatorError) as exc:
            return worker.exception_finding(exc, 0, 3)
        raise AssertionError("not raised")
    queued, off = finding(leave, 4096, "QUEUED"), finding(leave, 4096, "OFF")
    assert queued.key() != off.key() == finding(leave, 8193, "OFF").key(), (queued.identity, off.identity)
    assert queued.identity.endswith("(vCPU ? is QUEUED: only the CPU running it may put it back)"), queued.identity
    assert finding(free, 0x80000000, 1).key() == finding(free, 0x80123000, 2).key()
    assert queued.identity not in queued.text()
    # A machine's name in the text (its pid and random hex differ on every run) is one value:
    # masking numbers first left 'rmm-mp-?-0a1b2c3d', another identity on a replay.
    names = [finding(lambda name: leave(1, f"OFF on {name}"), f"rmm-mp-{pid}-{hexa}")
             for pid, hexa in ((1234, "0a1b2c3d"), (99, "ffee0011"))]
    assert names[0].key() == names[1].key(), (names[0].identity, names[1].identity)


def _stuck(call: str, holds: tuple[int, ...], cpu: int, step: int) -> Finding:
    snap = _snap(cpu, call, holds)
    return Finding("watchdog", "stuck-call", f"CPU {cpu} used 21 s of CPU time without reaching a schedule point",
                   cpu, call, "", (snap.describe(),), step, identity=call_identity(snap))


def _report(finding: Finding, preemptions: int, switches: int) -> StressReport:
    assert finding.step is not None
    schedule = tuple((i * 10, i % 2) for i in range(switches + 1))
    return StressReport(CFG, (finding,), "aborted", 0.0, {}, steps=finding.step, switches=switches,
                        preemptions=preemptions, schedule=schedule)


def _shrunk_past(monkeypatch: pytest.MonkeyPatch, original: StressReport, other: StressReport,
                 same: StressReport) -> tuple[list[str], ShrinkResult]:
    """Shrink ``original`` with its replays stubbed: first ``other`` (another problem of the same
    rule), then ``same`` (the same problem, fewer preemptions), then the original again; the
    verdicts of the attempts, and the result."""
    replies = iter([other, same] + [original] * 40)
    monkeypatch.setattr(shrinking, "run", lambda cfg, **kwargs: next(replies))
    verdicts: list[str] = []
    result = shrink(original, max_attempts=4, on_attempt=lambda n, r, verdict: verdicts.append(verdict))
    return verdicts, result


def test_shrinking_a_stuck_call_never_keeps_another(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replays stubbed with made-up reports: shrinking a stuck RTT_CREATE refuses a candidate
    stuck in DATA_DESTROY (though it has no preemption at all), and keeps the same stuck call on
    the other CPU at other addresses with fewer preemptions. Every stuck call had the key
    (watchdog, stuck-call, ""), so the other was kept."""
    original = _report(_stuck("RMI_RTT_CREATE(0x8008f000, 0x80091000, 0x0, 0x1)", (RD, RTT), 0, 500), 30, 40)
    other = _report(_stuck("RMI_DATA_DESTROY(0x8008f000, 0x402db000)", (RD, RTT), 1, 100), 0, 1)
    same = _report(_stuck("RMI_RTT_CREATE(0x8008f000, 0x80095000, 0x200000, 0x2)", (RTT, RD), 1, 400), 10, 20)
    verdicts, result = _shrunk_past(monkeypatch, original, other, same)
    assert verdicts[:2] == ["not kept: another stuck call (RMI_DATA_DESTROY holding RD, RTT) than the one being "
                            "shrunk (RMI_RTT_CREATE holding RD, RTT)", "kept"], verdicts
    assert result.report is same


@pytest.mark.multiprocess
def test_a_lock_leaked_by_a_call_is_known_by_that_call() -> None:
    """map-unprotected-leaks-lock (seed 2, watchdog only): the call that returns holding a lock
    is caught as it returns, so its identity names that call and the classes it left held, not
    a call that waits for the lock later. It had none: every leaked lock found at a call's return
    had the key (watchdog, leaked-lock, "")."""
    from rmm_mp.stress import run
    cfg = StressConfig(workload="tables", cpus=2, seed=2, schedule="random", steps=3000, seconds=120,
                       inject=("map-unprotected-leaks-lock",), checkers=("watchdog",), quiescent_every=0)
    first = run(cfg).first()
    assert first is not None and first.rule == "leaked-lock", first
    # On realm T: the table realm's RD is its first argument (population.roles); the L3 table is no root.
    assert first.key() == ("watchdog", "leaked-lock", "RMI_RTT_MAP_UNPROTECTED on realm T returned holding RTT[L3]")
    assert first.identity not in first.text()


def test_a_wrong_status_is_known_by_its_call_and_status() -> None:
    """functional: status (an RMI answered with a status a correct RMM cannot give there): its
    identity is the command and the status returned, without arguments or the RTT level of an
    RMI_ERROR_RTT. Every such finding had the key (functional, status, ""), so shrinking one
    command's wrong status kept a candidate whose first finding was another command's."""
    from types import SimpleNamespace

    from rmm_mp.abi.rmi import RmiFid as F
    from rmm_mp.stress.ops import Operations, Unexpected

    def finding(fid: int, x0: int, *args: int) -> Finding:
        fake = SimpleNamespace(smc=lambda fid, *a: (x0,), cpu=SimpleNamespace(id=1))
        try:
            Operations.call(fake, fid, {0}, *args)  # type: ignore[arg-type]
        except Unexpected as exc:
            return exc.finding
        raise AssertionError("no finding")
    data = finding(F.RMI_DATA_CREATE, 4 | 2 << 8, RD, DATA, 0x1000, 0x80000000, 0)
    assert data.key() == ("functional", "status", "RMI_DATA_CREATE returned RMI_ERROR_RTT"), data.key()
    assert finding(F.RMI_DATA_CREATE, 4 | 3 << 8, RD, DATA + 0x1000, 0x2000, 0x80001000, 0).key() == data.key()
    assert finding(F.RMI_RTT_CREATE, 4 | 2 << 8, RD, RTT, 0x0, 2).key() != data.key()
    assert finding(F.RMI_DATA_CREATE, 1, RD, DATA, 0x1000, 0x80000000, 0).key() != data.key()
    assert data.identity not in data.text()
    # An X0 that is no RMI 1.0 return code is named whole: RMI_SUCCESS with an index or a bit
    # past 15 was named "returned RMI_SUCCESS", as if the command had succeeded.
    for x0 in (0x100, 1 << 16, 0x7):
        assert finding(F.RMI_DATA_CREATE, x0, RD, DATA).identity == f"RMI_DATA_CREATE returned X0 {x0:#x}"
    # So is an index RMI 1.0 does not give its status: RMI_ERROR_REALM's is 0 or 1, RMI_ERROR_RTT's a
    # level 0 to 3 (no LPA2). Named by the status alone, such an X0 read as a correct one.
    assert finding(F.RMI_DATA_CREATE, 2 | 1 << 8, RD, DATA).identity == "RMI_DATA_CREATE returned RMI_ERROR_REALM"
    for x0 in (2 | 2 << 8, 4 | 4 << 8, 4 | 0xFF << 8):
        assert finding(F.RMI_DATA_CREATE, x0, RD, DATA).identity == f"RMI_DATA_CREATE returned X0 {x0:#x}"


def _invariant(machine: Machine, idx: int, state: int, rule: str, detail: str, step: int) -> Finding:
    from rmm_mp.check import Violation
    from rmm_mp.stress.findings import AT_QUIESCENT, invariant_finding
    machine.granule_table(0).set_state(idx, state)
    pa = machine.dram_base + idx * 0x1000
    return invariant_finding(Violation(rule, pa, detail, state), AT_QUIESCENT, step)


def test_a_broken_invariants_identity_is_the_state_the_check_saw() -> None:
    """The granule's state in a broken invariant's identity is the one the check's snapshot read
    (Violation.state), not one read from the machine afterwards: the identity read the machine
    again, after the check, where a pause that lapsed (the parent's check in a free-running run)
    let the CPUs change the state first (found in a read of the stop's diff)."""
    from rmm_mp.check import invariants
    from rmm_mp.rmm.granule_state import GranuleState as GS
    from rmm_mp.stress.findings import AT_QUIESCENT, invariant_finding
    with Machine.create("host", cpus=1) as m:
        table = m.granule_table(0)
        table.set_state(900, GS.DELEGATED)       # its PAS is still NS: the gpt rule breaks
        try:
            (violation,) = [v for v in invariants(m).violations if v.pa == m.dram_base + 900 * 0x1000]
            table.set_state(900, GS.RD)      # a CPU going on after the check
            found = invariant_finding(violation, AT_QUIESCENT)
        finally:
            table.set_state(900, GS.NS)
    assert violation.state == GS.DELEGATED
    assert found.identity == "gpt at DELEGATED granule", found.identity


def test_a_broken_invariant_is_known_by_its_rule_and_the_kind_of_granule(monkeypatch: pytest.MonkeyPatch) -> None:
    """A broken invariant's identity is its rule and the kind of granule it broke at (state, and
    an RTT's level if the violation names it), not the address or the counts; shrinking a level 2
    RTT's refcount refuses a candidate whose first violation is a level 3 RTT's (with no
    preemption at all) and keeps the level 2 one at another address. Every violation of a rule
    had the key (invariants, rule, ""), so the other granule's was kept."""
    from rmm_mp.rmm.granule_state import GranuleState as GS
    with Machine.create("host", cpus=2) as m:
        l2 = _invariant(m, 700, GS.RTT, "rtt-refcount", "level 2 RTT has refcount 2 but 1 live entry", 500)
        l2b = _invariant(m, 710, GS.RTT, "rtt-refcount", "level 2 RTT has refcount 5 but 4 live entries", 400)
        l3 = _invariant(m, 720, GS.RTT, "rtt-refcount", "level 3 RTT has refcount 2 but 1 live entry", 100)
        tree = _invariant(m, 730, GS.RTT, "rtt-tree", "RTT granule is referenced 0 times, expected once", 100)
        ns = _invariant(m, 740, GS.NS, "refcount", "NS granule has refcount 1, expected 0", 100)
    assert l2.identity == "rtt-refcount at RTT granule (level 2)", l2.identity
    assert l2.key() == l2b.key() != l3.key()
    assert tree.identity == "rtt-tree at RTT granule" and ns.identity == "refcount at NS granule"
    assert l2.identity not in l2.text()
    original, other, same = _report(l2, 30, 40), _report(l3, 0, 1), _report(l2b, 10, 20)
    verdicts, result = _shrunk_past(monkeypatch, original, other, same)
    assert verdicts[:2] == ["not kept: another broken invariant (rtt-refcount at RTT granule (level 3)) than the "
                            "one being shrunk (rtt-refcount at RTT granule (level 2))", "kept"], verdicts
    assert result.report is same


def test_a_failed_vcpu_and_a_failed_guest_are_known_by_what_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    """functional: vcpu (a vCPU the run loop failed) is known by the run loop's error without its
    realm slot, REC index, addresses and syndrome; functional: realm (a guest that ended failing)
    by the guest, how it ended and its result code. Both had no identity: every failed vCPU (every
    failed guest) had the key (functional, vcpu, ""), so shrinking one kept another."""
    from types import SimpleNamespace

    from rmm_mp.stress import ops
    from rmm_mp.stress.ops import Operations, Unexpected

    def vcpu(error: str, rec: int) -> Finding:
        loop = SimpleNamespace(step=lambda v: None, errors=[error])
        queue = SimpleNamespace(take=lambda cpu: 3, vcpu_pages=lambda v: (rec, 0x80001000))
        fake = SimpleNamespace(queue=queue, loop=loop, errors_seen=0, count=lambda what: None, cpu=SimpleNamespace(id=0))
        try:
            Operations.vcpu(fake, None)  # type: ignore[arg-type]
        except Unexpected as exc:
            return exc.finding
        raise AssertionError("no finding")
    abort = "SYNC exit with ESR {} (EC 0x24) at IPA {}: not a fault the host resolves"
    one = vcpu("realm slot 0 REC 1: " + abort.format("0x92000046", "0x1000"), 0x80095000)
    assert one.key() == ("functional", "vcpu", "RMI_REC_ENTER: " + abort.format("?", "?")), one.key()
    assert vcpu("realm slot 2 REC 0: " + abort.format("0x92000047", "0x3000"), 0x80099000).key() == one.key()
    assert vcpu("realm slot 0 REC 1: exit reason 3 (SError or unknown): the host cannot continue the vCPU",
                0x80095000).key() != one.key()
    assert one.identity not in one.text()

    def realm(name: str, end: str, result: tuple[int, int], slot: int, reports: int = 1,
              cut_short: bool = False) -> Finding:
        status = SimpleNamespace(passed=False, end=end, result=result, vcpu_ends=("error",), reports=reports,
                                 report_cut_short=cut_short)
        monkeypatch.setattr(ops, "realm_status", lambda queue, slot: status)
        fake = SimpleNamespace(guests={slot: (name, SimpleNamespace(rd=RD + slot * 0x1000))},
                               queue=SimpleNamespace(realm_state=lambda slot: ops.DONE), cpu=SimpleNamespace(id=1))
        try:
            Operations._relaunch(fake)  # type: ignore[arg-type]
        except Unexpected as exc:
            return exc.finding
        raise AssertionError("no finding")
    failed = realm("memory", "SYSTEM_OFF", (3, 0x1000), 0)
    assert failed.key() == ("functional", "realm", "guest memory ended SYSTEM_OFF with result code 3"), failed.key()
    assert realm("memory", "SYSTEM_OFF", (3, 0x2000), 4).key() == failed.key()
    assert realm("psci", "SYSTEM_OFF", (3, 0x1000), 0).key() != failed.key()
    assert realm("memory", "SYSTEM_OFF", (5, 0x1000), 0).key() != failed.key()
    # A guest with no report, or whose last report was cut short, fails with its code still 0
    # (RealmStatus.passed): each its own problem, not one with a pass that failed otherwise.
    silent = realm("memory", "SYSTEM_OFF", (0, 0), 0, reports=0)
    cut = realm("memory", "SYSTEM_OFF", (0, 0), 0, cut_short=True)
    assert silent.identity == "guest memory ended SYSTEM_OFF with no report", silent.identity
    assert cut.identity == "guest memory ended SYSTEM_OFF with its last report cut short", cut.identity
    assert len({silent.key(), cut.key(), realm("memory", "SYSTEM_OFF", (0, 0), 0).key()}) == 3


def test_a_host_error_is_known_by_where_it_was_raised_and_the_status_it_carries() -> None:
    """functional: HostError from one line of the host: two different statuses returned there are
    two problems (the identity adds the command and status, an RMI_ERROR_RTT's level left out);
    the same status at another index is the same one. Its identity was the raise site alone."""
    from rmm_mp.abi.rmi import RmiFid as F
    from rmm_mp.host.realm import HostError

    def finding(x0: int) -> Finding:
        try:
            raise HostError(F.RMI_DATA_CREATE, (RD, DATA), x0, "expected RMI_SUCCESS")
        except HostError as exc:
            return worker.exception_finding(exc, 0, 3)
    rtt2, rtt3, inp = finding(4 | 2 << 8), finding(4 | 3 << 8), finding(1)
    assert rtt2.identity.endswith("(RMI_DATA_CREATE returned RMI_ERROR_RTT)"), rtt2.identity
    assert rtt2.key() == rtt3.key() != inp.key()
    assert rtt2.identity not in rtt2.text()
    assert finding(1 << 8).identity.endswith("(RMI_DATA_CREATE returned X0 0x100)"), finding(1 << 8).identity


def test_a_quiescent_checks_violations_are_all_at_its_step() -> None:
    """rtt-create-parent-released-early, seed 0: one quiescent check of a deterministic run finds
    two violations (a level 2 RTT's refcount, an RTT referenced by none). Their identities read
    each granule's state; read with the schedule's points on, each read was a step, so the second
    violation was reported one step after the first (2012 and 2013), a step the check never took,
    and the other CPU could run between the reads."""
    from rmm_mp.stress import run
    cfg = StressConfig(workload="rtts", cpus=2, seed=0, schedule="random", seconds=120,
                       inject=("rtt-create-parent-released-early",), checkers=("invariants",), quiescent_every=2000)
    found = [f for f in run(cfg).findings if f.details == ("at a quiescent point",)]
    assert len(found) >= 2, found
    assert len({f.step for f in found}) == 1, [f.text() for f in found]


def test_a_misplaced_entrys_identity_has_the_level_its_violation_names() -> None:
    """rtt-entry names its table's level as "a level-1 RTT": the identity took the level only from
    "level 1 RTT" (rtt-refcount's wording), so an ASSIGNED entry in a level 1 table and one in a
    level 0 table were one problem, though the violation names the level."""
    from rmm_mp.rmm.granule_state import GranuleState as GS
    with Machine.create("host", cpus=2) as m:
        l1 = _invariant(m, 700, GS.RTT, "rtt-entry", "entry for IPA 0x40000000 is ASSIGNED in a level-1 RTT, "
                                                     "which maps no blocks", 100)
        l0 = _invariant(m, 710, GS.RTT, "rtt-entry", "entry for IPA 0x0 is ASSIGNED in a level-0 RTT, "
                                                     "which maps no blocks", 100)
    assert l1.identity == "rtt-entry at RTT granule (level 1)", l1.identity
    assert l0.identity == "rtt-entry at RTT granule (level 0)", l0.identity


def test_a_failed_vcpus_identity_leaves_out_its_vcpu_address_and_syndrome() -> None:
    """functional: vcpu: the run loop's error without the vCPU's slot and REC, the IPA and the
    ESR it names; the kind of exit (the EC, a DFSC) stays."""
    from rmm_mp.stress.ops import vcpu_identity

    one = vcpu_identity("realm slot 3 REC 1: SYNC exit with ESR 0x92000046 (EC 0x24) at IPA 0x88000000: not a fault")
    other = vcpu_identity("realm slot 5 REC 0: SYNC exit with ESR 0x92000047 (EC 0x24) at IPA 0x88001000: not a fault")
    assert one == other == "RMI_REC_ENTER: SYNC exit with ESR ? (EC 0x24) at IPA ?: not a fault", one
    assert vcpu_identity("realm slot 3 REC 1: data abort at IPA 0x1000 with DFSC 0x21: not a translation") \
        != vcpu_identity("realm slot 3 REC 1: data abort at IPA 0x1000 with DFSC 0x22: not a translation")


def test_an_errors_text_masks_every_number_as_a_replay_reads_it() -> None:
    """worker.exception_finding masks numbers with findings.NUMBER, the pattern the replay's
    comparison reads them with (stress.schedule): a decimal fraction, hex written 0X and a grouped
    decimal are one number each, masked whole, a bare address too. Its own pattern left '1.25' as
    '?.25', '0X1F' whole and '1,024' as '?,?' (so 0.5 s and 1.25 s were two problems)."""
    from rmm_mp.stress.findings import masked_numbers
    assert masked_numbers("waited 1.25 s for 0X1F of 1,024 at 8008f000") == "waited ? s for ? of ? at ?"
    assert masked_numbers("vCPU -5 of x-5, 0x1000-0x2000, CPUs 1,2 in L3 of s2tt (RMI_ERROR_RTT)") == \
        "vCPU ? of x-?, ?-?, CPUs ?,? in L3 of s2tt (RMI_ERROR_RTT)"
    from rmm_mp.host.runqueue import RunQueueError

    def finding(text: str) -> Finding:
        try:
            raise RunQueueError(text)
        except RunQueueError as exc:
            return worker.exception_finding(exc, 0, 3)
    assert finding("waited 0.5 s for 0X1F of 2,048").key() == finding("waited 1.25 s for 0X20 of 1,024").key()


def test_masking_an_errors_text_takes_a_float_whole_and_leaves_versions() -> None:
    """masked_numbers (worker.exception_finding's masking, with findings.NUMBER): a float with an
    exponent is one number, masked whole ('2.5e-05 s' was '?e-? s', read as 2.5 and 05), a version or a dotted name is left as it is ('v1.0-rel0' was 'v1.?-rel0', 10.0.0.1
    '?.?'), and a huge exponent is masked at once."""
    from rmm_mp.stress.findings import masked_numbers
    assert masked_numbers("waited 2.5e-05 s, 1e+20 bytes, -1.5E3") == "waited ? s, ? bytes, ?"
    assert masked_numbers("RMM v1.0-rel0 at 10.0.0.1 (spec 1.2.3), 8008e000") == \
        "RMM v1.0-rel0 at 10.0.0.1 (spec 1.2.3), ?"
    assert masked_numbers("schema rmm-mp-stress-report/1, 1e+99999999") == "schema rmm-mp-stress-report/?, ?"


def test_a_lock_leak_caught_on_its_cpu_is_known_by_its_call_and_realm(machine: Machine) -> None:
    """The two leaked-lock findings stress.instrument makes on the CPU itself name the
    population's realms as the watchdog's do: a call that returns holding a lock by the realm
    its first argument is and whose each lock left held is, and a CPU waiting for a lock it
    holds by its call and that lock's kind and realm. (Found by review: the self-wait had no
    identity, so every one was one problem (key ``(watchdog, leaked-lock, "")``) to shrinking,
    and the return's named no realm, so one in realm T and one in realm N were one.)"""
    from types import SimpleNamespace

    from rmm_mp.abi.rmi import RmiFid
    from rmm_mp.rmm.granule_state import GranuleState as GS
    from rmm_mp.stress import instrument
    from rmm_mp.stress.probe import StressAbort

    cpu = machine.cpu(0)
    table = cpu.granules
    rd = 400
    table.lock(rd)
    table.set_state(rd, GS.RD)
    table.unlock(rd)

    def keys(role: str) -> list[tuple[str, str, str]]:
        probe = instrument.install(cpu, SimpleNamespace(end=0), watchdog=True)  # type: ignore[arg-type]
        probe.roles = {table.addr(rd): role}

        def leaking(*args: int) -> None:
            table.lock_known(rd, GS.RD)
        try:
            instrument._leak_checked_enter(probe, leaking)(int(RmiFid.RMI_RTT_MAP_UNPROTECTED), table.addr(rd),
                                                          0, 0, 0, 0, 0)
            with pytest.raises(StressAbort):
                table.lock_known(rd, GS.RD)
            table.unlock(rd)
        finally:
            instrument.uninstall(probe)
        return [f.key() for f in probe.findings.items]

    assert keys("realm T") == [
        ("watchdog", "leaked-lock", "RMI_RTT_MAP_UNPROTECTED on realm T returned holding RD of realm T"),
        ("watchdog", "leaked-lock", "between calls waits for RD of realm T, which it holds itself")]
    assert keys("realm N") == [
        ("watchdog", "leaked-lock", "RMI_RTT_MAP_UNPROTECTED on realm N returned holding RD of realm N"),
        ("watchdog", "leaked-lock", "between calls waits for RD of realm N, which it holds itself")]
