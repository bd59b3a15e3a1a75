"""The compiled noise kernel's machine-code cache follows the values it takes from `privacy.keras.noise_constants`."""

import glob
import os

_DRAW_AT_THE_LEAST_W = """
import numpy as np
from privacy.keras import noise_constants
{patch}
from privacy.keras import noise_kernel
z = noise_kernel.box_muller_words(np.zeros((3, 1), np.uint32))
print(float(z[0]), sum(noise_kernel.box_muller_words.stats.cache_hits.values()))
"""


def test_a_changed_radius_cap_is_never_served_from_the_cache_of_the_old_one(python_subprocess, tmp_path):
    """numba checks only the kernel's own file for changes, but the kernel bakes in `noise_constants.RADIUS_CAP`
    (from `privacy.accounting.noise_cutoff`) and the polynomials: a process whose cap differs from the cached code's
    draws with its own cap (the largest radius, at the least w), and the cache still serves an unchanged process."""
    env = {"XDG_CACHE_HOME": str(tmp_path), "NUMBA_CACHE_DIR": ""}

    def draw(patch=""):
        out = python_subprocess(_DRAW_AT_THE_LEAST_W.format(patch=patch), env=env).stdout.split()
        return float(out[-2]), int(out[-1])

    cap, _ = draw()
    assert glob.glob(os.path.join(tmp_path, "ppml", "numba", "**", "*.nbi"), recursive=True)
    assert draw("noise_constants.RADIUS_CAP = 5.0") == (5.0, 0)
    assert draw() == (cap, 1)
