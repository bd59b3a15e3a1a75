"""Running parties as operating-system processes: the serve entry point and a loopback trio.

`run_party` is what `ppml encrypted serve` runs. `loopback_parties` starts three such processes on
127.0.0.1 with fresh certificates and a freshly shared model (for tests, benchmarks and `verify`),
lets tests stop and restart each one (`Loopback`), and stops them all on exit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile

from privacy.atomic_files import write_atomically
from privacy.encrypted.model.plan import ModelPlan
from privacy.encrypted.model.ranges import InputBounds
from privacy.encrypted.model.ring import FixedPoint
from privacy.encrypted.network.certificates import Deployment, create_deployment, party_role
from privacy.encrypted.network.server import PartyServer
from privacy.encrypted.protocol.model_shares import PartyModel, reshare_bundles, share_model
from privacy.encrypted.protocol.shares import NUM_PARTIES
from privacy.encrypted.protocol.transport import DEFAULT_TIMEOUT_S

READY = "ready"
MODEL_FILE = "model.npz"


def model_path(deployment_dir: str, index: int) -> str:
    """Where `ppml encrypted share-model` puts party `index`'s bundle by default."""
    return os.path.join(deployment_dir, party_role(index), MODEL_FILE)


def save_model_shares(
    plan: ModelPlan, deployment_dir: str, fixed: FixedPoint, bounds: InputBounds, *, allow_logits: bool = False
) -> list[str]:
    """Shares `plan` for inputs within `bounds` (model owner side) and writes each party's bundle into its
    credentials folder.

    Args:
        allow_logits: the release policy the parties enforce (`share_model`): labels only unless True.

    Raises:
        ModelRangeError: if the model's values could leave the ring's headroom for these bounds.
    """
    paths = []
    for bundle in share_model(plan, fixed, bounds, allow_logits=allow_logits):
        path = model_path(deployment_dir, bundle.index)
        bundle.save(path)
        paths.append(path)
    return paths


def reshare_model_shares(paths: list[str]) -> str:
    """Renews the sharing of the three bundles at `paths` (party 0, 1, 2: `reshare_bundles`) and writes each
    back in place (atomically, mode 0600); returns the new model id. Run where all three are, with the
    parties stopped; each party then serves its new file (a party still serving an old one is refused).

    The three files are serialized first, then each replaced by an atomic rename: only an interruption
    between those renames leaves two sharings in the folder (refused by this function and by clients:
    share the model again then).

    Raises:
        ValueError: if a file is not a bundle, or the three are not one sharing; nothing is written then.
    """
    renewed = reshare_bundles([PartyModel.load(path) for path in paths])
    files = [bundle.to_bytes() for bundle in renewed]
    for data, path in zip(files, paths, strict=True):
        write_atomically(path, data)  # owner-only
    return renewed[0].model_id


def run_party(
    index: int, deployment_dir: str, model_file: str | None = None, *, timeout: float = DEFAULT_TIMEOUT_S, **limits
) -> None:
    """Serves as party `index` until killed; prints ``ready`` on stdout once it can take requests.

    Args:
        limits: `PartyServer`'s memory_budget, client_quota, max_connections, idle_timeout, refresh_every.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    deployment = Deployment.load(deployment_dir)
    model = PartyModel.load(model_file or model_path(deployment_dir, index))
    server = PartyServer(index, deployment, model, timeout=timeout, **limits)
    server.serve(on_ready=lambda: print(READY, flush=True))


def free_ports(count: int) -> list[int]:
    """Ports the OS reports free on 127.0.0.1 right now."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Loopback:
    """Three party processes on 127.0.0.1 (made by `loopback_parties`) and control over each of them.

    Attributes:
        deployment: the parties' `Deployment`, with the credentials of one client, 'loopback'.
        directory: its folder; party i logs to ``party-<i>.log`` there.
    """

    def __init__(self, deployment: Deployment, *, timeout: float, startup_s: float, limits: dict):
        self.deployment, self.directory = deployment, deployment.directory
        self._timeout, self._startup_s, self._limits = timeout, startup_s, limits
        self._procs: dict[int, subprocess.Popen] = {}

    def log(self, index: int) -> str:
        with open(os.path.join(self.directory, f"party-{index}.log")) as fh:
            return fh.read()

    def pid(self, index: int) -> int:
        return self._procs[index].pid

    def launch(self, index: int) -> None:
        """Starts party `index` (again); `wait_ready` waits for it."""
        code = (
            f"from privacy.encrypted.network.processes import run_party; "
            f"run_party({index}, {self.directory!r}, timeout={self._timeout!r}, **{self._limits!r})"
        )
        with open(os.path.join(self.directory, f"party-{index}.log"), "a") as log_file:
            self._procs[index] = subprocess.Popen(
                [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=log_file, text=True, cwd=os.getcwd()
            )

    def wait_ready(self, index: int) -> None:
        """Waits for party `index` to print ``ready``.

        Raises:
            RuntimeError: if it exits or is not ready within the start-up time (its log's tail is included).
        """
        proc = self._procs[index]
        ready, _, _ = select.select([proc.stdout], [], [], self._startup_s)
        if not ready or proc.stdout.readline().strip() != READY:
            raise RuntimeError(f"party {index} did not start: {self.log(index)[-2000:]}")

    def stop(self, index: int, sig: int = signal.SIGTERM) -> None:
        """Sends `sig` to party `index` and waits for it to exit (unless the signal only pauses it)."""
        proc = self._procs[index]
        if proc.poll() is None:
            proc.send_signal(sig)
        if sig in (signal.SIGSTOP, signal.SIGCONT):
            return
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def close(self) -> None:
        for proc in self._procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
        for index in self._procs:
            self.stop(index, signal.SIGKILL)


@contextlib.contextmanager
def loopback_parties(
    plan: ModelPlan,
    bounds: InputBounds,
    *,
    fixed: FixedPoint = FixedPoint(),
    timeout: float = DEFAULT_TIMEOUT_S,
    directory: str | None = None,
    startup_s: float = 120.0,
    allow_logits: bool = False,
    **limits,
):
    """Three party processes on 127.0.0.1 serving `plan` shared for inputs within `bounds`; yields a `Loopback`.

    Args:
        allow_logits: the model owner's release policy (`share_model`).
        limits: passed to each `PartyServer` (memory_budget, client_quota, max_connections, idle_timeout,
            refresh_every).

    Raises:
        RuntimeError: if a party exits or is not ready within `startup_s` (its log's tail is included).
    """
    with contextlib.ExitStack() as stack:
        if directory is None:
            directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="ppml-parties-"))
        deployment = create_deployment(
            directory, [("127.0.0.1", p) for p in free_ports(NUM_PARTIES)], clients=("loopback",)
        )
        save_model_shares(plan, directory, fixed, bounds, allow_logits=allow_logits)
        parties = Loopback(deployment, timeout=timeout, startup_s=startup_s, limits=limits)
        try:
            for i in range(NUM_PARTIES):
                parties.launch(i)
            for i in range(NUM_PARTIES):
                parties.wait_ready(i)
            yield parties
        finally:
            parties.close()
