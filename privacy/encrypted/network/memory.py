"""A party's memory budget: what one example of a request costs, and reservations against the budget.

`request_bytes` bounds what a party allocates for a request of a given batch: a fixed part (temporaries
of the size of the largest weight matrix) plus, per example, its two input shares, the input check's
comparisons (2k + 1 residues per input value), the largest layer's values and windows, and the comparisons
of the layer that compares most (R residues per element, plus f for each truncation's carry; the
comparison's compiled kernels make no temporaries of that size), with a factor of safety; tests measure
the real peak with tracemalloc against it. A server reserves that from a `MemoryBudget` before it reads
a request's payload; the largest batch it accepts is what fits the budget (`largest_batch`).
`keep_freed_memory` has the C allocator keep a session's freed arrays for the next session.
"""

from __future__ import annotations

import ctypes
import math
import threading

import numpy as np

from privacy import validation
from privacy.encrypted.model.plan import Architecture, Conv2D, Pool2D
from privacy.encrypted.model.ranges import RangePlan
from privacy.encrypted.model.ring import FixedPoint
from privacy.encrypted.protocol.input_check import residues_per_value

SAFETY = 2
"""Factor between the estimate of the live arrays and the reservation (temporaries, allocator slack)."""
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
"""glibc's `mallopt` parameters (malloc.h)."""
HEAP_BELOW = 32 << 20
"""Bytes below which an allocation comes from the heap, not a mapping of its own (glibc's largest on 64 bits)."""
KEEP_FREE = 64 << 20
"""Free bytes at the top of a heap that the allocator keeps instead of returning them to the OS."""


def keep_freed_memory() -> bool:
    """Has glibc's allocator keep freed memory for the next allocations (process-wide: arrays below `HEAP_BELOW`
    bytes from the heap, and up to `KEEP_FREE` bytes free at the top of each heap kept): returns whether it could
    (False where the C library is not glibc; nothing changes there).

    By default glibc returns a session's large freed arrays to the OS, and the next session's first writes fault
    the pages in again, zeroed by the kernel: the input check's arrays at MLP batch 100 (about 12 MB in the three
    party threads) took up to 3,100 page faults a prediction (median 1,360 over 15 processes), each some
    microseconds of CPU (benchmarks/README.md, encrypted_inference, Dec 8 2026). The cost: a process's resident
    memory stays at its largest session's (which a server's `MemoryBudget` bounds) instead of shrinking between
    sessions."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, HEAP_BELOW)) & bool(mallopt(_M_TRIM_THRESHOLD, KEEP_FREE))


def _window_elements(architecture: Architecture) -> int:
    largest = 0
    for layer, shape in zip(architecture.layers, architecture.shapes()[:-1], strict=True):
        if isinstance(layer, Conv2D):
            out = layer.output_shape(shape)
            largest = max(largest, out[0] * out[1] * layer.kernel_size[0] * layer.kernel_size[1] * shape[-1])
        elif isinstance(layer, Pool2D):
            out = layer.output_shape(shape)
            largest = max(largest, out[0] * out[1] * layer.pool_size[0] * layer.pool_size[1] * shape[-1])
    return largest


RESIDUE_BYTES = 6
"""Per compared residue: the uint8 messages sent and received, the pair's multipliers and masks."""
ELEMENT_BYTES = 128
"""Per compared element: its split, bits, masks and result (uint64 arrays)."""


def fixed_bytes(architecture: Architecture) -> int:
    """Per request, independent of the batch: temporaries the size of the largest weight matrix."""
    shapes = [math.prod(kernel) for kernel, _ in architecture.weight_shapes().values()]
    return SAFETY * 3 * 8 * max(shapes, default=0)


def _check_residues(ranges: RangePlan, frac_bits: int) -> int:
    """Residues per example of the servers' input check (`input_check.residues_per_value` per input value)."""
    lo, hi = ranges.server_bounds.encoded(FixedPoint(frac_bits))
    return int(np.size(lo)) * residues_per_value(lo, hi)


def _compared(ranges: RangePlan, frac_bits: int) -> tuple[int, int]:
    """(residues, elements) per example of the layer that compares most: R per compared element, and f per
    truncated element for its carry."""
    layers: dict[str, list[int]] = {}
    for op in ranges.ops:
        work = layers.setdefault(op.layer, [0, 0])
        work[0] += op.elements * (frac_bits if op.kind == "trunc" else op.bits)
        work[1] += op.elements
    return max((tuple(w) for w in layers.values()), default=(0, 0))


def bytes_per_example(architecture: Architecture, ranges: RangePlan, frac_bits: int) -> int:
    """An upper bound on one party's memory per example of a prediction (either output)."""
    values = max([int(np.prod(s)) for s in architecture.shapes()] + [_window_elements(architecture)])
    # A value is at most an AShare (two uint64 arrays) plus a few temporaries of the same size.
    layer_bytes = 6 * 8 * values
    residues, elements = _compared(ranges, frac_bits)
    compare_bytes = residues * RESIDUE_BYTES + elements * ELEMENT_BYTES
    inputs = int(np.prod(architecture.input_shape))
    check_bytes = _check_residues(ranges, frac_bits) * RESIDUE_BYTES + inputs * ELEMENT_BYTES
    return SAFETY * (2 * 8 * inputs + check_bytes + max(layer_bytes, compare_bytes))


def request_bytes(model, batch: int) -> int:
    """An upper bound on one party's memory for a request of `batch` examples of `model` (a `PartyModel`)."""
    return fixed_bytes(model.architecture) + batch * bytes_per_example(
        model.architecture, model.ranges, model.fixed.frac_bits
    )


def largest_batch(model, budget: int) -> int:
    """The largest batch whose `request_bytes` fit `budget` (0 if none does; request_bytes grows with the batch)."""
    low, high = 0, max(budget // bytes_per_example(model.architecture, model.ranges, model.fixed.frac_bits), 0)
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if request_bytes(model, middle) <= budget else (low, middle - 1)
    return low


class MemoryBudget:
    """Thread-safe reservations of bytes against a fixed total, and against a quota per owner (a client).

    Args:
        total: bytes.
        quota: the most bytes one owner may hold at once (default: the total).
    """

    def __init__(self, total: int, quota: int | None = None):
        total = validation.integer("the memory budget", total, minimum=1, note="bytes")
        quota = total if quota is None else quota
        quota = validation.integer("the per-client quota", quota, minimum=1, maximum=total, note="bytes")
        self.total, self.quota = total, quota
        self._used = 0
        self._owners: dict = {}
        self._lock = threading.Lock()

    @property
    def used(self) -> int:
        return self._used

    def reserve(self, nbytes: int, owner=None) -> bool:
        """Takes `nbytes` for `owner` if they are free and within its quota; False (nothing taken) otherwise."""
        with self._lock:
            held = self._owners.get(owner, 0)
            if nbytes < 0 or self._used + nbytes > self.total or held + nbytes > self.quota:
                return False
            self._used += nbytes
            self._owners[owner] = held + nbytes
            return True

    def release(self, nbytes: int, owner=None) -> None:
        with self._lock:
            self._used = max(self._used - nbytes, 0)
            held = self._owners.pop(owner, 0) - nbytes
            if held > 0:
                self._owners[owner] = held
