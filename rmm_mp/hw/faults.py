"""Faults the simulated machine raises to its caller.

These are not RMI statuses: a GranuleProtectionFault is what the hardware does to a Normal-world
access outside the Non-secure PAS, and an RmmInternalError is a crashed RMM (the machine is then
dead, as EL3 treats an RMM that panicked).
"""

from __future__ import annotations


class GranuleProtectionFault(Exception):
    """A host access touched memory outside DRAM or outside the Non-secure PAS.

    Attributes:
        pa: the first physical address of the access that failed the check.
        reason: what the granule protection check found there.
    """

    def __init__(self, pa: int, reason: str) -> None:
        super().__init__(f"granule protection fault at PA {pa:#x}: {reason}")
        self.pa = pa
        self.reason = reason


class RmmInternalError(Exception):
    """The RMM hit a bug: an exception inside a handler or a broken internal invariant; or the
    host broke a lock rule of the shared tables (a lock word it does not hold released, an NS
    page it holds asked for again).

    It is never mapped to an RMI status. Raised inside the RMM, it kills the machine: every
    later smc on any CPU raises it again. Raised on the host's side, outside any smc, it
    leaves the machine alive (rmm-mp stress reports it as an internal-error finding).
    """


class MachineError(Exception):
    """The machine cannot be created, attached or used as asked (not an RMM bug)."""


class CpuBusyError(MachineError):
    """A simulated CPU is already bound to another live process, or to this process through
    another Machine handle of the same machine or a CPU handle closed while realm code ran on
    it (``own``); or, when a start time that would tell them apart is unknown (``unsure``), to a
    process with this process's pid that may have ended: this process through another handle
    (``own``), or another process that had this pid."""

    def __init__(self, cpu: int, pid: int, own: bool = False, unsure: bool = False) -> None:
        if unsure and own:
            # The same word as this process's: with no start time in it, a dead process that had
            # this pid (and could not read its start time either) wrote it too.
            text = (f"CPU {cpu} is bound to process {pid}, this process's pid: this process through another "
                    "Machine handle, or an ended process that had this pid (this process cannot read its own "
                    "start time, which would tell them apart); close that handle, or pick another CPU")
        elif unsure:
            # Not this process (its word differs), but ending "that process" would end this one.
            text = (f"CPU {cpu} is bound to process {pid}, not this process but another that had its pid (the "
                    "binding word differs from this process's), which cannot be told to have ended (a start time "
                    "that would tell the two apart is unknown); pick another CPU")
        elif own:
            # "End that process" would be advice to end oneself: say which handle holds it.
            # A handle closed while realm code still ran on its CPU keeps the binding (Cpu.close).
            text = (f"CPU {cpu} is bound to live process {pid} (this process, through another Machine handle of "
                    "the machine, or a CPU handle closed while realm code still ran on it, which keeps the CPU "
                    "until this process ends); use that handle's CPU, or close it first")
        else:
            text = f"CPU {cpu} is bound to live process {pid}; pick another CPU or end that process"
        super().__init__(text)
        self.cpu = cpu
        self.pid = pid
