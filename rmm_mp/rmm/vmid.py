"""The VMID allocator: a bitmap of 65,536 bits in the control block, shared by every CPU.

Reserve is an atomic fetch-or of the VMID's bit (acquire-release) and succeeds only if the bit
was clear; free is an atomic fetch-and. No lock, as in TF-RMM. REALM_CREATE reserves last,
holding the RD and the roots, when nothing else can fail (TF-RMM rel0 reserves while it
validates the parameters and frees on a later failure, so a REALM_CREATE bound to fail could
make a concurrent valid one fail on the VMID); REALM_DESTROY frees only once all of its checks
have passed (TF-RMM fix f7c34940).
"""

from __future__ import annotations

from rmm_mp.hw.control import OFF_VMID_BITMAP, Control


def reserve(control: Control, vmid: int, vmid_bits: int) -> bool:
    """Take ``vmid``; False if it is out of range for the platform or already taken."""
    if not 0 <= vmid < (1 << vmid_bits):
        return False
    word = OFF_VMID_BITMAP + (vmid >> 6) * 8
    bit = 1 << (vmid & 63)
    return control.view.fetch_or_u64(word, bit) & bit == 0


def free(control: Control, vmid: int) -> None:
    word = OFF_VMID_BITMAP + (vmid >> 6) * 8
    control.view.fetch_and_u64(word, ~(1 << (vmid & 63)) & 0xFFFF_FFFF_FFFF_FFFF)


def in_use(control: Control, vmid: int) -> bool:
    word = OFF_VMID_BITMAP + (vmid >> 6) * 8
    return control.view.load_u64(word) & (1 << (vmid & 63)) != 0
