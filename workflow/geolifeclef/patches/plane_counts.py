"""Compiled loops over the planes of patches (numba), for ``geolifeclef.patches.stats``:
counting bytes and summing integers fast is what numpy and PIL have no way to do.

Each function is compiled at import for its one signature, or loaded from numba's cache
beside this file (``__pycache__``), so that no chunk of a job pays a compile. Measured
in bench/bench_patch_stats.py.
"""

import numba
import numpy as np


@numba.njit("int64[:, :](uint8[:, :])", nogil=True, cache=True)
def byte_counts(planes):
    """(R, 256) int64 counts of the byte values of each row of (R, N) uint8 ``planes``
    (any strides), in one pass: ~2x PIL's C histogram."""
    # Eight counters taken in turn: neighbouring pixels are often equal (smooth images,
    # runs of one land-cover code), and one counter would chain their increments (a
    # constant plane: 1.6x slower with four). uint32 counters (8 kB, in L1) hold rows of
    # up to 2^35 bytes.
    rows, n = planes.shape
    out = np.zeros((rows, 256), np.int64)
    counters = np.empty((8, 256), np.uint32)
    whole = n - n % 8
    for r in range(rows):
        counters[:] = 0
        row = planes[r]
        for i in range(0, whole, 8):
            for k in range(8):
                counters[k, row[i + k]] += 1
        for i in range(whole, n):
            counters[0, row[i]] += 1
        for v in range(256):
            total = 0
            for k in range(8):
                total += counters[k, v]
            out[r, v] = total
    return out


@numba.njit("int64[:, :](int16[:, ::1])", nogil=True, cache=True)
def integer_sums(values):
    """(R, 4) int64 sum, sum of squares, min and max of each row of (R, N) int16
    ``values`` in C order, in one pass: ~4x numpy's float64 way. Unit-stride rows are
    what lets the loop vectorise (compiled for any strides: 4x slower)."""
    rows, n = values.shape
    out = np.empty((rows, 4), np.int64)
    for r in range(rows):
        row = values[r]
        total = squares = np.int64(0)
        low = high = np.int64(row[0])
        for i in range(n):
            v = np.int64(row[i])
            total += v
            squares += v * v
            low = min(low, v)
            high = max(high, v)
        out[r, 0], out[r, 1], out[r, 2], out[r, 3] = total, squares, low, high
    return out
