"""Checkers: invariants of a quiescent machine (more checkers come with the stress tool)."""

from rmm_mp.check._invariants import InvariantReport, Violation, invariants

__all__ = ["invariants", "InvariantReport", "Violation"]
