"""The privacy ledger of a trained model, and its epsilon as ML Metadata properties.

Every private trainer in `pipelines/` (the DP Trainer's DP-SGD, the Federated Trainer's DP-FedAvg, the PATE
Trainer's aggregation) writes one JSON ledger into the exported SavedModel, ``<serving model dir>/assets.extra/
privacy_ledger.json``, so it travels with the model wherever the Pusher or a serving system copies
it. The ledger holds the
`privacy.accounting.PrivacyBudget` the training composed (its dp-accounting DpEvents, neighbouring
relation, target delta and accountants), the mechanism's public hyperparameters, and, for DP-SGD,
the `privacy.accounting.PrivacyReport` of the run. Epsilon is recomputed from the DpEvents on every
read, so a ledger cannot claim an epsilon its events do not support.

The ledger covers the whole artifact. When the model embeds a Transform graph, its preprocessing
releases (`privacy.preprocessing.PreprocessingPart`) come first in the budget; then the push decision the
trainer reserved (`privacy.decision.NoisyAccuracy`: the Private Evaluator releases a noisy accuracy with
exactly that noise); then the training's events. The epsilon is the composition of all in one accountant
(RDP and PLD); each part's epsilon alone is listed beside it (`parts`). The delta is the accountant's delta
plus the delta that thresholded partition selection adds (`additive_delta`, never multiplied by e^epsilon:
see `privacy.preprocessing.partition_selection`), plus what the training's samplers add, as its report adds them
(`privacy.accounting.report.added_deltas`): the noise sampler's cut-off (`cutoff_delta`,
``parameters['noise_cutoff']``: `privacy.accounting.noise_cutoff`) and noisy padding's clamp (`clamp_delta`,
``parameters['batch_size_noise_multiplier']``: `privacy.accounting.noisy_padding`).

Trainer executors copy the headline numbers into custom properties of the Model artifact in
ML Metadata (`MODEL_PROPERTIES`); `model_properties` reads them back from a TFX artifact or a raw
MLMD artifact proto. This module imports neither TensorFlow nor TFX.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import functools
import json
import math
import os
from typing import Any, Sequence

from privacy import validation
from privacy.accounting import (
    SLACK,
    SLACK_TEXT,
    Adjacency,
    DpSgdMechanism,
    NeighboringRelation,
    NoiseCutoff,
    PrivacyBudget,
    PrivacyReport,
    dp_accounting_version,
    dp_sgd_report,
    event_to_json,
)
from privacy.accounting.noise_cutoff import NoiseCutoffError, NoiseDraws, sampler_radius
from privacy.accounting.noisy_padding import UNCOVERED_PADDING, ClampDeltaError
from privacy.accounting.report import added_deltas
from privacy.atomic_files import write_atomically
from privacy.decision import NoisyAccuracy
from privacy.preprocessing import PreprocessingPart, RecordError
from privacy.validation_metrics import WRITERS

LEDGER_FORMAT = "ppml.privacy_ledger/1"
LEDGER_FILE = "privacy_ledger.json"
LEDGER_SUBDIR = "assets.extra"
"""SavedModel sub-folder for files that are not read by the loaders but travel with the model."""
DP_SGD = "dp-sgd"
DP_FEDAVG = "dp-fedavg"
"""Client-level DP-FedAvg: a `DpSgdMechanism` with clients as examples and rounds as steps."""
PATE = "pate"
"""PATE's noisy aggregation of teacher votes (`privacy.pate`): the labels the student learns from, accounted by
the data-independent analysis (Gaussian events per query, `privacy.pate.data_independent`)."""

PATE_ANALYSIS = (
    "data-independent: Gaussian events per query (Papernot et al. 2018, Prop. 8), composed by "
    "dp-accounting's accountants"
)
"""Which analysis gives a PATE ledger's epsilon without a smoothed release (with one: `privacy.pate.analysis.COMPOSED`,
and the release itself is labelled `privacy.pate.analysis.SMOOTHED`)."""

INFERRED_SPEC = {
    "feature spec inferred from the data": "each record is read, and the pushed model's serving signature parses "
    "raw examples, against the raw feature spec of the Transform graph or the schema, which SchemaGen infers from "
    "the private examples (and CsvExampleGen types each CSV column from all its values): one record can change that "
    "spec (a feature's type, FixedLen or VarLen), and with it the signature and which records conform; set "
    "public_schema once the schema and the examples' feature kinds are fixed before the data is read (e.g. "
    "ImportSchemaGen, the pipeline's schema_file)"
}
"""Listed outside the guarantee of a private run whose spec comes from a schema not declared public."""
SEPARATE_RUNS = {
    "separate runs on the same data": "this epsilon covers this model alone; models trained on the same records by "
    "separate runs (a re-run, another budget) compose: their epsilons add up (basic composition), and a "
    "serving_model folder holding several of them releases all"
}
"""Listed outside the guarantee of every private run: the ledger accounts one run."""
PUBLIC_DATASET_SIZE_NAME = "dataset size n"
PUBLIC_CLIENT_COUNT_NAME = "client count N"
PUBLIC_SIZE_NAMES = (PUBLIC_DATASET_SIZE_NAME, PUBLIC_CLIENT_COUNT_NAME)


def public_dataset_size(n: int, unit: str | None = None, *, adjacency: Adjacency) -> dict[str, str]:
    """The outside-the-guarantee entry every DP-SGD ledger (n training examples) and DP-FedAvg ledger (N of its
    privacy ``unit``, 'client' or 'user': the population its rounds sample) holds: the size is published and assumed
    public, under either ``adjacency``. Recomputed on read (`PrivacyLedger.from_dict`): the size is in every ledger."""
    if unit is not None:
        name, size, sets = PUBLIC_CLIENT_COUNT_NAME, f"N = {n} {unit}s", f"q = {unit}s per round / N"
    else:
        name, size, sets = PUBLIC_DATASET_SIZE_NAME, f"n = {n} training examples", "q = B / n and the steps of an epoch"
    neighbours = (
        "add-remove neighbours differ in it"
        if Adjacency(adjacency) is Adjacency.ADD_REMOVE
        else "replace-one neighbours share it: the guarantee takes it as known"
    )
    return {
        name: f"{size} is treated as public: it is in the ledger and sets the sampling probability {sets}; epsilon "
        f"does not cover it ({neighbours})"
    }


CUT_BATCHES_NAME = "count of cut batches"
CUT_BATCHES = {
    CUT_BATCHES_NAME: "truncated Poisson sampling's epsilon (TruncatedSubsampledGaussianDpEvent) covers the noisy "
    "steps with the cut hidden; the count of batches cut (parameters['truncated_batches'], counted when drawn) is "
    "released beside them and depends on the batch sizes drawn, hence on the dataset size and, under add-remove, on "
    "whether an example is present (per step P(cut) moves by q P(N = K), N ~ Binomial(n, q)); no epsilon covers it"
}
"""Listed outside the guarantee of every ledger that states how many batches truncated Poisson sampling cut."""
STOPPED_EARLY_NAME = "when training stopped"


def stopped_early(steps_taken: int, planned: int) -> dict[str, str]:
    """The outside-the-guarantee entry of a DP-SGD run that took fewer noisy steps than it planned."""
    return {
        STOPPED_EARLY_NAME: f"the run took {steps_taken} of its {planned} planned noisy steps; epsilon accounts the "
        "steps taken, but not what decided the stop: a callback on validation metrics (EarlyStopping, say) reads "
        "exact statistics of held-out records, and the model and its number of steps then depend on them"
    }


VALIDATION_DECISIONS_NAME = "decisions on validation metrics"
VALIDATION_DECISIONS = "validation_decisions"
"""The DP-SGD ledger's parameter recording them: a list of callback names, or null where the run did not report."""
VALIDATION_WRITERS = "validation_writers_recorded"
"""The DP-SGD ledger's parameter (true) saying its `VALIDATION_DECISIONS` name the callbacks that wrote validation
metrics to disk too: a file without it (written before ppml named them) lists them as unknown on read."""


