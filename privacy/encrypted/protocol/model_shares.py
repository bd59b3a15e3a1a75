"""The model owner's side: secret-share a model's weights, and each party's share bundle on disk.

`share_model` runs in the model owner's process. It encodes the weights and splits every kernel and
bias into replicated shares; bundle i holds only the components party i may see (two uniformly random
ring arrays per tensor) plus the public architecture, the fixed-point format, the range plan proven
from the declared input bounds and, by default, from the bounds the servers check, those widened to a
one-comparison window (`privacy.encrypted.model.ranges`; sharing is refused if the model's values could leave the
ring's headroom), the model owner's release policy (labels only, unless logits are
allowed) and a random model id that lets the client check that all three parties serve the same sharing.
`reshare_bundles` renews the sharing of three bundles on disk (whoever holds all three: the model owner).
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import secrets
import zipfile

import numpy as np

from privacy.atomic_files import write_atomically
from privacy.encrypted.model.plan import Architecture, EncodedLayer, ModelPlan
from privacy.encrypted.model.ranges import InputBounds, ModelRangeError, RangePlan, analyse
from privacy.encrypted.model.ring import FixedPoint
from privacy.encrypted.protocol.arithmetic import reshare
from privacy.encrypted.protocol.input_check import CheckedBounds
from privacy.encrypted.protocol.shares import NUM_PARTIES, AShare, Terms, reconstruct, share

FORMAT = "ppml-encrypted-model-share/4"
READABLE = (FORMAT, "ppml-encrypted-model-share/3")
"""Bundle formats `PartyModel.load` reads: /4 added the inputs' precision (`InputBounds.frac_bits`), which
/3 bundles lack (their inputs have the model's). Older code refuses /4, rather than misread its inputs."""


@dataclasses.dataclass(frozen=True)
class PartyModel:
    """Party `index`'s share of a model: public architecture, format, range plan and release policy, private
    weight shares.

    Attributes:
        allow_logits: whether the parties release logits to a client that asks for them; otherwise only
            labels. The model owner's choice at sharing time, enforced by every party; refused
            (`LogitsOutOfRange`) if the range plan does not prove that the logits fit the ring.
    """

    index: int
    model_id: str
    architecture: Architecture
    fixed: FixedPoint
    ranges: RangePlan
    weights: dict
    allow_logits: bool = False

    def __post_init__(self):
        for bounds in (self.ranges.input_bounds, self.ranges.server_bounds):  # ValueError if finer than the model's
            bounds.encoded(self.fixed)  # or holding no grid value
        if self.ranges.server_bounds.precision(self.fixed) != self.ranges.input_bounds.precision(self.fixed):
            raise ValueError("the checked input bounds are not at the inputs' precision")
        if self.allow_logits:
            self.ranges.check_logits_release()

    @functools.cached_property
    def checked_bounds(self) -> CheckedBounds:
        """The bounds the parties check, encoded (`InputBounds.encoded`), with the check's parameters
        (`input_check.CheckedBounds`, read-only): computed once per model, not per query."""
        return CheckedBounds.of(*self.ranges.server_bounds.encoded(self.fixed))

    def public_info(self) -> dict:
        """What any party may tell a client: id, shapes, output activation, fixed-point format, range plan,
        release policy."""
        return {
            "model_id": self.model_id,
            "input_shape": list(self.architecture.input_shape),
            "output_shape": list(self.architecture.output_shape),
            "output_activation": self.architecture.output_activation,
            "frac_bits": self.fixed.frac_bits,
            "ranges": self.ranges.to_dict(),
            "allow_logits": self.allow_logits,
        }

    def refreshed(self, party) -> "PartyModel":
        """The same weights under a fresh random sharing: all three parties call it in one session (2 rounds).

        The parties first replace their pairwise keys by fresh ones (`Party.rekey`: `party` keeps the new
        keys, and the caller uses them from now on), then each re-shares its term of every weight
        (`arithmetic.reshare`) with masks from the new keys. The new sharing is uniformly random given the
        weights and independent of the old shares and the old keys: one party's memory (share and keys)
        before a refresh and another party's share after it reveal nothing about the weights.
        """
        party.rekey()
        rnd = party.round()
        pending = {
            name: [reshare(party, Terms.of_share(c), rnd=rnd) for c in (w.kernel, w.bias)]
            for name, w in self.weights.items()
        }
        rnd.run()
        weights = {name: EncodedLayer(kernel.value(), bias.value()) for name, (kernel, bias) in pending.items()}
        return dataclasses.replace(self, weights=weights)

    def save(self, path: str) -> None:
        """Writes the bundle as one .npz file (`to_bytes`), readable by its owner only: two parties' bundles
        together give the plaintext weights."""
        write_atomically(path, self.to_bytes())  # owner-only

    def to_bytes(self) -> bytes:
        """The bundle as .npz bytes: the weight components and a JSON header."""
        header = {
            "format": FORMAT,
            "index": self.index,
            "model_id": self.model_id,
            "frac_bits": self.fixed.frac_bits,
            "architecture": self.architecture.to_dict(),
            "ranges": self.ranges.to_dict(),
            "allow_logits": self.allow_logits,
        }
        arrays = {"header": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)}
        for name, layer in self.weights.items():
            for part in ("kernel", "bias"):
                comp = getattr(layer, part)
                arrays[f"{name}/{part}/a"], arrays[f"{name}/{part}/b"] = comp.a, comp.b
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return buffer.getvalue()

    @classmethod
    def load(cls, path: str) -> "PartyModel":
        """Reads a bundle written by `save`.

        Raises:
            ValueError: if the file is not a ppml model share bundle.
        """
        try:
            with np.load(path, allow_pickle=False) as data:
                header = json.loads(bytes(data["header"]).decode())
                if not isinstance(header, dict) or header.get("format") not in READABLE:
                    raise ValueError(f"{path!r} is not a {FORMAT!r} bundle")
                if header["format"] != FORMAT and "frac_bits" in header["ranges"]["input_bounds"]:
                    raise ValueError("/3 bundles have no inputs' precision; this one claims one")
                architecture = Architecture.from_dict(header["architecture"])
                weights = {}
                for key in data.files:
                    if key.endswith("/kernel/a"):
                        name = key[: -len("/kernel/a")]
                        weights[name] = EncodedLayer(
                            *(AShare(*(data[f"{name}/{p}/{c}"] for c in "ab")) for p in ("kernel", "bias"))
                        )
                if not isinstance(header.get("allow_logits"), bool):
                    raise ValueError("the header has no release policy")
                model = cls(
                    int(header["index"]),
                    str(header["model_id"]),
                    architecture,
                    FixedPoint(header["frac_bits"]),
                    RangePlan.from_dict(header["ranges"], architecture.input_shape),
                    weights,
                    header["allow_logits"],
                )
        except ModelRangeError:  # a valid bundle whose release policy the range plan does not allow
            raise
        except (OSError, ValueError, KeyError, TypeError, AttributeError, EOFError, zipfile.BadZipFile) as err:
            raise ValueError(f"{path!r} is not a ppml model share bundle ({err.__class__.__name__}: {err})") from None
        expected = architecture.weight_shapes()
        for name, (kernel, bias) in expected.items():
            layer = model.weights.get(name)
            got = None if layer is None else [c.shape for part in (layer.kernel, layer.bias) for c in (part.a, part.b)]
            if got != [kernel, kernel, bias, bias] or any(
                c.dtype != np.uint64 for part in (layer.kernel, layer.bias) for c in (part.a, part.b)
            ):
                raise ValueError(
                    f"{path!r} has no valid weight shares for layer {name!r} (expected uint64 arrays "
                    f"of shapes {kernel} and {bias})"
                )
        extra = sorted(set(model.weights) - set(expected))
        if extra:
            raise ValueError(f"{path!r} has weight shares for layers its architecture lacks: {extra}")
        return model


