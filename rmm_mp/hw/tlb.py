"""Broadcast TLB and GPT-cache invalidation between CPUs that execute realm code.

A CPU executing realm code (the guest interpreter) caches stage-2 translations, as a TLB does.
When another CPU removes or changes a valid mapping it must invalidate them everywhere, and, as
TLBI ... IS followed by DSB does on hardware, it must not go on until every CPU has stopped
using the old translation. The protocol:

- every realm has a TLB generation word (in its RD; the caller passes its DRAM offset), and the
  machine has one GPT generation (EL3 bumps it after a granule transition, like TLBI PAALLOS);
- a CPU entering realm code publishes the RD it executes (its PA with bit 0 set, so that an RD
  at PA 0, on a platform whose DRAM starts there, is not read as "none") and counts itself in;
  at its sync points (guest.interpreter: the first instruction of a run, any PC change other
  than +8, a new page of straight-line code) it loads both generations, drops its cached
  translations if either moved, and publishes the generations it has seen; when it leaves realm
  code (to handle an RSI call, to exit) it clears the RD first, so it never holds anyone up
  while it takes locks;
- an invalidating CPU bumps the generation, then waits until every other CPU executing that
  realm (or, for the GPT, any realm) has seen the new value. Nothing is waited for while no CPU
  executes realm code (one load), which keeps DELEGATE cheap.
- a CPU keeps its cached translations from one entry to the next (as a TLB keeps entries
  tagged with a VMID across exits) while it enters the same realm and nothing moved: it
  publishes at entry the generations it last saw, which its caches reflect, and its first sync
  drops them if either generation moved since. A realm's generation lives in its RD and starts
  again at 0 when a new realm is made there, so a generation alone does not tell two realms
  built on the same granules apart: REALM_DESTROY bumps the machine's stage-2 epoch
  (end_stage2), and a CPU that finds the epoch moved, or enters another realm than last time,
  starts with nothing cached (generations seen -1, published as 0).

Publishing a generation and dropping what was cached before it are one step (sync), so when the
invalidating CPU's command returns, no CPU uses a translation cached before its change, however
far apart the sync points are; their spacing only bounds how long that CPU waits (a few guest
instructions, at most one page of straight-line code, at most a time slice). A CPU may also use
a translation it made at generation G while it still reads G (the RMM's copy into a host call's
structure, realm_call.py): it is counted in, so a change made since cannot complete before its
next sync.

A CPU that executes realm code never takes a lock while it is counted in, so the wait cannot
deadlock with the locks the invalidating CPU holds. The wait backs off as a granule lock's does
(hw.granule.backoff: spins, then yields, then sleeps of up to half a millisecond): a waited-for
CPU whose process is descheduled or stopped (SIGSTOP, a debugger) can take a long time to reach
a sync point, and a waiter that only yielded burnt a whole host core all that time. A CPU
process that died counted in would stall the wait; once the wait for a CPU has lasted a few
milliseconds (LOOK_AFTER_NS: by the clock, since the backoff's yields alone can take seconds on a
loaded host), the CPU's binding is looked at, then every few tens of milliseconds (LOOK_EVERY_NS),
and a CPU whose process has ended (or whose pid now names another process) is skipped, and
skipped at once by this CPU's later waits while its binding word is the one found ended; a
process that binds such a CPU afresh counts the dead holder out
(count_out_dead_holder), or its RD would read as the new owner executing that realm.

This module owns the protocol. It must not know what a realm or an RD is.
"""

from __future__ import annotations

from collections.abc import Callable
from time import monotonic_ns

import atomicshm

from rmm_mp.hw.control import OFF_EXECUTING, OFF_GPT_GENERATION, OFF_STAGE2_EPOCH
from rmm_mp.hw.cpuarea import OFF_BIND, OFF_EXEC_RD, OFF_SEEN_GPT, OFF_SEEN_TLB, binding_ended
from rmm_mp.hw.granule import SPIN_TRIES, backoff

