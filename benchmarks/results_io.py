"""Writing a benchmark's JSON result with the facts of the machine that measured it.

Every script in benchmarks/ imports this module by name (``from results_io import write_results``):
the scripts run as ``python benchmarks/<script>.py``, which puts benchmarks/ first on ``sys.path``.
It imports only the standard library at load time, so that the scripts' worker interpreters (e.g.
the TF Privacy environment, which has no ppml) can import it too; `write_results`, which only the
ppml environment calls, writes through `privacy.atomic_files`.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform

MACHINE_KEY = "machine"
"""The key of the machine facts in every result file."""

VERSIONED = ("ppml", "numpy", "tensorflow", "keras", "tf-keras", "dp-accounting", "apache-beam", "tfx")
"""Distributions whose installed versions are recorded (None when not installed)."""


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info() -> dict:
    """Facts about this machine and environment, read now.

    Returns:
        A JSON-serializable dict: ``cpus`` (os.cpu_count()), ``cpus_usable`` (CPUs this process may run
        on), ``processor`` (platform.processor(), or the machine type where that is empty),
        ``platform``, ``node`` (host name), ``python`` (version), ``load_average`` (1, 5 and 15 minute
        load averages, or None where the OS has none) and ``versions`` (installed versions of
        ``VERSIONED``). Nothing is imported to read the versions.
    """
    try:
        load = list(os.getloadavg())
    except (AttributeError, OSError):
        load = None
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpus": os.cpu_count(),
        "cpus_usable": usable,
        "processor": platform.processor() or platform.machine(),
        "platform": platform.platform(),
        "node": platform.node(),
        "python": platform.python_version(),
        "load_average": load,
        "versions": {name: _version(name) for name in VERSIONED},
    }


def write_results(path: str, payload: dict) -> dict:
    """Writes ``payload`` and the machine facts as indented JSON to ``path``, all or nothing.

    The parent folder is created if missing. The JSON goes to a temporary file beside ``path`` that
    then replaces ``path`` in one step, so a reader (or a failed run) never sees a partial file.

    Args:
        path: the JSON file to write.
        payload: the benchmark's result; must be JSON-serializable and must not have the key
            ``MACHINE_KEY``, which this function fills with `machine_info()`.

    Returns:
        The dict written (``payload`` with ``MACHINE_KEY`` added last).

    Raises:
        ValueError: ``payload`` already has the key ``MACHINE_KEY``.
        TypeError: ``payload`` holds a value JSON cannot encode (``path`` is then left as it was).
    """
    if MACHINE_KEY in payload:
        raise ValueError(
            f"payload already has the key {MACHINE_KEY!r} (value {payload[MACHINE_KEY]!r}); "
            "write_results fills it with machine_info()"
        )
    from privacy.atomic_files import write_atomically

    result = {**payload, MACHINE_KEY: machine_info()}
    write_atomically(path, json.dumps(result, indent=2))  # encoding fails before anything is written
    os.chmod(path, 0o644)  # results are for everyone to read (the atomic write's temporary file is 0600)
    return result


def step_timings(ends: list[float], cpu_ends: list[float], warmup: int, data_mb: float) -> dict:
    """The timing row of one configuration from the wall (`time.perf_counter`) and process CPU (`time.process_time`)
    clock readings after each step: median and mean ms per timed step (the steps after ``warmup``), median CPU ms,
    peak RSS (MB) and ``data_mb``."""
    import resource

    import numpy as np

    times = np.diff(ends[warmup - 1 :]) * 1000
    cpu_times = np.diff(cpu_ends[warmup - 1 :]) * 1000
    return {
        "ms_per_step": float(np.median(times)),
        "ms_per_step_mean": float(np.mean(times)),
        "cpu_ms_per_step": float(np.median(cpu_times)),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "data_mb": data_mb,
    }