def validation_decided(callbacks: Sequence[str] | None) -> dict[str, str]:
    """The outside-the-guarantee entry of a DP-SGD run whose callbacks acted on validation metrics or wrote them to
    disk (names as `privacy.keras.monitoring.validation_decisions` gives them), none for no such callback, or
    `UNKNOWN_VALIDATION_DECISIONS` where the run did not say (None)."""
    if callbacks is None:
        return dict(UNKNOWN_VALIDATION_DECISIONS)
    if not callbacks:
        return {}
    return {
        VALIDATION_DECISIONS_NAME: f"callbacks of the run acted, or may have acted, on validation metrics, or wrote, "
        f"or may have written, them out ({', '.join(callbacks)}; each name says which): the model (its steps, "
        "learning rate or kept weights), or what was written, depend, or may depend, on exact statistics of held-out "
        "records, which epsilon does not cover"
    }


UNKNOWN_VALIDATION_DECISIONS = {
    VALIDATION_DECISIONS_NAME: "unknown: the run did not report whether its callbacks acted on validation metrics "
    "or wrote them out (a run_fn that did not pass privacy.keras.PrivateTraining.validation_decisions, a training "
    "state saved before ppml kept them, or a ledger file written before ppml recorded them), so the model (its steps, "
    "learning rate or kept weights), or files it wrote, may depend on exact statistics of held-out records, which "
    "epsilon does not cover"
}
"""Listed outside the guarantee of a DP-SGD ledger written, or read back, without its run's validation decisions."""
UNKNOWN_VALIDATION_WRITERS = {
    "validation metrics written to disk": "unknown: this ledger file was written before ppml recorded the callbacks "
    f"that write validation metrics to disk ({', '.join(WRITERS)}, a ModelCheckpoint with one in its file names), so "
    "files beside the run may hold exact statistics of held-out records, which epsilon does not cover"
}
"""Listed outside the guarantee of a DP-SGD ledger file read back whose validation decisions predate the writers
(no `VALIDATION_WRITERS`)."""

UNCOVERED_PADDING_NAME = "step durations (skip_padding)"
UNCOVERED_PADDING_PARAMETER = "uncovered_padding"
"""The DP-SGD ledger's parameter recording whether steps left their padding out without noisy padding (true, false),
or null where the run did not report it."""


def padding_left_out(uncovered: bool | None) -> dict[str, str]:
    """The outside-the-guarantee entry of a DP-SGD run whose steps left their batch's padding out without noisy
    padding (``uncovered`` True: `privacy.keras.PrivateTraining.uncovered_padding`), none where none did (False), or
    that it is unknown (None: not reported)."""
    if uncovered is None:
        return {
            UNCOVERED_PADDING_NAME: "unknown: the run did not report whether its steps left their batch's padding "
            "out without noisy padding (skip_padding: a run_fn that did not pass privacy.keras.PrivateTraining."
            "uncovered_padding, a training state saved before ppml recorded it, or a ledger file written before ppml "
            "recorded it), so each step's duration may follow the batch size drawn, which epsilon does not cover"
        }
    return {UNCOVERED_PADDING_NAME: UNCOVERED_PADDING} if uncovered else {}


FLOAT_SUM_NAME = "rounding of the sum across clipping units"


FLOAT_SUM_ROUNDOFF_BITS = {"float32": 24, "float64": 53}
"""-log2 of the unit roundoff of the dtypes a private step runs in."""


def float_sum(dtype: str, *, told: bool = True) -> dict[str, str]:
    """The outside-the-guarantee entry of a DP-SGD run whose step sums the clipped gradients in ``dtype`` ('float32'
    or 'float64'; ``told`` False: assumed float32, the ledger does not tell): README's floating-point section, where
    it is measured (float32). Nothing bounds this rounding in either dtype, only its order differs (unit roundoff)."""
    bits = FLOAT_SUM_ROUNDOFF_BITS[dtype]
    named = dtype if told else f"{dtype} (unless the model is float64: this ledger records no noise draws to tell)"
    measured = "; measured: at most C (1 + 1.1e-5) with 256 adversarial records among 512" if dtype == "float32" else ""
    return {
        FLOAT_SUM_NAME: f"the step sums the clipping units' clipped gradients in {named}, each addition rounded "
        "relative to the running sum of the others' terms, so removing a unit can also move the others' rounding: "
        f"the clip's C (1 + {SLACK_TEXT}) bounds each unit's own terms, not that (worst case of order 2^-{bits} T U^2 "
        f"C for U units of T positions, beyond the {SLACK_TEXT} slack once T U^2 exceeds "
        f"2^{bits + int(math.log2(SLACK))}{measured}); ppml does not bound it"
    }


_ADDED_TO_THE_SUM = (
    "adds it to the float sum: the cut-off of the draws' radius is accounted where the ledger records the draws "
    "(noise_cutoff), their rounding and finite resolution and the noisy sum's are not, and the low-order bits of a "
    "noisy value can depend on the sum beneath (Mironov 2012)"
)


def _floating_point_noise(sampler: str, use: str = _ADDED_TO_THE_SUM) -> dict[str, str]:
    """The outside-the-guarantee entry of noise drawn in floating point by ``sampler`` and used as ``use`` says (in
    words: what is accounted of it and what is not)."""
    return {
        "floating-point noise": "the accountant assumes real-valued Gaussian noise; ppml draws it in floating point "
        f"({sampler}) and {use}; the noise is not hardened against this (no snapping)"
    }


FLOATING_POINT_NOISE = _floating_point_noise("Box-Muller on Philox words")
"""Listed outside the guarantee of every DP-SGD ledger (README: not hardened against floating-point attacks)."""
FEDAVG_FLOATING_POINT_NOISE = _floating_point_noise(
    "float64 Box-Muller on Philox words seeded from the OS CSPRNG; numpy's generator under seeded noise"
)
"""Listed outside the guarantee of every DP-FedAvg ledger (`FLOATING_POINT_NOISE`'s caveat, its server's sampler)."""
PATE_FLOATING_POINT_NOISE = _floating_point_noise(
    "numpy's float64 normal on Philox keyed from the OS CSPRNG; seeded under a noise seed",
    "adds it to the teachers' vote counts: its rounding and finite resolution are not accounted; the labels and "
    "which queries are answered follow the noisy counts through comparisons only, but a smoothed release publishes a "
    "float64 noisy value, whose low-order bits can depend on the value beneath (Mironov 2012)",
)
"""Listed outside the guarantee of every PATE ledger (`privacy.pate`'s noise, `privacy.preprocessing.noise.NoiseSource`:
the accountant's caveat as for DP-SGD's)."""


