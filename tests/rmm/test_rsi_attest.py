"""RSI_ATTESTATION_TOKEN_INIT and RSI_ATTESTATION_TOKEN_CONTINUE called by running realms
(DEN0137 1.0-rel0 B5.3.2, B5.3.1, A7.2; rsi-attest.md sections 1.7, 3 and 4).

Four groups of scenarios:

1. The commands, with small guest programs (tests/realm_guests.py) on a machine whose time slice
   is long enough that nothing is interrupted: INIT's outputs (it has no failure conditions);
   the granules INIT's and CONTINUE's entries change (their footprints: the REC, its token
   state aux granules, the buffer's page);
   each CONTINUE failure condition of B5.3.1.2 in the table's order, alone, asserting X0, X1..X16
   zero (spec B1.2), X17.. kept, no REC exit, an unchanged footprint (the REC's token state in its first two aux
   granules, the buffer pages, every granule's state and the GPT) and that a token in progress
   is still intact afterwards; then the copy-out protocol: chunks of 1, 100 and 4096 bytes at
   several offsets (every call's X0 and X1, the bytes exactly where asked and nowhere else),
   X3 = 0, ERROR_STATE after SUCCESS until a new INIT, INIT restarting a token in progress, a
   RIPAS EMPTY buffer, an unmapped buffer (emulated stage-2 abort exit, retried after fault-in);
   the granules failing CONTINUEs, the abort exit and the IRQ exits while signing change (the
   REC only; the REC and its token state).
2. A realm running the bundled guest workloads/guests/attest.s under the host's run loop
   (rmm_mp.host.run_loop) on the "fvp" and "host" platforms, SHA-256 and SHA-512: its token
   verifies completely (platform signature with the platform's public key, realm signature,
   binding), carries the guest's challenge, the realm's RPV, its hash algorithm, the REM the
   guest extended before INIT and a RIM equal to a reference computed here from rsi-attest.md
   section 3 with hashlib and struct (not with rmm_mp.rmm.measurement); the claims decode with
   the verifier's inspect_token.
3. Determinism across IRQ exits: the same realm on a machine with a short time slice, entered
   alternately from two CPU handles, has its signing interrupted several times (counted: IRQ
   exits taken with the REC just after its CONTINUE, X0 = RSI_INCOMPLETE and X1 = 0) and still
   produces a token byte for byte equal to the one an uninterrupted run produces.
4. The copy-out protocol against a model (hypothesis): drawn sequences of CONTINUEs (page,
   offset, size: valid, zero, at the last byte, past the granule, wrapping) give the model's
   X0 and X1 call by call and leave exactly the model's bytes in the buffer pages.
"""

from __future__ import annotations

import functools
import hashlib
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pytest
from hypothesis import Phase, given, settings, strategies as st

import rmm_mp
from footprint import snapshot
from realm_guests import CODE, EMPTY_IPA, GRANULE, UNPROTECTED, Guest, copy_loop, extend_code, init_code
from rmm_mp import Machine
from rmm_mp.abi.rmi import RmiFid as F
from rmm_mp.abi.structs import REC_EXIT_OFFSET, RMI_REC_ENTER, RMI_REC_EXIT
from rmm_mp.attest.verify import CHECK_NAMES, inspect_token, verify_token
from rmm_mp.check import invariants
from rmm_mp.el3.attest import AttestationKeys
from rmm_mp.guest.assembler import assemble
from rmm_mp.host import (
    LoopPlan, NsAllocator, RealmSpec, RunQueue, create_realm, destroy_realm, fault_in, map_unprotected,
    realm_status, run_loop,
)
from rmm_mp.host.guests import guest_dir
from rmm_mp.hw.platform import load
from rmm_mp.rmm.attestation import SIGNING_STEPS, STEP_COST
from rmm_mp.rmm.rec_desc import Rec

SUCCESS, INPUT, STATE, INCOMPLETE, UNKNOWN = 0, 1, 2, 3, 4
EXIT_SYNC, EXIT_IRQ, EXIT_PSCI, EXIT_HOST_CALL = 0, 1, 3, 5
TOKEN_BUFFER_SIZE = 4096
SLICE = 1_000_000
"""Time slice of the command tests: no program here is interrupted by it."""
MiB = 1 << 20
BUF = CODE + 0x2000
"""Two pages of the image filled with PATTERN: the token buffer of the command tests."""
PATTERN = 0xA5A5_A5A5_A5A5_A5A5
LOG = CODE + 0x18_0000
"""Unassigned RAM (faulted in by the tests that use it) where programs store each call's X0, X1."""
LOG_PAGES = 8
UNASSIGNED_L3 = CODE + 0x10_0000
"""Unassigned RAM whose walk ends at level 3 (the image's level-3 table covers the first 2 MiB)."""
UNASSIGNED_L2 = CODE + 0x30_0000
"""Unassigned RAM inside a level-2 RAM block (the second 2 MiB of the 4 MiB RAM)."""
CHALLENGE = bytes(range(0x40, 0x80))
CHALLENGE_B = bytes(range(0xC0, 0x100))
HOST_KEY = AttestationKeys(load("host")).platform_public_key_pem()
FVP_KEY = (Path(rmm_mp.__file__).resolve().parent / "data" / "tf-a-fvp-sample" / "cca_platform.pub").read_bytes()


def words(challenge: bytes) -> tuple[int, ...]:
    return struct.unpack("<8Q", challenge)


def sentinel(n: int) -> int:
    return 0x5E5E_0000_0000_0000 | n


@pytest.fixture
def machine() -> Iterator[Machine]:
    with Machine.create("host", cpus=2, time_slice=SLICE) as m:
        yield m


# -- guest program pieces ---------------------------------------------------------------------------

