"""The Arm RMM ACS attestation_measurement suite (release v1.0_REL0_12.24), run against rmm-mp.

Each ACS test of test/attestation_measurement and where its outcome is checked here:

* attestation_token_verify, attestation_challenge_data_verification,
  attestation_realm_measurement_type, attestation_platform_challenge_size, attestation_token_init,
  attestation_rpv_value, attestation_rem_extend_check_realm_token: a realm copies its token out
  with the ACS's loop and the token passes `acs_verify_token`, a Python copy of the ACS's
  val_attestation_verify_token (common/attestation_realm.c), which reads the token in a fixed
  order with QCBOR and counts claims by its own labels; the tests then compare the claims the ACS
  compares (challenge, RIM size, platform challenge size, RPV, REM 1).
* attestation_rem_extend_check: `test_rem_extend_is_read_back_and_carried_in_the_token`.
* measurement_immutable_rim: `test_rim_read_by_the_realm_is_immutable_after_activation`.
* measurement_initial_rem_is_zero: tests/rmm/test_rsi.py `test_measurement_read_rem_starts_zero`.
* measurement_rim_order: tests/rmm/test_measurement.py `test_rim_depends_on_the_order_of_rec_and_data_create`.
* attestation_rec_exit_irq (the host's EL2 timer fires while the realm signs: an IRQ exit, then
  the copy-out goes on): tests/rmm/test_rsi_attest.py `test_signing_interrupted_by_the_time_slice`
  and `test_interrupted_migrating_token_is_identical`; the time slice stands in for the timer
  (docs/deviations.md, "RSI_ATTESTATION_TOKEN_CONTINUE signing").

The ACS realms are C programs; here each is a guest program (docs/guest-isa.md) doing the same
RSI calls, and the host side is played with RMI calls (tests/realm_guests.py).
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any, Iterator

import cbor2
import pytest

from realm_guests import CODE, GRANULE, Guest, copy_loop, extend_code, init_code
from rmm_mp import Machine
from rmm_mp.abi.rmi import RmiFid as F
from rmm_mp.check import invariants

SUCCESS, STATE = 0, 2
EXIT_IRQ = 1
SLICE = 1_000_000
"""No program here is interrupted by the time slice (so signing runs to the end in one entry)."""

ACS_CHALLENGE = struct.pack("<8Q", 0xb4ea40d262abaf22, 0xe8d966127b6d78e2, 0x7ce913f20b954277,
                            0x3155ff12580f9e60, 0x8a3843cb95120bf6, 0xd52c4fca64420f43,
                            0xb75961661d52e8ce, 0xc7f17650fe9fca60)
"""challenge[8] of the ACS realm programs (challenge1 of attestation_token_init)."""
ACS_CHALLENGE2 = struct.pack("<8Q", 0xc052a7e8223def88, 0xe8d976547b6d78e2, 0x7ce913f20b954277,
                             0x3155f7abc50f9e60, 0x8a375eabc5120bf6, 0xd5aaaddd64420f43,
                             0xb75961732d52e8ce, 0xc7f19eabce9fca60)
"""challenge2 of attestation_token_init."""
ACS_RPV = bytes(range(1, 17)) * 4
"""rpv_value[64] of attestation_rpv_value's host."""
ACS_REM_VALUE = struct.pack("<8Q", 0x05a9bf223fedf80a, 0x9d0da5f73f5c191a, 0x665bf4a0a4a3e608,
                            0xf2f9e7d5ff23959c, 0, 0, 0, 0)
"""X3..X10 of the ACS's RSI_MEASUREMENT_EXTEND calls (four words, then zeros)."""
BUF = CODE + 0x2000
"""A page of the image (assigned, RIPAS RAM) the token is copied into."""

# The labels the ACS uses (attestation_realm.h). Its CCA_PLATFORM_IMPLEMENTATION_ID is 239, not
# the profile's 2396, so the ACS never counts the implementation id: its ">= 8 platform claims"
# is met by the other eight (verification service included).
CCA_PLATFORM_TOKEN, CCA_REALM_TOKEN = 44234, 44241
TAG_CCA_TOKEN, TAG_COSE_SIGN1 = 399, 18
P_PROFILE, P_CHALLENGE, P_IMPLEMENTATION_ID, P_INSTANCE_ID = 265, 10, 239, 256
P_CONFIG, P_LIFECYCLE, P_SW_COMPONENTS, P_VERIFICATION_SERVICE, P_HASH_ALGO_ID = 2401, 2395, 2399, 2400, 2402
SW_TEXT, SW_BYTES = (1, 4, 6), (2, 5)
R_CHALLENGE, R_RPV, R_RIM, R_REM, R_HASH_ALGO_ID, R_PUBLIC_KEY, R_PUBLIC_KEY_HASH_ALGO_ID = (
    10, 44235, 44238, 44239, 44236, 44237, 44240)