def floating_point(parameters: dict[str, Any]) -> dict[str, str]:
    """The floating-point entries outside the guarantee of the DP-SGD ledger with ``parameters``: the noise's
    (`FLOATING_POINT_NOISE`) and the sum's across units (`float_sum`), in float64 where its noise draws
    (``parameters['noise_cutoff']``, cut at float64's radius) show a float64 step, else float32 (assumed where the
    ledger records no draws). A private step runs in float32 or float64."""
    stored = parameters.get("noise_cutoff")
    if stored is None:
        entry = float_sum("float32", told=False)
    else:
        float64 = isinstance(stored, dict) and stored.get("radius") == sampler_radius("float64")
        entry = float_sum("float64" if float64 else "float32")
    return {**entry, **FLOATING_POINT_NOISE}


UNKNOWN_NOISE_CUTOFF = {
    "noise cut-off": "the run did not say which Box-Muller pairs its noise sampler drew, so the delta that the "
    "sampler's cut-off adds (privacy.accounting.noise_cutoff; ppml's: radius 9.42 stds in float32, 12.0 in float64; "
    "seeded numpy noise: 13.7 per coordinate) is not in this ledger's delta"
}
"""Listed outside the guarantee of a DP-SGD or DP-FedAvg ledger written without its noise draws (`NoiseDraws`)."""

PRIVACY_UNITS = ("example", "user", "client")
"""What neighbouring data sets differ in: one example; all examples of one user (DP-SGD's group privacy over
``max_examples_per_user``, or FedAvg with one client per user key); all examples of one client that ppml cut
from the data (FedAvg over a keyed partition). A guarantee in one unit is not one in another."""

# Custom properties of the Model artifact (MLMD). Floats unless noted.
PRIVATE = "private"  # int: 1 trained with a DP trainer (ledger present), 0 not
EPSILON = "epsilon"  # the guarantee: smallest epsilon over the accountants
EPSILON_ACCOUNTANT = "epsilon_accountant"  # string: rdp | pld, the accountant that gave EPSILON
DELTA = "delta"
EPSILON_RDP = "epsilon_rdp"
EPSILON_PLD = "epsilon_pld"
NOISE_MULTIPLIER = "noise_multiplier"
L2_NORM_CLIP = "l2_norm_clip"
DP_STEPS = "dp_steps"  # int: noisy steps taken
SAMPLING = "sampling"  # string: poisson | fixed | shuffle
ADJACENCY = "adjacency"  # string: add-remove | replace-one
PRIVACY_MECHANISM = "privacy_mechanism"  # string: e.g. dp-sgd
ACCOUNTANT_VERSION = "accountant_version"  # string: e.g. dp-accounting 0.6.0
PRIVACY_LEDGER_URI = "privacy_ledger_uri"  # string
PRIVACY_UNIT = "privacy_unit"  # string: one of PRIVACY_UNITS
EPSILON_PREPROCESSING = "epsilon_preprocessing"  # the preprocessing releases alone (smallest over accountants)
EPSILON_TRAINING = "epsilon_training"  # the training alone
EPSILON_RECORD_LEVEL = "epsilon_record_level"  # a keyed client partition's one-record figure (record_level_epsilon)
RECORD_ADJACENCY = "record_adjacency"  # the record relation epsilon_record_level covers: add-remove
EPSILON_RECORD_REPLACED = "epsilon_record_replaced"  # one record replaced: two clients (replaced_record_epsilon)
EPSILON_DECISION = "epsilon_decision"  # the push decision's release alone (reserved by the trainer)
MLMD_DECIMALS = 6
"""ml-metadata's SQLite store keeps a double property to 6 decimal places, rounded to nearest (measured: 2.9997151488
reads back 2.999715, 1.23456789e-4 as 0.000123, 4.99e-7 as 0.0), however many significant digits that leaves."""
MODEL_PROPERTIES = (
    PRIVATE,
    EPSILON,
    EPSILON_ACCOUNTANT,
    DELTA,
    EPSILON_RDP,
    EPSILON_PLD,
    NOISE_MULTIPLIER,
    L2_NORM_CLIP,
    DP_STEPS,
    SAMPLING,
    ADJACENCY,
    PRIVACY_MECHANISM,
    ACCOUNTANT_VERSION,
    PRIVACY_LEDGER_URI,
    PRIVACY_UNIT,
    EPSILON_PREPROCESSING,
    EPSILON_TRAINING,
    EPSILON_RECORD_LEVEL,
    RECORD_ADJACENCY,
    EPSILON_RECORD_REPLACED,
    EPSILON_DECISION,
)


class LedgerError(ValueError):
    """A ledger file is unreadable, malformed or inconsistent."""