def pattern_pages(at: int = BUF - CODE, pages: int = 2) -> str:
    page = ".quad " + ", ".join([hex(PATTERN)] * (GRANULE // 8))
    return f".org {at:#x}\n" + "\n".join([page] * pages)


# -- driving and reading ------------------------------------------------------------------------------

def stop_at(g: Guest, label: str) -> None:
    """Enter REC 0: its first exit must be the IRQ exit of the WFI at ``label``."""
    x0, ex = g.enter()
    assert x0 == SUCCESS
    assert (ex["exit_reason"], ex["esr"], ex["hpfar"]) == (EXIT_IRQ, 0, 0), ex
    assert g.pc() == g.label(label) + 8, f"stopped at {g.pc():#x}, not at {label}"


def realm_bytes(g: Guest, ipa: int, size: int) -> bytes:
    """Bytes of protected realm memory (level-3 DATA pages) from ``ipa``, across pages."""
    out = b""
    while size:
        n = min(size, GRANULE - (ipa & 0xFFF))
        out += g.peek(ipa, n)
        ipa, size = ipa + n, size - n
    return out


def data_pa(g: Guest, ipa: int) -> int:
    x0, level, state, desc, _ = g.smc(F.RMI_RTT_READ_ENTRY, g.realm.rd, ipa, 3)
    assert (x0, level, state) == (SUCCESS, 3, 1)
    return desc & 0xFFFF_FFFF_F000


def check_token(g: Guest, token: bytes, challenge: bytes = CHALLENGE) -> None:
    """``token`` verifies completely, for ``challenge`` and the realm's RIM."""
    result = verify_token(token, HOST_KEY, expected_challenge=challenge, expected_rim=g.rim)
    assert result.ok, [c for c in result.checks if c.passed is not True]


def token_after(g: Guest, buf: int = BUF) -> bytes:
    """The token the program's copy loop wrote from ``buf`` (x25 = where it stopped)."""
    assert g.gpr(0) == SUCCESS, f"the copy loop ended with X0 = {g.gpr(0)}"
    return realm_bytes(g, buf, g.gpr(25) - buf)


def ok(m: Machine) -> None:
    report = invariants(m)
    assert report.ok, str(report)


def _h(algo: int, data: bytes) -> bytes:
    """H(data) with a realm's algorithm (0 SHA-256, 1 SHA-512)."""
    return (hashlib.sha256 if algo == 0 else hashlib.sha512)(data).digest()


# == 1. The commands ==================================================================================

# -- RSI_ATTESTATION_TOKEN_INIT (B5.3.2) --------------------------------------------------------------

@pytest.mark.parametrize("challenge", [CHALLENGE, bytes(64), b"\xff" * 64], ids=["bytes", "zeros", "ones"])
def test_init(machine: Machine, challenge: bytes) -> None:
    """INIT has no failure conditions (ACS cmd_attestation_token_init: INIT, then the A7.2.2 loop
    must succeed): any challenge gives SUCCESS, X1 = 4096 (the token's upper bound), X2..X16 = 0
    (the challenge inputs X2..X8 too, spec B1.2), X17 and X18 kept; no exit; measurements unchanged. Success
    condition `challenge`: the token then carries X1..X8 as its challenge."""
    program = "\n".join(f"mov x{n}, ={sentinel(n)}" for n in range(9, 19)) + "\n" + init_code(challenge)
    program += "done: wfi\n" + copy_loop("out", BUF, 4096) + "end: wfi\nb end\n" + pattern_pages()
    with Guest.build(machine, program) as g:
        before = [g.rd.measurement(i) for i in range(5)]
        stop_at(g, "done")
        assert [g.gpr(n) for n in range(17)] == [SUCCESS, TOKEN_BUFFER_SIZE] + [0] * 15
        assert [g.gpr(17), g.gpr(18)] == [sentinel(17), sentinel(18)]
        assert [g.rd.measurement(i) for i in range(5)] == before
        stop_at(g, "end")
        check_token(g, token_after(g), challenge)
    ok(machine)


def test_init_footprint(machine: Machine) -> None:
    """B5.3.2.4: the footprint is rec.attest_state and rec.attest_challenge, which live in the
    REC's first aux granule (rmm.attestation). The entry that makes the call changes the REC
    (registers) and that aux granule only: not the RD whose measurements INIT reads."""
    program = "first: wfi\n" + init_code(CHALLENGE) + "done: wfi\n" + copy_loop("out", BUF, 4096) + "end: wfi\nb end\n"
    with Guest.build(machine, program + pattern_pages()) as g:
        stop_at(g, "first")
        assert g.changes(lambda: stop_at(g, "done")) == {"rec0", "rec0.aux0"}
        assert (g.gpr(0), g.gpr(1)) == (SUCCESS, TOKEN_BUFFER_SIZE)
        stop_at(g, "end")
        check_token(g, token_after(g))


# -- RSI_ATTESTATION_TOKEN_CONTINUE failure conditions (B5.3.1.2), in the table's order ----------------

def failing_program(args: dict[int, int], init: bool) -> str:
    """Sentinels; INIT (when ``init``); `before: wfi`; X1..X3 = args; `call: smc`; `done: wfi`;
    then INIT if there was none, and a full copy-out into BUF; `end: wfi`."""
    lines = [f"mov x{n}, ={sentinel(n)}" for n in range(1, 19)]
    lines += [init_code(CHALLENGE) if init else "", "before: wfi"]
    lines += [f"mov x{n}, ={value}" for n, value in {1: BUF, 2: 0, 3: 4096, **args}.items()]
    lines += ["mov x0, =RSI_ATTESTATION_TOKEN_CONTINUE", "call: smc #0", "done: wfi"]
    lines += ["" if init else init_code(CHALLENGE), copy_loop("out", BUF, 4096), "end: wfi", "b end", pattern_pages()]
    return "\n".join(lines)


def check_failure(machine: Machine, args: dict[int, int], status: int, init: bool = True,
                  prepare: Callable[[Guest], object] | None = None) -> None:
    """The CONTINUE at `call` returns ``status`` with X1..X16 = 0 (spec B1.2) and X17, X18 kept,
    without a REC exit,
    and changes nothing: the token state (aux granules 0 and 1), the buffer pages, granule states,
    refcounts and the GPT are as before. The token (in progress or started afterwards) then
    copies out whole from its first byte."""
    with Guest.build(machine, failing_program(args, init)) as g:
        if prepare is not None:
            prepare(g)
        stop_at(g, "before")
        pas = (*g.realm.recs[0].aux[:2], data_pa(g, BUF), data_pa(g, BUF + GRANULE))
        before = snapshot(machine, *pas)
        stop_at(g, "done")
        assert [g.gpr(n) for n in range(17)] == [status] + [0] * 16
        assert [g.gpr(17), g.gpr(18)] == [sentinel(17), sentinel(18)]
        assert snapshot(machine, *pas).diff(before) == []
        stop_at(g, "end")
        check_token(g, token_after(g))
    ok(machine)


@pytest.mark.parametrize("addr", [BUF + 1, BUF + 8, BUF + 0x800, BUF + 0xFFF])
def test_continue_addr_align(machine: Machine, addr: int) -> None:
    """addr_align (ACS cmd_attestation_token_continue: the buffer's IPA + 1): X1 not granule
    aligned -> RSI_ERROR_INPUT."""
    check_failure(machine, {1: addr}, INPUT)


@pytest.mark.parametrize("addr", [UNPROTECTED, UNPROTECTED + 0x5000, 1 << 40, 0xFFFF_FFFF_FFFF_F000],
                         ids=["shared-bit-mapped", "unprotected", "beyond-ipa-space", "top"])
def test_continue_addr_bound(machine: Machine, addr: int) -> None:
    """addr_bound (ACS cmd_attestation_token_continue: 1 << (ipa_width - 1)): X1 not a protected
    IPA (that lowest unprotected IPA, mapped to an NS page here; another unprotected one; beyond
    the 40-bit IPA space; the top granule) -> RSI_ERROR_INPUT."""
    check_failure(machine, {1: addr}, INPUT, prepare=lambda g: g.map_unprotected(UNPROTECTED))


@pytest.mark.parametrize("offset, size", [(4096, 0), (0xFFFF_FFFF_FFFF_FFFF, 0), (4097, 4096)])
def test_continue_offset_bound(machine: Machine, offset: int, size: int) -> None:
    """offset_bound: X2 >= 4096 -> RSI_ERROR_INPUT; with X3 = 0 no other condition holds; the
    last case is ACS cmd_attestation_token_continue's (offset 4097, size 4096; size_bound too)."""
    check_failure(machine, {2: offset, 3: size}, INPUT)


@pytest.mark.parametrize("offset, size", [(8, 0xFFFF_FFFF_FFFF_FFFC), (0xFFF, 0xFFFF_FFFF_FFFF_F002),
                                          (0, 0xFFFF_FFFF_FFFF_FFFF)])
def test_continue_size_overflow(machine: Machine, offset: int, size: int) -> None:
    """size_overflow: offset + size wraps past 2^64 (to 4 and 1, so that size_bound does not hold
    in 64-bit arithmetic) -> RSI_ERROR_INPUT. The last case is ACS cmd_attestation_token_continue's
    (size ~0 at offset 0: no wrap, size_bound holds)."""
    check_failure(machine, {2: offset, 3: size}, INPUT)


@pytest.mark.parametrize("offset, size", [(0, 4097), (4000, 97), (4095, 2)])
def test_continue_size_bound(machine: Machine, offset: int, size: int) -> None:
    """size_bound (ACS cmd_attestation_token_continue: size 4097 at offset 0): offset + size >
    4096 -> RSI_ERROR_INPUT."""
    check_failure(machine, {2: offset, 3: size}, INPUT)


def test_continue_state(machine: Machine) -> None:
    """state: no INIT before (rec.attest_state is not ATTEST_IN_PROGRESS) -> RSI_ERROR_STATE;
    nothing written (the ACS has no case for it). `unknown`, an IMPDEF failure to generate the
    token, cannot be provoked."""
    check_failure(machine, {}, STATE, init=False)


# -- RSI_ATTESTATION_TOKEN_CONTINUE: the copy-out protocol (B5.3.1.3, A7.2.2; rsi-attest 1.7) ----------

def call_log(g: Guest, calls: int) -> list[tuple[int, int]]:
    """The (X0, X1) pairs a program stored at LOG."""
    raw = realm_bytes(g, LOG, 16 * calls)
    return [struct.unpack_from("<2Q", raw, 16 * i) for i in range(calls)]


@pytest.mark.parametrize("chunk, offset", [(1, 0xFFD), (100, 0x7), (100, 0xC00), (4096, 0), (4096, 0xF00)])
def test_copy_out_in_chunks(machine: Machine, chunk: int, offset: int) -> None:
    """The A7.2.2 loop with X3 = min(chunk, room left in the granule), from BUF + offset: every
    call but the last returns RSI_INCOMPLETE with X1 = X3 (the bytes written); the last returns
    RSI_SUCCESS with X1 = the bytes that were left; at a granule boundary the loop names the next
    granule. The bytes are exactly at BUF + offset ..: the pattern before and after them is
    intact, and they are the whole token (it verifies)."""
    program = init_code(CHALLENGE) + copy_loop("out", BUF + offset, chunk, LOG) + "end: wfi\nb end\n" + pattern_pages()
    with Guest.build(machine, program) as g:
        for page in range(LOG_PAGES):
            g.fault_in(LOG + page * GRANULE)
        stop_at(g, "end")
        token = token_after(g, BUF + offset)
        check_token(g, token)
        expected, addr, left = [], BUF + offset, len(token)
        while left:
            n = min(chunk, GRANULE - (addr & 0xFFF), left)
            left -= n
            addr += n
            expected.append((INCOMPLETE if left else SUCCESS, n))
        assert call_log(g, len(expected) + 1) == expected + [(0, 0)]   # and no further call was logged
        both = realm_bytes(g, BUF, 2 * GRANULE)
        pattern = struct.pack("<Q", PATTERN) * (2 * GRANULE // 8)
        assert both[:offset] == pattern[:offset]
        assert both[offset + len(token):] == pattern[offset + len(token):]
    ok(machine)


def test_continue_footprint(machine: Machine) -> None:
    """B5.3.1.4: the footprint is rec.attest_state (the REC's aux granules: the state in the
    first, the signed token in the second). The entry whose CONTINUE signs the token and copies
    100 bytes out changes the REC, both aux granules and the buffer's page; a CONTINUE that only
    copies (RSI_INCOMPLETE, then the last one, RSI_SUCCESS) changes the REC, the first aux
    granule (how much is copied) and the buffer's page; nothing else (the RD included)."""
    chunk = "mov x1, ={}\nmov x2, #{}\nmov x3, #100\nmov x0, =RSI_ATTESTATION_TOKEN_CONTINUE\nsmc #0\n"
    program = (init_code(CHALLENGE) + "first: wfi\n" + chunk.format(BUF, 0) + "signed: wfi\n" + chunk.format(BUF, 100)
               + "copied: wfi\n" + copy_loop("out", BUF + 200, 4096) + "end: wfi\nb end\n" + pattern_pages())
    with Guest.build(machine, program) as g:
        stop_at(g, "first")
        buf = g.page(BUF)
        assert g.changes(lambda: stop_at(g, "signed")) == {"rec0", "rec0.aux0", "rec0.aux1", buf}
        assert (g.gpr(0), g.gpr(1)) == (INCOMPLETE, 100)
        assert g.changes(lambda: stop_at(g, "copied")) == {"rec0", "rec0.aux0", buf}
        assert (g.gpr(0), g.gpr(1)) == (INCOMPLETE, 100)
        assert g.changes(lambda: stop_at(g, "end")) == {"rec0", "rec0.aux0", buf}
        assert g.gpr(25) - BUF < GRANULE       # one call, into the same page
        check_token(g, token_after(g))
    ok(machine)


def test_size_zero(machine: Machine) -> None:
    """X3 = 0 after INIT (signing not done yet) and again once the token is being copied out:
    RSI_INCOMPLETE with X1 = 0 and nothing written; the copy-out goes on from where it was."""
    zero = "mov x1, ={buf}\nmov x2, #0\nmov x3, #0\nmov x0, =RSI_ATTESTATION_TOKEN_CONTINUE\nsmc #0\n" \
           "mov x{r0}, x0\nmov x{r1}, x1\n"
    program = (init_code(CHALLENGE) + zero.format(buf=BUF, r0=19, r1=20) + "first: wfi\n"
               + f"mov x1, ={BUF}\nmov x2, #0\nmov x3, #100\nmov x0, =RSI_ATTESTATION_TOKEN_CONTINUE\nsmc #0\n"
               + "mov x21, x0\nmov x22, x1\n" + zero.format(buf=BUF, r0=23, r1=24) + "second: wfi\n"
               + copy_loop("out", BUF + 100, 4096) + "end: wfi\nb end\n" + pattern_pages())
    with Guest.build(machine, program) as g:
        stop_at(g, "first")
        assert (g.gpr(19), g.gpr(20)) == (INCOMPLETE, 0)
        assert realm_bytes(g, BUF, 8) == struct.pack("<Q", PATTERN)
        stop_at(g, "second")
        assert (g.gpr(21), g.gpr(22), g.gpr(23), g.gpr(24)) == (INCOMPLETE, 100, INCOMPLETE, 0)
        assert realm_bytes(g, BUF + 100, 8) == struct.pack("<Q", PATTERN)
        stop_at(g, "end")
        check_token(g, token_after(g))
    ok(machine)


def test_error_state_after_success_until_init(machine: Machine) -> None:
    """Success condition `complete`: after the call that returns RSI_SUCCESS the REC has no token
    in progress: CONTINUE returns RSI_ERROR_STATE (X1 = 0, nothing written), twice; a new INIT
    starts again and, the measurements being unchanged, yields the same token byte for byte."""
    state_call = "mov x1, ={buf}\nmov x2, #0\nmov x3, #4096\nmov x0, =RSI_ATTESTATION_TOKEN_CONTINUE\nsmc #0\n"
    spare = BUF + 2 * GRANULE
    program = (init_code(CHALLENGE) + copy_loop("first", BUF, 4096) + "mov x28, x25\n"
               + state_call.format(buf=spare) + "mov x19, x0\nmov x20, x1\n"
               + state_call.format(buf=spare) + "mov x21, x0\nmov x22, x1\n"
               + init_code(CHALLENGE) + copy_loop("second", BUF + GRANULE, 4096) + "end: wfi\nb end\n"
               + pattern_pages(pages=3))
    with Guest.build(machine, program) as g:
        stop_at(g, "end")
        assert (g.gpr(19), g.gpr(20), g.gpr(21), g.gpr(22)) == (STATE, 0, STATE, 0)
        assert realm_bytes(g, spare, GRANULE) == struct.pack("<Q", PATTERN) * (GRANULE // 8)
        first = realm_bytes(g, BUF, g.gpr(28) - BUF)
        check_token(g, first)
        assert token_after(g, BUF + GRANULE) == first
    ok(machine)


def test_init_restarts_token_in_progress(machine: Machine) -> None:
    """A7.2.2: INIT while a token is being copied out terminates it: after 2 chunks of 100 bytes
    of the token for challenge A, INIT with challenge B, and the copy-out starts again from the
    first byte of the token for B."""
    part = "mov x1, ={}\nmov x2, #{}\nmov x3, #100\nmov x0, =RSI_ATTESTATION_TOKEN_CONTINUE\nsmc #0\n"
    program = (init_code(CHALLENGE) + part.format(BUF, 0) + "mov x19, x0\nmov x20, x1\n" + part.format(BUF, 100)
               + "mov x21, x0\nmov x22, x1\n" + init_code(CHALLENGE_B) + copy_loop("out", BUF + GRANULE, 4096)
               + "end: wfi\nb end\n" + pattern_pages())
    with Guest.build(machine, program) as g:
        stop_at(g, "end")
        assert (g.gpr(19), g.gpr(20), g.gpr(21), g.gpr(22)) == (INCOMPLETE, 100, INCOMPLETE, 100)
        token = token_after(g, BUF + GRANULE)
        check_token(g, token, CHALLENGE_B)
        assert inspect_token(token)["realm"]["claims"]["challenge"] == CHALLENGE_B.hex()
    ok(machine)


def test_ripas_empty_buffer(machine: Machine) -> None:
    """A buffer granule whose RIPAS is EMPTY: RSI_ERROR_INPUT, X1 = 0, no exit (rsi-attest 1.4);
    nothing is consumed: the copy-out that follows starts from the token's first byte."""
    program = (init_code(CHALLENGE) + f"mov x1, ={EMPTY_IPA}\nmov x2, #0\nmov x3, #4096\n"
               + "mov x0, =RSI_ATTESTATION_TOKEN_CONTINUE\nsmc #0\nmov x19, x0\nmov x20, x1\n"
               + copy_loop("out", BUF, 4096) + "end: wfi\nb end\n" + pattern_pages())
    with Guest.build(machine, program) as g:
        stop_at(g, "end")
        assert (g.gpr(19), g.gpr(20)) == (INPUT, 0)
        check_token(g, token_after(g))
    ok(machine)


@pytest.mark.parametrize("buf, level", [(UNASSIGNED_L3 + 0xC00, 3), (UNASSIGNED_L2 + 0xC00, 2)],
                         ids=["level3", "level2-block"])
def test_unmapped_buffer(machine: Machine, buf: int, level: int) -> None:
    """A buffer granule that is unassigned RAM: the REC exits with an emulated stage-2 data abort
    (SYNC, ESR EC 0x24 with a translation fault at the level the walk stopped, FAR 0, HPFAR = X1
    >> 8; rsi-attest 1.4), PC on the SMC and X0..X3 as the realm set them. After the host faults
    the page in, the call repeats; the token crosses into the next granule, which is unmapped
    too (now at level 3), and so on until the token is complete."""
    program = init_code(CHALLENGE) + copy_loop("out", buf, 4096) + "end: wfi\nb end\n"
    with Guest.build(machine, program) as g:
        for page, walk_level in ((buf & ~0xFFF, level), ((buf & ~0xFFF) + GRANULE, 3)):
            x0, ex = g.enter()
            assert x0 == SUCCESS
            assert (ex["exit_reason"], ex["esr"], ex["far"], ex["hpfar"]) == \
                (EXIT_SYNC, (0x24 << 26) | (0x04 + walk_level), 0, page >> 8)
            assert g.pc() == g.label("out_call")
            offset = (buf & 0xFFF) if page == buf & ~0xFFF else 0
            assert [g.gpr(n) for n in range(4)] == [0xC400_0195, page, offset, GRANULE - offset]
            g.fault_in(page)
        stop_at(g, "end")
        check_token(g, token_after(g, buf))
    ok(machine)



@pytest.mark.parametrize("hash_algo", [0, 1], ids=["sha256", "sha512"])
def test_measurements_are_taken_at_init(machine: Machine, hash_algo: int) -> None:
    """INIT takes the RIM and REMs as they are then (rsi-attest 1.7): REM1 extended with a
    before INIT and with b after it gives a token whose REM1 is H(0 || a); a second INIT gives
    H(H(0 || a) || b), the RD's value. RIM and the other REMs are the RD's, as long as the hash."""
    a, b = b"extended before INIT", b"and this after it"
    program = (extend_code(1, a) + init_code(CHALLENGE) + extend_code(1, b) + copy_loop("first", BUF, 4096)
               + "mov x28, x25\n" + init_code(CHALLENGE) + copy_loop("second", BUF + GRANULE, 4096)
               + "end: wfi\nb end\n" + pattern_pages())
    with Guest.build(machine, program, hash_algo=hash_algo) as g:
        stop_at(g, "end")
        size = (32, 64)[hash_algo]
        first, second = realm_bytes(g, BUF, g.gpr(28) - BUF), token_after(g, BUF + GRANULE)
        before = _h(hash_algo, bytes(size) + a)
        after = _h(hash_algo, before + b)
        assert g.rd.measurement(1)[:size] == after
        for token, rem1 in ((first, before), (second, after)):
            check_token(g, token)
            claims = inspect_token(token)["realm"]["claims"]
            assert claims["extensible_measurements"] == [rem1.hex()] + [bytes(size).hex()] * 3
            assert claims["initial_measurement"] == g.rim.hex()
            assert claims["hash_algo_id"] == ("sha-256", "sha-512")[hash_algo]
    ok(machine)


# == 2. The bundled guest, run by the host ==============================================================

RPV = b"rmm-mp test realm personalisation value".ljust(64, b"\0")
RAM_SIZE = 4 * MiB
PAR = 1 << 39
"""The shared bit of the 40-bit realms built here."""
SYSTEM_OFF = 0x8400_0008
TOKEN_TAG = 0x4E45_4B4F_54
SHARED_OFFSET, BUFFER_OFFSET, OFFSET = 0x20_0000, 0x10_0000, 0xC00
"""attest.s's defaults: the token is written from CODE + BUFFER_OFFSET + OFFSET and copied to
the unprotected alias of CODE + SHARED_OFFSET."""


def attest_guest(**constants: int) -> tuple[bytes, str]:
    """workloads/guests/attest.s with some of its `.equ` constants replaced (as load_guest does),
    assembled at CODE; and the text, for label addresses."""
    text = (guest_dir() / "attest.s").read_text(encoding="utf-8")
    for key, value in constants.items():
        text, found = re.subn(rf"^(\s*\.equ\s+{key}\s*,).*$", lambda mm: f"{mm.group(1)} {value:#x}", text,
                              flags=re.M)
        assert found == 1, f"attest.s has no .equ {key}"
    return assemble(text, base=CODE), text


def label_of(text: str, name: str) -> int:
    return int.from_bytes(assemble(text + f"\n.quad {name}\n", base=CODE)[-8:], "little")


def challenge_constants(challenge: bytes) -> dict[str, int]:
    return {f"CHALLENGE{i}": w for i, w in enumerate(words(challenge))}


def _descriptor(algo: int, rim: bytes, kind: int, body: bytes) -> bytes:
    """rsi-attest 3.3: RIM' = H(256-byte descriptor: type, len 0x100, old RIM (64 B), body at 0x50)."""
    desc = bytearray(0x100)
    struct.pack_into("<B7xQ64s", desc, 0, kind, 0x100, rim.ljust(64, b"\0"))
    desc[0x50:0x50 + len(body)] = body
    return _h(algo, bytes(desc))


def reference_rim(fr0: int, spec: RealmSpec) -> bytes:
    """The RIM of create_realm's build of ``spec``, from rsi-attest.md 3.2-3.3 with hashlib only.

    REALM_CREATE: the measured RmiRealmParams fields as KVM fills them from RMI_FEATURES (B4.4.6
    bits: NUM_BPS 14..19, NUM_WPS 20..25, PMU_EN 26, PMU_NUM_CTRS 27..31; the PMU flag, bit 2,
    only with counters; no SVE, no LPA2). INIT_RIPAS over 2 MiB aligned RAM: one descriptor per
    2 MiB level-2 entry (the tables go no deeper before the image is loaded). One DATA descriptor
    per image page (MEASURE_CONTENT, content hash). REC 0, runnable, pc = the image, gprs zero.
    """
    algo, block = spec.hash_algo, 2 * MiB
    assert spec.ram_base % block == 0 and spec.ram_size % block == 0
    ctrs = (fr0 >> 27 & 0x1F) if fr0 >> 26 & 1 else 0
    params = bytearray(GRANULE)
    struct.pack_into("<6QB", params, 0, 4 if ctrs else 0, spec.ipa_width, 0, fr0 >> 14 & 0x3F, fr0 >> 20 & 0x3F,
                     ctrs, algo)
    rim = _h(algo, bytes(params))
    for base in range(spec.ram_base, spec.ram_base + spec.ram_size, block):
        rim = _descriptor(algo, rim, 2, struct.pack("<QQ", base, base + block))
    for n in range(0, len(spec.image), GRANULE):
        page = spec.image[n:n + GRANULE].ljust(GRANULE, b"\0")
        rim = _descriptor(algo, rim, 0, struct.pack("<QQ", spec.load_ipa + n, 1) + _h(algo, page).ljust(64, b"\0"))
    rec = bytearray(GRANULE)
    struct.pack_into("<Q", rec, 0, 1)
    struct.pack_into("<Q", rec, 0x200, spec.entry_pc)
    return _descriptor(algo, rim, 1, _h(algo, bytes(rec)).ljust(64, b"\0"))


def protected_bytes(m: Machine, cpu, rd: int, ipa: int, size: int) -> bytes:  # type: ignore[no-untyped-def]
    """Realm memory at protected ``ipa`` (level-3 DATA pages, found with RMI_RTT_READ_ENTRY)."""
    out = b""
    while size:
        x0, level, state, desc, _ = cpu.smc(F.RMI_RTT_READ_ENTRY, rd, ipa & ~0xFFF, 3)
        assert (x0, level, state) == (SUCCESS, 3, 1), hex(ipa)
        n = min(size, GRANULE - (ipa & 0xFFF))
        out += m.memory.read((desc & 0xFFFF_FFFF_F000) + (ipa & 0xFFF), n)
        ipa, size = ipa + n, size - n
    return out


EXTEND_VALUE = b"REM2 extended by the attest guest before INIT: 48 b"[:48]


@pytest.mark.parametrize("platform", ["fvp", "host"])
@pytest.mark.parametrize("hash_algo", [0, 1], ids=["sha256", "sha512"])
def test_guest_token_verifies(platform: str, hash_algo: int) -> None:
    """attest.s under the host's run loop (faults in the buffer, maps the shared page, serves LOG
    and REPORT, stops at SYSTEM_OFF), with REM2 extended by 48 bytes before INIT. The LOG host
    call names the shared copy and the protected buffer, which hold the same bytes; the token
    verifies completely with the platform's key (fvp: TF-A's cca_platform.pub; host: the seeded
    key), every check performed, for the guest's challenge and the reference RIM; RPV, hash
    algorithm and REMs are the realm's; inspect_token decodes the same claims, and the platform
    challenge is SHA-256 of the RAK claim."""
    ext = {"EXTEND_REM": 2, "EXTEND_SIZE": len(EXTEND_VALUE),
           **{f"EXTEND{i}": w for i, w in enumerate(words(EXTEND_VALUE.ljust(64, b"\0")))}}
    image, _ = attest_guest(**challenge_constants(CHALLENGE_B), **ext)
    spec = RealmSpec(ipa_width=40, ram_base=CODE, ram_size=RAM_SIZE, hash_algo=hash_algo, rpv=RPV, image=image)
    key = FVP_KEY if platform == "fvp" else AttestationKeys(load("host")).platform_public_key_pem()
    with Machine.create(platform, cpus=1) as m:
        cpu, alloc = m.cpu(0), NsAllocator(m, 0)
        fr0 = cpu.smc(F.RMI_FEATURES, 0)[1]
        realm = create_realm(cpu, alloc, spec)
        queue = RunQueue(m)
        slot = queue.add_realm(alloc, realm)
        summary = run_loop(cpu, LoopPlan(budget=200))
        status = realm_status(queue, slot)
        assert (summary.ended, summary.errors, status.end) == ("done", (), "SYSTEM_OFF"), (summary, status)
        assert len(status.log) == 1 and status.log[0].rec == 0
        tag, shared_ipa, length, buf_ipa = status.log[0].values
        assert (tag, shared_ipa, buf_ipa) == (TOKEN_TAG, PAR | (CODE + SHARED_OFFSET), CODE + BUFFER_OFFSET + OFFSET)
        assert status.result == (0, length) and 0 < length <= TOKEN_BUFFER_SIZE
        ns = dict(status.shared_pages)[shared_ipa]
        token = m.ns_read(ns, length)
        assert protected_bytes(m, cpu, realm.rd, buf_ipa, length) == token
        size = 32 if hash_algo == 0 else 64
        rim = reference_rim(fr0, spec)
        result = verify_token(token, key, expected_challenge=CHALLENGE_B, expected_rim=rim)
        assert result.ok and tuple(c.name for c in result.checks) == CHECK_NAMES, result.checks
        claims = result.realm_claims
        assert claims is not None
        assert claims["challenge"] == CHALLENGE_B.hex() and claims["personalization_value"] == RPV.hex()
        assert claims["hash_algo_id"] == ("sha-256", "sha-512")[hash_algo]
        assert claims["initial_measurement"] == rim.hex() and len(rim) == size
        rem2 = _h(hash_algo, bytes(size) + EXTEND_VALUE)
        assert claims["extensible_measurements"] == [bytes(size).hex(), rem2.hex(), bytes(size).hex(),
                                                     bytes(size).hex()]
        inspected = inspect_token(token)
        assert inspected["tag"] == 399 and inspected["realm"]["alg"] == "ES384"
        assert inspected["realm"]["claims"] == claims
        platform_claims = inspected["platform"]["claims"]
        assert platform_claims == result.platform_claims
        assert platform_claims["challenge"] == hashlib.sha256(bytes.fromhex(claims["public_key"])).hexdigest()
        destroy_realm(cpu, alloc, realm)
        queue.release_realm(alloc, slot)
        report = invariants(m)
        assert report.ok and report.state_counts == {"NS": m.granule_count}, str(report)
        assert alloc.statistics().granules_in_use == 0



def test_guest_reports_a_failed_continue(machine: Machine) -> None:
    """attest.s with its buffer outside the realm's RAM (RIPAS EMPTY): CONTINUE returns
    RSI_ERROR_INPUT, the guest makes no LOG host call and REPORTs code 4 with X0 as the detail,
    then SYSTEM_OFF."""
    image, _ = attest_guest(BUFFER_OFFSET=2 * RAM_SIZE)
    cpu, alloc = machine.cpu(0), NsAllocator(machine, 0)
    realm = create_realm(cpu, alloc, RealmSpec(ipa_width=40, ram_base=CODE, ram_size=RAM_SIZE, image=image))
    queue = RunQueue(machine)
    slot = queue.add_realm(alloc, realm)
    summary = run_loop(cpu, LoopPlan(budget=50))
    status = realm_status(queue, slot)
    assert (summary.ended, status.end, status.log, status.result) == ("done", "SYSTEM_OFF", (), (4, INPUT))
    destroy_realm(cpu, alloc, realm)
    queue.release_realm(alloc, slot)
    ok(machine)

# == 3. Interrupted signing, a REC that moves between CPUs ===============================================

SHORT_SLICE = 2500
"""Guest instructions per entry in the interrupted runs: enough for one signing step (the RMM's
STEP_COST, 2,000) after the few instructions the guest runs before it repeats CONTINUE, so each
entry makes exactly one step. (A slice that leaves less than a step at the SMC never finishes
the token: reported as an RMM defect.)"""


@dataclass
class Drive:
    """What drive() saw: the token, each entry's (CPU, exit reason), and the CPU of every IRQ
    exit taken while the RMM was signing (the REC just after its CONTINUE with X0 =
    RSI_INCOMPLETE and X1 = 0, which the guest's nonzero chunks never produce otherwise)."""

    token: bytes = b""
    exits: list[tuple[int, int]] = field(default_factory=list)
    interrupted: list[int] = field(default_factory=list)
    ns_pages: list[int] = field(default_factory=list)


def drive(m: Machine, alloc: NsAllocator, realm, cpus: list, continue_call: int) -> Drive:  # type: ignore
    """Enter REC 0 from ``cpus`` in turn until SYSTEM_OFF, as a host does: protected faults are
    faulted in, unprotected ones get a zeroed NS page, IRQs re-enter, host calls are answered
    with their own gprs. The token is read from the shared page the LOG host call names."""
    out = Drive()
    run = alloc.alloc()
    rec = Rec(m.memory, (realm.recs[0].rec - m.dram_base) // GRANULE)
    shared: dict[int, int] = {}
    enter, log = RMI_REC_ENTER.pack(), None
    for n in range(2000):
        cpu = cpus[n % len(cpus)]
        m.ns_write(run, bytes(enter) + bytes(GRANULE - REC_EXIT_OFFSET))
        assert cpu.smc(F.RMI_REC_ENTER, realm.recs[0].rec, run)[0] == SUCCESS
        ex = RMI_REC_EXIT.unpack(m.ns_read(run + REC_EXIT_OFFSET, RMI_REC_EXIT.size))
        reason, enter = ex["exit_reason"], RMI_REC_ENTER.pack()
        out.exits.append((cpu.id, reason))
        if reason == EXIT_IRQ:
            if (rec.pc, rec.gpr(0), rec.gpr(1)) == (continue_call + 8, INCOMPLETE, 0):
                out.interrupted.append(cpu.id)
        elif reason == EXIT_SYNC:
            page = (ex["hpfar"] & ~0xF) << 8
            if page < PAR:
                assert fault_in(cpu, alloc, realm, page) is not None
            else:
                shared[page] = alloc.alloc()
                m.ns_write(shared[page], bytes(GRANULE))
                assert map_unprotected(cpu, alloc, realm, page, shared[page])
        elif reason == EXIT_HOST_CALL:
            log = ex["gprs"][:4] if ex["imm"] == 1 else log
            assert ex["imm"] != 3 or ex["gprs"][0] == 0, f"the guest reported failure {ex['gprs'][:2]}"
            enter = RMI_REC_ENTER.pack(gprs=list(ex["gprs"]))
        else:
            assert (reason, ex["gprs"][0]) == (EXIT_PSCI, SYSTEM_OFF), ex
            break
    alloc.free(run)
    assert log is not None and log[0] == TOKEN_TAG
    out.token = m.ns_read(shared[log[1] & ~0xFFF] + (log[1] & 0xFFF), log[2])
    out.ns_pages = list(shared.values())
    return out


def run_realm(platform: str, cpus: int, time_slice: int | None, image: bytes, continue_call: int) -> Drive:
    """Build the attest.s realm on a fresh machine, drive it from CPUs 0..cpus-1 in turn, tear
    it down; the invariants must hold."""
    spec = RealmSpec(ipa_width=40, ram_base=CODE, ram_size=RAM_SIZE, rpv=RPV, image=image)
    with Machine.create(platform, cpus=cpus, time_slice=time_slice) as m:
        alloc = NsAllocator(m, 0)
        realm = create_realm(m.cpu(0), alloc, spec)
        result = drive(m, alloc, realm, [m.cpu(i) for i in range(cpus)], continue_call)
        destroy_realm(m.cpu(0), alloc, realm)
        for pa in result.ns_pages:
            alloc.free(pa)
        report = invariants(m)
        assert report.ok and report.state_counts == {"NS": m.granule_count}, str(report)
    return result


@pytest.mark.parametrize("platform", ["host", "fvp"])
def test_interrupted_migrating_token_is_identical(platform: str) -> None:
    """The same attest.s realm twice: once on one CPU with the platform's time slice (signing is
    never interrupted), once with a SHORT_SLICE slice entered alternately from CPU handles 0 and
    1, so that its signing is interrupted by IRQ exits on both CPUs and finished on another CPU
    than it started on. The tokens are byte for byte the same (RFC 6979 signing over the same
    inputs), and it verifies."""
    image, text = attest_guest()
    continue_call = label_of(text, "continue_call")
    calm = run_realm(platform, 1, None, image, continue_call)
    assert calm.interrupted == []
    busy = run_realm(platform, 2, SHORT_SLICE, image, continue_call)
    assert len(busy.interrupted) >= 2 and set(busy.interrupted) == {0, 1}, busy.exits
    assert busy.exits.count((0, EXIT_IRQ)) + busy.exits.count((1, EXIT_IRQ)) > len(busy.interrupted)
    assert busy.token == calm.token
    key = FVP_KEY if platform == "fvp" else HOST_KEY
    at = label_of(text, "challenge") - CODE
    result = verify_token(busy.token, key, expected_challenge=image[at:at + 64])   # the host placed it there
    assert result.ok, result.checks


def test_signing_interrupted_by_the_time_slice() -> None:
    """A7.2.2: when the slice runs out while the RMM signs, the REC exits with RMI_EXIT_IRQ (ESR 0)
    and the realm sees RSI_INCOMPLETE with X1..X16 = 0 written, PC after the SMC; it calls
    again on the next entry, from whichever CPU, until the token is done."""
    program = (init_code(CHALLENGE) + "mov x9, #9\nmov x10, #10\n" + f"mov x1, ={BUF}\nmov x2, #0x10\nmov x3, #0x200\n"
               + "mov x0, =RSI_ATTESTATION_TOKEN_CONTINUE\ncall: smc #0\ndone: wfi\n"
               + copy_loop("out", BUF, 4096) + "end: wfi\nb end\n" + pattern_pages())
    with Machine.create("host", cpus=2, time_slice=SHORT_SLICE) as m:
        with Guest.build(m, program) as g:
            x0, ex = g.enter()
            assert (x0, ex["exit_reason"], ex["esr"]) == (SUCCESS, EXIT_IRQ, 0)
            assert (g.pc(), g.gpr(0), g.gpr(1)) == (g.label("call") + 8, INCOMPLETE, 0)
            assert [g.gpr(n) for n in range(2, 17)] == [0] * 15    # spec B1.2, X9 and X10 too
            entries = 1
            while g.pc() != g.label("end") + 8:
                assert entries < 50, "the token never completed"
                x0, ex = g.enter(cpu=entries % 2)
                assert (x0, ex["exit_reason"]) == (SUCCESS, EXIT_IRQ)
                entries += 1
            assert entries >= 3
            check_token(g, token_after(g))
        ok(m)


# -- failing CONTINUEs, and the IRQ exit while signing: their footprints (B1.9, B5.3.1.4) -------------

def continue_program(setup: str, args: dict[int, int]) -> str:
    """``setup``: 'none' (no INIT), 'init' (INIT: the token is still to be signed) or 'copying'
    (INIT and a CONTINUE that signs and copies 100 bytes to BUF); then `first: wfi`, a CONTINUE
    with X1..X3 = (BUF, 0, 4096) updated by ``args`` at `call`, `done: wfi`."""
    lines = [init_code(CHALLENGE)] if setup != "none" else []
    if setup == "copying":
        lines.append(f"mov x1, ={BUF}\nmov x2, #0\nmov x3, #100\nmov x0, =RSI_ATTESTATION_TOKEN_CONTINUE\nsmc #0\n")
    lines += ["first: wfi"] + [f"mov x{n}, ={value}" for n, value in {1: BUF, 2: 0, 3: 4096, **args}.items()]
    lines += ["mov x0, =RSI_ATTESTATION_TOKEN_CONTINUE", "call: smc #0", "done: wfi", "b done", pattern_pages()]
    return "\n".join(lines)


CONTINUE_FAILURES = {
    # id: (setup, X1..X3, result)
    "no-init": ("none", {}, STATE),
    "no-init-bad-buffer": ("none", {1: BUF + 8}, INPUT),
    # B5.3.1.2 gives no order: the input conditions come before `state` (as in TF-RMM rel0), and
    # `state` before the buffer walk, so no token in progress is ERROR_STATE, not an abort exit
    "no-init-unprotected": ("none", {1: UNPROTECTED}, INPUT),
    "no-init-offset-4096": ("none", {2: 4096, 3: 0}, INPUT),
    "no-init-size-overflow": ("none", {2: 8, 3: 0xFFFF_FFFF_FFFF_FFFC}, INPUT),
    "no-init-size-across-granule": ("none", {2: 4000, 3: 97}, INPUT),
    "no-init-ripas-empty": ("none", {1: EMPTY_IPA}, STATE),
    "no-init-unassigned": ("none", {1: UNASSIGNED_L3}, STATE),
    "addr-misaligned": ("init", {1: BUF + 8}, INPUT),
    "addr-unprotected": ("init", {1: UNPROTECTED}, INPUT),
    "addr-beyond-ipa-space": ("init", {1: 1 << 40}, INPUT),
    "offset-4096": ("init", {2: 4096, 3: 0}, INPUT),
    "size-overflow": ("init", {2: 8, 3: 0xFFFF_FFFF_FFFF_FFFC}, INPUT),
    "size-across-granule": ("init", {2: 4000, 3: 97}, INPUT),
    "init-ripas-empty": ("init", {1: EMPTY_IPA}, INPUT),
    "copying-addr-misaligned": ("copying", {1: BUF + 8}, INPUT),
    "copying-size-across-granule": ("copying", {2: 4000, 3: 97}, INPUT),
    "copying-ripas-empty": ("copying", {1: EMPTY_IPA}, INPUT),
}


@pytest.mark.parametrize("setup, args, status", CONTINUE_FAILURES.values(), ids=CONTINUE_FAILURES.keys())
def test_failing_continue_changes_the_rec_only(machine: Machine, setup: str, args: dict[int, int],
                                               status: int) -> None:
    """B1.9: a CONTINUE that fails (no token in progress; a buffer out of bounds, misaligned,
    unprotected or RIPAS EMPTY, just after INIT or once the token is signed) changes the
    calling REC (its registers) and nothing else: not its token state (aux granules), not the
    buffer's page nor the next one (a buffer reaching past its granule is refused, B5.3.1.2
    size_bound: no CONTINUE can write across a granule), not the RD. Arguments are checked
    before the token is signed, so a refused call after INIT does not sign it either; a RIPAS
    EMPTY buffer just after INIT is found once the signing steps are done, and the call keeps
    neither them nor the signed token (it used to store both, then fail)."""
    with Guest.build(machine, continue_program(setup, args)) as g:
        g.map_unprotected(UNPROTECTED, b"\x77" * GRANULE)
        stop_at(g, "first")
        assert g.changes(lambda: stop_at(g, "done")) == {"rec0"}
        assert [g.gpr(n) for n in range(17)] == [status] + [0] * 16
        assert machine.ns_read(g.ns_pages[0], GRANULE) == b"\x77" * GRANULE


@pytest.mark.parametrize("setup", ["init", "copying"])
def test_unmapped_buffer_exit_changes_the_rec_only(machine: Machine, setup: str) -> None:
    """A buffer in unassigned RAM: the emulated stage-2 abort exit (rsi-attest 1.4), PC on the
    SMC, changes the REC only once the token is signed (copying); just after INIT the same
    entry signs first (as TF-RMM, which walks the buffer after signing) and keeps the signed
    token, as TF-RMM does, since the exit is no failure and the realm repeats the call: it
    also changes the token state, the REC's aux granules, and nothing else."""
    with Guest.build(machine, continue_program(setup, {1: UNASSIGNED_L3})) as g:
        stop_at(g, "first")
        exit_fields: dict = {}
        changed = g.changes(lambda: exit_fields.update(g.enter()[1]))
        assert changed == ({"rec0"} if setup == "copying" else {"rec0", "rec0.aux0", "rec0.aux1"})
        assert (exit_fields["exit_reason"], exit_fields["hpfar"]) == (EXIT_SYNC, UNASSIGNED_L3 >> 8)
        assert g.pc() == g.label("call")


def test_irq_exit_while_signing_changes_the_rec_and_its_token_state_only() -> None:
    """A7.2.2: the time slice runs out while the RMM signs: each entry that ends with that IRQ
    exit (X0 = RSI_INCOMPLETE, X1 = 0) changes the signing progress in the REC's first aux
    granule and at most the REC, nothing else (not the buffer, not the RD); the entry that finishes signing
    adds the token (second aux granule) and the buffer page it copies 100 bytes into."""
    program = (init_code(CHALLENGE) + f"first: wfi\nagain: mov x1, ={BUF}\nmov x2, #0\nmov x3, #100\n"
               "mov x0, =RSI_ATTESTATION_TOKEN_CONTINUE\ncall: smc #0\ncbz x1, again\ndone: wfi\nb done\n"
               + pattern_pages())
    with Machine.create("host", cpus=1, time_slice=SHORT_SLICE) as m:
        with Guest.build(m, program) as g:
            stop_at(g, "first")
            buf, interrupted = g.page(BUF), 0
            while True:
                assert interrupted < 50, "the token was never signed"
                exit_fields: dict = {}
                changed = g.changes(lambda: exit_fields.update(g.enter()[1]))
                assert exit_fields["exit_reason"] == EXIT_IRQ
                if g.pc() == g.label("done") + 8:
                    break
                assert (g.pc(), g.gpr(0), g.gpr(1)) == (g.label("call") + 8, INCOMPLETE, 0)
                # (a repeated call leaves the REC's registers and PC as the last one did)
                assert "rec0.aux0" in changed and changed <= {"rec0", "rec0.aux0"}
                interrupted += 1
            assert interrupted >= 2
            assert changed == {"rec0", "rec0.aux0", "rec0.aux1", buf}
            assert (g.gpr(0), g.gpr(1)) == (INCOMPLETE, 100)
        ok(m)


# -- regressions of RMM defects found while writing these tests ---------------------------------------

def test_a_slice_shorter_than_a_signing_step_still_finishes_the_token() -> None:
    """A time slice of 2,000 instructions left less than one signing step's cost at the SMC, so
    no step was ever made and the realm looped on IRQ exits for ever; TF-RMM signs once before
    it looks for a pending interrupt, and so does rmm-mp now."""
    with Machine.create("host", cpus=1, time_slice=2000) as m:
        program = init_code(CHALLENGE) + copy_loop("out", BUF, 4096) + "end: wfi\nb end\n" + pattern_pages()
        with Guest.build(m, program) as g:
            for _ in range(200):
                g.enter()
                if g.pc() == g.label("end") + 8:
                    break
            assert g.pc() == g.label("end") + 8, "the token never completed"


def test_signing_spends_the_time_slice() -> None:
    """Signing costs guest time (attestation.STEP_COST per step): in an entry whose slice holds
    the whole signature and some, the instructions the realm runs after the CONTINUE that signs
    and copies are what is left of the slice once the SIGNING_STEPS steps are paid, not a
    fresh slice (rsi_attest hands the rest back in call.extra["budget"]). The realm counts loop iterations (two instructions each) in X5 until the slice
    ends."""
    signing = SIGNING_STEPS * STEP_COST
    slice_ = signing + 1000
    with Machine.create("host", cpus=1, time_slice=slice_) as m:
        program = (init_code(CHALLENGE) + f"first: wfi\nmov x1, ={BUF}\nmov x2, #0\nmov x3, #100\nmov x5, #0\n"
                   "mov x0, =RSI_ATTESTATION_TOKEN_CONTINUE\ncall: smc #0\n"
                   "count: add x5, x5, #1\nb count\n" + pattern_pages())
        with Guest.build(m, program) as g:
            stop_at(g, "first")
            x0, ex = g.enter()
            assert (x0, ex["exit_reason"]) == (SUCCESS, EXIT_IRQ)
            assert (g.gpr(0), g.gpr(1)) == (INCOMPLETE, 100)   # signed, 100 bytes copied, more to come
            assert 0 < g.gpr(5) <= (slice_ - signing) // 2
        ok(m)


def test_the_irq_exit_while_signing_zeroes_x1_to_x3() -> None:
    """The IRQ exit taken while signing carries the call's result record (TF-RMM
    UPDATE_REC_EXIT_TO_HOST): X0 = INCOMPLETE and X1..X3 = 0, whatever X2 and X3 held."""
    with Machine.create("host", cpus=1, time_slice=SHORT_SLICE) as m:
        program = (init_code(CHALLENGE) + f"mov x1, ={BUF}\nmov x2, #0x10\nmov x3, #0x200\n"
                   "mov x0, =RSI_ATTESTATION_TOKEN_CONTINUE\ncall: smc #0\ndone: wfi\nb done\n" + pattern_pages())
        with Guest.build(m, program) as g:
            g.enter()
            assert g.pc() == g.label("call") + 8
            assert [g.gpr(n) for n in range(4)] == [INCOMPLETE, 0, 0, 0]


@pytest.mark.parametrize("ipa", [UNASSIGNED_L3, EMPTY_IPA], ids=["unmapped", "ripas-empty"])
def test_size_zero_walks_the_buffer_first(ipa: int) -> None:
    """TF-RMM walks the buffer before it looks at X3 = 0: an unmapped buffer gives a stage-2
    abort exit with the PC on the SMC, a RIPAS EMPTY one ERROR_INPUT."""
    with Machine.create("host", cpus=1, time_slice=1_000_000) as m:
        program = (init_code(CHALLENGE) + f"mov x1, ={ipa}\nmov x2, #0\nmov x3, #0\n"
                   "mov x0, =RSI_ATTESTATION_TOKEN_CONTINUE\ncall: smc #0\ndone: wfi\nb done\n")
        with Guest.build(m, program) as g:
            x0, ex = g.enter()
            if ipa == EMPTY_IPA:
                assert g.gpr(0) == INPUT and ex["exit_reason"] != EXIT_SYNC  # returned to the realm
            else:
                assert ex["exit_reason"] == EXIT_SYNC and g.pc() == g.label("call")


def test_each_machine_signs_with_its_own_platforms_material() -> None:
    """The RMM once cached the RAK and platform token per process under id(platform); Python
    reuses ids, so a host machine made after a freed fvp one signed with fvp's material. Machines
    of both platforms alternate here, each token must verify with its own platform's key."""
    import gc

    image, text = attest_guest()
    cc = label_of(text, "continue_call")
    for i in range(12):
        platform = ("host", "fvp")[i % 2]
        token = run_realm(platform, 1, None, image, cc).token
        gc.collect()
        result = verify_token(token, FVP_KEY if platform == "fvp" else HOST_KEY)
        assert result.ok, f"iteration {i}: a {platform} machine made a {len(token)}-byte token: {result.checks}"


def long_named_platform(tmp_path: Path, length: int) -> Path:
    """host.toml renamed to ``length`` letters: the seeded platform token carries the name in
    its config claim, so the CCA token grows by about ``length`` bytes."""
    from rmm_mp.hw.platform import resolve
    # resolve, not a path beside the package: an installed rmm_mp keeps its platforms elsewhere
    text = resolve("host").read_text()
    path = tmp_path / "long.toml"
    path.write_text(text.replace('name = "host"', f'name = "{"h" * length}"', 1))
    return path


def test_a_token_of_up_to_the_promised_4096_bytes_is_returned(tmp_path: Path) -> None:
    """INIT promises tokens of up to TOKEN_BUFFER_SIZE (4096) bytes, but the RMM kept the token
    in the 3 KiB left of the REC's first aux granule: a platform whose token made the CCA token
    3,226 bytes long (a long platform name, in the config claim) crashed the RMM with
    RmmInternalError. Such a token now copies out whole and verifies."""
    path = long_named_platform(tmp_path, 2200)
    program = init_code(CHALLENGE) + copy_loop("out", BUF, 4096) + "end: wfi\nb end\n" + pattern_pages()
    with Machine.create(path, cpus=1, time_slice=SLICE) as m:
        with Guest.build(m, program) as g:
            stop_at(g, "end")
            assert not m.dead
            token = token_after(g)
            assert 3 * 1024 < len(token) <= TOKEN_BUFFER_SIZE
            key = AttestationKeys(load(path)).platform_public_key_pem()
            result = verify_token(token, key, expected_challenge=CHALLENGE, expected_rim=g.rim)
            assert result.ok, [c for c in result.checks if c.passed is not True]
        ok(m)


def _two_continues() -> str:
    """INIT, then two CONTINUEs of a whole granule at BUF; the first's X0 and X1 kept in x17 and
    x18; stops at `done`."""
    return (init_code(CHALLENGE) + f"mov x1, ={BUF}\nmov x2, #0\nmov x3, #4096\n"
            "mov x0, =RSI_ATTESTATION_TOKEN_CONTINUE\nsmc #0\nmov x17, x0\nmov x18, x1\n"
            f"mov x1, ={BUF}\nmov x2, #0\nmov x3, #4096\n"
            "mov x0, =RSI_ATTESTATION_TOKEN_CONTINUE\nsmc #0\ndone: wfi\nb done\n" + pattern_pages())


def test_a_token_over_the_promised_size_fails_with_error_unknown(tmp_path: Path) -> None:
    """A CCA token longer than the 4096 bytes INIT promised cannot be produced: CONTINUE returns
    RSI_ERROR_UNKNOWN (B5.3.1.2 `unknown`: generation failed for an IMPDEF reason), X1 = 0,
    nothing is written and the RMM lives on; it used to raise RmmInternalError (the machine
    died). The failed call changes nothing (B1.6: a failing command is aborted): the REC's token
    state (aux granules 0 and 1) is as before it, so the token is still in progress and the next
    CONTINUE fails the same way, RSI_ERROR_UNKNOWN, not RSI_ERROR_STATE (the token used to be
    dropped)."""
    path = long_named_platform(tmp_path, 3400)
    program = _two_continues().replace(f"mov x1, ={BUF}", f"first: wfi\nmov x1, ={BUF}", 1)
    program = program.replace("mov x18, x1\n", "mov x18, x1\nbetween: wfi\n", 1)
    with Machine.create(path, cpus=1, time_slice=SLICE) as m:
        with Guest.build(m, program) as g:
            stop_at(g, "first")
            aux = g.realm.recs[0].aux[:2]
            before = snapshot(m, *aux)
            for label in ("between", "done"):
                assert g.changes(lambda: stop_at(g, label)) == {"rec0"}, label
                assert not m.dead
                assert (g.gpr(17), g.gpr(18)) == (UNKNOWN, 0)
                assert snapshot(m, *aux).diff(before) == [], label
            assert (g.gpr(0), g.gpr(1)) == (UNKNOWN, 0)
            assert g.peek(BUF, GRANULE) == PATTERN.to_bytes(8, "little") * (GRANULE // 8)
        ok(m)


def test_error_unknown_counts_as_an_error_in_the_histograms(tmp_path: Path) -> None:
    """The latency histograms counted only RSI_ERROR_INPUT and RSI_ERROR_STATE as errors, so the
    CONTINUEs that fail with RSI_ERROR_UNKNOWN (a token over INIT's bound) showed as successes;
    they are failures too."""
    from rmm_mp.stats import calls
    from rmm_mp.stats.report import collect

    path = long_named_platform(tmp_path, 3400)
    program = _two_continues()
    with Machine.create(path, cpus=1, time_slice=SLICE) as m:
        with Guest.build(m, program) as g:
            stop_at(g, "done")
            g.cpu.flush_statistics()
            stats = collect(m, [0])[0]
        ok(m)
    counted = {calls.name(slot): (s.count, s.errors) for slot, s in stats.items()
               if calls.name(slot).startswith("RSI_ATTESTATION")}
    assert counted == {"RSI_ATTESTATION_TOKEN_INIT": (1, 0), "RSI_ATTESTATION_TOKEN_CONTINUE": (2, 2)}


# == 4. The copy-out protocol against a model (hypothesis) =============================================

@functools.cache
def host_token_length() -> int:
    """Bytes of the CCA token a realm of the "host" platform gets (deterministic signing and a
    fixed-size signature: the same for every challenge and machine)."""
    program = init_code(CHALLENGE) + copy_loop("out", BUF, 4096) + "end: wfi\nb end\n" + pattern_pages()
    with Machine.create("host", cpus=1, time_slice=SLICE) as m:
        with Guest.build(m, program) as g:
            stop_at(g, "end")
            return len(token_after(g))


def _draw_size(data: st.DataObject, offset: int, left: int) -> int:
    """A CONTINUE size for ``offset`` with ``left`` token bytes not yet copied: small, any valid
    one, one beside ``left`` (the last byte and its neighbours), or an invalid one (offset +
    size = 4097, or offset + size wrapping past 2^64)."""
    room = GRANULE - offset
    near = [n for n in (left - 1, left, left + 1) if 0 <= n <= room] or [0]
    return data.draw(st.integers(0, min(300, room)) | st.integers(0, room) | st.sampled_from(near)
                     | st.sampled_from([room + 1, (1 << 64) - offset + 1, (1 << 64) - 1]))


@settings(max_examples=10, deadline=None, derandomize=True, phases=[Phase.explicit, Phase.generate])
@given(data=st.data())
def test_continue_calls_follow_the_copy_out_model(data: st.DataObject) -> None:
    """After INIT, a drawn sequence of CONTINUEs, each into one of two pattern pages at a drawn
    offset with a drawn size (small, any valid one, one beside the bytes left, offset + size =
    4097, or offset + size wrapping past 2^64), behaves as this model of B5.3.1 and rsi-attest
    1.7 says, call by call: a size that breaks size_bound or size_overflow gives
    RSI_ERROR_INPUT, X1 = 0 and changes nothing; a valid one copies min(size, bytes left) of
    the token to page + offset, X1 = that count, X0 = RSI_INCOMPLETE while bytes are left (size
    0 included) and RSI_SUCCESS on the last; after it every call gives RSI_ERROR_STATE. The
    token is the one a second INIT with the same challenge then copies out whole (it verifies);
    both pages hold exactly the model's bytes. (No shrinking: a failing draw is reported as
    found, rather than after minutes of shrinking.)"""
    length = host_token_length()
    calls, expected, copied = [], [], 0
    for _ in range(data.draw(st.integers(1, 12))):
        page, offset = data.draw(st.sampled_from([0, 1])), data.draw(st.integers(0, GRANULE - 1))
        size = _draw_size(data, offset, length - copied)
        calls.append((page, offset, size))
        if offset + size > GRANULE:
            expected.append((INPUT, 0))
        elif copied == length:
            expected.append((STATE, 0))
        else:
            n = min(size, length - copied)
            copied += n
            expected.append((SUCCESS if copied == length else INCOMPLETE, n))
    lines = [init_code(CHALLENGE)]
    for page, offset, size in calls:
        lines += [f"mov x1, ={BUF + page * GRANULE}", f"mov x2, ={offset}", f"mov x3, ={size}",
                  "mov x0, =RSI_ATTESTATION_TOKEN_CONTINUE", "smc #0", "str x0, [x24]", "str x1, [x24, #8]",
                  "add x24, x24, #16"]
    program = (f"mov x24, ={LOG}\n" + "\n".join(lines) + "\n" + init_code(CHALLENGE)
               + copy_loop("whole", BUF + 2 * GRANULE, 4096) + "end: wfi\nb end\n" + pattern_pages(pages=4))
    with Machine.create("host", cpus=1, time_slice=SLICE) as m:
        with Guest.build(m, program) as g:
            g.fault_in(LOG)
            stop_at(g, "end")
            token = token_after(g, BUF + 2 * GRANULE)
            check_token(g, token)
            assert len(token) == length
            assert call_log(g, len(calls)) == expected
            pages = bytearray(struct.pack("<Q", PATTERN) * (2 * GRANULE // 8))
            done = 0
            for (page, offset, _), (status, n) in zip(calls, expected):
                if status in (SUCCESS, INCOMPLETE):
                    pages[page * GRANULE + offset:page * GRANULE + offset + n] = token[done:done + n]
                    done += n
            assert realm_bytes(g, BUF, 2 * GRANULE) == bytes(pages)
        ok(m)