COSE_KEY_TYPE = 1


@pytest.fixture
def machine() -> Iterator[Machine]:
    with Machine.create("host", cpus=1, time_slice=SLICE) as m:
        yield m


def ok(m: Machine) -> None:
    report = invariants(m)
    assert report.ok, str(report)


# -- the ACS's token checks ----------------------------------------------------------------------

def _sign1_payload(token: bytes, what: str) -> Any:
    """The payload of a COSE_Sign1 as the ACS reaches it: a tag 18 array of 4 items, then three
    QCBORDecode_GetNext calls, which land on the payload only when the unprotected header is a
    map with no entries (a non-empty one would be entered, and its first entry read instead)."""
    item = cbor2.loads(token)
    assert isinstance(item, cbor2.CBORTag) and item.tag == TAG_COSE_SIGN1, f"{what}: not tag 18"
    assert isinstance(item.value, list) and len(item.value) == 4, f"{what}: not a 4-item array"
    protected, unprotected, payload, _ = item.value
    assert isinstance(protected, bytes) and unprotected == {}, f"{what}: unprotected header {unprotected!r}"
    assert isinstance(payload, bytes), f"{what}: payload is {type(payload).__name__}"
    claims = cbor2.loads(payload)
    assert isinstance(claims, dict), f"{what}: claims are {type(claims).__name__}"
    return claims


def _count_platform_claims(claims: dict[Any, Any]) -> int:
    """parse_claims_platform_token: each claim it knows is counted and type-checked."""
    count = 0
    for label, value in claims.items():
        assert type(label) is int, f"platform claim label {label!r}"
        if label in (P_PROFILE, P_VERIFICATION_SERVICE, P_HASH_ALGO_ID):
            assert isinstance(value, str), f"platform claim {label}: {value!r}"
        elif label == P_CHALLENGE:
            assert isinstance(value, bytes) and len(value) in (32, 48, 64), f"platform challenge {value!r}"
        elif label == P_IMPLEMENTATION_ID:
            assert isinstance(value, bytes) and len(value) == 32
        elif label == P_INSTANCE_ID:
            assert isinstance(value, bytes) and len(value) == 33, f"instance id {value!r}"
        elif label == P_CONFIG:
            assert isinstance(value, bytes)
        elif label == P_LIFECYCLE:
            assert type(value) is int
        elif label == P_SW_COMPONENTS:
            assert isinstance(value, list)
            for component in value:
                fields = 0
                for key, field in component.items():
                    if key in SW_TEXT:
                        assert isinstance(field, str), f"sw component {key}: {field!r}"
                        fields += 1
                    elif key in SW_BYTES:
                        assert isinstance(field, bytes), f"sw component {key}: {field!r}"
                        fields += 1
                assert fields >= 2, f"sw component {component!r}: mandatory fields absent"
        else:
            continue
        count += 1
    return count


def _count_realm_claims(claims: dict[Any, Any], challenge: bytes) -> int:
    """parse_claims_realm_token: each claim it knows is counted and type-checked."""
    count = 0
    for label, value in claims.items():
        assert type(label) is int, f"realm claim label {label!r}"
        if label == R_CHALLENGE:
            assert value == challenge, "realm challenge and given challenge are not the same"
        elif label == R_RPV:
            assert isinstance(value, bytes) and len(value) == 64, f"RPV {value!r}"
        elif label == R_RIM:
            assert isinstance(value, bytes) and len(value) in (32, 48, 64), f"RIM {value!r}"
        elif label == R_PUBLIC_KEY:
            # validate_realm_pub_key: a CBOR map (a COSE_Key) that holds the key type
            key = cbor2.loads(value)
            assert isinstance(key, dict) and COSE_KEY_TYPE in key, f"realm public key {key!r}"
        elif label in (R_HASH_ALGO_ID, R_PUBLIC_KEY_HASH_ALGO_ID):
            assert isinstance(value, str), f"realm claim {label}: {value!r}"
        elif label == R_REM:
            assert isinstance(value, list)
        else:
            continue
        count += 1
    return count