def share_model(
    plan: ModelPlan, fixed: FixedPoint, bounds: InputBounds, *, allow_logits: bool = False
) -> list[PartyModel]:
    """Proves the model's ranges for the input bounds, then encodes and secret-shares all weights.

    Args:
        allow_logits: let the parties release logits to clients that ask (default: labels only). Logits
            are the fixed-point model's exact outputs; far fewer queries recover a model's weights from
            logits than from labels (model extraction).

    Returns:
        Element i is party i's bundle.

    Raises:
        ModelRangeError: if some value could leave the ring's headroom (`privacy.encrypted.model.ranges`),
            or `LogitsOutOfRange` if logits are allowed but could wrap the ring.
    """
    try:
        encoded = plan.encode(fixed)
    except ValueError as err:  # a weight the fixed-point format cannot hold
        raise ModelRangeError(str(err)) from None
    ranges = analyse(plan.architecture, encoded, bounds, fixed)
    model_id = secrets.token_hex(16)
    bundles = [dict() for _ in range(NUM_PARTIES)]
    for name, layer in encoded.items():
        kernel, bias = share(layer.kernel), share(layer.bias)
        for i in range(NUM_PARTIES):
            bundles[i][name] = EncodedLayer(AShare(*kernel[i]), AShare(*bias[i]))
    return [
        PartyModel(i, model_id, plan.architecture, fixed, ranges, bundles[i], allow_logits) for i in range(NUM_PARTIES)
    ]


def reshare_bundles(bundles: list[PartyModel]) -> list[PartyModel]:
    """The three parties' bundles under a fresh, independent sharing of the same weights, with a new model id.

    Each weight is reconstructed and shared again with fresh CSPRNG components (`share`): the new sharing is
    uniformly random given the weights and independent of the old one, so one party's old bundle and another
    party's new one (two of three uniform components each) reveal nothing about the weights; with the new id,
    clients refuse a party that serves an old bundle beside two new ones (they check that the ids agree).

    Raises:
        ValueError: unless the bundles are parties 0, 1, 2 of one sharing (same id, public information and
            architecture, and the copies of each component that two parties hold are equal).
    """
    if [b.index for b in bundles] != list(range(NUM_PARTIES)):
        raise ValueError(f"resharing needs the bundles of parties 0, 1, 2 in order, got {[b.index for b in bundles]}")
    if any((b.public_info(), b.architecture) != (bundles[0].public_info(), bundles[0].architecture) for b in bundles):
        raise ValueError(
            "the bundles are not of one sharing (their model ids, public information or architectures differ)"
        )
    model_id = secrets.token_hex(16)
    weights = [dict() for _ in range(NUM_PARTIES)]
    for name in bundles[0].weights:
        renewed = []
        for part in ("kernel", "bias"):
            held = [getattr(b.weights[name], part) for b in bundles]  # party i holds (c_i, c_{i+1})
            if not all(np.array_equal(held[i].b, held[(i + 1) % NUM_PARTIES].a) for i in range(NUM_PARTIES)):
                raise ValueError(f"the bundles' copies of the {part} of {name!r} differ: not one sharing")
            renewed.append(share(reconstruct([h.a for h in held])))
        for i in range(NUM_PARTIES):
            weights[i][name] = EncodedLayer(*(AShare(*shares[i]) for shares in renewed))
    return [dataclasses.replace(b, model_id=model_id, weights=weights[b.index]) for b in bundles]
