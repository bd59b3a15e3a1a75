"""The federated simulation loop: sample, train, aggregate, step, evaluate, account, checkpoint.

Algorithms (`federated.strategies`), aggregation protocols (`federated.aggregation`) and runners
(in-process, Beam) are plugged in; this module only sequences a round and keeps the history.
"""

from __future__ import annotations

import dataclasses
import functools
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import numpy as np

from federated.aggregation import PlainAggregation
from federated.client import EXECUTIONS, ClientTrainer
from federated.data import ClientData
from federated.partitioners import PARTITIONERS
from federated.sampling import ClientSampler, UniformSampler, check_public_population
from federated.simulation.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from federated.simulation.history import OUTSIDE_GUARANTEE, History, RoundRecord
from federated.simulation.inprocess import InProcessRunner
from federated.simulation.round import RoundPlan, client_keys, round_rng, trainer_for
from federated.strategies import RoundContext, ServerState, Strategy
from federated.streams import Stream
from federated.weights import num_parameters
from privacy import validation
from privacy.accounting import Adjacency


class UnaccountedAbort(ValueError):
    """Under DP, one client's presence could decide whether secure aggregation aborts a round."""


@dataclasses.dataclass(frozen=True)
class RoundJob:
    """Everything a runner needs for one round (picklable when ``model_fn`` is)."""

    model_fn: Callable
    loss: Any
    execution: str
    data: ClientData
    strategy: Strategy
    state: ServerState
    plan: RoundPlan
    aggregation: Any
    keys: Any