@dataclasses.dataclass(frozen=True)
class PrivacyLedger:
    """What one private training run spent.

    Attributes:
      budget: the budget the training composed: DpEvents, relation, target delta, accountants.
      mechanism: which mechanism ran, e.g. `DP_SGD`.
      parameters: the mechanism's public hyperparameters (JSON values). For DP-SGD: the fields of
        `DpSgdMechanism` plus ``l2_norm_clip`` (C) and ``delta_is_default``; for DP-FedAvg the
        `DpSgdMechanism` fields of its client-level mechanism and the clipping settings.
      trainer: free-form JSON facts about the trainer (module, library versions).
      preprocessing: the releases of the model's preprocessing, accounted before the training's
        events; None when the model embeds no Transform graph.
      decision: the push decision's release (a noisy accuracy on the held-out split), reserved by the
        trainer and accounted after the preprocessing; None when no budget was reserved for it (then the
        Private Evaluator cannot decide on utility within the guarantee).
    """

    budget: PrivacyBudget
    mechanism: str
    parameters: dict[str, Any]
    trainer: dict[str, Any] = dataclasses.field(default_factory=dict)
    preprocessing: PreprocessingPart | None = None
    decision: NoisyAccuracy | None = None

    @classmethod
    def for_dp_sgd(
        cls,
        mechanism: DpSgdMechanism,
        *,
        l2_norm_clip: float,
        delta: float,
        delta_is_default: bool = False,
        budget: PrivacyBudget | None = None,
        trainer: dict[str, Any] | None = None,
        preprocessing: PreprocessingPart | None = None,
        decision: NoisyAccuracy | None = None,
        truncated_batches: int | None = None,
        outside_guarantee: dict[str, str] | None = None,
        noise_draws: NoiseDraws | None = None,
        validation_decisions: Sequence[str] | None = None,
        uncovered_padding: bool | None = None,
    ) -> "PrivacyLedger":
        """The ledger of a DP-SGD run that took ``mechanism.steps`` noisy steps (with noisy padding where
        ``mechanism.batch_size_noise_multiplier`` says: its row count is then covered, its clamp's delta added).

        Args:
          delta: the artifact's delta before the training's samplers add theirs (the accountant's plus the
            preprocessing's additive delta); the ledger's `delta` also adds `cutoff_delta` and `clamp_delta`.
          budget: the budget the training callback composed (the training's events only); when None,
            one is composed from ``mechanism`` (``mechanism.unit_event()`` x ``mechanism.units()``).
          preprocessing: the preprocessing releases the model carries, composed before the training.
          decision: the push decision's release, composed after the preprocessing, before the training.
          truncated_batches: under truncated Poisson sampling (``mechanism.truncated_batch_size``), how many
            batches the sampler cut (counted when drawn: a batch prefetched but not trained on may be
            included); required then, recorded as ``parameters['truncated_batches']`` and listed outside the
            guarantee (`CUT_BATCHES`: no epsilon covers the count).
          outside_guarantee: what the model or run shows that epsilon does not cover ({name: why}).
          noise_draws: what the sampler that drew the noise drew (cut-off radius, Box-Muller pairs per step;
            `privacy.keras.PrivateTraining.noise.draws`), recorded as ``parameters['noise_cutoff']``: the delta it
            adds is part of `delta` (`cutoff_delta`). Without it the cut-off is listed outside the guarantee.
          validation_decisions: the run's callbacks that acted, or may have acted, on validation metrics, or wrote
            them to disk (`privacy.keras.PrivateTraining.validation_decisions`), recorded as
            ``parameters['validation_decisions']`` and listed outside the guarantee (`validation_decided`); None (not
            reported) lists them as unknown.
          uncovered_padding: whether steps left their batch's padding out without noisy padding, so that their
            durations follow the batch sizes drawn (`privacy.keras.PrivateTraining.uncovered_padding`), recorded as
            ``parameters['uncovered_padding']`` and listed outside the guarantee (`padding_left_out`); None (not
            reported) lists it as unknown.

        Raises:
          LedgerError: if ``budget`` does not account exactly the run ``mechanism`` describes, or the count of
            cut batches is missing, not a count, or given for a run that never cuts, or the noise's cut-off adds
            more than `privacy.accounting.noise_cutoff.MAX_ADDED_FRACTION` of delta, or noisy padding's clamp more
            than `privacy.accounting.noisy_padding.MAX_CLAMP_SHARE`.
        """
        validation.positive("l2_norm_clip", l2_norm_clip, error=LedgerError)
        uncovered_padding = _uncovered_padding(uncovered_padding)
        _check_truncated_batches(mechanism, truncated_batches)
        accountant_delta = accountant_delta_of(delta, preprocessing)
        if budget is None:
            budget = _composed(mechanism, accountant_delta)
        budget = with_preprocessing(budget, mechanism, accountant_delta, preprocessing, decision)
        parameters = {f.name: _json_value(getattr(mechanism, f.name)) for f in dataclasses.fields(mechanism)}
        parameters.update(l2_norm_clip=float(l2_norm_clip), delta_is_default=bool(delta_is_default))
        if truncated_batches is not None:
            parameters["truncated_batches"] = int(truncated_batches)
            outside_guarantee = {**(outside_guarantee or {}), **CUT_BATCHES}
        decisions = _callback_names(validation_decisions)
        parameters[VALIDATION_DECISIONS] = decisions
        if decisions is not None:
            parameters[VALIDATION_WRITERS] = True
        parameters[UNCOVERED_PADDING_PARAMETER] = uncovered_padding
        outside_guarantee = {
            **(outside_guarantee or {}),
            **validation_decided(decisions),
            **padding_left_out(uncovered_padding),
        }
        if noise_draws is None:
            outside_guarantee = {**outside_guarantee, **UNKNOWN_NOISE_CUTOFF}
        else:
            parameters["noise_cutoff"] = noise_draws.to_dict()
        size = public_dataset_size(mechanism.dataset_size, adjacency=mechanism.adjacency)
        parameters["outside_guarantee"] = {**size, **floating_point(parameters), **(outside_guarantee or {})}
        ledger = cls(
            budget=budget,
            mechanism=DP_SGD,
            parameters=parameters,
            trainer=dict(trainer or {}),
            preprocessing=preprocessing,
            decision=decision,
        )
        ledger.added_deltas  # noqa: B018 -- refuses a cut-off or clamp over its share of delta before it is written
        return ledger

    @classmethod
    def for_pate(
        cls,
        aggregator,
        *,
        queries: int,
        delta: float,
        parameters: dict[str, Any],
        trainer: dict[str, Any] | None = None,
        decision: NoisyAccuracy | None = None,
    ) -> "PrivacyLedger":
        """The ledger of a PATE aggregation of ``queries`` public queries by ``aggregator`` (`privacy.pate`): the
        push decision's event, then the aggregation's (`pate_events`), under add/remove of one privacy unit.

        Args:
          parameters: the run's public facts (teachers, classes, answered, privacy_unit, outside_guarantee, ...);
            the aggregator's settings and ``queries`` are added, and `PATE_FLOATING_POINT_NOISE` to
            ``outside_guarantee``.
        """
        outside = {**PATE_FLOATING_POINT_NOISE, **(parameters.get("outside_guarantee") or {})}
        parameters = {
            **parameters,
            "aggregator": aggregator.to_json(),
            "queries": int(queries),
            "outside_guarantee": outside,
        }
        budget = PrivacyBudget(target_delta=delta, neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE)
        for event, count in pate_events(parameters, decision):
            budget.compose(event, count)
        return cls(budget=budget, mechanism=PATE, parameters=parameters, trainer=dict(trainer or {}), decision=decision)

    # --- the guarantee --------------------------------------------------------------------------
    @property
    def privacy_unit(self) -> str:
        """One of `PRIVACY_UNITS`: ``parameters['privacy_unit']``, else (older ledgers) 'client' for
        DP-FedAvg, 'user' for DP-SGD with ``max_examples_per_user``, 'example' for DP-SGD."""
        unit = self.parameters.get("privacy_unit") or self.parameters.get("unit")
        if unit is None:
            unit = (
                "client"
                if self.mechanism == DP_FEDAVG
                else "user"
                if self.parameters.get("max_examples_per_user")
                else "example"
            )
        return unit

    @property
    def delta(self) -> float:
        """The artifact's delta: the accountant's plus the preprocessing's additive delta plus what the training's
        samplers add (`added_deltas`)."""
        return self.budget.target_delta + self.additive_delta + math.fsum(self.added_deltas.values())

    @property
    def added_deltas(self) -> dict[str, float]:
        """What the training's samplers add to the accountant's delta at the ledger's `epsilon` (the composed one),
        by name, every part the training's report adds (`privacy.accounting.report.added_deltas`): 'cutoff_delta'
        and 'clamp_delta'. Recomputed from ``parameters``; all 0 for PATE.

        Raises:
          LedgerError: where a part is malformed or over its share of delta.
        """
        if self.mechanism == PATE:
            return added_deltas(None, self.accountant_delta, self.epsilon, None)
        mechanism = self.accounted_mechanism()
        stored = self.parameters.get("noise_cutoff")
        cutoff = None if stored is None else _noise_cutoff(mechanism, stored)
        try:
            return added_deltas(mechanism, self.accountant_delta, self.epsilon, cutoff)
        except NoiseCutoffError as err:
            raise LedgerError(f"noise cut-off: {err}") from None
        except ClampDeltaError as err:
            raise LedgerError(str(err)) from None

    @property
    def cutoff_delta(self) -> float:
        """What the noise sampler's cut-off adds to the accountant's delta at the ledger's `epsilon`
        (``parameters['noise_cutoff']``; 0 where the ledger has none: then it is listed outside the guarantee)."""
        return self.added_deltas["cutoff_delta"]

    @property
    def clamp_delta(self) -> float:
        """What noisy padding's clamp adds to the accountant's delta at the ledger's `epsilon`
        (``parameters['batch_size_noise_multiplier']``; 0 without noisy padding)."""
        return self.added_deltas["clamp_delta"]

    @property
    def accountant_delta(self) -> float:
        """The delta the accountants' epsilons are computed at."""
        return self.budget.target_delta

    @property
    def additive_delta(self) -> float:
        """What thresholded partition selection adds to the accountant's delta (0 without it)."""
        return 0.0 if self.preprocessing is None else self.preprocessing.additive_delta()

    @functools.cached_property
    def parts(self) -> dict[str, dict[str, float | None]]:
        """{'preprocessing' | 'decision' | 'training': {accountant: epsilon of that part alone}} at the
        accountant's delta (the parts the ledger has).

        Composed, the parts spend `epsilons` (less than their sum: RDP and PLD compose tighter than
        adding epsilons). Without preprocessing or decision the training is the whole.
        """
        ledger, split = list(self.budget.ledger), []
        for name, count in (
            ("preprocessing", None if self.preprocessing is None else len(self.preprocessing.events())),
            ("decision", None if self.decision is None else 1),
        ):
            if count is None:
                continue
            prior = []
            while count and ledger:
                event, runs = ledger[0]
                taken = min(runs, count)
                prior.append((event, taken))
                count -= taken
                ledger[0] = (event, runs - taken)
                if ledger[0][1] == 0:
                    ledger.pop(0)
            split.append((name, prior))
        out = {}
        for name, events in (*split, ("training", ledger)):
            part = PrivacyBudget(
                target_delta=self.budget.target_delta,
                neighboring_relation=self.budget.neighboring_relation,
                group_size=self.budget.group_size,
                accountants=self.budget.accountants,
            )
            for event, runs in events:
                part.compose(event, runs)
            out[name] = part.epsilons()
        return out

    @functools.cached_property
    def epsilons(self) -> dict[str, float | None]:
        """{accountant: epsilon} recomputed from the DpEvents; None where an accountant has no analysis. A PATE
        ledger with a smoothed release composes the events with the release's own RDP cost (Theorem 23) at
        orders in (1, 1/(2 beta)): RDP only (`privacy.pate.analysis.composed_epsilon`)."""
        smoothed = self.smoothed_release()
        if smoothed is None:
            return self.budget.epsilons()
        from privacy.pate import make_aggregator
        from privacy.pate.analysis import composed_epsilon

        prior = [] if self.decision is None else [self.decision.event()]
        epsilon = composed_epsilon(
            make_aggregator(self.parameters["aggregator"]),
            self.parameters["queries"],
            smoothed.settings,
            self.accountant_delta,
            prior=prior,
        )
        return {"rdp": epsilon, **{kind.value: None for kind in self.budget.accountants if kind.value != "rdp"}}

    def smoothed_release(self):
        """A PATE ledger's smoothed data-dependent release (`privacy.pate.SmoothedRdp`), or None (none asked for,
        or refused: then ``parameters['smoothed_release']`` says why)."""
        stored = self.parameters.get("smoothed_release") if self.mechanism == PATE else None
        if not isinstance(stored, dict) or "rdp" not in stored:
            return None
        from privacy.pate import SmoothedRdp

        return SmoothedRdp.from_json(stored)

    @property
    def epsilon(self) -> float:
        """The guarantee: the smallest epsilon over the accountants (each is a valid upper bound)."""
        return self.epsilons[self.epsilon_accountant]

    @property
    def epsilon_accountant(self) -> str:
        """Which accountant ('rdp' or 'pld') gives `epsilon`; accountants without an analysis are skipped."""
        values = {kind: e for kind, e in self.epsilons.items() if e is not None}
        if not values:
            raise LedgerError("no accountant of the ledger can analyse its events")
        return min(values, key=values.get)

    def record_level_epsilon(self) -> tuple[float, str] | None:
        """(epsilon, how) of one record added or removed, for a client-level ledger of clients ppml dealt records
        to (``parameters['record_level']``, written by the Federated Trainer: with N fixed, one record replaces
        one client's data); None for any other unit. Infinite when the ledger holds no such figure."""
        if self.privacy_unit != "client":
            return None
        record = self.parameters.get("record_level")
        if not record:
            return math.inf, "the ledger has no record-level figure for its client-level epsilon"
        if record.get("epsilon_is"):  # replace-one accounting: the client-level epsilon is the record-level one
            return self.epsilon, (
                f"{self.describe_epsilon()}, client-level, replace-one: also record-level for one "
                f"record added or removed (a replaced record changes two clients: not covered)"
            )
        if record.get("epsilon") is None:
            return math.inf, f"no record-level epsilon could be accounted ({record.get('accountant')})"
        covers = f", covering {record['covers']}" if record.get("covers") else ""
        return float(record["epsilon"]), (
            f"record-level, one record added or removed (add-remove): it replaces "
            f"one client's data, accounted replace-one by {record['accountant']}"
            f"{covers}, delta = {record['delta']:g} (a replaced record changes two "
            f"clients: not covered)"
        )

    def record_count_bound(self) -> int | None:
        """The public bound on the records behind a keyed client-level ledger (N x max_examples_per_client, from
        ``parameters['record_level']['records']``), or None where there is none."""
        records = (self.parameters.get("record_level") or {}).get("records") if self.privacy_unit == "client" else None
        return None if records is None else int(records)

    def replaced_record_epsilon(self) -> tuple[float, str] | None:
        """(epsilon, how) of one record replaced (replace-one per record), for the ledgers `record_level_epsilon`
        answers: the record leaves one client and joins another, so it is group privacy of 2 clients
        (``parameters['record_level']['replaced_record']``); infinite where the ledger holds no such figure."""
        if self.privacy_unit != "client":
            return None
        replaced = (self.parameters.get("record_level") or {}).get("replaced_record") or {}
        if replaced.get("epsilon") is None:
            return math.inf, (
                f"the ledger has no figure for one record replaced (two clients' data change)"
                f"{': ' + replaced['accountant'] if replaced.get('accountant') else ''}"
            )
        covers = f", covering {replaced['covers']}" if replaced.get("covers") else ""
        return float(replaced["epsilon"]), (
            f"one record replaced (replace-one): two clients' data change, "
            f"{replaced['accountant']}{covers}, delta = {replaced['delta']:g}"
        )

    def describe_epsilon(self) -> str:
        """Which accountant gave `epsilon` at which delta, and which had no analysis, e.g.
        'RDP accountant (PLD: no analysis), dp-sgd ledger, delta = 0.001'."""
        missing = [kind.upper() for kind, e in self.epsilons.items() if e is None]
        unavailable = f" ({', '.join(missing)}: no analysis)" if missing else ""
        if self.mechanism == PATE:
            unavailable += f" [{self.parameters.get('analysis', PATE_ANALYSIS)}]"
        composed = [
            name
            for name, part in (("preprocessing", self.preprocessing), ("push decision", self.decision))
            if part is not None
        ]
        whole = f", {', '.join(composed)} and training composed" if composed else ""
        return (
            f"{self.epsilon_accountant.upper()} accountant{unavailable}, {self.mechanism} ledger{whole}, "
            f"delta = {self.delta:g}"
        )

    def dp_sgd_mechanism(self) -> DpSgdMechanism:
        """The DP-SGD mechanism the ledger describes (only for ``mechanism == 'dp-sgd'``)."""
        if self.mechanism != DP_SGD:
            raise LedgerError(f"ledger is for mechanism {self.mechanism!r}, not {DP_SGD!r}")
        return self.accounted_mechanism()

    def accounted_mechanism(self) -> DpSgdMechanism:
        """The `DpSgdMechanism` whose events the budget composed (DP-SGD, or DP-FedAvg's
        client-level one)."""
        validation.choice("ledger mechanism", self.mechanism, (DP_SGD, DP_FEDAVG), error=LedgerError)
        names = {f.name for f in dataclasses.fields(DpSgdMechanism)}
        try:
            mechanism = DpSgdMechanism(**{k: v for k, v in self.parameters.items() if k in names})
        except (TypeError, ValueError) as err:
            raise LedgerError(f"ledger parameters do not describe a {self.mechanism} run: {err}") from None
        return mechanism

    def privacy_report(self) -> PrivacyReport:
        """The training's report, in the format of ``ppml epsilon`` (DP-SGD ledgers only), at the
        accountant's delta: the DP-SGD part alone (`epsilons` is the artifact's)."""
        mechanism = self.dp_sgd_mechanism()
        stored = self.parameters.get("noise_cutoff")
        report = dp_sgd_report(
            mechanism,
            delta=self.accountant_delta,
            accountants=self.budget.accountants,
            noise_draws=None if stored is None else NoiseDraws.from_dict(stored),
        )
        return dataclasses.replace(report, delta_is_default=bool(self.parameters.get("delta_is_default")))

    # --- JSON -----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        epsilons = {k: (v if v is not None and math.isfinite(v) else None) for k, v in self.epsilons.items()}
        out = {
            "format": LEDGER_FORMAT,
            "mechanism": self.mechanism,
            "privacy_unit": self.privacy_unit,
            "epsilon": epsilons,
            "delta": self.delta,
            "accountant_version": f"dp-accounting {dp_accounting_version()}",
            "dp_event": event_to_json(self.budget.dp_event()),
            "parameters": self.parameters,
            "budget": self.budget.to_dict(),
            "trainer": self.trainer,
        }
        if self.mechanism == DP_SGD:
            out["report"] = self.privacy_report().to_dict()
        if self.preprocessing is not None:
            out["preprocessing"] = self.preprocessing.to_dict()
        if self.decision is not None:
            out["decision"] = self.decision.to_dict()
        if self.preprocessing is not None or self.decision is not None:
            out["composition"] = {
                "epsilon": dict(epsilons),
                "delta": self.delta,
                "accountant_delta": self.accountant_delta,
                "additive_delta": self.additive_delta,
                **self.added_deltas,
                "analysis": {
                    "epsilon": "dp-accounting's RDP and PLD accountants over every event of the budget (the "
                    "preprocessing releases, the push decision, then the training) at "
                    "accountant_delta",
                    "parts": "the same accountants over each part's events alone, at accountant_delta",
                    "additive_delta": "the sum over private vocabularies of the bound on releasing a token that "
                    "only one privacy unit holds (privacy.preprocessing.partition_selection)",
                    "cutoff_delta": "what the noise sampler's cut-off adds (privacy.accounting.noise_cutoff)",
                    "clamp_delta": "what noisy padding's clamp at 0 adds (privacy.accounting.noisy_padding)",
                    "delta": "accountant_delta + additive_delta + cutoff_delta + clamp_delta",
                },
                "parts": {
                    name: {k: (v if v is not None and math.isfinite(v) else None) for k, v in eps.items()}
                    for name, eps in self.parts.items()
                },
            }
        return copy.deepcopy(out)  # JSON values that share nothing with the ledger

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PrivacyLedger":
        """Reads a ledger back; epsilon is recomputed from the events, never taken from the file."""
        if not isinstance(data, dict) or data.get("format") != LEDGER_FORMAT:
            raise LedgerError(f"not a ppml privacy ledger (expected format {LEDGER_FORMAT!r})")
        try:
            budget = PrivacyBudget.from_dict(data["budget"])
            preprocessing = (
                PreprocessingPart.from_dict(data["preprocessing"]) if data.get("preprocessing") is not None else None
            )
            decision = NoisyAccuracy.from_dict(data["decision"]) if data.get("decision") is not None else None
            ledger = cls(
                budget=budget,
                mechanism=str(data["mechanism"]),
                parameters=dict(data["parameters"]),
                trainer=dict(data.get("trainer") or {}),
                preprocessing=preprocessing,
                decision=decision,
            )
        except (KeyError, TypeError, ValueError) as err:
            raise LedgerError(f"malformed privacy ledger: {err}") from None
        validation.choice("privacy unit", ledger.privacy_unit, PRIVACY_UNITS, error=LedgerError)
        if ledger.mechanism == PATE:
            check_pate_budget(ledger)
        else:
            check_budget(budget, ledger.accounted_mechanism(), budget.target_delta, preprocessing, decision)
        if ledger.mechanism == DP_SGD:
            _check_truncated_batches(
                ledger.dp_sgd_mechanism(),
                ledger.parameters.get("truncated_batches"),
                ledger.parameters.get("outside_guarantee") or {},
            )
        ledger.added_deltas  # noqa: B018 -- a malformed cut-off, or one over its share of delta, is refused on read
        ledger.parameters["outside_guarantee"] = _listed_by_every(ledger)
        return ledger