LOOK_AFTER_NS = 3_000_000
"""How long a wait for one CPU backs off before it first looks at that CPU's binding (a /proc
read): a live CPU reaches its next sync point well within it unless its process is descheduled
or stopped, and a dead one costs about this much once."""
LOOK_EVERY_NS = 30_000_000
"""Time between two later looks at a waited-for CPU whose process lives (descheduled, stopped)."""

class Tlb:
    """One CPU's view of the invalidation protocol."""

    __slots__ = ("cpu", "ctl", "cpus", "dram", "area_size", "count", "_mine", "_rd", "_gen_off",
                 "_seen_tlb", "_seen_gpt", "_kept_rd", "_kept_epoch", "_load_dram", "_load_ctl", "_store_cpu",
                 "_off_rd", "_off_tlb", "_off_gpt", "_ended")

    def __init__(self, cpu: int, ctl: atomicshm.AtomicView, cpus: atomicshm.AtomicView, dram: atomicshm.AtomicView,
                 area_size: int, count: int) -> None:
        self.cpu = cpu
        self.ctl = ctl
        self.cpus = cpus
        self.dram = dram
        self.area_size = area_size
        self.count = count
        self._mine = cpu * area_size
        self._off_rd, self._off_tlb, self._off_gpt = (self._mine + OFF_EXEC_RD, self._mine + OFF_SEEN_TLB,
                                                      self._mine + OFF_SEEN_GPT)
        self._rd = 0
        self._gen_off = 0
        self._seen_tlb = -1
        self._seen_gpt = -1
        self._kept_rd = -1      # the realm (RD PA) and stage-2 epoch the seen generations belong to
        self._kept_epoch = -1
        self._load_dram = dram.load_u64
        self._load_ctl = ctl.load_u64
        self._store_cpu = cpus.store_u64
        self._ended: dict[int, int] = {}
        """CPU -> the binding word a wait found ended while that CPU was counted in (_wait)."""

    # -- the executing side -------------------------------------------------------------

    def enter(self, rd_pa: int, generation_offset: int) -> None:
        """Start executing code of the realm whose TLB generation word is at ``generation_offset``
        (a DRAM offset). The translations cached at the last entry are kept if this is the same
        realm and no realm was destroyed since (module docstring); the first sync drops them if
        a generation moved."""
        store = self._store_cpu
        self.ctl.fetch_add_u64(OFF_EXECUTING, 1)
        epoch = self._load_ctl(OFF_STAGE2_EPOCH)
        if rd_pa != self._kept_rd or epoch != self._kept_epoch:
            # Another realm's translations, or a realm destroyed since (this RD may hold a new
            # realm, whose generation started again at 0): nothing cached may count.
            self._kept_rd, self._kept_epoch = rd_pa, epoch
            self._seen_tlb = self._seen_gpt = -1
        # The generations the caches reflect (0 for none), published before the RD: a value above
        # them must never look like an acknowledgement.
        seen_tlb, seen_gpt = self._seen_tlb, self._seen_gpt
        store(self._off_tlb, seen_tlb if seen_tlb > 0 else 0)
        store(self._off_gpt, seen_gpt if seen_gpt > 0 else 0)
        # Bit 0 (free: an RD is granule aligned) marks the word as set: a platform's DRAM may
        # start at PA 0, and an RD there published as 0 read as "not executing": leave() did not
        # count the CPU out, and invalidate_realm(0) waited for every idle CPU.
        published = rd_pa | 1
        store(self._off_rd, published)
        self._rd = published
        self._gen_off = generation_offset

    @property
    def counted_in(self) -> bool:
        """Whether this CPU is between enter and leave (executing realm code)."""
        return self._rd != 0

    @property
    def executing_rd(self) -> int:
        """PA of the RD of the realm this CPU executes (between enter and leave; else 0)."""
        return self._rd & ~1

    def sync(self) -> bool:
        """At a sync point: True if cached translations must be dropped (the caller drops them
        before it translates again)."""
        tlb = self._load_dram(self._gen_off)
        gpt = self._load_ctl(OFF_GPT_GENERATION)
        if tlb == self._seen_tlb and gpt == self._seen_gpt:
            return False
        self._seen_tlb, self._seen_gpt = tlb, gpt
        self._store_cpu(self._off_tlb, tlb)
        self._store_cpu(self._off_gpt, gpt)
        return True

    def leave(self) -> None:
        """Stop executing realm code (before taking any lock or exiting); a no-op when this CPU
        is not counted in."""
        if not self._rd:
            return
        self._store_cpu(self._off_rd, 0)
        self.ctl.fetch_sub_u64(OFF_EXECUTING, 1)
        self._rd = 0

    def end_stage2(self) -> None:
        """A realm's stage 2 has ended (REALM_DESTROY, once the realm has no REC and its root
        RTTs are not live): every CPU starts its next entry with nothing cached, since a new
        realm made on the same RD and tables starts its TLB generation again from 0 (module
        docstring), and a root may still hold ASSIGNED_NS entries, which no unmap (so no
        invalidation) ended: an RTT holding only those is not live (A5.5). No wait: no CPU can
        be executing the destroyed realm, and others' translations stay correct until then."""
        self.ctl.fetch_add_u64(OFF_STAGE2_EPOCH, 1)

    def count_out_dead_holder(self) -> None:
        """On binding this CPU: count out a holder that died counted in (killed between enter
        and leave). Its RD and generations stayed published, so once this CPU had a live owner
        again (the dead one had been skipped until then), every invalidation waited for that
        owner to reach a sync point: for ever, if it never executes realm code."""
        if self.cpus.load_u64(self._off_rd):
            self._store_cpu(self._off_rd, 0)
            self.ctl.fetch_sub_u64(OFF_EXECUTING, 1)

    # -- the invalidating side ----------------------------------------------------------

    def invalidate_realm(self, rd_pa: int, generation_offset: int) -> None:
        """TLBI for one realm: returns once no CPU uses a translation cached before the call."""
        generation = self.dram.fetch_add_u64(generation_offset, 1) + 1
        if self._load_ctl(OFF_EXECUTING):
            published = rd_pa | 1
            self._wait(lambda base: self.cpus.load_u64(base + OFF_EXEC_RD) == published
                       and self.cpus.load_u64(base + OFF_SEEN_TLB) < generation)

    def invalidate_gpt(self) -> None:
        """After a GPT change: returns once no CPU uses a cached translation of the old PAS."""
        generation = self.ctl.fetch_add_u64(OFF_GPT_GENERATION, 1) + 1
        if self._load_ctl(OFF_EXECUTING):
            self._wait(lambda base: self.cpus.load_u64(base + OFF_EXEC_RD) != 0
                       and self.cpus.load_u64(base + OFF_SEEN_GPT) < generation)

    def _wait(self, behind: Callable[[int], bool]) -> None:
        ended = self._ended
        for cpu in range(self.count):
            if cpu == self.cpu:
                continue
            base = cpu * self.area_size
            tries = 0
            look_at = 0
            while behind(base):
                # A CPU whose process died counted in stays so until a process binds it afresh
                # (count_out_dead_holder), which changes its binding word: every later wait
                # skips it at once while the word is the one found ended. Looked at afresh each
                # time, every DELEGATE and UNDELEGATE of the run's survivors backed off to the
                # first look (about 600 tries, 512 of them sched_yield) again: on a 2-core host
                # at a load average of 12, a CPU asked to stop in a realm's teardown after another
                # CPU's SIGKILL took 13 to 48 s to stop (a run's grace time is 10 s per CPU per core).
                if tries == 0 and cpu in ended and ended[cpu] == self.cpus.load_u64(base + OFF_BIND):
                    break
                tries += 1
                backoff(tries)
                if tries <= SPIN_TRIES:
                    continue        # a live CPU's short wait: no clock, no /proc
                # Looks are due by the clock, not by the try count: the 512 sched_yield tries
                # before the backoff's first sleep took up to 5 s on a loaded host (each yield
                # gives the core away), so the first wait for a CPU that died counted in did too.
                now = monotonic_ns()
                if look_at == 0:
                    look_at = now + LOOK_AFTER_NS
                elif now >= look_at:
                    word = self.cpus.load_u64(base + OFF_BIND)
                    if binding_ended(word):
                        ended[cpu] = word
                        break
                    look_at = now + LOOK_EVERY_NS