class FederatedSimulation:
    """Simulates federated training of a Keras model over `ClientData`.

    Args:
      model_fn: builds the Keras 3 model (its initial weights start the run).
      data: the clients.
      strategy: the algorithm (`FedAvg`, `FedAdam`, a DP wrapper, ...).
      rounds: rounds to run in total (a resumed run continues up to this).
      sampler: client sampling (default: 10% of the clients, uniformly).
      seed: seed of every random draw (None: drawn from `secrets`, recorded in the history).
      loss: Keras loss (default sparse categorical cross-entropy on logits).
      execution: "sequential", "vectorized", "numpy" or "auto" (time each on a probe of clients,
        compilation included, run as the runner's workers would; keep the one with the smallest
        estimated CPU cost of the whole run; an execution the model does not fit is skipped). Not
        "auto" for a private strategy: the choice and its timings depend on the clients' data.
      chunk_size: clients per vectorized call and per Beam element; a power of two.
      evaluation: (x, y) evaluated centrally after rounds, or None.
      outside_guarantee: keys of `OUTSIDE_GUARANTEE` that the caller released outside a private run's
        guarantee, listed with their reasons in ``history.config["outside_guarantee"]``: "evaluation"
        when the evaluation rows are rows of the private data set (e.g. held out from it; a separate
        test set's metrics depend on the training data only through the model), "classes" when the
        model's size came from the private labels. The run adds "epsilon" itself under seeded noise.
      eval_every: evaluate every this many rounds (and after the last).
      runner: `InProcessRunner()` (default) or `BeamRunner(...)`.
      aggregation: `PlainAggregation()` (default) or `SecureAggregation(...)`.
      dropout_rate: probability a sampled client drops out before reporting, in [0, 1).
      checkpoint_dir: write a checkpoint after every round here, and resume from it when present.

    Raises:
      UnaccountedAbort: for a private strategy whose secure aggregation one client's presence could
        abort (`_check_abort_rule`).
      ValueError: for any other bad argument, e.g. a private strategy with Poisson sampling of a
        population counted from the data (`check_public_population`; a partition without a
        partitioner's spec counts as public).
    """

    def __init__(
        self,
        model_fn: Callable,
        data: ClientData,
        strategy: Strategy,
        *,
        rounds: int,
        sampler: ClientSampler | None = None,
        seed: int | None = None,
        loss=None,
        execution: str = "sequential",
        chunk_size: int = 8,
        evaluation: tuple[np.ndarray, np.ndarray] | None = None,
        eval_every: int = 1,
        outside_guarantee: tuple[str, ...] = (),
        runner=None,
        aggregation=None,
        dropout_rate: float = 0.0,
        checkpoint_dir: str | None = None,
    ):
        rounds = validation.integer("rounds", rounds, minimum=1)
        validation.choice("execution", execution, EXECUTIONS + ("auto",))
        if (
            isinstance(chunk_size, bool)
            or not isinstance(chunk_size, int)
            or chunk_size < 1
            or chunk_size & (chunk_size - 1)
        ):
            raise ValueError(f"chunk_size must be a power of two, got {chunk_size!r}")
        dropout_rate = validation.probability("dropout_rate", dropout_rate, zero=True)
        eval_every = validation.integer("eval_every", eval_every, minimum=1)
        if execution == "auto" and strategy.private:
            raise ValueError(
                "execution='auto' times the clients' training on their data, so the execution it "
                "picks (and its timings) would be an exact fact of the private data: name one of "
                f"{', '.join(EXECUTIONS)}"
            )
        self.model_fn, self.data, self.strategy, self.rounds = model_fn, data, strategy, rounds
        self.sampler = sampler or UniformSampler(0.1)
        self.seed = secrets.randbits(63) if seed is None else int(seed)
        self.loss, self.execution, self.chunk_size = loss, execution, chunk_size
        self.evaluation, self.eval_every = evaluation, eval_every
        unknown = sorted(set(outside_guarantee) - set(OUTSIDE_GUARANTEE))
        if unknown:
            raise ValueError(f"outside_guarantee takes {', '.join(OUTSIDE_GUARANTEE)}, got {unknown}")
        self.outside_guarantee = tuple(outside_guarantee)
        self.runner = runner or InProcessRunner()
        self.aggregation = aggregation or PlainAggregation()
        self.dropout_rate = float(dropout_rate)
        self.checkpoint_dir = checkpoint_dir
        self._check_abort_rule()
        if strategy.private:
            partitioner = PARTITIONERS.get(data.partition.spec.get("name"))
            check_public_population(
                self.sampler, population_from_data=bool(partitioner and partitioner.population_from_data)
            )
        self._client_keys = client_keys(data.client_ids)
        self.execution_costs: dict[str, float] = {}  # the estimates "auto" chose by, in CPU seconds
        self.state: ServerState | None = None
        self.history: History | None = None

    def _check_abort_rule(self) -> None:
        """Refuses DP runs in which one client's presence could decide whether a round aborts.

        Secure aggregation aborts a round when fewer than its threshold fraction of the sampled
        clients report, discarding every contribution. Under DP every sampled client reports (a
        non-finite update as zero), so only dropouts can abort. Under replace-one adjacency (uniform
        sampling) the dropouts do not depend on which client is present: the abort is the same for
        neighbouring data sets and the noise covers the one changed contribution. Under add/remove
        adjacency (Poisson sampling) one added client that drops out can abort a round the smaller
        set would finish, which the analysis does not cover: refused.
        """
        if not (self.strategy.private and self.dropout_rate > 0 and getattr(self.aggregation, "can_abort", False)):
            return
        if self.sampler.accounting[1] is Adjacency.ADD_REMOVE:
            raise UnaccountedAbort(
                f"with dropout_rate={self.dropout_rate:g} and {self.aggregation.name} aggregation's threshold, "
                f"one client's presence can abort a round (by dropping out), which client-level DP under "
                f"{self.sampler.name} sampling (add/remove one client) does not cover: use uniform sampling or "
                f"dropout_rate=0"
            )

    # --- settings that must match on resume -----------------------------------------------------
    DATA_FACTS = ("client_sizes_sum",)
    """`settings` entries that are exact facts of the clients' data: the checkpoint keeps them (to refuse
    resuming on other data), a private run's history leaves them out."""

    def settings(self) -> dict[str, Any]:
        return {
            "model": _describe(self.model_fn),
            "strategy": self.strategy.to_dict(),
            "sampler": self.sampler.to_dict(),
            "seed": self.seed,
            "partition": self.data.partition.spec,
            "client_sizes_sum": int(self.data.sizes().sum()),
            "num_clients": self.data.num_clients,
            "aggregation": self.aggregation.to_dict(),
            "dropout_rate": self.dropout_rate,
            "chunk_size": self.chunk_size,
        }

    def _context(self, round_index: int, weights=None) -> RoundContext:
        """Round ``round_index``'s context; ``weights`` (default: the server's) size the rounding bound."""
        dimension = num_parameters(self.state.weights if weights is None else weights)
        return RoundContext(
            round=round_index,
            population=self.data.num_clients,
            sampler=self.sampler,
            total_rounds=self.rounds,
            rng=round_rng(self.seed, round_index, Stream.SERVER),
            rounding_bound=self.aggregation.rounding_bound(dimension, self.data.num_clients),
        )

    def start(self) -> None:
        """Resumes from the checkpoint, or builds the model and the initial state (once; `run` calls it).

        Raises:
          CheckpointError: for a checkpoint written with other settings, or an unreadable one.
        """
        if self.state is not None:
            return
        settings = self.settings()
        loaded = load_checkpoint(self.checkpoint_dir) if self.checkpoint_dir else None
        if loaded is not None:
            state, history, saved = loaded
            saved_execution = saved.pop("execution")
            renamed = _renamed_settings(saved)
            if renamed:
                raise CheckpointError(
                    f"the checkpoint in {self.checkpoint_dir} was written by an earlier ppml release (its settings "
                    f"name {', '.join(renamed)}); this release cannot resume it: use another checkpoint_dir"
                )
            if saved != settings:
                changed = sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k))
                raise CheckpointError(
                    f"the checkpoint in {self.checkpoint_dir} was written with different settings "
                    f"({', '.join(changed)}); use another checkpoint_dir or the same settings"
                )
            if self.execution not in ("auto", saved_execution):
                raise CheckpointError(f"the checkpoint ran with execution={saved_execution!r}, not {self.execution!r}")
            self.execution, self.state, self.history = saved_execution, state, history
            return
        if self.execution == "auto":
            self.execution = self._measure_execution()
        trainer = trainer_for(self.model_fn, self.loss, self.execution)
        weights = trainer.initial_weights()
        self.state = self.strategy.initialize(weights, self._context(1, weights))
        config = {
            **settings,
            "execution": self.execution,
            "execution_costs_s": self.execution_costs,
            "rounds": self.rounds,
            "num_parameters": num_parameters(self.state.weights),
            "runner": self.runner.to_dict(),
            "target_delta": getattr(self.strategy, "target_delta", None),
        }
        if self.strategy.private:
            config = {k: v for k, v in config.items() if k not in self.DATA_FACTS}
            config["outside_guarantee"] = self._outside_guarantee()
        self.history = History(config=config)

    def _outside_guarantee(self) -> dict[str, str]:
        """What this private run reports outside its guarantee (`OUTSIDE_GUARANTEE` keys and reasons)."""
        outside = [key for key in self.outside_guarantee if key != "evaluation" or self.evaluation is not None]
        if not self.strategy.secret_randomness:
            outside.append("epsilon")
        return {key: OUTSIDE_GUARANTEE[key][1] for key in outside}

    def _measure_execution(self) -> str:
        """The execution with the smallest estimated cost of the whole run.

        Each execution trains a probe of clients twice, split into calls and spread over the
        runner's worker threads as the in-process runner does (one client per call when
        sequential, one chunk per call otherwise): the first pass's cost (tracing and XLA
        compilation included) plus the second pass's cost per client times the clients still to
        train (rounds x expected clients per round) estimates the run's. Costs are CPU seconds of
        this process (all threads): with the workers keeping the cores busy they are what wall time
        becomes on an idle machine, and other jobs on a shared machine do not sway them.
        """
        workers = getattr(self.runner, "workers", 1)
        probe = [(int(i), int(i)) for i in np.flatnonzero(self.data.sizes())[: workers * self.chunk_size]]
        seeds = np.arange(2 * len(probe), dtype=np.int32).reshape(-1, 2)
        remaining = max(0.0, self.rounds * self.sampler.expected_clients(self.data.num_clients) - 2 * len(probe))
        costs = {}
        for execution in EXECUTIONS:
            try:
                trainer = trainer_for(self.model_fn, self.loss, execution)
            except ValueError:  # e.g. per-client random state cannot be vectorized
                continue
            size = 1 if execution == "sequential" else self.chunk_size
            calls = [(probe[i : i + size], seeds[i : i + size]) for i in range(0, len(probe), size)]
            train = functools.partial(self._train_probe, trainer, trainer.initial_weights())

            def one_pass(train=train, calls=calls):
                start = time.process_time()
                with ThreadPoolExecutor(min(workers, len(calls))) as pool:
                    list(pool.map(train, calls))
                return time.process_time() - start

            first, warm = one_pass(), one_pass()
            costs[execution] = first + warm / len(probe) * (len(probe) + remaining)
        self.execution_costs = costs
        return min(costs, key=costs.get)

    def _train_probe(self, trainer, weights, call):
        """Trains one probe call (client ids, seeds) of the execution-cost probe."""
        return trainer.train_clients(weights, self.data, call[0], self.strategy.client, call[1])

    # --- the loop -------------------------------------------------------------------------------
    def run(self, callback: Callable[[RoundRecord], str | None] | None = None) -> History:
        """Runs (or resumes) up to ``rounds`` rounds; returns the history.

        ``callback`` gets each round's record; when it returns a non-empty string, the run stops
        there with that reason (``history.stopped``), e.g. at a target accuracy.
        """
        self.start()
        try:
            self._loop(callback)
        finally:
            close = getattr(self.runner, "close", None)  # e.g. Beam's client data files
            if close is not None:
                close()
        return self.history

    def _loop(self, callback) -> None:
        while self.state.round < self.rounds:
            ctx = self._context(self.state.round + 1)
            reason = self.strategy.stop_reason(self.state, ctx)
            if reason:
                self.history.stopped = reason
                break
            record = self._run_round(ctx)
            self.history.rounds.append(record)
            if self.checkpoint_dir:
                save_checkpoint(
                    self.checkpoint_dir, self.state, self.history, {**self.settings(), "execution": self.execution}
                )
            reason = callback(record) if callback else None
            if reason:
                self.history.stopped = str(reason)
                break

    def _run_round(self, ctx: RoundContext) -> RoundRecord:
        start = time.perf_counter()
        plan = RoundPlan.make(
            seed=self.seed,
            round_index=ctx.round,
            sampler=self.sampler,
            population=self.data.num_clients,
            dropout_rate=self.dropout_rate,
            chunk_size=self.chunk_size,
            client_keys=self._client_keys,
            secret_sampling=self.strategy.secret_randomness,
        )
        keys = self.aggregation.open_round(plan, self.seed)
        job = RoundJob(
            self.model_fn, self.loss, self.execution, self.data, self.strategy, self.state, plan, self.aggregation, keys
        )
        accumulator, diagnostics = self.runner.run_round(job)
        reported = sorted(d.rank for d in diagnostics if d.reported)
        total, aggregation_report = self.aggregation.finish(accumulator, reported, keys)
        ctx = dataclasses.replace(ctx, participants=tuple(int(plan.positions[r]) for r in reported))
        self.state, metrics = self.strategy.aggregate(self.state, total, ctx)
        evaluation = {}
        if self.evaluation is not None and (ctx.round % self.eval_every == 0 or ctx.round == self.rounds):
            trainer: ClientTrainer = trainer_for(self.model_fn, self.loss, self.execution)
            evaluation = trainer.evaluate(self.state.weights, *self.evaluation)
        if self.strategy.private:  # no exact fact of the clients' data (see RoundRecord)
            report = {k: v for k, v in aggregation_report.items() if k not in self.aggregation.data_dependent}
            return RoundRecord(
                round=ctx.round,
                sampled=int(plan.positions.size),
                reported=len(reported),
                dropped=len(plan.dropped),
                nonfinite=None,
                evaluation=evaluation,
                train_loss=None,
                metrics=metrics,
                aggregation=report,
                seconds=None,
            )
        finite = [d for d in diagnostics if d.finite]
        train_loss = None
        if finite and sum(d.num_examples for d in finite):
            train_loss = sum(d.loss * d.num_examples for d in finite) / sum(d.num_examples for d in finite)
        return RoundRecord(
            round=ctx.round,
            sampled=int(plan.positions.size),
            reported=len(reported),
            dropped=len(plan.dropped),
            nonfinite=len(diagnostics) - len(finite),
            evaluation=evaluation,
            train_loss=train_loss,
            metrics=metrics,
            aggregation=aggregation_report,
            seconds=time.perf_counter() - start,
        )


RENAMED_SETTINGS = {
    ("strategy", "client", "epochs"): "local_epochs",
    ("sampler", "probability"): "sampling_probability",
}
"""Checkpoint settings keys an earlier release wrote (path of keys) and their names now (`federated.renamed`)."""


def _renamed_settings(saved: dict) -> list[str]:
    """The old key names in a checkpoint's ``saved`` settings, each as "old (now new)"."""
    found = []
    for path, new in RENAMED_SETTINGS.items():
        node = saved
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and path[-1] in node:
            found.append(f"{'.'.join(path)} (now {new})")
    return found


def _describe(model_fn) -> str:
    """What builds the model, stable across processes: a dataclass builder's repr (its settings), else
    the function's qualified name."""
    if dataclasses.is_dataclass(model_fn):
        return repr(model_fn)
    return getattr(model_fn, "__qualname__", type(model_fn).__qualname__)