def _callback_names(decisions) -> list[str] | None:
    """``decisions`` (a run's validation decisions, `VALIDATION_DECISIONS`) as a list of callback names, or None
    (not reported); LedgerError for anything else (a string, whose letters would be listed as names)."""
    if decisions is None:
        return None
    if not (isinstance(decisions, (list, tuple)) and all(isinstance(d, str) for d in decisions)):
        raise LedgerError(f"{VALIDATION_DECISIONS} must be a list of callback names or null, not {decisions!r:.80}")
    return list(decisions)


def _listed_by_every(ledger: PrivacyLedger) -> dict[str, str]:
    """The ``outside_guarantee`` of a ledger read back, with what every ledger of its mechanism lists added where the
    file lacks it (written before it was listed, or edited): a PATE ledger's `PATE_FLOATING_POINT_NOISE`; the public
    size n or N (recomputed: a file's older wording named add-remove neighbours under replace-one too); the
    floating-point caveats (a DP-SGD run's `floating_point`, a DP-FedAvg run's `FEDAVG_FLOATING_POINT_NOISE`: they held
    for runs before they were listed); the noise cut-off when the file has no noise draws (before the cut-off was
    accounted, when DP-SGD's float32 noise was cut at 7.99 stds; or since, by a run that did not give them); a DP-SGD
    run's validation decisions, unknown where the file does not record them, and its writers of validation metrics,
    unknown where its decisions predate them; a DP-SGD run's padding left out without noisy padding
    (`padding_left_out`), unknown where the file does not record it. LedgerError where those records, or
    ``outside_guarantee``, are malformed."""
    outside = ledger.parameters.get("outside_guarantee") or {}
    if not (isinstance(outside, dict) and all(isinstance(v, str) for v in outside.values())):
        raise LedgerError(f"outside_guarantee must map names to reasons, not {outside!r:.80}")
    if ledger.mechanism == PATE:
        return {**PATE_FLOATING_POINT_NOISE, **outside}
    dp_sgd = ledger.mechanism == DP_SGD
    size = public_dataset_size(
        ledger.parameters["dataset_size"],
        None if dp_sgd else ledger.privacy_unit,
        adjacency=ledger.accounted_mechanism().adjacency,
    )
    decisions = _callback_names(ledger.parameters.get(VALIDATION_DECISIONS))
    writers_unknown = dp_sgd and decisions is not None and ledger.parameters.get(VALIDATION_WRITERS) is not True
    listed = {
        **size,
        **(floating_point(ledger.parameters) if dp_sgd else FEDAVG_FLOATING_POINT_NOISE),
        **(validation_decided(decisions) if dp_sgd else {}),
        **(UNKNOWN_VALIDATION_WRITERS if writers_unknown else {}),
        **(padding_left_out(_uncovered_padding(ledger.parameters.get(UNCOVERED_PADDING_PARAMETER))) if dp_sgd else {}),
        **outside,  # the file's own wording where it has one,
        **size,  # but for the size's, recomputed (written before it named replace-one neighbours' relation)
    }
    return {**listed, **UNKNOWN_NOISE_CUTOFF} if ledger.parameters.get("noise_cutoff") is None else listed


