"""The client of three party processes: share inputs to them over mutual TLS 1.3 and reconstruct outputs."""

from __future__ import annotations

import socket
import ssl
import uuid

import numpy as np

from privacy import validation
from privacy.encrypted.model.ranges import RangePlan
from privacy.encrypted.model.ring import FixedPoint
from privacy.encrypted.network.certificates import Deployment, client_role, party_role, peer_role
from privacy.encrypted.network.wire import no_delay, recv_message, send_message
from privacy.encrypted.protocol.backend import OUTPUTS, OutputNotAllowed, OutputShare
from privacy.encrypted.protocol.client import Prediction, encode_input, predict_with_retries
from privacy.encrypted.protocol.costs import CostReport
from privacy.encrypted.protocol.shares import share
from privacy.encrypted.protocol.transport import DEFAULT_TIMEOUT_S, TransportError


class RemoteClient:
    """The client of a deployment: shares inputs to the three parties and reconstructs outputs.

    Args:
        deployment: addresses and the client's credentials.
        client: this client's name (its credentials are DEPLOYMENT/clients/<name>/); default: the only one.
        timeout: seconds to wait for a party.

    Raises:
        ValueError: if `client` is not given and the deployment has no or several clients.
    """

    def __init__(self, deployment: Deployment, *, client: str | None = None, timeout: float = DEFAULT_TIMEOUT_S):
        names = deployment.client_names()
        if client is None:
            if len(names) != 1:
                raise ValueError(f"choose a client: {deployment.directory!r} has credentials for {names or 'none'}")
            client = names[0]
        self.deployment, self.timeout, self.name = deployment, timeout, client
        self._context = deployment.tls_context(client_role(client), server=False)
        self._socks: list | None = None
        self.info: dict | None = None
        self.max_batch: int | None = None
        self.last_cost: CostReport | None = None

    def connect(self) -> dict:
        """Opens the three TLS connections and checks that the parties serve one model; returns its info."""
        socks, infos = [], []
        try:
            for i, (host, port) in enumerate(self.deployment.addresses):
                try:
                    sock = no_delay(socket.create_connection((host, port), timeout=self.timeout))
                    tls = self._context.wrap_socket(sock)
                except ssl.SSLError as err:
                    raise TransportError(
                        f"TLS handshake with party {i} at {host}:{port} failed: {err.reason}"
                    ) from None
                except OSError as err:
                    raise TransportError(f"cannot reach party {i} at {host}:{port}: {err.strerror or err}") from None
                socks.append(tls)
                if peer_role(tls) != party_role(i):
                    raise TransportError(f"the server at {host}:{port} is {peer_role(tls)!r}, not {party_role(i)!r}")
                meta, _ = recv_message(tls, f"party {i}", within=self.timeout)
                if meta.get("kind") != "hello":
                    raise TransportError(f"party {i}: {meta.get('message', 'no hello')}")
                infos.append(meta)
        except (TransportError, ValueError):
            for sock in socks:
                sock.close()
            raise
        info = [{k: v for k, v in m.items() if k not in ("kind", "party", "max_batch")} for m in infos]
        if any(i != info[0] for i in info):
            for sock in socks:
                sock.close()
            raise TransportError(
                "the three parties serve different model shares (model ids differ); "
                "re-run `ppml encrypted share-model` and restart them"
            )
        self._socks, self.info = socks, info[0]
        self.max_batch = min(int(m.get("max_batch", 1)) for m in infos)
        return self.info

    def close(self) -> None:
        for sock in self._socks or []:
            sock.close()
        self._socks = None

    def __enter__(self):
        self.connect()
        return self

    def __exit__(self, *exc):
        self.close()

    def predict(self, x, *, output: str = OUTPUTS[0], retries: int = 2) -> Prediction:
        """Private prediction of a batch (see `InProcessCluster.predict`).

        Raises:
            InputOutOfBounds: if x lies outside the model's input bounds (nothing is sent).
            OutputNotAllowed: for logits from parties that release labels only.
            ValueError: for a wrong shape or a batch larger than the parties accept.
            TransportError: if a party cannot be reached, reports an error or times out.
        """
        validation.choice("output", output, OUTPUTS)
        if self._socks is None:
            self.connect()
        fixed = FixedPoint(self.info["frac_bits"])
        ranges = RangePlan.from_dict(self.info["ranges"], tuple(self.info["input_shape"]))
        if output == "logits" and not self.info.get("allow_logits"):
            raise OutputNotAllowed("the model owner allows only labels to be revealed (--output label)")
        if len(np.asarray(x)) > self.max_batch:
            raise ValueError(
                f"a batch of {len(np.asarray(x))} examples exceeds the parties' limit of {self.max_batch}; split it"
            )
        x = encode_input(x, tuple(self.info["input_shape"]), fixed, ranges)
        # The precision x was encoded with: parties refuse a mismatch (a client that did not read it).
        asked = {"kind": "predict", "output": output, "input_frac_bits": ranges.input_bounds.precision(fixed)}

        def run(rows):
            shares = share(x[rows])
            request_id = uuid.uuid4().hex
            try:
                for sock, (a, b) in zip(self._socks, shares, strict=True):
                    send_message(sock, dict(asked, request_id=request_id), [a, b])
            except (ssl.SSLError, OSError) as err:
                self.close()
                raise TransportError(f"cannot send the request: {err.__class__.__name__}") from None
            replies = []
            for i, sock in enumerate(self._socks):
                try:
                    meta, arrays = recv_message(sock, f"party {i}", within=self.timeout)
                except TransportError:
                    self.close()
                    raise
                if meta.get("kind") != "result" or meta.get("request_id") != request_id:
                    self.close()  # fail fast: the other parties' answers cannot help
                    raise TransportError(meta.get("message", f"party {i} sent no result"))
                replies.append((meta, arrays))
            client_bytes = sum(a.nbytes + b.nbytes for a, b in shares) + sum(
                a.nbytes for _, arrays in replies for a in arrays
            )
            self.last_cost = CostReport.from_parties([meta["stats"] for meta, _ in replies], client_bytes)
            return [
                OutputShare(
                    arrays[0] if arrays else None,
                    meta["combine"],
                    int(meta["frac_bits"]),
                    arrays[1].astype(bool) if len(arrays) > 1 else None,
                    meta.get("refused"),
                )
                for meta, arrays in replies
            ]

        return predict_with_retries(
            run, len(x), retries=retries, output=output, output_activation=self.info["output_activation"], ranges=ranges
        )
