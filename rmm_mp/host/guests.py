"""The bundled realm guest programs (workloads/guests/*.s, installed as rmm_mp/workloads/guests/).

    GUESTS            names of the bundled guests
    guest_source      the assembly text of one
    load_guest        assemble one for a load IPA, with some of its ``.equ`` constants replaced
    measure_constants the EXPECTED0..7 (and VALUE0..7, SIZE) constants of ``measure`` for a
                      value and hash algorithm: what the host computes and places in its image

A guest's tunable constants are ``.equ NAME, value`` lines of its source (workloads/guests/
README.md lists them); ``load_guest`` rewrites those lines, so the text on disk assembles as it
is and the host changes only what it names. The guests follow the host-call and MMIO conventions
of rmm_mp.host.devices.

This module owns finding and preparing guest images. It speaks no SMC.
"""

from __future__ import annotations

import hashlib
import struct
from importlib import resources
from pathlib import Path

from rmm_mp.guest.assembler import assemble
from rmm_mp.guest.equ import with_constants

GUESTS = ("hello", "smp-boot", "ripas-flip", "measure", "attest")
DEFAULT_BASE = 0x8000_0000
"""The IPA the guests are written for (the start of RealmSpec's default RAM)."""


def guest_dir() -> Path:
    """Where the guest sources are: the installed package's data, else the repository's."""
    packaged = resources.files("rmm_mp") / "workloads" / "guests"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "workloads" / "guests"


def guest_source(name: str) -> str:
    """The assembly text of the bundled guest ``name``.

    Raises:
        ValueError for a name that is not bundled.
    """
    if name not in GUESTS:
        raise ValueError(f"guest = {name!r}: expected one of {', '.join(GUESTS)} (workloads/guests/*.s)")
    return (guest_dir() / f"{name}.s").read_text(encoding="utf-8")


def load_guest(name: str, base: int = DEFAULT_BASE, **constants: int) -> bytes:
    """The image of guest ``name`` assembled for IPA ``base``, its ``.equ`` constants replaced.

    Raises:
        ValueError for an unknown guest or a constant the guest does not define;
        AssemblerError (a ValueError) if the result does not assemble.
    """
    try:
        text = with_constants(guest_source(name), constants)
    except ValueError as exc:
        raise ValueError(f"load_guest({name!r}): {exc}") from None
    return assemble(text, base=base)


def measure_constants(value: bytes, hash_algo: int = 0) -> dict[str, int]:
    """Constants of the ``measure`` guest for extending REM1 with ``value`` (0..64 bytes) in a
    realm using ``hash_algo`` (0 SHA-256, 1 SHA-512): the value, its size, and the REM the
    realm must then read back, H(zeros || value) (DEN0137 B5.3.7), zero padded to 64 bytes."""
    if len(value) > 64:
        raise ValueError(f"measure_constants: the value is {len(value)} bytes; RSI_MEASUREMENT_EXTEND takes 0..64")
    if hash_algo not in (0, 1):
        raise ValueError(f"measure_constants(hash_algo={hash_algo!r}): expected 0 (SHA-256) or 1 (SHA-512)")
    algo = hashlib.sha256 if hash_algo == 0 else hashlib.sha512
    expected = algo(bytes(algo().digest_size) + value).digest().ljust(64, b"\0")
    out = {"SIZE": len(value)}
    out.update({f"VALUE{i}": v for i, v in enumerate(struct.unpack("<8Q", value.ljust(64, b"\0")))})
    out.update({f"EXPECTED{i}": v for i, v in enumerate(struct.unpack("<8Q", expected))})
    return out
