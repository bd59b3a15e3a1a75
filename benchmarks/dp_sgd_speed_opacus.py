"""The Opacus 1.6 rows of dp_sgd_speed.py: PyTorch models equal to its Keras MLP and CNN, timed the same way.

Runs in Opacus' own environment (CPU torch; benchmarks/README.md, section dp_sgd_speed.py), one configuration
per process: non-private PyTorch, or Opacus' `PrivacyEngine` with ghost clipping (``grad_sample_mode="ghost"``,
two backward passes) or with per-example gradients from hooks (``"hooks"``), on batches of exactly 256 rows
(``poisson_sampling=False``, like ppml's fixed-batch rows; the data loader only tells Opacus the dataset
size, every step takes the same batch tensors), C = 1, sigma = 1.1, SGD. dp_sgd_speed.py runs these workers
with OMP_WAIT_POLICY=PASSIVE unless set: with OpenMP's default spinning, torch's non-private MLP step cost
102-205 CPU ms instead of 13 on the shared 2-core machine (load 8-12).
"""

from __future__ import annotations

import time

from results_io import step_timings


def build_model(nn, name):
    if name == "mlp":
        return nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
    if name == "cnn":  # the Keras tutorial CNN: "same" padding of the 8 x 8, stride 2 convolution is 3 each side
        return nn.Sequential(
            nn.Conv2d(1, 16, 8, stride=2, padding=3),
            nn.ReLU(),
            nn.MaxPool2d(2, 1),
            nn.Conv2d(16, 32, 4, stride=2),
            nn.ReLU(),
            nn.MaxPool2d(2, 1),
            nn.Flatten(),
            nn.Linear(32 * 4 * 4, 32),
            nn.ReLU(),
            nn.Linear(32, 10),
        )
    raise ValueError(f"Opacus rows cover the MLP and the CNN only, not {name!r}")


def worker(spec: dict, batch: int) -> dict:
    """Times ``spec["warmup"] + spec["steps"]`` steps of one configuration; the result dict of dp_sgd_speed."""
    import numpy as np
    import torch
    from torch import nn

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    shape = (784,) if spec["model"] == "mlp" else (1, 28, 28)
    x = torch.from_numpy(rng.standard_normal(size=(8 * batch, *shape), dtype="float32"))
    y = torch.from_numpy(rng.integers(0, 10, size=8 * batch))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=batch, drop_last=True)
    model = build_model(nn, spec["model"])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    criterion = nn.CrossEntropyLoss()
    if spec["method"] == "opacus":
        from opacus import PrivacyEngine

        kwargs = {"criterion": criterion} if spec["mode"] == "ghost" else {}
        made = PrivacyEngine().make_private(
            module=model,
            optimizer=optimizer,
            data_loader=loader,
            noise_multiplier=1.1,
            max_grad_norm=1.0,
            grad_sample_mode=spec["mode"],
            poisson_sampling=False,
            **kwargs,
        )
        model, optimizer = made[0], made[1]
        if spec["mode"] == "ghost":
            criterion = made[2]
    ends, cpu_ends = [], []
    inputs, labels = x[:batch], y[:batch]  # one batch throughout, like the Keras rows (no loader cost timed)
    for _ in range(spec["warmup"] + spec["steps"]):
        optimizer.zero_grad()
        criterion(model(inputs), labels).backward()
        optimizer.step()
        ends.append(time.perf_counter())
        cpu_ends.append(time.process_time())
    return step_timings(ends, cpu_ends, spec["warmup"], data_mb=0.0)
