"""Running parties as operating-system processes: the serve entry point and a loopback trio.

`run_party` is what `ppml encrypted serve` runs. `LoopbackParties` starts three such processes on
127.0.0.1 with fresh certificates and a freshly shared model (for tests, benchmarks and `verify`),
and stops them on exit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time

from privacy.encrypted.certificates import Deployment, create_deployment, party_role
from privacy.encrypted.model_shares import PartyModel, share_model
from privacy.encrypted.network import PartyServer
from privacy.encrypted.plan import ModelPlan
from privacy.encrypted.ranges import InputBounds
from privacy.encrypted.ring import FixedPoint
from privacy.encrypted.shares import NUM_PARTIES
from privacy.encrypted.transport import DEFAULT_TIMEOUT_S

READY = "ready"
MODEL_FILE = "model.npz"


def model_path(deployment_dir: str, index: int) -> str:
    """Where `ppml encrypted share-model` puts party `index`'s bundle by default."""
    return os.path.join(deployment_dir, party_role(index), MODEL_FILE)


def save_model_shares(plan: ModelPlan, deployment_dir: str, fixed: FixedPoint, bounds: InputBounds) -> list[str]:
    """Shares `plan` for inputs within `bounds` (model owner side) and writes each party's bundle into its
    credentials folder.

    Raises:
        ModelRangeError: if the model's values could leave the ring's headroom for these bounds.
    """
    paths = []
    for bundle in share_model(plan, fixed, bounds):
        path = model_path(deployment_dir, bundle.index)
        bundle.save(path)
        paths.append(path)
    return paths


def run_party(index: int, deployment_dir: str, model_file: str | None = None, *,
              timeout: float = DEFAULT_TIMEOUT_S) -> None:
    """Serves as party `index` until killed; prints ``ready`` on stdout once it can take requests."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    deployment = Deployment.load(deployment_dir)
    model = PartyModel.load(model_file or model_path(deployment_dir, index))
    server = PartyServer(index, deployment, model, timeout=timeout)
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


@contextlib.contextmanager
def loopback_parties(plan: ModelPlan, bounds: InputBounds, *, fixed: FixedPoint = FixedPoint(),
                     timeout: float = DEFAULT_TIMEOUT_S, directory: str | None = None, startup_s: float = 120.0):
    """Three party processes on 127.0.0.1 serving `plan` shared for inputs within `bounds`; yields the
    `Deployment` (client credentials included).

    Raises:
        RuntimeError: if a party exits or is not ready within `startup_s` (its stderr tail is included).
    """
    with contextlib.ExitStack() as stack:
        if directory is None:
            directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="ppml-parties-"))
        deployment = create_deployment(directory, [("127.0.0.1", p) for p in free_ports(NUM_PARTIES)])
        save_model_shares(plan, directory, fixed, bounds)
        procs = []
        try:
            for i in range(NUM_PARTIES):
                code = (f"from privacy.encrypted.processes import run_party; "
                        f"run_party({i}, {directory!r}, timeout={timeout!r})")
                procs.append(subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                              stderr=open(os.path.join(directory, f"party-{i}.log"), "w"),
                                              text=True, cwd=os.getcwd()))
            deadline = time.monotonic() + startup_s
            for i, proc in enumerate(procs):
                line = proc.stdout.readline()
                if line.strip() != READY or time.monotonic() > deadline:
                    with open(os.path.join(directory, f"party-{i}.log")) as fh:
                        raise RuntimeError(f"party {i} did not start: {fh.read()[-2000:]}")
            yield deployment
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.terminate()
            for proc in procs:
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
