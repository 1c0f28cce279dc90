"""rmm-mp: a multi-core, concurrency-focused runtime of the Arm CCA Realm Management Monitor.

Public surface (DESIGN.md section 3): Machine, GranuleProtectionFault, RmmInternalError.
"""

from rmm_mp.hw.faults import GranuleProtectionFault, RmmInternalError
from rmm_mp.machine import Cpu, Machine

__version__ = "0.1.0"

__all__ = ["Machine", "Cpu", "GranuleProtectionFault", "RmmInternalError", "__version__"]
