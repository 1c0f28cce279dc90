"""The realm guest ISA (docs/guest-isa.md): encoding (isa), assembler, interpreter, and the
``.equ`` constants of guest source (equ: which a program defines, new values for some).

The public entry is ``rmm_mp.guest.assemble(text, base=IPA) -> bytes``, whose errors are
``AssemblerError`` (a ValueError naming the line and what was expected). The interpreter is the
RMM's (rmm_mp.rmm.realm_run drives it); nothing here touches machine state.
"""

from rmm_mp.guest.assembler import AssemblerError, assemble

__all__ = ["AssemblerError", "assemble"]
