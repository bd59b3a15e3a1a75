"""Federated training settings: the one source of defaults for the Federated Trainer and ``ppml federated run``.

A pipeline author puts these keys in the Trainer's ``custom_config``; ``ppml federated run`` takes the same
settings as flags (its ``--help`` shows these defaults). All optional except ``label_key`` (the command line
defaults it to ``label``).

============================  =====================================  ===========================================
key                           default                                why this default
============================  =====================================  ===========================================
label_key                     (required)                             integer class label column
feature_keys                  every numeric column but label and     the model is an MLP on the feature vector
                              client key, sorted
client_key                    none                                   a column naming each record's client (a
                                                                     user, a site): one client per value
partition                     iid                                    without client_key: iid | dirichlet |
                                                                     quantity, keyed (below); shards (cut by
                                                                     label, non-private runs only)
num_clients                   100                                    N, public; McMahan et al.'s K = 100
alpha                         0.5                                    Dirichlet concentration (dirichlet, quantity)
shards_per_client             2                                      McMahan et al.'s pathological split
rounds                        50                                     T federated rounds
sampling                      uniform                                round(C N) clients a round (replace-one
                                                                     adjacency); poisson: each with probability C
                                                                     (add/remove; private: not with client_key)
fraction                      0.1                                    C, McMahan et al.'s C = 0.1
local_epochs                  1                                      E
batch_size                    10                                     B (null: the client's whole data)
client_learning_rate          0.1                                    local SGD step size
proximal_mu                   0                                      FedProx's mu (0: FedAvg)
weighted                      true                                   average weighted by example counts
                                                                     (FedAvg); under DP clients count equally
server_optimizer              sgd                                    sgd | avgm | adam | yogi | adagrad
server_learning_rate          1 (sgd, avgm), 0.01 (adaptive)         model averaging; Reddi et al.'s start
server_momentum               0.9                                    FedAvgM's beta
hidden_units                  [16]                                   ReLU layers of the MLP; small and quick
num_classes                   1 + the largest label (at least 2);    the model's outputs; a private run needs it
                              required when private                  (read from the private labels, one label
                                                                     would decide the model's shape)
seed                          0                                      partition, initial weights, batch order;
                                                                     in [0, 2^32)
execution                     sequential                             runs any model and gives the same result on
                                                                     every machine ("auto" picks by timing; not
                                                                     private: the timing depends on the data)
private                       false                                  client-level DP-FedAvg with a privacy ledger
noise_multiplier              calibrated for target_epsilon          z: noise std on the sum of clipped updates
                                                                     is z C
target_epsilon                3 unless noise_multiplier is given     calibrate z for the planned rounds: ppml's
                                                                     one default (as ``ppml pipeline run
                                                                     --private``)
trust_model                   central                                central: the server adds noise once to the
                                                                     sum (a trusted server); local: each client
                                                                     adds noise std z C to its own clipped update
                                                                     (nobody trusted; z calibrated per client for
                                                                     all rounds; ``ppml federated run`` only, no
                                                                     ledger; see federated.strategies.dp_local)
clip                          fixed                                  fixed works for any cohort; adaptive needs
                                                                     clipped_count_stddev > z / 2
clipping_norm                 1.0                                    C (the initial C for adaptive clipping), in
                                                                     [2^-900, 1e6]
target_unclipped_quantile     0.5                                    adaptive clipping's quantile (the median)
clipped_count_stddev          0.05 x expected clients per round      adaptive clipping's count noise (TFF's)
delta                         largest power of ten <= 1/(2N)         delta of the guarantee
                              (1/(2NK) under budget_unit example)
accountant                    rdp                                    rdp | pld, for target_epsilon, max_epsilon
max_epsilon                   none                                   stop before a round would exceed it;
                                                                     below one round's epsilon: refused
seeded_noise                  false                                  noise and client sample from generators
                                                                     seeded afresh from the OS CSPRNG;
                                                                     true (``ppml federated run`` only) draws
                                                                     them from the seed: research, no guarantee
secure_aggregation            false                                  simulate secure aggregation
secagg_bits                   16                                     b bits per coordinate (Bonawitz et al.)
secagg_modulus_bits           40                                     sums mod 2^40
secagg_range                  C (4 C adaptive); else 8 x largest     coordinate clipping range r
                              client (8 unweighted)
public_schema                 false                                  the Trainer's schema and the examples'
                                                                     feature kinds are fixed before the data is
                                                                     read (an imported schema): else a private
                                                                     run lists its spec outside the guarantee
max_examples_per_client       none                                   K, a public bound on any client's training
                                                                     records; needed when a private run's
                                                                     Transform graph has private preprocessing
                                                                     releases, which are per record: a client
                                                                     moves them as K records do (a client with
                                                                     more trains on its K of smallest raw
                                                                     record key, never refused: its size is
                                                                     private data)
decision_epsilon              none                                   the push decision's budget: the Private
                                                                     Evaluator releases the held-out accuracy
                                                                     with noise for groups of K records
                                                                     (`privacy.decision`), reserved in the
                                                                     ledger and composed before the rounds; not
                                                                     with client_key (a user's held-out records
                                                                     are not bounded)
budget_unit                   none (the ledger's unit)               example: target_epsilon is a budget per
                                                                     record, which the gate meets with a keyed
                                                                     partition's record-level figure; under
                                                                     Poisson sampling z is calibrated for that
                                                                     figure (one record replaces a client's
                                                                     data), not for the client-level one;
                                                                     needs max_examples_per_client: delta is
                                                                     then per record, below 1/(N K)
budget_adjacency              none (add-remove)                      with budget_unit example, the relation of
                                                                     that budget: add-remove (one record added
                                                                     or removed: the record-level figure) or
                                                                     replace-one (one record replaced: two
                                                                     clients change; z is calibrated for the
                                                                     replaced-record figure, either sampling)
============================  =====================================  ===========================================

Clients and the unit of privacy. With ``client_key`` each value is a client and the privacy unit is a
user (all records of one key). Otherwise ppml deals records to N clients with a `KeyedPartitioner`: a
record's client is a function of the seed, the record's content (as collected, before any
preprocessing) and its label alone, so adding or removing one record changes exactly one client's data,
and the privacy unit is a client. Under DP, Poisson sampling gives add/remove-one-client adjacency,
uniform sampling replace-one-client; the ledger records both. N is fixed, so a one-record change
replaces one client's data (its update can move by 2C): under uniform sampling the client-level epsilon
covers it; under Poisson sampling the add/remove one does not, and `FederatedTrainingPlan.record_level`
accounts the replacement (PLD; dp-accounting's RDP has no replace-one analysis of Poisson sampling),
reported beside the client-level epsilon in the ledger and by ``ppml federated run``. Either covers one
record added or removed (``record_adjacency`` add-remove); a record replaced moves to another client, so two
clients change: ``record_level['replaced_record']`` bounds it by group privacy of 2 clients.

With ``client_key``, N is the number of users in the data, which a private run releases (sample
sizes, delta, the update's scale): private runs sample users uniformly (replace-one user adjacency,
which holds N fixed), and Poisson sampling is refused.

A Transform graph's private preprocessing releases are part of the exported model: a private plan composes
their events before the rounds, as seen by neighbouring data sets that differ in one client (K records
added or removed, or replaced), and calibrates z so that both together meet the target epsilon.

The privacy settings (`PRIVACY_SETTINGS`) are refused when ``private`` is false, and the dealing settings
(`DEALING_SETTINGS`) with a ``client_key``, rather than ignored.

`FederatedTrainingConfig.from_custom_config` checks the settings alone, `plan` checks them against the
data (N clients) and resolves z and delta; both raise `InvalidFederatedSetting` naming the key, before any
training. This module does not import TensorFlow.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Mapping

from dp_accounting import dp_event

from federated.client import EXECUTIONS as CLIENT_EXECUTIONS
from federated.partitioners.keyed import RULES as KEYED_RULES
from federated.sampling import PoissonSampler, UniformSampler, check_public_population
from federated.strategies import SERVER_OPTIMIZERS, check_clipping_norm
from federated.strategies.dp_adaptive_clipping import COUNT_STDDEV_SHARE, default_count_stddev, update_noise_multiplier
from federated.strategies.dp_local import MIN_LOCAL_NOISE_MULTIPLIER
from pipelines import privacy_ledger
from pipelines.components import settings
from privacy import validation
from privacy.accounting import (
    NOISE_MULTIPLIER_RANGE,
    AccountantKind,
    Adjacency,
    DpSgdMechanism,
    NoiseDraws,
    PrivacyBudget,
    UnsupportedAccounting,
    calibrate_noise_multiplier,
    compute_epsilon,
    default_delta,
    delta_below_one_over_n,
    delta_warning,
    epsilon_of,
    event_to_json,
)
from privacy.compared import compared
from privacy.decision import DecisionError, NoisyAccuracy
from privacy.preprocessing import PreprocessingAccount, PreprocessingPart, RecordError

PARTITIONS = KEYED_RULES + ("shards",)
"""Keyed rules (one record changes one client), and McMahan's label-sorted shards (non-private runs only)."""
SAMPLINGS = ("uniform", "poisson")
CLIPS = ("fixed", "adaptive")
TRUST_MODELS = ("central", "local")
"""Who must be trusted under DP: the server (central DP-FedAvg) or nobody (local DP, each client adds noise)."""
EXECUTIONS = CLIENT_EXECUTIONS + ("auto",)
DEFAULT_TARGET_EPSILON = 3.0
"""The target epsilon of a private run that names neither noise_multiplier nor target_epsilon."""
PRIVACY_SETTINGS = (
    "noise_multiplier",
    "target_epsilon",
    "clip",
    "clipping_norm",
    "target_unclipped_quantile",
    "clipped_count_stddev",
    "delta",
    "accountant",
    "max_epsilon",
    "seeded_noise",
    "trust_model",
)
"""Settings that only mean something under DP: refused, not ignored, when 'private' is false."""
DEALING_SETTINGS = ("partition", "num_clients", "alpha", "shards_per_client")
"""Settings of how records are dealt to clients: refused, not ignored, with a client_key (a client per value)."""
DECISION_CAVEAT = {
    "push decision beyond K held-out records per client": "the push decision's noisy accuracy is accounted as a "
    "client's group of max_examples_per_client (K) held-out records, but nothing caps the eval split's records "
    "that the keyed partition deals to one client: for a client holding more than K of them, the decision is "
    "covered per record, not per client"
}
"""Listed outside the guarantee of a ledger that composes the push decision (``decision_epsilon``)."""
MAX_SEED = 2**32 - 1
"""Keras seeds its generators with 32 bits."""


