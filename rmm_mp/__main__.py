"""`python -m rmm_mp` is the rmm-mp command."""

from rmm_mp.cli import entry

entry()