def _noise_cutoff(mechanism: DpSgdMechanism, stored) -> NoiseCutoff:
    """The cut-off a ledger's ``parameters['noise_cutoff']`` records for ``mechanism``'s steps; LedgerError where it
    is malformed."""
    try:
        largest = max(sampler_radius(name) for name in ("float32", "float64"))  # beyond: noise no sampler drew
        validation.number("radius", stored["radius"], low=1, high=largest, low_open=True, note="stds")
        return NoiseCutoff.for_mechanism(mechanism, NoiseDraws.from_dict(stored))
    except (KeyError, TypeError, ValueError) as err:
        raise LedgerError(f"noise cut-off: {err}") from None


def _uncovered_padding(uncovered) -> bool | None:
    """``uncovered`` (`UNCOVERED_PADDING_PARAMETER`) as true, false or None (not reported); LedgerError for anything
    else."""
    if uncovered is not None and not isinstance(uncovered, bool):
        raise LedgerError(f"{UNCOVERED_PADDING_PARAMETER} must be true, false or null, not {uncovered!r:.80}")
    return uncovered


def _check_truncated_batches(mechanism: DpSgdMechanism, count, outside: dict | None = None) -> None:
    """A truncated DP-SGD run states how many batches it cut (an integer >= 0), listed in ``outside`` (the
    ledger's outside_guarantee, where given) as `CUT_BATCHES`; another run states none."""
    if mechanism.truncated_batch_size is None:
        if count is not None:
            raise LedgerError(
                f"truncated_batches={count!r} for a run that never cuts its batches (no truncated_batch_size)"
            )
        return
    validation.integer(
        "truncated_batches",
        count,
        minimum=0,
        note=f"the number of batches cut, which a run of truncated Poisson sampling (truncated_batch_size="
        f"{mechanism.truncated_batch_size}) must state",
        error=LedgerError,
    )
    if outside is not None and CUT_BATCHES_NAME not in outside:
        raise LedgerError(
            f"a ledger stating truncated_batches must list {CUT_BATCHES_NAME!r} outside the guarantee "
            f"(no epsilon covers the count)"
        )