class InvalidFederatedSetting(settings.InvalidSetting):
    """A federated setting is invalid; ``setting`` names the key."""


@dataclasses.dataclass(frozen=True)
class FederatedTrainingConfig:
    """Data, FedAvg and privacy settings (see the module docstring for each key and its default)."""

    label_key: str | None = None
    feature_keys: tuple[str, ...] | None = None
    client_key: str | None = None
    partition: str = "iid"
    num_clients: int = 100
    alpha: float = 0.5
    shards_per_client: int = 2
    rounds: int = 50
    sampling: str = "uniform"
    fraction: float = 0.1
    local_epochs: int = 1
    batch_size: int | None = 10
    client_learning_rate: float = 0.1
    proximal_mu: float = 0.0
    weighted: bool = True
    server_optimizer: str = "sgd"
    server_learning_rate: float | None = None
    server_momentum: float = 0.9
    hidden_units: tuple[int, ...] = (16,)
    num_classes: int | None = None
    seed: int = 0
    execution: str = "sequential"
    private: bool = False
    noise_multiplier: float | None = None
    target_epsilon: float | None = None
    trust_model: str = TRUST_MODELS[0]
    clip: str = "fixed"
    clipping_norm: float = 1.0
    target_unclipped_quantile: float = 0.5
    clipped_count_stddev: float | None = None
    delta: float | None = None
    accountant: str = AccountantKind.RDP.value
    max_epsilon: float | None = None
    seeded_noise: bool = False
    secure_aggregation: bool = False
    secagg_bits: int = 16
    secagg_modulus_bits: int = 40
    secagg_range: float | None = None
    max_examples_per_client: int | None = None
    public_schema: bool = False
    decision_epsilon: float | None = None
    budget_unit: str | None = None
    budget_adjacency: str | None = None

    @classmethod
    def from_custom_config(cls, custom_config: Mapping[str, Any] | None) -> "FederatedTrainingConfig":
        """Reads and checks the settings (a Trainer ``custom_config``, or the command line's flags).

        Raises:
          InvalidFederatedSetting: naming the first bad or unknown key.
        """
        values = dict(custom_config or {})
        settings.refuse_unknown(InvalidFederatedSetting, values, [f.name for f in dataclasses.fields(cls)])
        if not isinstance(values.get("label_key"), str) or not values["label_key"]:
            raise InvalidFederatedSetting("label_key", f"name the label column, got {values.get('label_key')!r}")
        for key in ("feature_keys", "hidden_units"):
            if values.get(key) is not None:
                if isinstance(values[key], (str, bytes)) or not hasattr(values[key], "__iter__"):
                    raise InvalidFederatedSetting(key, f"must be a list, got {values[key]!r}")
                values[key] = tuple(values[key])
        for key in ("private", "secure_aggregation", "seeded_noise", "weighted", "public_schema"):
            if key in values and not isinstance(values[key], bool):
                raise InvalidFederatedSetting(key, f"must be true or false, got {values[key]!r}")
        for key in ("num_clients", "shards_per_client", "rounds", "local_epochs", "max_examples_per_client"):
            if values.get(key) is not None:
                values[key] = settings.integer(InvalidFederatedSetting, key, values[key])
        if values.get("num_classes") is not None:
            values["num_classes"] = settings.integer(
                InvalidFederatedSetting, "num_classes", values["num_classes"], minimum=2
            )
        if values.get("batch_size") is not None:
            values["batch_size"] = settings.integer(InvalidFederatedSetting, "batch_size", values["batch_size"])
        if "seed" in values:
            values["seed"] = settings.integer(
                InvalidFederatedSetting, "seed", values["seed"], minimum=0, maximum=MAX_SEED
            )
        for key in (
            "alpha",
            "client_learning_rate",
            "clipping_norm",
            "server_learning_rate",
            "noise_multiplier",
            "target_epsilon",
            "max_epsilon",
            "clipped_count_stddev",
            "secagg_range",
            "decision_epsilon",
        ):
            if values.get(key) is not None:
                values[key] = settings.positive(InvalidFederatedSetting, key, values[key])
        for key, low, high, closed in (
            ("proximal_mu", 0.0, math.inf, "[)"),
            ("server_momentum", 0.0, 1.0, "[)"),
            ("target_unclipped_quantile", 0.0, 1.0, "()"),
            ("fraction", 0.0, 1.0, "(]"),
        ):
            if key in values:
                values[key] = _interval(key, values[key], low, high, closed)
        if values.get("delta") is not None:
            values["delta"] = settings.probability(InvalidFederatedSetting, "delta", values["delta"])
        if "secagg_bits" in values:
            values["secagg_bits"] = settings.integer(InvalidFederatedSetting, "secagg_bits", values["secagg_bits"])
        if "secagg_modulus_bits" in values:
            values["secagg_modulus_bits"] = settings.integer(
                InvalidFederatedSetting, "secagg_modulus_bits", values["secagg_modulus_bits"]
            )
        if values.get("client_key") is not None and any(k in values for k in DEALING_SETTINGS):
            key = next(k for k in DEALING_SETTINGS if k in values)
            raise InvalidFederatedSetting(
                key,
                f"deals records to clients, but with client_key "
                f"{values['client_key']!r} each of its values is a client",
            )
        if not values.get("private", False):
            given = [
                k
                for k in (*PRIVACY_SETTINGS, "decision_epsilon", "budget_unit", "budget_adjacency")
                if values.get(k) not in (None, False)
            ]
            if given:
                raise InvalidFederatedSetting(given[0], "is a privacy setting, but 'private' is false")
        config = cls(**values)
        config._check()
        return config

    @classmethod
    def for_trainer(cls, custom_config: Mapping[str, Any] | None) -> "FederatedTrainingConfig":
        """`from_custom_config` for the Federated Trainer, which exports a model for release: its
        noise must come from the OS CSPRNG (``seeded_noise`` is for ``ppml federated run``)."""
        config = cls.from_custom_config(custom_config)
        if config.private and config.trust_model == "local":
            raise InvalidFederatedSetting(
                "trust_model",
                "the Federated Trainer's privacy ledger accounts central "
                "DP-FedAvg; local DP runs in ppml federated run",
            )
        if config.seeded_noise:
            raise InvalidFederatedSetting(
                "seeded_noise",
                "the Federated Trainer exports a model for release, whose "
                "noise nobody may replay from a seed; seeded noise is for "
                "research runs of ppml federated run",
            )
        return config

    def _check(self) -> None:
        for key, allowed in (
            ("partition", PARTITIONS),
            ("sampling", SAMPLINGS),
            ("server_optimizer", SERVER_OPTIMIZERS),
            ("clip", CLIPS),
            ("execution", EXECUTIONS),
            ("trust_model", TRUST_MODELS),
            ("accountant", tuple(a.value for a in AccountantKind)),
        ):
            settings.choice(InvalidFederatedSetting, key, getattr(self, key), allowed)
        if any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in self.hidden_units):
            raise InvalidFederatedSetting("hidden_units", f"must be integers >= 1, got {list(self.hidden_units)!r}")
        settings.integer(InvalidFederatedSetting, "secagg_bits", self.secagg_bits, minimum=1, maximum=48)
        if not self.secagg_bits < self.secagg_modulus_bits <= 63:
            raise InvalidFederatedSetting(
                "secagg_modulus_bits",
                f"must be an integer in ({self.secagg_bits}, 63] (above secagg_bits), got {self.secagg_modulus_bits}",
            )
        if self.private and self.noise_multiplier is not None and self.target_epsilon is not None:
            raise InvalidFederatedSetting("noise_multiplier", "give noise_multiplier or target_epsilon, not both")
        if self.budget_unit is not None:
            settings.choice(InvalidFederatedSetting, "budget_unit", self.budget_unit, ("client", "example"))
        if self.budget_adjacency is not None:
            settings.choice(
                InvalidFederatedSetting, "budget_adjacency", self.budget_adjacency, [a.value for a in Adjacency]
            )
        if self.budget_adjacency is not None and self.budget_unit != "example":
            raise InvalidFederatedSetting(
                "budget_adjacency",
                "states a budget per example's relation (budget_unit 'example'); a client-level budget is in the "
                "sampling's own (uniform: replace-one, poisson: add-remove)",
            )
        if self.budget_unit == "example" and (self.client_key is not None or self.max_epsilon is not None):
            setting = "max_epsilon" if self.client_key is None else "client_key"
            raise InvalidFederatedSetting(
                setting,
                "a budget per example is met by a keyed partition's record-level "
                "epsilon: not with a client_key (a user is the unit), nor with "
                "max_epsilon (its round-by-round stop sees the client-level one)",
            )
        if self.budget_unit == "example" and self.private and self.max_examples_per_client is None:
            raise InvalidFederatedSetting(
                "max_examples_per_client",
                "a budget per example needs a public bound K on "
                "each client's records: the record-level delta "
                "is judged against the N x K records",
            )
        low, high = NOISE_MULTIPLIER_RANGE
        if self.private and self.noise_multiplier is not None and not low <= self.noise_multiplier <= high:
            raise InvalidFederatedSetting(
                "noise_multiplier",
                f"must be in [{low:g}, {high:g}], the range ppml's "
                f"accounting answers for, got {self.noise_multiplier:g}",
            )
        if self.private:
            try:
                check_clipping_norm(self.clipping_norm)
            except ValueError as err:
                raise InvalidFederatedSetting("clipping_norm", str(err)) from None
        if self.private and self.execution == "auto":
            raise InvalidFederatedSetting(
                "execution",
                "'auto' picks by timing the clients' training on their data, "
                "so the choice and its timings are exact facts of the "
                "private data; name sequential, vectorized or numpy",
            )
        if self.private:
            try:
                check_public_population(self.sampler(), population_from_data=self.partitioner().population_from_data)
            except ValueError as err:
                raise InvalidFederatedSetting("sampling", str(err)) from None
        if self.private and self.trust_model == "local":
            for key, refused, why in (
                ("clip", self.clip != "fixed", "each client clips to a fixed C"),
                (
                    "seeded_noise",
                    self.seeded_noise,
                    "each client draws its noise from the OS CSPRNG; a seed would let the server remove it",
                ),
                (
                    "max_examples_per_client",
                    self.max_examples_per_client is not None,
                    "preprocessing releases are accounted under central DP only",
                ),
                (
                    "target_unclipped_quantile",
                    self.target_unclipped_quantile != type(self).target_unclipped_quantile,
                    "it sets adaptive clipping; each client clips to a fixed C",
                ),
                (
                    "clipped_count_stddev",
                    self.clipped_count_stddev is not None,
                    "it sets adaptive clipping; each client clips to a fixed C",
                ),
            ):
                if refused:
                    raise InvalidFederatedSetting(key, f"does not apply with trust_model 'local': {why}")
            if self.noise_multiplier is not None:
                settings.number(
                    InvalidFederatedSetting,
                    "noise_multiplier",
                    self.noise_multiplier,
                    low=MIN_LOCAL_NOISE_MULTIPLIER,
                    note="with trust_model 'local': the noise sampler's truncation would break delta below it",
                )
        if self.private and self.partition == "shards" and self.client_key is None:
            raise InvalidFederatedSetting(
                "partition",
                "shards cut the label-sorted records, so adding one record "
                "re-deals every client and a client-level guarantee says "
                "nothing about records; for label skew use dirichlet with a "
                "small alpha",
            )
        named = [k for k in (self.label_key, self.client_key) if k is not None and k in (self.feature_keys or ())]
        if named:
            raise InvalidFederatedSetting("feature_keys", f"{named[0]!r} is the label or client column, not a feature")
        if self.private and self.num_classes is None:
            raise InvalidFederatedSetting(
                "num_classes",
                "a private run needs the model's number of classes as a "
                "public setting: read from the private labels, one label "
                "would decide the model's shape and whether the run fits",
            )

    def to_custom_config(self) -> dict[str, Any]:
        """The settings as ``custom_config`` entries (JSON values)."""
        out = dataclasses.asdict(self)
        for key in ("feature_keys", "hidden_units"):
            if out[key] is not None:
                out[key] = list(out[key])
        return out

    # --- resolved on the data ---------------------------------------------------------------------
    @property
    def clients(self) -> str:
        """Where the clients come from, in words (public settings only)."""
        if self.client_key:
            return f"one per value of {self.client_key!r}"
        return "label-sorted shards" if self.partition == "shards" else f"keyed {self.partition} partition"

    @property
    def privacy_unit(self) -> str:
        """'user' with a client key (one client per key), else 'client' (`privacy_ledger.PRIVACY_UNITS`)."""
        return "user" if self.client_key is not None else "client"

    def model_classes(self, largest_label: int) -> int:
        """The model's number of classes: ``num_classes``, else 1 + ``largest_label`` (at least 2).

        Raises:
          InvalidFederatedSetting: when ``largest_label`` does not fit ``num_classes`` (not when private:
            a private run leaves such records out one by one, `federated.data.screen`).
        """
        if self.num_classes is None:
            return max(2, int(largest_label) + 1)
        if largest_label >= self.num_classes and not self.private:
            raise InvalidFederatedSetting(
                "num_classes",
                f"the labels go up to {largest_label}, which does not fit "
                f"{self.num_classes} classes (0..{self.num_classes - 1})",
            )
        return self.num_classes

    def sampler(self):
        """The client sampler of ``sampling`` and ``fraction``."""
        return PoissonSampler(self.fraction) if self.sampling == "poisson" else UniformSampler(self.fraction)

    def partitioner(self):
        """Natural clients by ``client_key``; else ``partition`` keyed by record content (shards: cut)."""
        from federated import partitioners

        if self.client_key is not None:
            return partitioners.NaturalPartitioner()
        if self.partition == "shards":
            return partitioners.ShardPartitioner(
                num_clients=self.num_clients, shards_per_client=self.shards_per_client, seed=self.seed
            )
        return partitioners.KeyedPartitioner(
            num_clients=self.num_clients, rule=self.partition, alpha=self.alpha, seed=self.seed
        )

    def plan(self, num_clients: int, *, preprocessing: PreprocessingAccount | None = None) -> "FederatedTrainingPlan":
        """Resolves delta and the noise multiplier for a population of ``num_clients`` clients: z as given,
        else calibrated for ``target_epsilon`` (default `DEFAULT_TARGET_EPSILON`) over the planned rounds,
        composed after the preprocessing releases.

        Args:
          preprocessing: what the Transform graph the model embeds released (private runs compose it first).

        Raises:
          InvalidFederatedSetting: when a setting does not fit the population (secure aggregation's
            modulus included: it must hold the sum of the most clients a round can sample), the target epsilon
            cannot be reached, or adaptive clipping's count noise is too small for the round's z.
        """
        num_clients = validation.integer("num_clients", num_clients, minimum=1)
        if self.secure_aggregation:  # checked here, not in a round that samples many clients
            from federated.aggregation import SecureAggregation

            most = self.sampler().most_clients(num_clients)
            needed = SecureAggregation.required_modulus_bits(self.secagg_bits, most)
            if needed > self.secagg_modulus_bits:
                raise InvalidFederatedSetting(
                    "secagg_modulus_bits",
                    f"a round of up to {most} clients ({self.sampling} sampling of "
                    f"{num_clients}) sums {self.secagg_bits}-bit values past "
                    f"2^{self.secagg_modulus_bits}: give at least {needed}",
                )
        if not self.private:
            return FederatedTrainingPlan(config=self, num_clients=num_clients)
        units = self.delta_units(num_clients)
        delta = default_delta(units) if self.delta is None else float(self.delta)
        if not delta_below_one_over_n(delta, units):
            symbol, which = (
                ("n", f"n = N x max_examples_per_client = {units} records (a budget per example)")
                if self.budget_unit == "example"
                else ("N", f"N = {num_clients} clients (the privacy unit is a {self.privacy_unit})")
            )
            shown, bound = compared(delta, 1 / units, digits=6, bound_digits=3)
            raise InvalidFederatedSetting("delta", f"must be below 1/{symbol} = {bound} for {which}, got {shown}")
        target = self.target_epsilon
        if self.noise_multiplier is None and target is None:
            target = DEFAULT_TARGET_EPSILON
        if self.trust_model == "local":
            return self._local_plan(num_clients, delta, target)
        sampling, adjacency = self.sampler().accounting
        expected = self.sampler().expected_clients(num_clients)
        mechanism = DpSgdMechanism(
            dataset_size=num_clients,
            batch_size=expected,
            noise_multiplier=self.noise_multiplier or 1.0,  # calibrated below if not given
            steps=self.rounds,
            sampling=sampling,
            adjacency=adjacency,
        )
        if mechanism.unsupported_reason(self.accountant):  # it reports epsilon every round
            raise InvalidFederatedSetting("accountant", mechanism.unsupported_reason(self.accountant))
        part = self._preprocessing(preprocessing, mechanism)
        try:
            accountant_delta = privacy_ledger.accountant_delta_of(delta, part)
        except privacy_ledger.LedgerError as err:
            raise InvalidFederatedSetting("delta", str(err)) from None
        decision = self._decision(accountant_delta)
        replaced = self.budget_adjacency == Adjacency.REPLACE_ONE.value  # the gate meets the replaced-record figure
        if target is not None and self.budget_unit == "example" and (adjacency is Adjacency.ADD_REMOVE or replaced):
            mechanism = self._per_record(mechanism, target, num_clients, delta, part, decision)
        elif target is not None:
            prior = ([] if part is None else part.private_events()) + ([] if decision is None else [decision.event()])
            try:
                sigma = calibrate_noise_multiplier(
                    mechanism,
                    target_epsilon=target,
                    target_delta=accountant_delta,
                    accountant=self.accountant,
                    prior_events=prior,
                )
            except (ValueError, UnsupportedAccounting) as err:
                which = (
                    ""
                    if self.target_epsilon is not None
                    else f" the default target epsilon {DEFAULT_TARGET_EPSILON:g} (or give the noise multiplier)"
                )
                raise InvalidFederatedSetting("target_epsilon", f"cannot calibrate{which}: {err}") from None
            mechanism = mechanism.replace(noise_multiplier=sigma)
        try:  # the epsilon reported every round must be computable, e.g. not for z = 1e-300 or 1e300
            planned = compute_epsilon(mechanism, delta, self.accountant)
        except (ArithmeticError, ValueError) as err:
            planned = f"{type(err).__name__}: {err}"
        if isinstance(planned, numbers.Real) and not isinstance(planned, bool):  # 0 comes back as int 0
            planned = float(planned)
        if not isinstance(planned, float) or math.isnan(planned):
            raise InvalidFederatedSetting(
                "noise_multiplier" if target is None else "target_epsilon",
                f"z = {mechanism.noise_multiplier:g} cannot be accounted by dp-accounting ({planned})",
            )
        if self.max_epsilon is not None:  # the strategy's stop rule before round 1, from public numbers
            first = PrivacyBudget.for_mechanism(mechanism, delta).epsilon_after(
                mechanism.unit_event(), 1, self.accountant
            )
            if first > self.max_epsilon:
                shown, bound = compared(first, self.max_epsilon)
                raise InvalidFederatedSetting(
                    "max_epsilon",
                    f"{bound} is below one round's epsilon "
                    f"{shown} ({self.accountant}, z = "
                    f"{mechanism.noise_multiplier:.4g}, delta = {delta:g}): "
                    f"no round could run; raise it",
                )
        if self.clip == "adaptive":
            stddev = self.clipped_count_stddev or default_count_stddev(expected)
            try:
                update_noise_multiplier(mechanism.noise_multiplier, stddev)
            except ValueError as err:
                default = (
                    ""
                    if self.clipped_count_stddev
                    else f" ({COUNT_STDDEV_SHARE:g} x {expected:g} expected clients per round)"
                )
                raise InvalidFederatedSetting("clipped_count_stddev", f"{err}{default}") from None
        return FederatedTrainingPlan(
            config=self,
            num_clients=num_clients,
            mechanism=mechanism,
            delta=delta,
            target_epsilon=target,
            preprocessing=part,
            decision=decision,
        )

    def delta_units(self, num_clients: int) -> int:
        """How many privacy units delta is judged against: the N clients (users), or under ``budget_unit``
        'example' the public bound N x ``max_examples_per_client`` on the records."""
        return num_clients * self.max_examples_per_client if self.budget_unit == "example" else num_clients

    def _per_record(
        self,
        mechanism: DpSgdMechanism,
        target: float,
        num_clients: int,
        delta: float,
        part: PreprocessingPart | None,
        decision: NoisyAccuracy | None,
    ) -> DpSgdMechanism:
        """``mechanism`` with the least z (within 0.1%) whose record-level figure (`FederatedTrainingPlan.
        record_level`: the gate's figure for a budget per example; under ``budget_adjacency`` replace-one its
        ``replaced_record`` figure) is at most ``target``."""

        def record_epsilon(z: float) -> float:
            plan = FederatedTrainingPlan(
                config=self,
                num_clients=num_clients,
                mechanism=mechanism,
                delta=delta,
                preprocessing=part,
                decision=decision,
            )
            trial = mechanism.replace(noise_multiplier=z)
            if self.budget_adjacency == Adjacency.REPLACE_ONE.value:
                epsilon = plan._replaced_record(trial)["epsilon"]
            else:
                epsilon = plan._client_replaced(trial)[0]
            return math.inf if epsilon is None else epsilon

        low, high = NOISE_MULTIPLIER_RANGE[0], 1.0
        while record_epsilon(high) > target:
            low, high = high, high * 2
            if high > NOISE_MULTIPLIER_RANGE[1]:
                raise InvalidFederatedSetting(
                    "target_epsilon",
                    f"no noise multiplier up to "
                    f"{NOISE_MULTIPLIER_RANGE[1]:g} meets {target:g} per "
                    f"record (budget_unit 'example')",
                )
        while high / low > 1.001:
            middle = math.sqrt(low * high)
            low, high = (low, middle) if record_epsilon(middle) <= target else (middle, high)
        return mechanism.replace(noise_multiplier=high)

    def _decision(self, delta: float) -> NoisyAccuracy | None:
        """The push decision's noise for a client's group of K records, calibrated for ``decision_epsilon`` alone."""
        if self.decision_epsilon is None:
            return None
        if self.client_key is not None:
            raise InvalidFederatedSetting(
                "decision_epsilon",
                "with a client_key a user's held-out records are not "
                "bounded, so the push decision cannot be accounted "
                "per user",
            )
        if self.max_examples_per_client is None or self.max_epsilon is not None:
            setting = "max_epsilon" if self.max_epsilon is not None else "max_examples_per_client"
            raise InvalidFederatedSetting(
                setting,
                "the push decision is accounted for a client's group of K "
                "records before the rounds: set max_examples_per_client and "
                "use target_epsilon, not max_epsilon",
            )
        try:
            return NoisyAccuracy.calibrate(self.decision_epsilon, delta, group_size=self.max_examples_per_client)
        except DecisionError as err:
            raise InvalidFederatedSetting("decision_epsilon", str(err)) from None

    def _local_plan(self, num_clients: int, delta: float, target: float | None) -> "FederatedTrainingPlan":
        """Local DP: z as given, else calibrated so that a client sent in every round stays within ``target``."""
        from federated.strategies.dp_local import calibrate_local_noise_multiplier, local_epsilon

        z = self.noise_multiplier
        if target is not None:
            try:
                z = calibrate_local_noise_multiplier(target, self.rounds, delta, self.accountant)
            except ValueError as err:
                raise InvalidFederatedSetting("target_epsilon", f"cannot calibrate: {err}") from None
        planned = local_epsilon(z, self.rounds, delta, self.accountant)
        if not math.isfinite(planned):
            raise InvalidFederatedSetting(
                "noise_multiplier" if target is None else "target_epsilon",
                f"z = {z:g} cannot be accounted by dp-accounting ({planned})",
            )
        first = local_epsilon(z, 1, delta, self.accountant)  # public numbers: the run could not train at all
        if self.max_epsilon is not None and first > self.max_epsilon:
            shown, bound = compared(first, self.max_epsilon)
            raise InvalidFederatedSetting(
                "max_epsilon",
                f"{bound} is below one round's epsilon "
                f"{shown} ({self.accountant}, z = {z:.4g}, delta = "
                f"{delta:g}): no client could be sent; raise it",
            )
        return FederatedTrainingPlan(
            config=self, num_clients=num_clients, delta=delta, target_epsilon=target, local_noise_multiplier=z
        )

    def _preprocessing(
        self, account: PreprocessingAccount | None, mechanism: DpSgdMechanism
    ) -> PreprocessingPart | None:
        """The preprocessing releases as a client moves them: a group of ``max_examples_per_client`` records."""
        if account is None or not (account.mechanisms or account.unaccounted or account.coverage):
            return None
        if self.max_examples_per_client is None:
            raise InvalidFederatedSetting(
                "max_examples_per_client",
                "the Transform graph's private preprocessing "
                "is accounted per record; set a public bound K "
                "on each client's records so that its events "
                "can be accounted per client",
            )
        if self.max_epsilon is not None:
            raise InvalidFederatedSetting(
                "max_epsilon",
                "the round-by-round stop sees only the rounds' events, not the preprocessing's; use target_epsilon",
            )
        part = PreprocessingPart(account, mechanism.adjacency, self.max_examples_per_client)
        try:
            part.events()
        except RecordError as err:
            raise InvalidFederatedSetting("max_examples_per_client", str(err)) from None
        return part


