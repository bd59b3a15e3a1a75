"""The Federated Trainer's settings: what a pipeline author puts in the Trainer's ``custom_config``.

Keys (all optional except ``label_key``; defaults in `FederatedTrainingConfig`):

=======================  ======================================================================
label_key                integer class label column of the training examples
feature_keys             numeric input columns, flattened and concatenated in this order
                         (default: every numeric column except the label and client key)
client_key               column naming each example's client: a natural partition
partition                without ``client_key``: iid | dirichlet | shards | quantity
num_clients              N, clients of a ``partition`` (default 10)
alpha                    Dirichlet concentration (dirichlet, quantity)
shards_per_client        classes-shards per client (shards)
rounds                   T, federated rounds
sampling                 uniform (round(C N) clients a round) or poisson (each with probability C)
fraction                 C in (0, 1]
local_epochs             E, local passes per round
batch_size               B, local batch size; null: the client's whole data (FedSGD with E = 1)
client_learning_rate     local SGD step size
server_optimizer         sgd | avgm | adam | yogi | adagrad
server_learning_rate     default 1 (sgd, avgm) or 0.01 (adaptive)
hidden_units             widths of the model's ReLU layers (the model is an MLP on the features)
seed                     weight initialisation, partition, sampling and batch order
execution                local training: sequential | vectorized | numpy | auto (time each, keep the cheapest)
private                  client-level DP-FedAvg with a privacy ledger (clients weighted equally)
noise_multiplier         z: noise std on the sum of clipped updates is z C
target_epsilon           instead of noise_multiplier: calibrate z so that epsilon <= this
clip                     fixed | adaptive (Andrew et al. 2021; clipping_norm is the initial C)
clipping_norm            C, the L2 bound of each client's update
delta                    delta of the guarantee (default: the largest power of ten below 1/N)
accountant               rdp | pld, the accountant of target_epsilon and max_epsilon
max_epsilon              stop before a round would take epsilon above this
secure_aggregation       simulate secure aggregation of the client contributions (32-bit
                         quantization; coordinates clipped to +-C under DP, else to +-8 n_max)
max_examples_per_client  K, a public bound on any client's training records; needed when a
                         private run's Transform graph has private preprocessing releases, which
                         are example-level: a client moves them as K records do (a client with
                         more is refused before training)
=======================  ======================================================================

The privacy unit is one client: a neighbouring dataset adds or removes (Poisson) or replaces
(uniform) one client's whole data. A private run draws its noise and its client sample from the OS
CSPRNG (the model is released; a seed in the ledger must not let anyone replay either).
`FederatedTrainingConfig.from_custom_config` checks the settings
alone, `plan` checks them against the data (N clients) and resolves z and delta; both raise
`InvalidFederatedSetting` naming the key, before any training. This module does not import TensorFlow.

A Transform graph's private preprocessing releases are part of the exported model: a private plan composes
their events before the rounds, as seen by neighbouring data sets that differ in one client (K records
added or removed, or replaced), and calibrates z so that both together meet ``target_epsilon``.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Mapping

from federated.client import EXECUTIONS as CLIENT_EXECUTIONS
from federated.sampling import PoissonSampler, UniformSampler
from federated.strategies import SERVER_OPTIMIZERS
from pipelines.components import settings
from pipelines.privacy_ledger import LedgerError, accountant_delta_of
from privacy.accounting import (AccountantKind, DpSgdMechanism, UnsupportedAccounting,
                                calibrate_noise_multiplier, default_delta)
from privacy.preprocessing import PreprocessingAccount, PreprocessingPart, RecordError

PARTITIONS = ("iid", "dirichlet", "shards", "quantity")
SAMPLINGS = ("uniform", "poisson")
CLIPS = ("fixed", "adaptive")
EXECUTIONS = ("auto",) + CLIENT_EXECUTIONS


class InvalidFederatedSetting(settings.InvalidSetting):
    """A Federated Trainer setting in ``custom_config`` is invalid; ``setting`` names the key."""


@dataclasses.dataclass(frozen=True)
class FederatedTrainingConfig:
    """Data, FedAvg and privacy settings of the Federated Trainer (see the module docstring)."""

    label_key: str | None = None
    feature_keys: tuple[str, ...] | None = None
    client_key: str | None = None
    partition: str = "iid"
    num_clients: int = 10
    alpha: float = 0.5
    shards_per_client: int = 2
    rounds: int = 20
    sampling: str = "uniform"
    fraction: float = 0.5
    local_epochs: int = 1
    batch_size: int | None = 10
    client_learning_rate: float = 0.1
    server_optimizer: str = "sgd"
    server_learning_rate: float | None = None
    hidden_units: tuple[int, ...] = (16,)
    seed: int = 0
    execution: str = "auto"
    private: bool = False
    noise_multiplier: float | None = None
    target_epsilon: float | None = None
    clip: str = "fixed"
    clipping_norm: float = 1.0
    delta: float | None = None
    accountant: str = AccountantKind.RDP.value
    max_epsilon: float | None = None
    secure_aggregation: bool = False
    max_examples_per_client: int | None = None

    @classmethod
    def from_custom_config(cls, custom_config: Mapping[str, Any] | None) -> "FederatedTrainingConfig":
        """Reads and checks the settings from a Trainer ``custom_config``.

        Raises:
          InvalidFederatedSetting: naming the first bad or unknown key.
        """
        custom_config = dict(custom_config or {})
        names = [f.name for f in dataclasses.fields(cls)]
        for key in custom_config:
            if key not in names:
                close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(names)}"
                raise InvalidFederatedSetting(key, f"unknown setting{hint}")
        values = dict(custom_config)
        if not isinstance(values.get("label_key"), str) or not values["label_key"]:
            raise InvalidFederatedSetting("label_key", f"name the label column, got {values.get('label_key')!r}")
        for key in ("feature_keys", "hidden_units"):
            if values.get(key) is not None:
                if isinstance(values[key], (str, bytes)) or not hasattr(values[key], "__iter__"):
                    raise InvalidFederatedSetting(key, f"must be a list, got {values[key]!r}")
                values[key] = tuple(values[key])
        for key in ("private", "secure_aggregation"):
            if key in values and not isinstance(values[key], bool):
                raise InvalidFederatedSetting(key, f"must be true or false, got {values[key]!r}")
        for key in ("num_clients", "shards_per_client", "rounds", "local_epochs", "max_examples_per_client"):
            if values.get(key) is not None:
                values[key] = settings.integer(InvalidFederatedSetting, key, values[key])
        if values.get("batch_size") is not None:
            values["batch_size"] = settings.integer(InvalidFederatedSetting, "batch_size", values["batch_size"])
        if "seed" in values:
            values["seed"] = settings.integer(InvalidFederatedSetting, "seed", values["seed"], minimum=0)
        for key in ("alpha", "client_learning_rate", "clipping_norm", "server_learning_rate", "noise_multiplier",
                    "target_epsilon", "max_epsilon"):
            if values.get(key) is not None:
                values[key] = settings.positive(InvalidFederatedSetting, key, values[key])
        if values.get("delta") is not None:
            values["delta"] = settings.probability(InvalidFederatedSetting, "delta", values["delta"])
        config = cls(**values)
        config._check_choices()
        return config

    def _check_choices(self) -> None:
        for key, allowed in (("partition", PARTITIONS), ("sampling", SAMPLINGS),
                             ("server_optimizer", SERVER_OPTIMIZERS), ("clip", CLIPS), ("execution", EXECUTIONS),
                             ("accountant", tuple(a.value for a in AccountantKind))):
            if getattr(self, key) not in allowed:
                raise InvalidFederatedSetting(key, f"must be one of {', '.join(allowed)}, got {getattr(self, key)!r}")
        fraction = settings.number(self.fraction)
        if fraction is None or not 0 < fraction <= 1:
            raise InvalidFederatedSetting("fraction", f"must be in (0, 1], got {self.fraction!r}")
        if any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in self.hidden_units):
            raise InvalidFederatedSetting("hidden_units", f"must be integers >= 1, got {list(self.hidden_units)!r}")
        if self.private and (self.noise_multiplier is None) == (self.target_epsilon is None):
            both = "both are" if self.noise_multiplier is not None else "neither is"
            raise InvalidFederatedSetting("noise_multiplier", f"private training needs exactly one of "
                                                              f"'noise_multiplier' and 'target_epsilon' ({both} set)")
        if not self.private:
            for key in ("noise_multiplier", "target_epsilon", "max_epsilon"):
                if getattr(self, key) is not None:
                    raise InvalidFederatedSetting(key, "is a privacy setting, but 'private' is false")

    def to_custom_config(self) -> dict[str, Any]:
        """The settings as ``custom_config`` entries (JSON values)."""
        out = dataclasses.asdict(self)
        for key in ("feature_keys", "hidden_units"):
            if out[key] is not None:
                out[key] = list(out[key])
        return out

    # --- resolved on the data ---------------------------------------------------------------------
    def sampler(self):
        """The client sampler of ``sampling`` and ``fraction``."""
        return PoissonSampler(self.fraction) if self.sampling == "poisson" else UniformSampler(self.fraction)

    def expected_clients(self, num_clients: int) -> float:
        """E[clients per round], the public denominator of DP-FedAvg."""
        return self.sampler().expected_clients(num_clients)

    def plan(self, num_clients: int, *, preprocessing: PreprocessingAccount | None = None,
             largest_client: int | None = None) -> "FederatedTrainingPlan":
        """Resolves delta and the noise multiplier for a population of ``num_clients`` clients.

        Args:
          preprocessing: what the Transform graph the model embeds released (private runs compose it first).
          largest_client: the most training records any client holds (checked against
            ``max_examples_per_client`` when there is preprocessing to account).

        Raises:
          InvalidFederatedSetting: when a setting does not fit the population or the target epsilon
            cannot be reached.
        """
        if not (isinstance(num_clients, int) and num_clients >= 1):
            raise ValueError(f"num_clients must be an integer >= 1, got {num_clients!r}")
        if not self.private:
            return FederatedTrainingPlan(config=self, num_clients=num_clients)
        delta = default_delta(num_clients) if self.delta is None else float(self.delta)
        if delta >= 1 / num_clients:
            raise InvalidFederatedSetting("delta", f"must be below 1/N = {1 / num_clients:.3g} for N = {num_clients} "
                                                   f"clients (the privacy unit is a client), got {delta!r}")
        sampling, adjacency = self.sampler().accounting
        mechanism = DpSgdMechanism(dataset_size=num_clients, batch_size=self.expected_clients(num_clients),
                                   noise_multiplier=self.noise_multiplier or 1.0, steps=self.rounds,
                                   sampling=sampling, adjacency=adjacency)
        part = self._preprocessing(preprocessing, mechanism, largest_client)
        try:
            accountant_delta = accountant_delta_of(delta, part)
        except LedgerError as err:
            raise InvalidFederatedSetting("delta", str(err)) from None
        if self.target_epsilon is not None:
            try:
                sigma = calibrate_noise_multiplier(mechanism, target_epsilon=self.target_epsilon,
                                                   target_delta=accountant_delta, accountant=self.accountant,
                                                   prior_events=[] if part is None else part.private_events())
            except (ValueError, UnsupportedAccounting) as err:
                raise InvalidFederatedSetting("target_epsilon", f"cannot calibrate: {err}") from None
            mechanism = mechanism.replace(noise_multiplier=sigma)
        if mechanism.unsupported_reason(self.accountant):  # it reports epsilon every round
            raise InvalidFederatedSetting("accountant", mechanism.unsupported_reason(self.accountant))
        return FederatedTrainingPlan(config=self, num_clients=num_clients, mechanism=mechanism, delta=delta,
                                     preprocessing=part)

    def _preprocessing(self, account: PreprocessingAccount | None, mechanism: DpSgdMechanism,
                       largest_client: int | None) -> PreprocessingPart | None:
        """The preprocessing releases as a client moves them: a group of ``max_examples_per_client`` records."""
        if account is None or not (account.mechanisms or account.unaccounted or account.coverage):
            return None
        if self.max_examples_per_client is None:
            raise InvalidFederatedSetting("max_examples_per_client", "the Transform graph's private preprocessing "
                                                                     "is accounted per record; set a public bound K "
                                                                     "on each client's records so that its events "
                                                                     "can be accounted per client")
        if largest_client is not None and largest_client > self.max_examples_per_client:
            raise InvalidFederatedSetting("max_examples_per_client", f"a client holds {largest_client} training "
                                                                     f"records, more than the bound "
                                                                     f"{self.max_examples_per_client}")
        if self.max_epsilon is not None:
            raise InvalidFederatedSetting("max_epsilon", "the round-by-round stop sees only the rounds' events, not "
                                                         "the preprocessing's; use target_epsilon")
        part = PreprocessingPart(account, mechanism.adjacency, self.max_examples_per_client)
        try:
            part.events()
        except RecordError as err:
            raise InvalidFederatedSetting("max_examples_per_client", str(err)) from None
        return part


@dataclasses.dataclass(frozen=True)
class FederatedTrainingPlan:
    """A resolved run: N clients and, for private runs, the client-level mechanism (clients as
    examples, rounds as steps), delta (the artifact's) and the preprocessing releases composed first."""

    config: FederatedTrainingConfig
    num_clients: int
    mechanism: DpSgdMechanism | None = None
    delta: float | None = None
    preprocessing: PreprocessingPart | None = None

    @property
    def private(self) -> bool:
        return self.mechanism is not None

