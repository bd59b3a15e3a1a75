"""Constants of the float32 Box-Muller transform, shared by its TensorFlow ops (`privacy.keras.noise`) and its
compiled kernel (`privacy.keras.noise_kernel`), which bakes them into its machine code."""

import numpy as np

from privacy.accounting import noise_cutoff

SIN_COEFFICIENTS = (-1.6666654611e-1, 8.3321608736e-3, -1.9515295891e-4)
COS_COEFFICIENTS = (4.166664568298827e-2, -1.388731625493765e-3, 2.443315711809948e-5)
"""Cephes' float32 sinf and cosf on [-pi/4, pi/4]: sin t = t + t^3 P(t^2), cos t = 1 - t^2 / 2 + t^4 Q(t^2)
(`noise.box_muller_words` and the compiled kernel)."""
RADIUS_CAP = float(np.nextafter(np.float32(noise_cutoff.sampler_radius("float32") * (1 - 2.0**-20)), np.float32(0)))
"""The float32 radius, in stds, is capped at this (a float32 just below R (1 - 2^-20), R = sqrt(128 ln 2)): the
cosine and sine polynomials' error (below 1e-7) cannot then take a pair beyond R. Only the least w, 2^-64
(words[0] = words[1] = 0, probability 2^-64), reaches it: the next, 2^-63, gives R sqrt(63 / 64)."""
