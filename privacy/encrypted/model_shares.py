"""The model owner's side: secret-share a model's weights, and each party's share bundle on disk.

`share_model` runs in the model owner's process. It encodes the weights and splits every kernel and
bias into replicated shares; bundle i holds only the components party i may see (two uniformly random
ring arrays per tensor) plus the public architecture, the fixed-point format and a random model id
that lets the client check that all three parties serve the same sharing.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets

import numpy as np

from privacy.encrypted.plan import Architecture, EncodedLayer, ModelPlan
from privacy.encrypted.ring import FixedPoint
from privacy.encrypted.shares import NUM_PARTIES, AShare, share

FORMAT = "ppml-encrypted-model-share/1"


@dataclasses.dataclass(frozen=True)
class PartyModel:
    """Party `index`'s share of a model: public architecture and format, private weight shares."""

    index: int
    model_id: str
    architecture: Architecture
    fixed: FixedPoint
    weights: dict

    def public_info(self) -> dict:
        """What any party may tell a client: id, input shape, output activation, fixed-point format."""
        return {"model_id": self.model_id, "input_shape": list(self.architecture.input_shape),
                "output_shape": list(self.architecture.output_shape),
                "output_activation": self.architecture.output_activation, "frac_bits": self.fixed.frac_bits}

    def save(self, path: str) -> None:
        """Writes the bundle as one .npz file (the weight components and a JSON header), readable by its
        owner only: two parties' bundles together give the plaintext weights."""
        header = {"format": FORMAT, "index": self.index, "model_id": self.model_id,
                  "frac_bits": self.fixed.frac_bits, "architecture": self.architecture.to_dict()}
        arrays = {"header": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)}
        for name, layer in self.weights.items():
            for part in ("kernel", "bias"):
                comp = getattr(layer, part)
                arrays[f"{name}/{part}/a"], arrays[f"{name}/{part}/b"] = comp.a, comp.b
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # also when the file existed with a wider mode
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)

    @classmethod
    def load(cls, path: str) -> "PartyModel":
        """Reads a bundle written by `save`.

        Raises:
            ValueError: if the file is not a ppml model share bundle.
        """
        try:
            data = np.load(path, allow_pickle=False)
            header = json.loads(bytes(data["header"]).decode())
        except (OSError, ValueError, KeyError) as err:
            raise ValueError(f"{path!r} is not a ppml model share bundle ({err.__class__.__name__})") from None
        if header.get("format") != FORMAT:
            raise ValueError(f"{path!r} has format {header.get('format')!r}, expected {FORMAT!r}")
        weights = {}
        for key in data.files:
            if key.endswith("/kernel/a"):
                name = key[:-len("/kernel/a")]
                weights[name] = EncodedLayer(*(AShare(data[f"{name}/{p}/a"], data[f"{name}/{p}/b"])
                                               for p in ("kernel", "bias")))
        return cls(header["index"], header["model_id"], Architecture.from_dict(header["architecture"]),
                   FixedPoint(header["frac_bits"]), weights)


def share_model(plan: ModelPlan, fixed: FixedPoint = FixedPoint()) -> list[PartyModel]:
    """Encodes and secret-shares all weights of `plan`; element i is party i's bundle."""
    model_id = secrets.token_hex(16)
    bundles = [dict() for _ in range(NUM_PARTIES)]
    for name, layer in plan.encode(fixed).items():
        kernel, bias = share(layer.kernel), share(layer.bias)
        for i in range(NUM_PARTIES):
            bundles[i][name] = EncodedLayer(AShare(*kernel[i]), AShare(*bias[i]))
    return [PartyModel(i, model_id, plan.architecture, fixed, bundles[i]) for i in range(NUM_PARTIES)]
