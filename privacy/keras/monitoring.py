"""Training metrics kept from the callbacks of private training.

The loss and metrics Keras logs during ``fit`` are computed on the training batches without noise:
exact statistics of the training data. A callback that acts on them (EarlyStopping, ReduceLROnPlateau,
TerminateOnNaN, a ModelCheckpoint that keeps the best weights, any LambdaCallback or custom callback)
makes the released model depend on them outside the DP-SGD guarantee. So ppml's budget callback, which
runs first, removes them from the logs (`strip_training_metrics`) before any other callback, History,
the progress bar or TensorBoard sees them; the known deciding callbacks are refused up front with a
message (`training_metric_problems`). ``epsilon`` (a function of public hyperparameters) stays, and so
do validation metrics (``val_*``), computed on held-out data, whose records epsilon does not cover: the known
deciding callbacks that act on them are named (`validation_decisions`) for the ledger to list.
"""

from __future__ import annotations

DECIDING_CALLBACKS = ("EarlyStopping", "ReduceLROnPlateau", "ModelCheckpoint")
KEPT = "epsilon"
"""The one entry of the training logs that is not a statistic of the training data (besides ``val_*``)."""


def strip_training_metrics(logs) -> None:
    """Removes from ``logs`` (in place) every entry but ``epsilon`` and validation metrics (``val_*``)."""
    if logs is not None:
        for key in [k for k in logs if k != KEPT and not str(k).startswith("val_")]:
            del logs[key]


def _monitor(cb) -> str | None:
    """The metric a known deciding callback acts on, or None for any other callback."""
    names = [cls.__name__ for cls in type(cb).__mro__]
    kind = next((name for name in DECIDING_CALLBACKS if name in names), None)
    if kind is None or (kind == "ModelCheckpoint" and not getattr(cb, "save_best_only", False)):
        return None
    return str(getattr(cb, "monitor", "") or "")


def validation_decisions(callbacks) -> list[str]:
    """The known deciding callbacks among ``callbacks`` that act on a validation metric, as 'Class(monitor=...)':
    the model (its steps, learning rate or kept weights) then depends on held-out records epsilon does not cover.
    A custom callback reading ``val_*`` cannot be told apart and is not named."""
    monitors = [(cb, _monitor(cb)) for cb in callbacks]
    return [f"{type(cb).__name__}(monitor={m!r})" for cb, m in monitors if m is not None and m.startswith("val_")]


def training_metric_problems(callbacks) -> list[str]:
    """Why each callback that decides from a training metric breaks the guarantee (empty if none does)."""
    problems = []
    for cb in callbacks:
        monitor = _monitor(cb)
        if monitor is None or monitor == "epsilon" or monitor.startswith("val_"):
            continue
        problems.append(
            f"{type(cb).__name__}(monitor={monitor!r}) decides from a training metric, an exact "
            f"statistic of the training data that epsilon does not cover; monitor a validation metric "
            f"('val_{monitor}', on held-out data) or train a fixed number of steps"
        )
    return problems
