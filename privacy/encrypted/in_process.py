"""Three parties as threads of one process, linked by in-memory queues (tests and benchmarks).

The parties run exactly the code real parties run; only the links differ. Each thread has its own
`Party` object and sees only its own shares and the messages addressed to it.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from privacy import validation
from privacy.encrypted.model.plan import ModelPlan
from privacy.encrypted.model.ranges import InputBounds
from privacy.encrypted.model.ring import FixedPoint
from privacy.encrypted.protocol.backend import OUTPUTS, OutputNotAllowed, predict_share
from privacy.encrypted.protocol.client import Prediction, encode_input, predict_with_retries
from privacy.encrypted.protocol.costs import CostReport
from privacy.encrypted.protocol.model_shares import share_model
from privacy.encrypted.protocol.party import Party
from privacy.encrypted.protocol.randomness import new_key
from privacy.encrypted.protocol.shares import NUM_PARTIES, AShare, share
from privacy.encrypted.protocol.transport import DEFAULT_TIMEOUT_S, Channel, TransportError, queue_links


class LocalParties:
    """Pairwise keys and in-process links for three parties; `run` executes one session.

    Args:
        timeout: seconds a party waits for a message before failing.
        keys: the pairwise keys k_0, k_1, k_2 (default: fresh from the OS; fixed keys make a run
            reproducible and are for tests only).
    """

    def __init__(self, *, timeout: float = DEFAULT_TIMEOUT_S, keys: list[bytes] | None = None, link_factory=None):
        self.keys = list(keys) if keys is not None else [new_key() for _ in range(NUM_PARTIES)]
        self.timeout = timeout
        self.link_factory = link_factory or queue_links
        self._session = 0

    def parties(self) -> list[Party]:
        """Fresh `Party` objects for the next session, connected by fresh queues."""
        self._session += 1
        links = self.link_factory(NUM_PARTIES)
        return [
            Party(
                i,
                Channel(links[i], timeout=self.timeout),
                self.keys[i],
                self.keys[(i + 1) % NUM_PARTIES],
                session=self._session,
            )
            for i in range(NUM_PARTIES)
        ]

    def run(self, fn: Callable[[Party, Any], Any], args: list) -> tuple[list, list[Party]]:
        """Runs ``fn(party_i, args[i])`` on three threads; returns the three results and the parties.

        Raises:
            TransportError (or the parties' own error): the first failure, after all threads stopped.
        """
        parties = self.parties()
        results: list = [None] * NUM_PARTIES
        errors: list = [None] * NUM_PARTIES

        def body(i):
            try:
                results[i] = fn(parties[i], args[i])
            except BaseException as err:  # re-raised in the caller's thread below
                errors[i] = err

        threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(1, NUM_PARTIES)]
        for t in threads:
            t.start()
        body(0)
        for t in threads:
            t.join()
        failures = [e for e in errors if e is not None]
        if failures:
            # A party that failed first makes its peers time out: report the root cause.
            root = next((e for e in failures if not isinstance(e, TransportError)), failures[0])
            raise root
        return results, parties


class InProcessCluster:
    """A model owner, three parties and a client in one process: private prediction for tests and benchmarks.

    The model owner's `share_model` runs at construction; afterwards the cluster keeps only the three
    parties' bundles, and each prediction shares the input, runs the parties on threads and
    reconstructs the output exactly as the client of real parties does. Unlike a party server, it leaves the
    process's C allocator as it is; `network.memory.keep_freed_memory()` opts the whole process in.

    Args:
        plan: the model to serve (its float weights are shared, then not kept).
        bounds: the input bounds the model is shared with (`InputBounds`); inputs outside are refused.
        fixed: fixed-point format.
        allow_logits: the parties' release policy (`share_model`): labels only unless True.
        timeout: seconds a party waits for a message.
        link_factory: ``n -> links`` for the parties (default: in-memory queues; tests and benchmarks pass
            links that simulate network latency).

    Attributes:
        check_input: whether the parties run their input check (`predict_share`); set it to False only to
            measure the check's cost (benchmarks).

    Raises:
        ModelRangeError: if the model's values could leave the ring's headroom for these bounds.
    """

    def __init__(
        self,
        plan: ModelPlan,
        bounds: InputBounds,
        fixed: FixedPoint | None = None,
        *,
        allow_logits: bool = False,
        timeout: float = DEFAULT_TIMEOUT_S,
        link_factory=None,
    ):
        self.fixed = fixed or FixedPoint()
        self.models = share_model(plan, self.fixed, bounds, allow_logits=allow_logits)
        self.architecture = plan.architecture
        self.ranges = self.models[0].ranges
        self.parties = LocalParties(timeout=timeout, link_factory=link_factory)
        self.last_cost = None
        self.check_input = True

    def predict(self, x, *, output: str = OUTPUTS[0], retries: int = 2) -> Prediction:
        """Private prediction of a batch; runs the examples a party withheld again (fresh randomness).

        Args:
            output: 'label' or 'logits' (if allowed).

        Returns:
            The reconstructed `Prediction`; `last_cost` then holds the `CostReport` of the last run.

        Raises:
            InputOutOfBounds: if x lies outside the bounds (before anything is shared).
            OutputNotAllowed: for logits from a cluster that allows labels only.
        """
        validation.choice("output", output, OUTPUTS)
        if output == "logits" and not self.models[0].allow_logits:
            raise OutputNotAllowed("this cluster releases labels only (allow_logits=False)")
        x = encode_input(x, self.architecture.input_shape, self.fixed, self.ranges)
        return predict_with_retries(
            lambda rows: self.run_shares(share(x[rows]), output),
            len(x),
            retries=retries,
            output=output,
            output_activation=self.architecture.output_activation,
            ranges=self.ranges,
        )

    def run_shares(self, inputs: list, output: str = OUTPUTS[0]) -> list:
        """The parties' `OutputShare`s for input shares as a client sends them (no client-side check: what a
        client that bypasses the library gets); sets `last_cost`."""
        results, parties = self.parties.run(
            lambda party, share: predict_share(
                party, self.models[party.index], AShare(*share), output, check_input=self.check_input
            ),
            inputs,
        )
        client_bytes = sum(a.nbytes + b.nbytes for a, b in inputs) + sum(
            r.values.nbytes for r in results if r.values is not None
        )
        self.last_cost = CostReport.from_parties([p.channel.stats.to_dict() for p in parties], client_bytes)
        return results