def _composed(
    mechanism: DpSgdMechanism,
    delta: float,
    preprocessing: PreprocessingPart | None = None,
    decision: NoisyAccuracy | None = None,
) -> PrivacyBudget:
    budget = PrivacyBudget.for_mechanism(mechanism, delta)
    for event in prior_events(preprocessing, decision, mechanism):
        budget.compose(event)
    return budget.compose(mechanism.unit_event(), mechanism.units())


def prior_events(
    preprocessing: PreprocessingPart | None, decision: NoisyAccuracy | None, mechanism: DpSgdMechanism
) -> list:
    """The events composed before the training's: the preprocessing releases, then the push decision."""
    return _preprocessing_events(preprocessing, mechanism) + ([] if decision is None else [decision.event()])


def _preprocessing_events(preprocessing: PreprocessingPart | None, mechanism: DpSgdMechanism) -> list:
    if preprocessing is None:
        return []
    if preprocessing.adjacency is not mechanism.adjacency:
        raise LedgerError(
            f"the preprocessing is accounted under {preprocessing.adjacency.value} adjacency, the "
            f"training under {mechanism.adjacency.value}: one guarantee needs one relation"
        )
    try:
        return preprocessing.events()
    except RecordError as err:
        raise LedgerError(str(err)) from None


def accountant_delta_of(delta: float, preprocessing: PreprocessingPart | None) -> float:
    """The accountant's share of the artifact's ``delta`` once the preprocessing's additive delta is taken out.

    Raises:
      LedgerError: when the additive delta leaves nothing.
    """
    additive = 0.0 if preprocessing is None else preprocessing.additive_delta()
    if not delta - additive > 0:
        raise LedgerError(
            f"the preprocessing's partition selection adds delta {additive:g}, which leaves nothing of "
            f"the artifact's delta {delta:g} for the accountant; lower the vocabularies' threshold_delta"
        )
    return delta - additive


def with_preprocessing(
    training: PrivacyBudget,
    mechanism: DpSgdMechanism,
    delta: float,
    preprocessing: PreprocessingPart | None,
    decision: NoisyAccuracy | None = None,
) -> PrivacyBudget:
    """The artifact's budget: the preprocessing's events, the push decision's, then those ``training`` composed
    (at the accountant's ``delta``), checked against ``mechanism``'s run.

    Raises:
      LedgerError: when ``training`` does not account exactly that run.
    """
    check_budget(training, mechanism, training.target_delta)
    if preprocessing is None and decision is None and training.target_delta == delta:
        return training
    budget = PrivacyBudget(
        target_delta=delta,
        neighboring_relation=training.neighboring_relation,
        group_size=training.group_size,
        accountants=training.accountants,
    )
    for event in prior_events(preprocessing, decision, mechanism):
        budget.compose(event)
    for event, count in training.ledger:
        budget.compose(event, count)
    return budget


def check_budget(
    budget: PrivacyBudget,
    mechanism: DpSgdMechanism,
    delta: float,
    preprocessing: PreprocessingPart | None = None,
    decision: NoisyAccuracy | None = None,
) -> None:
    """Raises LedgerError unless ``budget`` composed exactly the events of ``preprocessing`` (if any), the
    ``decision``'s (if any), then those of ``mechanism``'s run (its unit event, once per unit), under its
    relation and at the accountant's ``delta``."""
    expected = _composed(mechanism, delta, preprocessing, decision)
    if (
        budget.ledger != expected.ledger
        or budget.target_delta != expected.target_delta
        or budget.neighboring_relation != expected.neighboring_relation
        or budget.group_size != expected.group_size
    ):
        raise LedgerError(
            f"the budget ({budget!r}, events {budget.ledger}) does not account the run "
            f"described by {mechanism} at delta={expected.target_delta:g}"
        )


def pate_events(parameters: dict[str, Any], decision: NoisyAccuracy | None = None) -> list:
    """(event, count) runs of a PATE ledger: the push decision's, then, per public query, Confident-GNMax's
    selection step and the GNMax answers its data-independent guarantee charges (every query, or
    ``max_answered``), or GNMax's answer (`privacy.pate.data_independent`).

    Raises:
      LedgerError: when ``parameters`` describe no aggregation.
    """
    from privacy.pate import PateConfigurationError, make_aggregator
    from privacy.pate.aggregators import GNMax
    from privacy.pate.data_independent import charged_answers, gnmax_query_event, selection_event

    queries = parameters.get("queries")
    validation.integer("queries", queries, minimum=0, note="a PATE ledger's number of queries", error=LedgerError)
    try:
        aggregator = make_aggregator(parameters.get("aggregator"))
    except PateConfigurationError as err:
        raise LedgerError(f"a PATE ledger's aggregator: {err}") from None
    runs = [] if decision is None else [(decision.event(), 1)]
    if isinstance(aggregator, GNMax):
        return runs + [(gnmax_query_event(aggregator.sigma), queries)]
    return runs + [
        (selection_event(aggregator.sigma1), queries),
        (gnmax_query_event(aggregator.sigma2), charged_answers(aggregator, queries)),
    ]


