"""SMC Calling Convention facts (Arm DEN0028): function ID fields and the unknown-function value."""

from __future__ import annotations

SMC_UNKNOWN = 0xFFFF_FFFF_FFFF_FFFF
"""X0 for a function ID nobody implements (SMCCC: -1 as a 64-bit value)."""

SMCCC_SVE_HINT = 1 << 16
"""SMCCC 1.3 'no live SVE state' hint. Callers may set it; receivers clear it before decoding."""

FID_FAST = 1 << 31
FID_SMC64 = 1 << 30
FID_OEN_SHIFT = 24
FID_OEN_MASK = 0x3F
OEN_STANDARD_SECURE = 4
"""Owning entity number of the Standard Secure Service range that PSCI, RMI and RSI live in."""

U64_MASK = (1 << 64) - 1


def strip_sve_hint(fid: int) -> int:
    """Return ``fid`` with the SVE hint bit cleared, as EL3 and the RMM do before decoding."""
    return fid & ~SMCCC_SVE_HINT


def to_u64(value: int) -> int:
    """Reduce a register value in [-2^63, 2^64) to its 64-bit two's complement encoding."""
    return value & U64_MASK


def to_s64(value: int) -> int:
    """Interpret a 64-bit register value as signed (RTT levels and PSCI statuses are Int64)."""
    value &= U64_MASK
    return value - (1 << 64) if value >> 63 else value