def acs_verify_token(token: bytes, challenge: bytes) -> tuple[dict[Any, Any], dict[Any, Any]]:
    """val_attestation_verify_token: tag 399 around a map of 2 entries read in order, the
    platform token (44234) first, then the realm token (44241), each a byte string; both
    COSE_Sign1 payloads reachable as the ACS reaches them; the realm claims' challenge equal
    to ``challenge``; exactly 7 realm claims and at least 8 platform claims as the ACS counts
    them. (pal_verify_signature, the signature check, is a stub in the ACS.) Returns the
    (platform, realm) claims."""
    outer = cbor2.loads(token)
    assert isinstance(outer, cbor2.CBORTag) and outer.tag == TAG_CCA_TOKEN, "not tag 399"
    assert isinstance(outer.value, dict) and len(outer.value) == 2
    entries = list(outer.value.items())
    assert [key for key, _ in entries] == [CCA_PLATFORM_TOKEN, CCA_REALM_TOKEN], "entries out of order"
    assert all(isinstance(value, bytes) for _, value in entries)
    platform = _sign1_payload(entries[0][1], "platform token")
    realm = _sign1_payload(entries[1][1], "realm token")
    assert _count_platform_claims(platform) >= 8, "mandatory platform claims are absent"
    assert _count_realm_claims(realm, challenge) == 7, "mandatory realm claims are absent"
    return platform, realm


# -- realm programs ------------------------------------------------------------------------------

def init(challenge: bytes) -> str:
    """RSI_ATTESTATION_TOKEN_INIT with ``challenge`` in X1..X8; X0 -> x17, X1 -> x18."""
    return init_code(challenge) + "mov x17, x0\nmov x18, x1\n"


def extend(index: int, size: int) -> str:
    """RSI_MEASUREMENT_EXTEND of REM ``index`` with ``size`` bytes of ACS_REM_VALUE (all eight
    words in X3..X10, as the ACS passes them); X0 -> x19."""
    return extend_code(index, ACS_REM_VALUE, size) + "mov x19, x0\n"


COPY_OUT = copy_loop("copy", BUF, 4096)
"""Copy the token into BUF with the ACS's loop (size = PAGE_SIZE - offset, offset += len);
x25 = BUF + its size. The ACS's loop also stops at the end of the page, which matters only for
a token longer than a page: INIT's X1, checked by token_of, bounds it at 4096 bytes."""

TAIL = f"""
done:
    wfi
    b done
    .org {BUF - CODE:#x}
    .zero {GRANULE}
"""


def token_of(g: Guest) -> bytes:
    """Run the program to `done`; the token it copied out (X0 of the last CONTINUE SUCCESS)."""
    x0, ex = g.enter()
    assert (x0, ex["exit_reason"]) == (SUCCESS, EXIT_IRQ)
    assert g.pc() == g.label("done") + 8
    assert (g.gpr(17), g.gpr(18)) == (SUCCESS, 4096), "INIT: X0 SUCCESS, X1 the token's upper bound"
    assert g.gpr(0) == SUCCESS, f"the copy loop ended with X0 = {g.gpr(0)}"
    return g.peek(BUF, g.gpr(25) - BUF)


# -- the tests -----------------------------------------------------------------------------------

@pytest.mark.parametrize("platform", ["host", "fvp"])
@pytest.mark.parametrize("hash_algo", [0, 1], ids=["sha256", "sha512"])
def test_token_passes_the_acs_checks(platform: str, hash_algo: int) -> None:
    """ACS attestation_token_verify: CONTINUE before any INIT -> RSI_ERROR_STATE; then INIT and
    the ACS's copy loop give a token that passes val_attestation_verify_token (`acs_verify_token`).
    With it, ACS attestation_challenge_data_verification (the realm challenge claim is the
    challenge), attestation_realm_measurement_type (the RIM claim is 32, 48 or 64 bytes: here
    the realm's RIM, 32 bytes for SHA-256 and 64 for SHA-512) and
    attestation_platform_challenge_size (the platform challenge is 32, 48 or 64 bytes), on the
    seeded ("host") platform and on the FVP sample platform token."""
    program = f"""
        mov x1, ={BUF}
        mov x2, #0
        mov x3, #4096
        mov x0, =RSI_ATTESTATION_TOKEN_CONTINUE
        smc #0
        mov x20, x0
    """ + init(ACS_CHALLENGE) + COPY_OUT + TAIL
    with Machine.create(platform, cpus=1, time_slice=SLICE) as m:
        with Guest.build(m, program, hash_algo=hash_algo) as g:
            token = token_of(g)
            assert g.gpr(20) == STATE
            platform_claims, realm_claims = acs_verify_token(token, ACS_CHALLENGE)
            assert realm_claims[R_CHALLENGE] == ACS_CHALLENGE
            assert realm_claims[R_RIM] == g.rim and len(g.rim) == (32, 64)[hash_algo]
            assert len(platform_claims[P_CHALLENGE]) == 32
        ok(m)


