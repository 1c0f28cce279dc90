"""Reading an input file under a size bound: at most ``limit`` bytes, whatever the file is.

Every file a user names (a workload, platform or guest source, a schedule to replay, a token or
key to verify) is read through ``read_at_most``, so that a wrong path (a disk image, a file that grows while
read, and for a schedule, token or key also /dev/zero or a pipe that never ends) is refused
having read no more than its bound, and the refusal names the file, its size and the bound.
(A workload, platform or guest path that is not a regular file is refused before it is
opened: tomlsrc.why_not_a_file.)

This module owns that read and its error (TooLarge). It must not word a caller's message nor
decode what it reads: each caller turns TooLarge and OSError into its own error (a ConfigError,
a usage error). It imports nothing of rmm_mp, so that every layer may use it (hw and attest
included).
"""

from __future__ import annotations

import os
import stat


class TooLarge(ValueError):
    """A file holds more than the bytes its reader accepts.

    Attributes:
        path: the file as it was named.
        size: its size in bytes when the system knows it (a regular file), else None (a pipe,
            a device: only that it gave more than ``limit`` is known).
        limit: the most bytes it may hold.
    """

    def __init__(self, path: str | os.PathLike[str], size: int | None, limit: int) -> None:
        self.path = os.fspath(path)
        self.size = size
        self.limit = limit
        super().__init__(f"{self.path} has {self.size_text}; expected at most {limit:,} bytes")

    @property
    def size_text(self) -> str:
        """"1,048,577 bytes", or "more than 1,048,576 bytes" when the size is not known."""
        return f"{self.size:,} bytes" if self.size is not None else f"more than {self.limit:,} bytes"


def read_at_most(path: str | os.PathLike[str], limit: int) -> bytes:
    """The bytes of file ``path``, which must hold at most ``limit`` of them.

    Reads no more than ``limit`` + 1 bytes (a pipe or a growing file as well), so a larger
    file costs no more than a file of the bound.

    Raises:
        TooLarge: the file has more than ``limit`` bytes.
        OSError: the file cannot be opened or read (the caller words why).
    """
    with open(path, "rb") as file:
        data = file.read(limit + 1)
        if len(data) <= limit:
            return data
        info = os.fstat(file.fileno())
    # Only a regular file's st_size is its size (a pipe's or a device's is 0 or meaningless);
    # one that grew while it was read is at least as large as what it gave.
    size = max(info.st_size, len(data)) if stat.S_ISREG(info.st_mode) else None
    raise TooLarge(path, size, limit)