@dataclasses.dataclass(frozen=True)
class FederatedTrainingPlan:
    """A resolved run: N clients and, for private runs, the client-level mechanism (clients as
    examples, rounds as steps), delta (the artifact's) and the preprocessing releases composed before the
    rounds; it builds the run's federated objects."""

    config: FederatedTrainingConfig
    num_clients: int
    mechanism: DpSgdMechanism | None = None
    delta: float | None = None
    target_epsilon: float | None = None
    """The epsilon z was calibrated for (the setting or `DEFAULT_TARGET_EPSILON`), None when z was given."""
    preprocessing: PreprocessingPart | None = None
    """The Transform graph's private releases as one client moves them, or None without any."""
    local_noise_multiplier: float | None = None
    """z of each client's own noise under trust_model 'local' (then ``mechanism`` is None)."""
    decision: NoisyAccuracy | None = None
    """The push decision's release, reserved for groups of K records, or None."""

    @property
    def private(self) -> bool:
        return self.mechanism is not None or self.local_noise_multiplier is not None

    @property
    def noise_multiplier(self) -> float | None:
        """z: of the server's noise (central) or of each client's (local); None when not private."""
        return self.local_noise_multiplier if self.mechanism is None else self.mechanism.noise_multiplier

    @property
    def delta_warning(self) -> str | None:
        """Why delta is too large for the privacy units (`privacy.accounting.delta_warning`; N clients or users,
        N x K records under a budget per example), or None."""
        if not self.private:
            return None
        units = self.config.delta_units(self.num_clients)
        return delta_warning(
            self.delta, units, unit="record" if self.config.budget_unit == "example" else self.config.privacy_unit
        )

    def strategy(self):
        """The FedAvg-family strategy (clients weighted equally and wrapped in DP-FedAvg when private)."""
        from federated import ClientConfig
        from federated.strategies import build_strategy, with_client_dp

        c = self.config
        client = ClientConfig(
            local_epochs=c.local_epochs,
            batch_size=c.batch_size,
            learning_rate=c.client_learning_rate,
            proximal_mu=c.proximal_mu,
        )
        algorithm = build_strategy(
            c.server_optimizer,
            client,
            weighted=c.weighted and not self.private,
            server_learning_rate=c.server_learning_rate,
            server_momentum=c.server_momentum,
        )
        if not self.private:
            return algorithm
        if self.local_noise_multiplier is not None:
            from federated.strategies import LocalDifferentialPrivacy

            return LocalDifferentialPrivacy(
                algorithm,
                clipping_norm=c.clipping_norm,
                noise_multiplier=self.local_noise_multiplier,
                target_delta=self.delta,
                max_epsilon=c.max_epsilon,
                accountant=c.accountant,
            )
        return with_client_dp(
            algorithm,
            clip=c.clip,
            clipping_norm=c.clipping_norm,
            noise_multiplier=self.mechanism.noise_multiplier,
            target_delta=self.delta,
            target_quantile=c.target_unclipped_quantile,
            clipped_count_stddev=c.clipped_count_stddev,
            max_epsilon=c.max_epsilon,
            accountant=c.accountant,
            seeded_noise=c.seeded_noise,
        )

    def aggregation(self, strategy, max_client_size: int):
        """Secure aggregation when asked (range ``secagg_range`` or the strategy's), else None (plain)."""
        c = self.config
        if not c.secure_aggregation:
            return None
        from federated.aggregation import SecureAggregation

        return SecureAggregation(
            clipping_range=c.secagg_range or strategy.secure_aggregation_range(max_client_size),
            bits=c.secagg_bits,
            modulus_bits=c.secagg_modulus_bits,
        )

    def record_level(self, rounds: int) -> dict[str, Any] | None:
        """What one record costs after ``rounds`` rounds of a keyed partition (None for one client per user,
        whose unit is the user).

        ``record_adjacency`` is the record relation the figure covers: one record added or removed (add-remove),
        which with N fixed replaces one client's data (``client_adjacency`` replace-one): its clipped update can
        move by 2C. Uniform sampling is accounted replace-one: the client-level epsilon is the record-level one.
        Poisson sampling is accounted add/remove (a client's update moving by C): the replacement is accounted
        here, by PLD under REPLACE_ONE (the Poisson-sampled Gaussian of the same z), after the preprocessing
        releases as one record replaced moves them (their replace-one events, group 1), so ``epsilon`` covers
        the artifact; or where PLD declines, by RDP group privacy over two add/remove neighbours (a removal,
        then an addition) of the rounds, when there is no preprocessing to compose (else ``epsilon`` is None
        and ``accountant`` says why). This is the figure a budget per example meets
        (`pipelines.components.private_evaluator.spec.budget_epsilon`). A record replaced changes two clients'
        data: ``replaced_record`` bounds it (`_replaced_record`), the figure a budget stated replace-one meets.
        ``records`` is the public bound N x ``max_examples_per_client`` on the records (None without K), against
        which the gate judges the figure's delta (without it the figure meets no budget per example).
        """
        if self.config.privacy_unit != "client":
            return None
        k = self.config.max_examples_per_client
        relation = {
            "record_adjacency": Adjacency.ADD_REMOVE.value,
            "client_adjacency": Adjacency.REPLACE_ONE.value,
            "records": None if k is None else self.num_clients * k,
        }
        if self.mechanism is None:  # local DP covers any change of a client's data, a record's included
            return {**relation, "epsilon_is": "the client-level epsilon"}
        mechanism = self.mechanism.replace(steps=rounds)
        if mechanism.adjacency is Adjacency.REPLACE_ONE:
            return {
                **relation,
                "epsilon_is": "the client-level epsilon",
                "replaced_record": self._replaced_record(mechanism),
            }
        epsilon, how, replaced = self._client_replaced(mechanism)
        out = {
            **relation,
            "accountant": how,
            "epsilon": epsilon,
            "delta": self.delta,
            "neighboring_relation": replaced.neighboring_relation.name,
            "event": event_to_json(replaced.dp_event()),
            "replaced_record": self._replaced_record(mechanism),
        }
        if self.preprocessing is not None or self.decision is not None:
            out["covers"] = (
                "the artifact: the preprocessing releases and the push decision (one record replaced), then the rounds"
            )
        return out

    def _client_replaced(self, mechanism: DpSgdMechanism) -> tuple[float | None, str, DpSgdMechanism]:
        """(epsilon, accountant, mechanism accounted) of one client's data replaced under Poisson sampling
        (`record_level`)."""
        replaced = mechanism.replace(adjacency=Adjacency.REPLACE_ONE)
        try:
            epsilon, how = compute_epsilon(replaced, self.delta, AccountantKind.PLD), AccountantKind.PLD.value
            if self.preprocessing is not None or self.decision is not None:
                epsilon, how = self._record_level_artifact(replaced)
        except UnsupportedAccounting as declined:  # e.g. z below PLD's cost limit: a replacement is a removal
            # then an addition, so RDP group privacy over 2 add/remove neighbours bounds it (looser)
            replaced = mechanism.replace(max_examples_per_user=2)
            epsilon, how = compute_epsilon(replaced, self.delta, AccountantKind.RDP), "rdp, group privacy of 2"
            if self.preprocessing is not None or self.decision is not None:
                epsilon, how = None, f"none: {declined}; group privacy is not composed with the preprocessing"
            elif not math.isfinite(epsilon):
                epsilon, how = None, f"none: {declined}; RDP group privacy of 2 diverges"
        return (None if epsilon is None else float(epsilon)), how, replaced

    def _replaced_record(self, mechanism: DpSgdMechanism) -> dict[str, Any]:
        """{epsilon, accountant, delta[, covers]} of one record replaced: it leaves one client (or the held-out
        split) and joins another, so it is group privacy of 2 over neighbours that each remove or add one record,
        which with N fixed replaces one client's data: replace-one client neighbours for the rounds, one record
        added or removed for the preprocessing releases (their add-remove events, group 1) and the push decision
        (one held-out record). Those events and the rounds' are composed in one accountant whose epsilon is for
        groups of 2 (`privacy.accounting.GroupPrivacyAccountant`): RDP for uniform sampling, PLD for Poisson
        (whose replace-one relation reads the releases' and decision's Gaussian events as twice the shift one
        record makes: an over-count, e.g. about 25% more epsilon, never an under-count; where PLD declines, RDP
        over 4 add/remove client neighbours bounds the rounds alone, and a composed figure is None). ``epsilon``
        is None, ``accountant`` saying why, where no sound figure follows: a single client, a release analysed
        replace-one only (its record count exact) or with an additive delta
        (a private vocabulary: group privacy does not carry it), or an infinite epsilon."""
        none = {"epsilon": None, "delta": self.delta}
        if mechanism.dataset_size < 2:  # no second client to move to
            return {**none, "accountant": "none: a single client"}
        prior = [] if self.decision is None else [self.decision.event(1)]
        composed = self.preprocessing is not None or self.decision is not None
        if self.preprocessing is not None:
            account = self.preprocessing.account
            try:
                prior = account.events(Adjacency.ADD_REMOVE, 1) + prior
                additive = account.additive_delta(Adjacency.ADD_REMOVE, 1)
            except RecordError as err:  # a release analysed replace-one: no bound for a record added or removed
                return {**none, "accountant": f"none: {err}"}
            if additive > 0:
                return {
                    **none,
                    "accountant": "none: a private vocabulary's additive delta is not carried through group privacy",
                }
        artifact = "the artifact: the preprocessing releases and the push decision (one record each), then the rounds"
        covers = {"covers": artifact} if composed else {}
        if mechanism.adjacency is Adjacency.REPLACE_ONE:
            kind, rounds = AccountantKind.RDP, mechanism
        else:
            kind, rounds = AccountantKind.PLD, mechanism.replace(adjacency=Adjacency.REPLACE_ONE)
        grouped, how = rounds.replace(max_examples_per_user=2), f"{kind.value}, group privacy of 2 clients replaced"
        try:
            epsilon = compute_epsilon(grouped, self.delta, kind)  # the accountant's checks; the rounds alone
            if composed:
                epsilon = epsilon_of(
                    dp_event.ComposedDpEvent([*prior, grouped.dp_event()]),
                    target_delta=self.delta,
                    accountant=kind,
                    relation=grouped.neighboring_relation,
                    group_size=2,
                )
        except UnsupportedAccounting as declined:
            if composed or kind is AccountantKind.RDP or mechanism.dataset_size < 4:
                why = (
                    "; RDP group privacy of 4 add/remove client neighbours is not composed with them"
                    if composed
                    else ""
                )
                return {**none, "accountant": f"none: {declined}{why}"}
            grouped = mechanism.replace(max_examples_per_user=4)
            epsilon, how = (
                compute_epsilon(grouped, self.delta, AccountantKind.RDP),
                "rdp, group privacy of 4 add/remove neighbours (2 clients replaced)",
            )
        if not math.isfinite(epsilon):
            return {**none, "accountant": f"none: {how} diverges", **covers}
        return {"epsilon": float(epsilon), "delta": self.delta, "accountant": how, **covers}

    def _record_level_artifact(self, replaced: DpSgdMechanism) -> tuple[float | None, str]:
        """(epsilon, accountant) of one replaced record under PLD: the preprocessing releases' replace-one events
        (group 1) and the push decision's (one record), then ``replaced``'s rounds, at the delta left after the
        releases' additive delta."""
        prior, delta = [] if self.decision is None else [self.decision.event(1)], self.delta
        if self.preprocessing is not None:
            account = self.preprocessing.account
            try:
                prior = account.events(Adjacency.REPLACE_ONE, 1) + prior
                delta = self.delta - account.additive_delta(Adjacency.REPLACE_ONE, 1)
            except RecordError as err:  # e.g. a private vocabulary: analysed under add-remove only
                return None, f"none: {err}"
        epsilon = epsilon_of(
            dp_event.ComposedDpEvent([*prior, replaced.dp_event()]),
            target_delta=delta,
            accountant=AccountantKind.PLD,
            relation=replaced.neighboring_relation,
        )
        return (float(epsilon), AccountantKind.PLD.value) if math.isfinite(epsilon) else (None, "none: PLD diverges")

    def ledger(
        self,
        budget,
        *,
        rounds: int,
        trainer: Mapping[str, Any],
        outside_guarantee: Mapping[str, str] | None = None,
        noise_draws: NoiseDraws | None = None,
    ) -> privacy_ledger.PrivacyLedger:
        """The ``dp-fedavg`` ledger of ``rounds`` rounds of this plan (the budget the simulation composed), with
        the plan's preprocessing releases composed before the rounds and what the run released outside its
        guarantee (the history's ``outside_guarantee``, after the client count N, treated as public,
        `privacy_ledger.SEPARATE_RUNS`, listed by every ledger: it accounts this run alone, and the floating-point
        noise, `privacy_ledger.FEDAVG_FLOATING_POINT_NOISE`).

        Args:
          noise_draws: what the noise sampler drew (cut-off radius, Box-Muller pairs per round; the strategy's
            `noise_draws`): the ledger's delta then adds the cut-off's; without it the cut-off is listed outside the
            guarantee.

        Raises:
          privacy_ledger.LedgerError: if ``budget`` does not account exactly those rounds of the plan, or the noise's
            cut-off adds more than 1 % of delta.
        """
        if self.mechanism is None:
            raise privacy_ledger.LedgerError("the privacy ledger accounts central DP-FedAvg, not trust_model 'local'")
        mechanism = self.mechanism.replace(steps=rounds)
        privacy_ledger.check_budget(budget, mechanism, self.delta)  # the rounds, at the delta they were run at
        budget = privacy_ledger.with_preprocessing(
            budget,
            mechanism,
            privacy_ledger.accountant_delta_of(self.delta, self.preprocessing),
            self.preprocessing,
            self.decision,
        )
        c = self.config
        parameters: dict[str, Any] = {
            "privacy_unit": c.privacy_unit,
            "dataset_size": self.num_clients,
            "batch_size": mechanism.batch_size,
            "noise_multiplier": mechanism.noise_multiplier,
            "steps": rounds,
            "sampling": mechanism.sampling.value,
            "adjacency": mechanism.adjacency.value,
            "l2_norm_clip": c.clipping_norm,
            "clip": c.clip,
            "clients": c.clients,
            "delta_is_default": c.delta is None,
            "delta_warning": self.delta_warning,
            "noise": "seeded" if c.seeded_noise else "csprng",
            "record_level": self.record_level(rounds),
            "outside_guarantee": {
                **privacy_ledger.public_dataset_size(self.num_clients, c.privacy_unit, adjacency=mechanism.adjacency),
                **privacy_ledger.SEPARATE_RUNS,
                **privacy_ledger.FEDAVG_FLOATING_POINT_NOISE,
                **(DECISION_CAVEAT if self.decision is not None else {}),
                **(outside_guarantee or {}),
                **(privacy_ledger.UNKNOWN_NOISE_CUTOFF if noise_draws is None else {}),
            },
        }
        if noise_draws is not None:
            parameters["noise_cutoff"] = noise_draws.to_dict()
        ledger = privacy_ledger.PrivacyLedger(
            budget=budget,
            mechanism=privacy_ledger.DP_FEDAVG,
            parameters=parameters,
            trainer={**trainer, "settings": {**c.to_custom_config(), "weighted": False}},  # DP: unweighted
            preprocessing=self.preprocessing,
            decision=self.decision,
        )
        ledger.cutoff_delta  # noqa: B018 -- refuses a cut-off over 1 % of delta before the ledger is written
        return ledger


def _interval(key: str, value: Any, low: float, high: float, closed: str) -> float:
    """A number in the interval from ``low`` to ``high``, brackets as in ``closed`` (e.g. "[)")."""
    return settings.number(
        InvalidFederatedSetting, key, value, low=low, high=high, low_open=closed[0] == "(", high_open=closed[1] == ")"
    )
