"""rmm-mp: a multi-core, concurrency-focused runtime of the Arm CCA Realm Management Monitor.

Public surface (DESIGN.md section 3): Machine, GranuleProtectionFault, RmmInternalError.
"""

__version__ = "0.1.0"  # first: modules imported below read it (EL3's platform token)

from rmm_mp.hw.faults import GranuleProtectionFault, RmmInternalError  # noqa: E402
from rmm_mp.machine import Cpu, Machine  # noqa: E402

__all__ = ["Machine", "Cpu", "GranuleProtectionFault", "RmmInternalError", "__version__"]