def test_second_init_sets_the_challenge(machine: Machine) -> None:
    """ACS attestation_token_init: INIT with challenge1, INIT again with challenge2 (both
    SUCCESS), then the copy loop: the token passes the ACS checks for challenge2, whose realm
    challenge claim it carries."""
    program = init(ACS_CHALLENGE) + "mov x21, x0\n" + init(ACS_CHALLENGE2) + COPY_OUT + TAIL
    with Guest.build(machine, program) as g:
        token = token_of(g)
        assert g.gpr(21) == SUCCESS
        _, realm_claims = acs_verify_token(token, ACS_CHALLENGE2)
        assert realm_claims[R_CHALLENGE] == ACS_CHALLENGE2
    ok(machine)


def test_rpv_from_the_host_is_in_the_token(machine: Machine) -> None:
    """ACS attestation_rpv_value: the host creates the realm with RPV bytes 1..16 four times;
    the realm's token passes the ACS checks and its personalization value claim is those 64
    bytes (the ACS realm hands them back in a host call and the host compares them)."""
    with Guest.build(machine, init(ACS_CHALLENGE) + COPY_OUT + TAIL, rpv=ACS_RPV) as g:
        _, realm_claims = acs_verify_token(token_of(g), ACS_CHALLENGE)
        assert realm_claims[R_RPV] == ACS_RPV
    ok(machine)


@pytest.mark.parametrize("size", [32, 64])
def test_rem_extend_is_read_back_and_carried_in_the_token(machine: Machine, size: int) -> None:
    """ACS attestation_rem_extend_check (size 64) and attestation_rem_extend_check_realm_token
    (size 32): EXTEND REM 1 with the ACS's value (four words, then zeros) -> SUCCESS; READ of
    REM 1 returns X0 SUCCESS and a non-zero REM, H(32 zero bytes || value[:size]) (SHA-256);
    the token made after it passes the ACS checks and the first entry of its REM array (the
    ACS's rem[0]) is that REM."""
    expected = hashlib.sha256(bytes(32) + ACS_REM_VALUE[:size]).digest()
    program = extend(1, size) + """
        mov x1, #1
        mov x0, =RSI_MEASUREMENT_READ
        smc #0
        mov x20, x0
        mov x21, x1
        mov x22, x2
        mov x23, x3
        mov x24, x4
    """ + init(ACS_CHALLENGE) + COPY_OUT + TAIL
    with Guest.build(machine, program) as g:
        token = token_of(g)
        assert (g.gpr(19), g.gpr(20)) == (SUCCESS, SUCCESS)
        assert struct.pack("<4Q", *(g.gpr(n) for n in range(21, 25))) == expected != bytes(32)
        _, realm_claims = acs_verify_token(token, ACS_CHALLENGE)
        assert realm_claims[R_REM][0] == expected
    ok(machine)


@pytest.mark.parametrize("hash_algo", [0, 1], ids=["sha256", "sha512"])
def test_rim_read_by_the_realm_is_immutable_after_activation(machine: Machine, hash_algo: int) -> None:
    """ACS measurement_immutable_rim: the realm reads the RIM (RSI_MEASUREMENT_READ index 0);
    the host then DATA_DESTROYs one of the realm's assigned (measured) pages and backs a new
    page with DATA_CREATE_UNKNOWN, both after REALM_ACTIVATE; the realm reads the RIM again:
    both reads return X0 SUCCESS and the same X1..X8, the RD's RIM, unchanged by either command."""
    program = """
        mov x1, #0
        mov x0, =RSI_MEASUREMENT_READ
        smc #0
    """ + "\n".join(f"mov x{17 + n}, x{n}" for n in range(9)) + """
    first:
        wfi
        mov x1, #0
        mov x0, =RSI_MEASUREMENT_READ
        smc #0
    """ + TAIL
    with Guest.build(machine, program, hash_algo=hash_algo) as g:
        rim = g.rim
        x0, ex = g.enter()
        assert (x0, ex["exit_reason"], g.pc()) == (SUCCESS, EXIT_IRQ, g.label("first") + 8)
        x0, pa = g.smc(F.RMI_DATA_DESTROY, g.realm.rd, BUF)[:2]
        assert x0 == SUCCESS
        assert g.smc(F.RMI_GRANULE_UNDELEGATE, pa)[0] == SUCCESS
        g.alloc.free(pa)
        g.fault_in(CODE + 0x10_0000)            # DATA_CREATE_UNKNOWN of unassigned RAM
        assert g.rim == rim
        x0, ex = g.enter()
        assert (x0, ex["exit_reason"], g.pc()) == (SUCCESS, EXIT_IRQ, g.label("done") + 8)
        first = tuple(g.gpr(17 + n) for n in range(9))
        assert first == tuple(g.gpr(n) for n in range(9))
        assert first == (SUCCESS, *struct.unpack("<8Q", rim.ljust(64, b"\0")))
    ok(machine)
