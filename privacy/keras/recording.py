"""Clipping units of a Keras model, and a recorder of their inputs and outputs during one forward pass.

A *unit* is the smallest layer that owns trainable variables (a Dense, a GRU cell's RNN, a custom layer
with its own weights); every trainable variable of the model belongs to exactly one unit. While the
recorder is active, each unit's `call` is wrapped so that its rule can keep what it needs (for a Dense:
the input and the pre-activation output) for per-example gradient norms. The wrappers live on the layer
instances only for the duration of the `recording()` block, so saved models never see them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import types
from typing import Any

import tensorflow as tf

from privacy.keras import compat

try:  # private API (no public way to note a call's variable reads without a tape): checked, see _require_watcher
    from tensorflow.python.eager.record import VariableWatcher
except ImportError as err:
    raise ImportError(
        f"ppml's DP-SGD recorder needs tensorflow.python.eager.record.VariableWatcher, which TensorFlow "
        f"{tf.__version__} does not have; install the TensorFlow that setup.cfg pins"
    ) from err

_NONE = object()  # no instance-level `call`
_ACTIVE = threading.local()  # .records: the Records being filled in this thread, or None
_WATCHER_SEES_READS: list[bool] = []  # [True] once `_require_watcher` has seen the watcher note a read


@dataclasses.dataclass
class Call:
    """One call of a unit's layer: what its rule kept, and the tensors to differentiate the loss by."""

    kept: dict[str, Any]
    targets: list  # flat list of tensors; the loss is differentiated with respect to them


@dataclasses.dataclass(eq=False)
class Unit:
    """A layer whose trainable variables are clipped together by one rule."""

    layer: Any
    rule: Any  # privacy.keras.layer_rules.LayerRule
    variables: list

    @property
    def name(self) -> str:
        return f"{self.layer.name} ({type(self.layer).__name__}, {self.rule.name})"


def find_units(model, rule_for) -> list[Unit]:
    """Splits ``model``'s trainable variables into units; ``rule_for(layer)`` picks each unit's rule.

    A layer becomes a unit when ``rule_for`` gives it a dedicated (non-fallback) rule, when it owns
    trainable variables itself, or when it is a recurrent/wrapper layer whose sublayers run inside a
    loop or on reshaped batches (a Bidirectional wrapper is not, when both its layers have dedicated rules:
    it calls each on the whole batch); otherwise its sublayers are searched.

    Raises:
      ValueError: if some trainable variable belongs to no layer.
    """
    units: list[Unit] = []

    def visit(layer):
        if not layer.trainable or not layer.trainable_variables or any(u.layer is layer for u in units):
            return  # a layer shared by two parents is one unit
        rule = rule_for(layer)
        whole = runs_sublayers_in_loop(layer) and not _directions_have_rules(layer, rule_for)
        if not rule.is_fallback or compat.own_trainable_variables(layer) or whole:
            units.append(Unit(layer, rule, list(layer.trainable_variables)))
            return
        for sub in compat.sublayers(layer):
            visit(sub)

    if compat.own_trainable_variables(model):
        units.append(Unit(model, rule_for(model), list(model.trainable_variables)))
    else:
        for sub in compat.sublayers(model):
            visit(sub)
    covered = {id(v) for unit in units for v in unit.variables}
    missing = [v.name for v in model.trainable_variables if id(v) not in covered]
    if missing:
        raise ValueError(
            f"trainable variables {missing} belong to no layer of the model; DP-SGD clips per "
            f"layer, so create variables inside layers (e.g. with add_weight in a Layer)"
        )
    return units


def _directions_have_rules(layer, rule_for) -> bool:
    """Whether ``layer`` is a Bidirectional wrapper (Keras' own) whose two layers both have dedicated rules."""
    if type(layer) is not compat.keras_of(layer).layers.Bidirectional:
        return False
    return all(not rule_for(sub).is_fallback for sub in (layer.forward_layer, layer.backward_layer))


def runs_sublayers_in_loop(layer) -> bool:
    """RNNs run their cell in a loop and TimeDistributed folds time into the batch: clip them whole."""
    names = {cls.__name__ for cls in type(layer).__mro__}
    return bool(names & {"RNN", "Bidirectional", "TimeDistributed"})


