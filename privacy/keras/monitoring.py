"""Callbacks that decide from training metrics, which private training refuses.

The loss and metrics Keras logs during ``fit`` are computed on the training batches without noise:
exact statistics of the training data. A callback that acts on them (EarlyStopping, ReduceLROnPlateau,
a ModelCheckpoint that keeps the best weights) makes the released model depend on them outside the
DP-SGD guarantee. Monitoring ``epsilon`` (a function of public hyperparameters) is fine; so is a
validation metric (``val_*``), computed on held-out data, whose records epsilon does not cover.
"""

from __future__ import annotations

DECIDING_CALLBACKS = ("EarlyStopping", "ReduceLROnPlateau", "ModelCheckpoint")


def training_metric_problems(callbacks) -> list[str]:
    """Why each callback that decides from a training metric breaks the guarantee (empty if none does)."""
    problems = []
    for cb in callbacks:
        names = [cls.__name__ for cls in type(cb).__mro__]
        kind = next((name for name in DECIDING_CALLBACKS if name in names), None)
        if kind is None or (kind == "ModelCheckpoint" and not getattr(cb, "save_best_only", False)):
            continue
        monitor = str(getattr(cb, "monitor", "") or "")
        if monitor == "epsilon" or monitor.startswith("val_"):
            continue
        problems.append(f"{type(cb).__name__}(monitor={monitor!r}) decides from a training metric, an exact "
                        f"statistic of the training data that epsilon does not cover; monitor a validation metric "
                        f"('val_{monitor}', on held-out data) or train a fixed number of steps")
    return problems
