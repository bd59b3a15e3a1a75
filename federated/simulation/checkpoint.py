"""Checkpoints of a simulation: server state, privacy budget, history and settings, written atomically.

The RNG state is the (seed, round) pair: every round's randomness derives from it, so a resumed run
continues exactly as an uninterrupted one. The budget's ledger is positional (`advance_to`), so
resuming never counts a round twice.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile

import numpy as np

from federated.simulation.history import History
from federated.strategies import ServerState
from privacy.accounting import PrivacyBudget

FORMAT = "ppml.federated.checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint is unreadable, not ppml's, or was written with other settings."""


def save_checkpoint(directory: str, state: ServerState, history: History, settings: dict) -> None:
    """Replaces ``directory/latest`` with this state (a crash leaves the old checkpoint or the new one)."""
    os.makedirs(directory, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".ckpt-", dir=directory)
    try:
        arrays = {f"weight_{i}": w for i, w in enumerate(state.weights)}
        arrays.update({f"slot_{name}": value for name, value in state.slots.items()})
        np.savez(os.path.join(staging, "arrays.npz"), **arrays)
        meta = {
            "format": FORMAT,
            "round": state.round,
            "num_weights": len(state.weights),
            "slots": sorted(state.slots),
            "scalars": state.scalars,
            "settings": settings,
            "budget": state.budget.to_dict() if state.budget is not None else None,
            "history": history.to_dict(),
        }
        with open(os.path.join(staging, "state.json"), "w") as f:
            json.dump(meta, f)
        target, old = os.path.join(directory, "latest"), os.path.join(directory, ".old")
        if os.path.exists(old):
            shutil.rmtree(old)
        if os.path.exists(target):
            os.replace(target, old)
        os.replace(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def load_checkpoint(directory: str) -> tuple[ServerState, History, dict] | None:
    """(state, history, settings) from ``directory``, or None when it holds no checkpoint.

    Raises:
      CheckpointError: for a checkpoint that is not one of ppml's, or is truncated or corrupt.
    """
    try:
        return _load(directory)
    except (OSError, EOFError, KeyError, TypeError, IndexError, zipfile.BadZipFile, json.JSONDecodeError) as err:
        raise CheckpointError(
            f"the checkpoint in {directory} is unreadable (truncated or corrupt?): {type(err).__name__}: {err}"
        ) from None


def _load(directory: str):
    target = os.path.join(directory, "latest")
    if not os.path.exists(os.path.join(target, "state.json")):
        old = os.path.join(directory, ".old")  # a crash between the two renames
        if not os.path.exists(os.path.join(old, "state.json")):
            return None
        target = old
    with open(os.path.join(target, "state.json")) as f:
        meta = json.load(f)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{target} is not a ppml federated checkpoint (format {FORMAT!r})")
    with np.load(os.path.join(target, "arrays.npz"), allow_pickle=False) as arrays:
        weights = [arrays[f"weight_{i}"] for i in range(meta["num_weights"])]
        slots = {name: arrays[f"slot_{name}"] for name in meta["slots"]}
    budget = PrivacyBudget.from_dict(meta["budget"]) if meta["budget"] is not None else None
    state = ServerState(round=meta["round"], weights=weights, slots=slots, scalars=meta["scalars"], budget=budget)
    return state, History.from_dict(meta["history"]), meta["settings"]
