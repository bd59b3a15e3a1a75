"""The prime of the secure comparison's test vectors, in a module of its own so that the comparison and its
compiled kernels (`kernels`, which imports numba) share one definition without the other importing numba."""

MODULUS = 127
"""The prime p of the helper's test vectors: larger than every w_i (at most R + 2 <= 65), and 2^7 - 1,
so that residues fit a byte and sample with few rejections."""
