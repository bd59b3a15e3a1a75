"""A party's memory budget: what one example of a request costs, and reservations against the budget.

`request_bytes` bounds what a party allocates for a request of a given batch: a fixed part (temporaries
of the size of the largest weight matrix) plus, per example, its two input shares, the largest layer's
values and windows, and the largest comparison's test vectors (R residues per element and their int16
temporaries), with a factor of safety; tests measure the real peak with tracemalloc against it. A
server reserves that from a `MemoryBudget` before it reads a request's payload; the largest batch it
accepts is what fits the budget (`largest_batch`).
"""

from __future__ import annotations

import math
import threading

import numpy as np

from privacy.encrypted.model.plan import Architecture, Conv2D, Pool2D
from privacy.encrypted.model.ranges import RangePlan

SAFETY = 2
"""Factor between the estimate of the live arrays and the reservation (temporaries, allocator slack)."""


def _window_elements(architecture: Architecture) -> int:
    largest = 0
    for layer, shape in zip(architecture.layers, architecture.shapes()):
        if isinstance(layer, Conv2D):
            out = layer.output_shape(shape)
            largest = max(largest, out[0] * out[1] * layer.kernel_size[0] * layer.kernel_size[1] * shape[-1])
        elif isinstance(layer, Pool2D):
            out = layer.output_shape(shape)
            largest = max(largest, out[0] * out[1] * layer.pool_size[0] * layer.pool_size[1] * shape[-1])
    return largest


def fixed_bytes(architecture: Architecture) -> int:
    """Per request, independent of the batch: temporaries the size of the largest weight matrix."""
    shapes = [math.prod(kernel) for kernel, _ in architecture.weight_shapes().values()]
    return SAFETY * 3 * 8 * max(shapes, default=0)


def bytes_per_example(architecture: Architecture, ranges: RangePlan) -> int:
    """An upper bound on one party's memory per example of a prediction (either output)."""
    values = max([int(np.prod(s)) for s in architecture.shapes()] + [_window_elements(architecture)])
    # A value is at most an AShare (two uint64 arrays) plus a few temporaries of the same size.
    layer_bytes = 6 * 8 * values
    # A comparison of n elements with R bits: about ten int16/uint8 arrays of n * R, uint64 per element.
    compare_bytes = max([op.elements * (op.bits * 24 + 96) for op in ranges.ops if op.kind == "cmp"], default=0)
    inputs = 2 * 8 * int(np.prod(architecture.input_shape))
    return SAFETY * (inputs + max(layer_bytes, compare_bytes))


def request_bytes(architecture: Architecture, ranges: RangePlan, batch: int) -> int:
    """An upper bound on one party's memory for a request of `batch` examples."""
    return fixed_bytes(architecture) + batch * bytes_per_example(architecture, ranges)


def largest_batch(architecture: Architecture, ranges: RangePlan, budget: int) -> int:
    """The largest batch whose `request_bytes` fit `budget` (0 if none does)."""
    return max((budget - fixed_bytes(architecture)) // bytes_per_example(architecture, ranges), 0)


class MemoryBudget:
    """Thread-safe reservations of bytes against a fixed total."""

    def __init__(self, total: int):
        if isinstance(total, bool) or not isinstance(total, int) or total < 1:
            raise ValueError(f"the memory budget must be a positive number of bytes, got {total!r}")
        self.total = total
        self._used = 0
        self._lock = threading.Lock()

    @property
    def used(self) -> int:
        return self._used

    def reserve(self, nbytes: int) -> bool:
        """Takes `nbytes` if they are free; False (and nothing taken) otherwise."""
        with self._lock:
            if nbytes < 0 or self._used + nbytes > self.total:
                return False
            self._used += nbytes
            return True

    def release(self, nbytes: int) -> None:
        with self._lock:
            self._used = max(self._used - nbytes, 0)
