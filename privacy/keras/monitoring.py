"""Training metrics kept from the callbacks of private training.

The loss and metrics Keras logs during ``fit`` are computed on the training batches without noise:
exact statistics of the training data. A callback that acts on them (EarlyStopping, ReduceLROnPlateau,
TerminateOnNaN, a ModelCheckpoint that keeps the best weights, any LambdaCallback or custom callback)
makes the released model depend on them outside the DP-SGD guarantee. So ppml's budget callback, which
runs first, removes them from the logs (`strip_training_metrics`) before any other callback, History,
the progress bar or TensorBoard sees them; the known deciding callbacks are refused up front with a
message (`training_metric_problems`). ``epsilon`` (a function of public hyperparameters) stays, and so
do validation metrics (``val_*``), computed on held-out data, whose records epsilon does not cover: the known
deciding callbacks that act on them are named (`validation_decisions`) for the ledger to list, and so is, when
the fit has validation data, every callback ppml does not know to leave them alone (`PASSIVE_CALLBACKS`, ppml's
own): a user's callback reading ``val_*`` may act on them or write them out (`MAY`); and every known one that
writes them to disk (`WRITERS`, a ModelCheckpoint whose file names hold one): files beside the run then hold exact
statistics of held-out records. History (kept in memory, returned by ``fit``) and the progress bar (printed to the
run's output) write no file: they are not named, though the values they show are the same exact statistics (README
says so).
"""

from __future__ import annotations

import string

from privacy.keras.params import DPConfigurationError
from privacy.validation_metrics import WRITERS

DECIDING_CALLBACKS = ("EarlyStopping", "ReduceLROnPlateau", "ModelCheckpoint")
"""Keras callbacks that act on the metric they ``monitor`` (ModelCheckpoint only with ``save_best_only``)."""
PASSIVE_CALLBACKS = (
    "History",
    "BaseLogger",
    "ProgbarLogger",
    "TensorBoard",
    "CSVLogger",
    "TerminateOnNaN",
)
"""Keras callbacks whose effect on the model does not depend on validation metrics: they record or print the
logs, or read the training loss only (removed from the logs: TerminateOnNaN). Known only as these exact Keras
classes, not as subclasses, nor as instances whose ``on_*`` hooks were replaced; one that runs user code
(LambdaCallback, LearningRateScheduler's schedule, which may read ``model.history``) is not known."""
WRITES = "writes validation metrics to disk"
MAY = "may act on validation metrics or write them out"
"""What an unknown callback may do with the validation metrics it is given (Keras' RemoteMonitor, not known, posts
every log entry to a server; a user's logger may write files)."""
KERAS_PACKAGES = ("keras", "tf_keras", "tensorflow")
OWN_MODULE = "privacy.keras.callback"
"""Where ppml's own callbacks are defined (`PrivacyBudgetCallback`, the state guard): they act on epsilon only."""
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


def _known(cb) -> bool:
    """Whether ``cb`` is exactly a Keras callback ppml knows (`DECIDING_CALLBACKS`, `PASSIVE_CALLBACKS`) or one of
    ppml's own, with none of its ``on_*`` hooks replaced on the instance: a subclass, a class of another module, or
    a hook set on the instance may read anything it is given."""
    cls = type(cb)
    if any(name.startswith("on_") for name in getattr(cb, "__dict__", {})):
        return False
    keras = cls.__module__.split(".")[0] in KERAS_PACKAGES and cls.__name__ in DECIDING_CALLBACKS + PASSIVE_CALLBACKS
    return keras or cls.__module__ == OWN_MODULE


def _filename_metrics(cb) -> list[str]:
    """The validation metrics a known ModelCheckpoint formats into its file names (``{val_loss:.2f}``, say);
    `DPConfigurationError` for a file name that is not a format template (Keras would fail at its first save, after
    an epoch's private steps, and ppml could not tell which metrics it writes)."""
    if type(cb).__name__ != "ModelCheckpoint":
        return []
    filepath = str(getattr(cb, "filepath", ""))
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(filepath)]
    except ValueError as e:
        raise DPConfigurationError(f"ModelCheckpoint's filepath {filepath!r} is not a format template: {e}") from None
    return sorted({f for f in fields if f and f.startswith("val_")})


def validation_decisions(callbacks, *, validation: bool) -> list[str]:
    """The callbacks among ``callbacks`` that act, or may act, on a validation metric, or write one to disk: the
    known deciding ones on a ``val_*`` metric, as 'Class(monitor=...)'; and, when the fit has validation data
    (``validation``), every callback ppml does not know (`_known`), as 'Class (may act on validation metrics or write
    them out)', and every known one that writes them (`WRITERS`; a ModelCheckpoint with one in its file names) as
    'Class (writes validation metrics to disk...)'. The model (its steps, learning rate or kept weights), or what
    was written, then depend, or may depend, on held-out records epsilon does not cover."""
    named = []
    for cb in callbacks:
        monitor, name = _monitor(cb), type(cb).__name__
        if monitor is not None and monitor.startswith("val_"):
            named.append(f"{name}(monitor={monitor!r})")
        elif validation and not _known(cb):
            named.append(f"{name} ({MAY})")
        if not (validation and _known(cb)):
            continue
        if name in WRITERS:
            named.append(f"{name} ({WRITES})")
        elif _filename_metrics(cb):
            named.append(f"{name} ({WRITES}: {', '.join(_filename_metrics(cb))} in its file names)")
    return named


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
