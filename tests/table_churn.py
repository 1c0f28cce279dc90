"""One CPU's stage-2 churn over part of one realm, for the multi-process race tests (a test
helper, not a test file; spawned CPU processes import it through the parent's sys.path).

A TableChurner works on level-3 tables and pages of 2 MiB blocks of one realm whose pages are
backed by a 2 MiB aligned NS run (the page for IPA ``base + n`` is ``backing + n``): table
create / destroy / fold, DATA_CREATE_UNKNOWN of a backing page and DATA_DESTROY. Every status is
checked against ``allowed`` (what a correct RMM may answer in the test's situation) and counted
in ``seen``; a table granule comes from the CPU's NS allocator and goes back to it.
"""

from __future__ import annotations

from collections import Counter

from rmm_mp.abi.rmi import RmiFid
from rmm_mp.host import NsAllocator

SUCCESS = 0


class TableChurner:
    def __init__(self, cpu, rd: int, base: int, backing: int,  # type: ignore[no-untyped-def]
                 allowed: dict[str, set[int]]) -> None:
        self.smc = cpu.smc
        self.rd = rd
        self.base = base
        self.backing = backing
        self.allowed = allowed
        self.alloc = NsAllocator.for_cpu(cpu)
        self.seen: Counter = Counter()

    def call(self, name: str, *args: int) -> tuple[int, ...]:
        """RMI_<name> (DELEGATE: RMI_GRANULE_DELEGATE), its status checked and counted."""
        regs = self.smc(getattr(RmiFid, "RMI_" + ("GRANULE_" if name == "DELEGATE" else "") + name), *args)
        x0 = regs[0]
        assert x0 in self.allowed[name], f"{name}({', '.join(hex(a) for a in args)}) returned {x0:#x}"
        self.seen[(name, x0)] += 1
        return regs

    def release(self, pa: int) -> None:
        assert self.smc(RmiFid.RMI_GRANULE_UNDELEGATE, pa)[0] == SUCCESS, f"UNDELEGATE({pa:#x})"

    def create_table(self, block: int) -> None:
        pa = self.alloc.alloc()
        assert self.smc(RmiFid.RMI_GRANULE_DELEGATE, pa)[0] == SUCCESS
        if self.call("RTT_CREATE", self.rd, pa, block, 3)[0] != SUCCESS:
            self.release(pa)
            self.alloc.free(pa)

    def drop_table(self, name: str, block: int) -> None:
        """RTT_DESTROY or RTT_FOLD of the level-3 table at ``block``; its granule goes back."""
        x0, pa = self.call(name, self.rd, block, 3)[:2]
        if x0 == SUCCESS:
            self.release(pa)
            self.alloc.free(pa)

    def fill(self, ipa: int) -> None:
        pa = self.backing + (ipa - self.base)
        if self.call("DELEGATE", pa)[0] != SUCCESS:
            return                  # the page is delegated (assigned) already
        if self.call("DATA_CREATE_UNKNOWN", self.rd, pa, ipa)[0] != SUCCESS:
            self.release(pa)

    def empty(self, ipa: int) -> None:
        x0, pa = self.call("DATA_DESTROY", self.rd, ipa)[:2]
        if x0 == SUCCESS:
            assert pa == self.backing + (ipa - self.base), f"DATA_DESTROY({ipa:#x}) returned {pa:#x}"
            self.release(pa)
