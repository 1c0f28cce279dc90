"""rmm-mp: a multi-core, concurrency-focused runtime of the Arm CCA Realm Management Monitor.

Public surface (DESIGN.md section 3): Machine, GranuleProtectionFault, RmmInternalError.

They are imported on first use (``from rmm_mp import Machine`` works as ever, PEP 562
``__getattr__``), not when the package is: every import of a submodule runs this file first, and
the rmm-mp program (rmm_mp.launch) must take Ctrl-C over before the simulator's import (about
half a second) begins, which an eager import here would run ahead of it.
"""

TYPE_CHECKING = False   # typing.TYPE_CHECKING without importing typing (about 10 ms at start-up)

__version__ = "0.1.0"  # read by modules of the package (EL3's platform token, --version)

__all__ = ["Machine", "Cpu", "GranuleProtectionFault", "RmmInternalError", "__version__"]

if TYPE_CHECKING:
    from rmm_mp.hw.faults import GranuleProtectionFault, RmmInternalError
    from rmm_mp.machine import Cpu, Machine


def __getattr__(name: str) -> object:
    """The public names, imported the first time one is asked for, and the submodules."""
    if name in ("GranuleProtectionFault", "RmmInternalError"):
        from rmm_mp.hw.faults import GranuleProtectionFault, RmmInternalError
        return {"GranuleProtectionFault": GranuleProtectionFault, "RmmInternalError": RmmInternalError}[name]
    if name in ("Machine", "Cpu"):
        from rmm_mp.machine import Cpu, Machine
        return {"Machine": Machine, "Cpu": Cpu}[name]
    # Never launch: importing it takes Ctrl-C over in the process (the rmm-mp program's first
    # lines), a side effect an attribute look-up such as hasattr(rmm_mp, "launch") must not have.
    if name.isidentifier() and not name.startswith("__") and name != "launch":
        # A submodule not imported yet: `import rmm_mp; rmm_mp.machine.Machine` (or rmm_mp.hw,
        # rmm_mp.runtime, ...) worked while this file imported machine, and with it most of the
        # package, eagerly; it does now by importing the submodule named. A name that is no
        # submodule stays an AttributeError; a submodule that fails to import raises as it is.
        # An identifier only: getattr(rmm_mp, "a.b") is no module path (it raised
        # ModuleNotFoundError out of hasattr, and "hw.faults" returned rmm_mp.hw.faults).
        import importlib
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
    raise AttributeError(f"module 'rmm_mp' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