def check_pate_budget(ledger: PrivacyLedger) -> None:
    """Raises LedgerError unless the ledger's budget composed exactly `pate_events` of its parameters under
    add/remove, without preprocessing (a PATE student carries no Transform graph)."""
    from privacy.pate import PateConfigurationError

    try:
        ledger.smoothed_release()
    except PateConfigurationError as err:
        raise LedgerError(f"a PATE ledger's smoothed release: {err}") from None
    expected = PrivacyBudget(
        target_delta=ledger.budget.target_delta, neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE
    )
    for event, count in pate_events(ledger.parameters, ledger.decision):
        expected.compose(event, count)
    if (
        ledger.preprocessing is not None
        or ledger.budget.ledger != expected.ledger
        or ledger.budget.neighboring_relation != expected.neighboring_relation
        or ledger.budget.group_size != 1
    ):
        raise LedgerError(
            f"the budget ({ledger.budget!r}, events {ledger.budget.ledger}) does not account the PATE "
            f"aggregation its parameters describe"
        )


def ledger_path(serving_model_dir: str) -> str:
    """Where the ledger of the SavedModel in ``serving_model_dir`` lives."""
    return os.path.join(serving_model_dir, LEDGER_SUBDIR, LEDGER_FILE)


def write_ledger(serving_model_dir: str, ledger: PrivacyLedger) -> str:
    """Writes ``ledger`` into the SavedModel folder (atomically on local disks); returns its path."""
    return write_ledger_file(ledger_path(serving_model_dir), ledger)


def write_ledger_file(path: str, ledger: PrivacyLedger) -> str:
    """Writes ``ledger`` to the file ``path`` (atomically on local disks); returns ``path``."""
    text = json.dumps(ledger.to_dict(), indent=2, allow_nan=False)
    if _is_remote(path):
        gfile = _gfile()
        gfile.makedirs(os.path.dirname(path))
        with gfile.GFile(path, "w") as f:
            f.write(text)
        return path
    return write_atomically(path, text)


def read_ledger(serving_model_dir: str) -> PrivacyLedger | None:
    """The ledger of the SavedModel in ``serving_model_dir``, or None if it has none.

    Raises:
      LedgerError: if a ledger file exists but is malformed or inconsistent.
    """
    return read_ledger_file(ledger_path(serving_model_dir))


def read_ledger_file(path: str) -> PrivacyLedger | None:
    """The ledger in the file ``path``, or None if there is no such file (see `read_ledger`)."""
    try:
        if _is_remote(path):
            gfile = _gfile()
            if not gfile.exists(path):
                return None
            with gfile.GFile(path) as f:
                text = f.read()
        else:
            if not os.path.exists(path):
                return None
            with open(path) as f:
                text = f.read()
        data = json.loads(text)
    except (OSError, json.JSONDecodeError) as err:
        raise LedgerError(f"cannot read privacy ledger {path}: {err}") from None
    return PrivacyLedger.from_dict(data)


# --- ML Metadata -------------------------------------------------------------------------------
def mlmd_upper_bound(value: float) -> float:
    """``value`` rounded up to `MLMD_DECIMALS` decimal places, so that an epsilon or delta stored in MLMD stays an
    upper bound (a delta below 1e-6 is stored as 1e-6).

    The exact values are in the ledger (``privacy_ledger_uri``).
    """
    if not math.isfinite(value):
        return value
    rounded = float(f"{value:.{MLMD_DECIMALS}f}")
    if rounded < value:
        rounded = float(f"{rounded + 10.0**-MLMD_DECIMALS:.{MLMD_DECIMALS}f}")
    return rounded


def ledger_properties(ledger: PrivacyLedger | None, ledger_uri: str | None = None) -> dict[str, Any]:
    """The custom properties that record ``ledger`` (None: a model trained without privacy).

    Rounded to what ML Metadata keeps on the conservative side: epsilons and delta up
    (`mlmd_upper_bound`), the noise multiplier down; the rest is stored as is.
    """
    if ledger is None:
        return {PRIVATE: 0}
    props: dict[str, Any] = {
        PRIVATE: 1,
        EPSILON: mlmd_upper_bound(ledger.epsilon),
        EPSILON_ACCOUNTANT: ledger.epsilon_accountant,
        DELTA: mlmd_upper_bound(ledger.delta),
        PRIVACY_MECHANISM: ledger.mechanism,
        PRIVACY_UNIT: ledger.privacy_unit,
        ACCOUNTANT_VERSION: f"dp-accounting {dp_accounting_version()}",
    }
    for kind, name in (("rdp", EPSILON_RDP), ("pld", EPSILON_PLD)):
        value = ledger.epsilons.get(kind)
        if value is not None:
            props[name] = mlmd_upper_bound(value)
    if ledger.preprocessing is not None or ledger.decision is not None:
        for part, name in (
            ("preprocessing", EPSILON_PREPROCESSING),
            ("decision", EPSILON_DECISION),
            ("training", EPSILON_TRAINING),
        ):
            values = [e for e in ledger.parts.get(part, {}).values() if e is not None]
            if values:
                props[name] = mlmd_upper_bound(min(values))
    record_level = ledger.record_level_epsilon()
    if record_level is not None:
        props[EPSILON_RECORD_LEVEL] = mlmd_upper_bound(record_level[0])  # left out below when infinite
        props[RECORD_ADJACENCY] = Adjacency.ADD_REMOVE.value
        props[EPSILON_RECORD_REPLACED] = mlmd_upper_bound(ledger.replaced_record_epsilon()[0])
    params = ledger.parameters
    for key, name in (
        ("noise_multiplier", NOISE_MULTIPLIER),
        ("l2_norm_clip", L2_NORM_CLIP),
        ("steps", DP_STEPS),
        ("sampling", SAMPLING),
        ("adjacency", ADJACENCY),
    ):
        if params.get(key) is not None:
            props[name] = params[key]
    if NOISE_MULTIPLIER in props:
        props[NOISE_MULTIPLIER] = -mlmd_upper_bound(-float(props[NOISE_MULTIPLIER]))  # rounded down
    if ledger_uri:
        props[PRIVACY_LEDGER_URI] = ledger_uri
    return {k: v for k, v in props.items() if not (isinstance(v, float) and not math.isfinite(v))}


def record_on_artifact(artifact, ledger: PrivacyLedger | None, ledger_uri: str | None = None) -> None:
    """Sets the ledger's custom properties on a TFX artifact (published to MLMD by the launcher)."""
    for name, value in ledger_properties(ledger, ledger_uri).items():
        if isinstance(value, bool) or isinstance(value, int):
            artifact.set_int_custom_property(name, int(value))
        elif isinstance(value, float):
            artifact.set_float_custom_property(name, value)
        else:
            artifact.set_string_custom_property(name, str(value))


def model_properties(artifact) -> dict[str, Any]:
    """The privacy custom properties of a TFX artifact or an MLMD ``Artifact`` proto."""
    out = {}
    if hasattr(artifact, "mlmd_artifact"):  # a TFX artifact wraps the proto
        artifact = artifact.mlmd_artifact
    for name in MODEL_PROPERTIES:
        if name in artifact.custom_properties:
            value = artifact.custom_properties[name]
            out[name] = getattr(value, value.WhichOneof("value"))
    return out


def _json_value(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value


def _is_remote(path: str) -> bool:
    return "://" in path


def _gfile():
    import tensorflow as tf

    return tf.io.gfile
