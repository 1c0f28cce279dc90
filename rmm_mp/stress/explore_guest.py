"""The guest kit of the interleaving explorer's pairs in which a REC runs a guest
(stress.explore_pairs_rec holds those pairs, stress.explore_pairs the catalog): how such a
guest's image is laid out (CODE, REC1_PC, REC2_PC, RAM_TABLE), the assembly of the calls it
makes (smc, host_call, extend_rem1), the active realm that runs it (guest_realm), and what
running a guest means for a pair (its time slice, GUEST_SLICE; the rule that a running REC
makes some commands fail, fails_on_running_rec).

Each realm's guest image is a measured DATA page at IPA 0 (CODE); other pages are DATA pages
of their own. A REC_ENTER call of a pair enters with a run page of the setup's (Builder.run_page),
whose RmiRecExit is one of the pair's views. Guests end in `b .`, so that a run that gets there
exits with IRQ when its time slice (GUEST_SLICE instructions) is spent.

This module owns that kit. It must not hold a pair's setup, program or views (those are
stress.explore_pairs_rec's), nor write the machine's shared memory other than through SMCs and
Machine.ns_write.
"""

from __future__ import annotations

from collections.abc import Callable

from rmm_mp.abi.rmi import RmiStatus
from rmm_mp.abi.rsi import RsiFid
from rmm_mp.abi.structs import RmiRecExitReason
from rmm_mp.guest.assembler import assemble
from rmm_mp.host.realm import describe_x0
from rmm_mp.stress.explore_setup import F, L2, Builder, BuiltRealm, SetupError, exit_text

GUEST_SLICE = 64
"""Guest instructions per entry for the pairs that run a guest: far more than any guest here
executes before its last `b .`, and few enough that a run that ends in the loop stays short."""

CODE = 0
REC1_PC = 0x800
"""Where REC 1's code starts in the image (REC 0's at CODE)."""
REC2_PC = 0xC00
"""Where REC 2's code starts in the image."""
RAM_TABLE = 2 * L2
"""A level-3 table of its own, every entry UNASSIGNED RAM (RTT_INIT_RIPAS over its whole range),
with nothing live: RTT_DESTROY and RTT_FOLD may both take it."""

_HOST_CALL_FID = int(RsiFid.RSI_HOST_CALL)
_MEASUREMENT_EXTEND_FID = int(RsiFid.RSI_MEASUREMENT_EXTEND)


def smc(fid: int, *args: int) -> str:
    """An SMC ``fid`` with X1.. = ``args``."""
    moves = "".join(f"        mov x{i}, ={value:#x}\n" for i, value in enumerate(args, 1))
    return f"{moves}        mov x0, ={fid:#x}\n        smc #0\n"


def host_call(ipa: int) -> str:
    """RSI_HOST_CALL with its RsiHostCall structure at ``ipa``."""
    return smc(_HOST_CALL_FID, ipa)


def extend_rem1(value: int) -> str:
    """RSI_MEASUREMENT_EXTEND of REM1 with 8 bytes holding ``value`` (it takes the RD lock)."""
    return smc(_MEASUREMENT_EXTEND_FID, 1, 8, value)


def guest_realm(b: Builder, code: str, rec1: bool = False, rec1_runnable: bool = True,
                ram_table: bool = False, pages: tuple[tuple[int, bytes], ...] = (),
                more: tuple[tuple[int, bool], ...] = (),
                prepare: "Callable[[BuiltRealm], None] | None" = None) -> tuple[BuiltRealm, list[int]]:
    """An active realm running ``code`` (REC 0 at CODE, REC 1 at REC1_PC if ``rec1``, and a REC
    for each (pc, runnable) of ``more`` after those), with DATA ``pages`` (ipa, content), with
    RAM_TABLE if ``ram_table``, and whatever ``prepare`` makes while the realm is NEW; its RECs."""
    realm = b.realm()
    b.tables(realm, 0, 3)
    b.data(realm, CODE, assemble(code, CODE))
    for ipa, content in pages:
        b.data(realm, ipa, content)
    if ram_table:
        init_ram(b, realm, RAM_TABLE)
    if prepare is not None:
        prepare(realm)
    recs = [b.rec(realm, 0, pc=CODE)]
    if rec1:
        recs.append(b.rec(realm, 1, pc=REC1_PC, runnable=rec1_runnable))
    for pc, runnable in more:
        recs.append(b.rec(realm, len(recs), pc=pc, runnable=runnable))
    b.call(F.RMI_REALM_ACTIVATE, realm.rd)
    return realm, recs


def init_ram(b: Builder, realm: BuiltRealm, ipa: int) -> None:
    """A level-3 table of its own at ``ipa`` (2 MiB aligned), every entry UNASSIGNED RAM."""
    b.tables(realm, ipa, 3)
    if b.call(F.RMI_RTT_INIT_RIPAS, realm.rd, ipa, ipa + L2)[1] != ipa + L2:
        raise SetupError("RTT_INIT_RIPAS did not cover the whole table")


def exit_must_be(fields: dict[str, int], reason: RmiRecExitReason) -> None:
    """A setup's check that the guest it entered stopped where the pair needs it (``fields``:
    the run page's RmiRecExit, Builder.enter's); SetupError naming the exit it made instead."""
    if fields["exit_reason"] != reason:
        raise SetupError(f"the guest exited with {exit_text(fields)}, not {reason.name}")


def fails_on_running_rec(command: str) -> "Callable[[tuple[int, ...] | str], str]":
    """An overlap rule: ``command``, naming the other call's REC, fails with RMI_ERROR_REC while
    that REC runs (its rec_state failure condition: REC_DESTROY B4.3.13, REC_ENTER B4.3.14,
    RTT_SET_RIPAS B4.3.21)."""
    def rule(result: "tuple[int, ...] | str") -> str:
        x0 = result[0] if isinstance(result, tuple) else result
        if x0 == RmiStatus.RMI_ERROR_REC:
            return ""
        shown = describe_x0(x0) if isinstance(x0, int) else x0
        return f"{command} of the running REC must fail with RMI_ERROR_REC (rec_state), not {shown}"
    return rule
