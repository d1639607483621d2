"""Keep a long reading job's memory from creeping up: make glibc's malloc hand large freed blocks
back to the system.

glibc raises its mmap threshold each time a large block is freed, so once torch has freed a few big
tensors, later ones come from the heap, and a heap grown by many short-lived tensors of varying
shapes is rarely returned. Over a whole evaluation the process's RSS then climbs with the number of
batches read. A fixed threshold keeps every block of 128 KB or more in its own mapping, unmapped when
freed."""
from __future__ import annotations

import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3  # mallopt parameter (malloc.h)
THRESHOLD_BYTES = 128 * 1024  # glibc's initial threshold, held fixed


def return_freed_memory() -> bool:
    """Fix glibc's mmap threshold for this process; False where malloc is not glibc's (nothing done)."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, THRESHOLD_BYTES))
