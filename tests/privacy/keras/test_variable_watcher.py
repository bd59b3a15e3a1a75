"""The recorder notes a unit call's variable reads with TensorFlow's private `VariableWatcher`
(tensorflow.python.eager.record): if it moves or stops seeing reads, ppml fails with an error naming it, never
silently missing a weight read outside its layer (whose refusal cases_clipping checks)."""

import importlib.util

import pytest
import tensorflow as tf
from tensorflow.python.eager import record

from privacy.keras import recording


def test_a_tensorflow_without_the_watcher_fails_at_import_naming_it(monkeypatch):
    monkeypatch.delattr(record, "VariableWatcher")
    spec = importlib.util.spec_from_file_location("ppml_recording_probe", recording.__file__)
    with pytest.raises(ImportError, match=f"VariableWatcher.*TensorFlow {tf.__version__}"):
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


class _Blind:
    """A watcher that sees no read, as a changed private API might."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def watched_variables(self):
        return ()


def test_a_watcher_that_sees_no_reads_is_refused_before_recording(monkeypatch):
    monkeypatch.setattr(recording, "VariableWatcher", _Blind)
    monkeypatch.setattr(recording, "_WATCHER_SEES_READS", [])  # not yet checked in this process
    with pytest.raises(RuntimeError, match="VariableWatcher"):
        with recording.recording([]):
            pass


def test_the_installed_watcher_sees_reads(monkeypatch):
    monkeypatch.setattr(recording, "_WATCHER_SEES_READS", [])
    with recording.recording([]) as records:
        assert records.calls == {}
    assert recording._WATCHER_SEES_READS == [True]
