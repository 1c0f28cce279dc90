"""EL3's attestation services on one CPU (rmm_mp.el3.attest.AttestationService): the buffer
rules of RMM_ATTEST_GET_REALM_KEY and RMM_ATTEST_GET_PLAT_TOKEN (rsi-attest.md 5.2)."""

from __future__ import annotations

import pytest

from rmm_mp.abi.el3 import RmmEl3Status
from rmm_mp.el3.attest import SHARED_BUFFER_SIZE, AttestationKeys, AttestationService
from rmm_mp.hw.platform import load

OK, INVAL = int(RmmEl3Status.E_RMM_OK), int(RmmEl3Status.E_RMM_INVAL)


@pytest.mark.parametrize("platform", ["host", "fvp"])
@pytest.mark.parametrize("offset, size, challenge_size", [
    (SHARED_BUFFER_SIZE - 6, 6, 64), (SHARED_BUFFER_SIZE - 32, 32, 48), (SHARED_BUFFER_SIZE - 1, 1, 32)])
def test_a_challenge_past_the_shared_buffer_is_refused(platform: str, offset: int, size: int,
                                                       challenge_size: int) -> None:
    """GET_PLAT_TOKEN with a hunk buffer that fits the shared buffer but a challenge that would
    run past its end: E_RMM_INVAL and nothing to continue. The challenge used to be read short
    (Python slicing stops at the end): a seeded platform then raised ValueError from its claims
    encoder, the FVP sample returned a token for a challenge that was never given."""
    service = AttestationService(AttestationKeys(load(platform)))
    assert service.get_platform_token(offset, size, challenge_size) == (INVAL, 0, 0)
    assert service.get_platform_token(0, SHARED_BUFFER_SIZE, 0) == (INVAL, 0, 0)


@pytest.mark.parametrize("platform", ["host", "fvp"])
def test_the_challenge_may_end_at_the_end_of_the_shared_buffer(platform: str) -> None:
    """The last 64 bytes of the shared buffer hold a whole challenge: the token starts."""
    service = AttestationService(AttestationKeys(load(platform)))
    status, hunk, remaining = service.get_platform_token(SHARED_BUFFER_SIZE - 64, 64, 64)
    assert (status, hunk) == (OK, 64) and remaining > 0


BAD_ADDR, UNK = int(RmmEl3Status.E_RMM_BAD_ADDR), int(RmmEl3Status.E_RMM_UNK)
P384 = 0


@pytest.mark.parametrize("offset, size, curve, expected", [
    (SHARED_BUFFER_SIZE, 48, P384, BAD_ADDR),           # starts past the shared buffer
    (-8, 48, P384, BAD_ADDR),
    (SHARED_BUFFER_SIZE, 48, 7, BAD_ADDR),              # the buffer is checked before the curve
    (0, SHARED_BUFFER_SIZE + 1, P384, INVAL),          # ends past it, though the key would fit
    (SHARED_BUFFER_SIZE - 48, 49, P384, INVAL),
    (0, 0, P384, INVAL),                                # an empty buffer ends before it starts
    (0, 10**6, 7, INVAL),
    (0, 48, 7, INVAL),                                  # a good buffer, an unknown curve
    (0, 47, P384, UNK),                                 # too small for the key: the platform refuses
])
def test_get_realm_key_checks_the_buffer_then_the_curve_then_the_size(offset: int, size: int, curve: int,
                                                                       expected: int) -> None:
    """RMM_ATTEST_GET_REALM_KEY's failures in TF-A rmmd's order, and nothing written. A buffer
    larger than the shared buffer used to be accepted, the curve was checked first and a
    too small buffer was E_RMM_BAD_ADDR."""
    service = AttestationService(AttestationKeys(load("host")))
    assert service.get_realm_key(offset, size, curve) == (expected, 0)
    assert service.shared_buffer == bytearray(SHARED_BUFFER_SIZE)


def test_get_realm_key_may_fill_the_end_of_the_shared_buffer() -> None:
    """A 48-byte buffer in the last 48 bytes of the shared buffer: E_RMM_OK with the realm attestation key's
    48-byte P-384 scalar written there."""
    service = AttestationService(AttestationKeys(load("host")))
    assert service.get_realm_key(SHARED_BUFFER_SIZE - 48, 48, P384) == (OK, 48)
    assert bytes(service.shared_buffer[-48:]) == service.keys.rak_scalar


@pytest.mark.parametrize("offset, size, challenge_size, expected", [
    (SHARED_BUFFER_SIZE, 64, 64, BAD_ADDR),
    (SHARED_BUFFER_SIZE, 64, 5, BAD_ADDR),              # the buffer before the challenge size
    (0, SHARED_BUFFER_SIZE + 1, 64, INVAL),
    (0, 0, 64, INVAL),
    (0, 64, 5, INVAL),
])
def test_get_platform_token_checks_the_buffer_first(offset: int, size: int, challenge_size: int,
                                                     expected: int) -> None:
    """GET_PLAT_TOKEN's failures: a buffer starting past the shared buffer is E_RMM_BAD_ADDR even with a
    bad challenge size; one ending past it, an empty one, or a challenge size not 0, 32, 48 or 64 is
    E_RMM_INVAL; no hunk is returned."""
    service = AttestationService(AttestationKeys(load("host")))
    assert service.get_platform_token(offset, size, challenge_size) == (expected, 0, 0)