class Records:
    """What every unit's calls kept during one forward pass.

    ``outside`` watches the variables read outside the units' calls, and each unit's call is watched for
    variables it does not own: a trainable variable read there (another layer computing with a unit's
    weights) has gradient paths no rule sees. A call's reads are noted by TensorFlow's `VariableWatcher` (a
    private API: checked once per process, an error if it moved or sees no read), not a second
    `tf.GradientTape`: a tape would record every op of the call again, and a loop under two tapes is wrapped
    in a function whose gradient fills zeros for each of the loop's saved intermediates (the recurrent
    rules). ``inside`` is the unit whose call is running: a unit called within it (a layer shared by two
    parents) is part of that call, whose rule covers it.
    """

    def __init__(self):
        self.calls: dict[int, list[Call]] = {}
        self.outside = tf.GradientTape(watch_accessed_variables=True)
        self.inside: Unit | None = None
        self._foreign: set[int] = set()  # handles read inside the call of a unit that does not own them

    def add(self, unit: Unit, call: Call) -> None:
        self.calls.setdefault(id(unit), []).append(call)

    def of(self, unit: Unit) -> list[Call]:
        return self.calls.get(id(unit), [])

    def targets(self, units) -> list:
        return [t for unit in units for call in self.of(unit) for t in call.targets]

    def note_reads(self, unit: Unit, read) -> None:
        """Notes the variables ``read`` during a call of ``unit`` that it does not own."""
        own = {id(v.handle) for v in unit.variables}
        self._foreign.update(id(v.handle) for v in read if id(v.handle) not in own)

    def read_outside(self, variables) -> list:
        """Those of ``variables`` that the forward pass read outside every unit's call, or inside the call
        of a unit that does not own them."""
        seen = {id(v.handle) for v in self.outside.watched_variables()} | self._foreign
        return [v for v in variables if id(v.handle) in seen]


@contextlib.contextmanager
def recording(units):
    """Wraps the units' `call` for the duration of the block; yields the `Records` being filled."""
    _require_watcher()
    records = Records()
    previous = getattr(_ACTIVE, "records", None)
    _ACTIVE.records = records
    patched = []  # (layer, the instance-level `call` it had, or _NONE)
    try:
        for unit in units:
            own = vars(unit.layer).get("call", _NONE)
            if own is _NONE or _is_class_call(unit.layer, own):
                object.__setattr__(unit.layer, "call", _wrapper(unit))
                patched.append((unit.layer, own))
        with records.outside:
            yield records
    finally:
        for layer, own in patched:
            if own is _NONE:
                object.__delattr__(layer, "call")
            else:
                object.__setattr__(layer, "call", own)
        _ACTIVE.records = previous


def _is_class_call(layer, call) -> bool:
    """Whether ``call``, set on ``layer`` itself, is only its class's `call` bound to it: tf-keras leaves one on every
    layer after `tf.saved_model.save` (restoring what it wrapped). A bound method exactly: a proxy passes on
    ``__self__`` and ``__func__`` (wrapt's, which TensorFlow installs). Any other instance-level `call` (ours, in a
    nested recording or for a layer in two units; a caller's) is left alone, and a call it makes is not recorded."""
    return type(call) is types.MethodType and call.__self__ is layer and call.__func__ is type(layer).call


def _require_watcher() -> None:
    """Checks once per process that `VariableWatcher` notes a variable read (in a graph of its own: no strategy
    scope, no outer function); raises RuntimeError if not, as the refusal of weights read outside their layers
    depends on it."""
    if _WATCHER_SEES_READS:
        return
    with tf.Graph().as_default():
        probe = tf.Variable(0.0)
        with VariableWatcher() as reads:
            probe.read_value()
        seen = any(v is probe for v in reads.watched_variables())
    if not seen:
        raise RuntimeError(
            f"TensorFlow {tf.__version__}'s VariableWatcher (tensorflow.python.eager.record) no longer notes "
            "variable reads; ppml's DP-SGD recorder cannot check which layer reads which weights with it. "
            "Install the TensorFlow that setup.cfg pins"
        )
    _WATCHER_SEES_READS.append(True)


def _wrapper(unit: Unit):
    @tf.autograph.experimental.do_not_convert
    def call(*args, **kwargs):
        original = compat.class_call(unit.layer)
        records = getattr(_ACTIVE, "records", None)
        if records is None or records.inside is not None:  # another thread's forward pass, or within a unit
            return original(*args, **kwargs)
        records.inside = unit
        try:
            with records.outside.stop_recording(), VariableWatcher() as reads:
                outputs, kept_call = unit.rule.forward(unit.layer, original, args, kwargs)
        finally:
            records.inside = None
        records.note_reads(unit, reads.watched_variables())
        records.add(unit, kept_call)
        return outputs

    return call
