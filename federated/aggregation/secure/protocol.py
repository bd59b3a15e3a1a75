"""Secure aggregation simulation with numerical fidelity (Bonawitz et al. 2017, arXiv 1611.04482).

Per round: every sampled client makes an X25519 key pair and a self-mask seed and Shamir-shares both
(threshold t) among the round's clients. A reporting client clips and quantizes its summand to b
bits, appends its integer counts, adds its self mask and its pairwise masks mod 2^M and sends only
that. The server adds the masked vectors mod 2^M; the pairwise masks of clients that reported cancel.
If at least t clients reported, their shares recover the self-mask seeds of those who reported and
the private keys of those who dropped, and the server removes the remaining masks; below t the round
is aborted and nothing is learnt. The server never sees an individual unmasked vector.

What is simulated rather than run: every party lives in this process, shares travel in the clear
between objects, and the protocol is semi-honest (no signatures or consistency checks). The
arithmetic (clip, quantize, mod 2^M, mask cancellation, dropout recovery) is the real one, so the
result is what a deployment would compute. Key pairs, self-mask seeds and Shamir coefficients come
from the OS CSPRNG (`cryptography`, `secrets`); masks are ChaCha20 streams. Each client's
stochastic rounding draws from its own randomness, independent of every other client's: a generator
seeded from the OS CSPRNG when the round's draws must be secret (the DP strategies' default), else seeded by (seed,
round, the client's key) so that research runs are reproducible. Either way adding or removing one
client changes no other client's rounding, so the DP noise's allowance for rounding (C plus
`rounding_bound`) covers the one client that changed.
"""

from __future__ import annotations

import dataclasses
import math
import secrets

import numpy as np

from federated.aggregation.secure import masking, shamir
from federated.aggregation.secure.quantization import dequantize_sum, quantize
from federated.aggregation.summand import Summand
from federated.streams import Stream
from privacy import validation

_SHARE_BYTES = 66  # a GF(2^521 - 1) element


@dataclasses.dataclass(frozen=True)
class RoundKeys:
    """One round's key material (each client's private parts are only read by that client)."""

    round: int
    seed: int
    participants: tuple[int, ...]
    threshold: int
    private_keys: dict
    public_keys: dict
    self_mask_seeds: dict
    key_shares: dict  # owner -> {holder: share of the owner's private key}
    seed_shares: dict  # owner -> {holder: share of the owner's self-mask seed}
    rounding_entropy: dict  # owner -> entropy (a tuple of ints) of its stochastic rounding


@dataclasses.dataclass
class ModularSum:
    """The server's accumulator: the sum mod 2^M of masked vectors, and who sent them."""

    total: np.ndarray | None = None
    senders: frozenset = frozenset()
    count_size: int = 0
    clipped_coordinates: int = 0  # simulation diagnostic: what clients clipped (a server would not know)


class SecureAggregation:
    """Secure aggregation of summands.

    Args:
      clipping_range: r > 0; summand vector coordinates are clipped to [-r, r] before quantization.
        Weighted FedAvg sends n_k * delta_k, so r must cover that (or use weighted=False; under DP
        the clipping norm C is a safe r). Each round's report counts the clipped coordinates (a private
        simulation leaves that count out: `data_dependent`).
      bits: b, quantization bits per coordinate (1..48).
      modulus_bits: M, arithmetic is mod 2^M (b + log2(clients) must fit; at most 63).
      threshold: fraction of a round's sampled clients that must report, in (1/2, 1]; t = ceil(fraction * m).
    """

    name = "secure"
    can_abort = True  # below the threshold the sum cannot be unmasked
    data_dependent = ("clipped_coordinates",)  # what clients clipped: a private run leaves it out of the report

    def __init__(self, *, clipping_range: float, bits: int = 16, modulus_bits: int = 32, threshold: float = 2 / 3):
        validation.positive("clipping_range", clipping_range)
        validation.integer("bits", bits, minimum=1, maximum=48)
        if not (isinstance(modulus_bits, int) and bits < modulus_bits <= 63):
            raise ValueError(f"modulus_bits must be an integer in ({bits}, 63], got {modulus_bits!r}")
        validation.number("threshold", threshold, low=0.5, high=1, low_open=True)
        self.clipping_range, self.bits = float(clipping_range), bits
        self.modulus_bits, self.threshold = modulus_bits, float(threshold)

    @staticmethod
    def required_modulus_bits(bits: int, clients: int) -> int:
        """The least M whose sums of ``clients`` b-bit values cannot overflow: b + ceil(log2(clients + 1))."""
        return bits + math.ceil(math.log2(clients + 1)) if clients else bits

    def rounding_bound(self, dimension: int, clients: int) -> float:
        """How far (L2) quantization may move one summand vector, and the server's float64 dequantization of a sum of
        at most ``clients`` of them, one client's contribution: stochastic rounding moves each of the ``dimension``
        coordinates by less than one step 2r / (2^b - 1) in exact arithmetic, and float64's rounding of the scaled
        value (up to 2^b) and of its sum with the uniform draw by less than 2^(b - 51) steps more (1.008 steps were
        seen at b = 48); clipping to [-r, r] only shrinks. Dequantizing a sum (up to 2^M to float64, times the step,
        less the count times r: values up to 2 m r) rounds each coordinate by under 3 x 2 m r 2^-53 per data set,
        and the float step moves one client's 2^b steps by under 2 r 2^-53: both neighbours together are covered by
        16 m r 2^-53 = m r 2^-49 a coordinate."""
        quantization = (1 + 2.0 ** (self.bits - 51)) * 2.0 * self.clipping_range / ((1 << self.bits) - 1)
        dequantization = max(1, clients) * self.clipping_range * 2.0**-49
        return math.sqrt(dimension) * (quantization + dequantization)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "clipping_range": self.clipping_range,
            "bits": self.bits,
            "modulus_bits": self.modulus_bits,
            "threshold": self.threshold,
        }

    # --- setup (all sampled clients, before training) -------------------------------------------
    def open_round(self, plan, seed: int) -> RoundKeys:
        participants = tuple(range(plan.positions.size))
        m = len(participants)
        if self.required_modulus_bits(self.bits, m) > self.modulus_bits:
            raise ValueError(
                f"{m} clients of {self.bits}-bit values can overflow mod 2^{self.modulus_bits}; "
                f"raise modulus_bits to >= {self.required_modulus_bits(self.bits, m)}"
            )
        threshold = max(1, math.ceil(self.threshold * m)) if m else 0
        private = {i: masking.new_private_key() for i in participants}
        self_seeds = {i: secrets.token_bytes(32) for i in participants}
        if plan.secret:
            rounding = {i: (secrets.randbits(128),) for i in participants}
        else:
            rounding = {i: (seed, plan.round, int(Stream.ROUNDING), int(plan.client_keys[i])) for i in participants}
        return RoundKeys(
            round=plan.round,
            seed=seed,
            participants=participants,
            threshold=threshold,
            private_keys=private,
            public_keys={i: masking.public_key(k) for i, k in private.items()},
            self_mask_seeds=self_seeds,
            key_shares={i: shamir.split(private[i], list(participants), threshold) for i in participants},
            seed_shares={i: shamir.split(self_seeds[i], list(participants), threshold) for i in participants},
            rounding_entropy=rounding,
        )

    # --- client ---------------------------------------------------------------------------------
    def quantized(self, rank: int, summand: Summand, keys: RoundKeys) -> np.ndarray:
        """Client ``rank``'s summand vector clipped and quantized (uint64), before masking."""
        return self._quantize(rank, summand, keys)[0]

    def _quantize(self, rank, summand, keys):
        rng = np.random.default_rng(list(keys.rounding_entropy[rank]))
        return quantize(summand.vector, self.clipping_range, self.bits, rng)

    def encode(self, rank: int, summand: Summand, keys: RoundKeys) -> ModularSum:
        """Client ``rank``'s masked vector mod 2^M, as a one-client partial sum."""
        values, clipped = self._quantize(rank, summand, keys)
        counts = np.asarray(summand.counts, np.int64)
        limit = 1 << (self.modulus_bits - math.ceil(math.log2(len(keys.participants) + 1)))
        if counts.size and (counts.min() < 0 or counts.max() >= limit):
            raise ValueError(
                f"summand counts {counts.tolist()} do not fit mod 2^{self.modulus_bits} "
                f"for {len(keys.participants)} clients; raise modulus_bits"
            )
        plain = np.concatenate([values, counts.astype(np.uint64)])
        masked = plain + masking.prg(keys.self_mask_seeds[rank], plain.size, self.modulus_bits)
        for peer in keys.participants:
            if peer != rank:
                mask = masking.prg(
                    masking.pairwise_seed(keys.private_keys[rank], keys.public_keys[peer], keys.round),
                    plain.size,
                    self.modulus_bits,
                )
                masked = masked + mask if rank < peer else masked - mask
        return ModularSum(masked & self._mask_bits, frozenset([rank]), counts.size, clipped)

    @property
    def _mask_bits(self) -> np.uint64:
        return np.uint64((1 << self.modulus_bits) - 1)

    # --- server ---------------------------------------------------------------------------------
    def new_accumulator(self) -> ModularSum:
        return ModularSum()

    def accumulate(self, accumulator: ModularSum, encoded: ModularSum) -> ModularSum:
        return self.merge([accumulator, encoded])

    def merge(self, accumulators) -> ModularSum:
        """Adds partial sums mod 2^M (integer addition: any order gives the same result)."""
        out = ModularSum()
        for acc in accumulators:
            if acc.total is None:
                continue
            if out.senders & acc.senders:
                raise ValueError(f"clients {sorted(out.senders & acc.senders)} were added twice")
            total = acc.total if out.total is None else (out.total + acc.total) & self._mask_bits
            out = ModularSum(
                total, out.senders | acc.senders, acc.count_size, out.clipped_coordinates + acc.clipped_coordinates
            )
        return out

    def finish(self, accumulator: ModularSum, reported, keys: RoundKeys) -> tuple[Summand | None, dict]:
        """Unmasks the sum when at least t clients reported; else aborts the round (returns None)."""
        survivors = sorted(accumulator.senders)
        if survivors != sorted(reported):
            raise RuntimeError("the clients in the masked sum differ from those that reported")
        dropped = [i for i in keys.participants if i not in accumulator.senders]
        report = {
            **self._cost(
                len(keys.participants),
                len(survivors),
                len(dropped),
                0 if accumulator.total is None else accumulator.total.size,
            ),
            "clipped_coordinates": accumulator.clipped_coordinates,
        }
        if len(survivors) < keys.threshold or accumulator.total is None:
            return None, {**report, "aborted": True}
        holders = survivors[: keys.threshold]
        total = accumulator.total.copy()
        length = total.size
        for i in survivors:
            seed = shamir.reconstruct({h: keys.seed_shares[i][h] for h in holders})
            total = total - masking.prg(seed, length, self.modulus_bits)
        for j in dropped:
            private = shamir.reconstruct({h: keys.key_shares[j][h] for h in holders})
            for i in survivors:
                mask = masking.prg(
                    masking.pairwise_seed(private, keys.public_keys[i], keys.round), length, self.modulus_bits
                )
                total = total + mask if i > j else total - mask  # undo what survivor i added for j
        total &= self._mask_bits
        count_size = accumulator.count_size
        vector = dequantize_sum(total[: length - count_size], len(survivors), self.clipping_range, self.bits)
        return Summand(vector, total[length - count_size :].astype(np.int64)), {**report, "aborted": False}

    def _cost(self, m: int, survivors: int, dropped: int, length: int) -> dict:
        masked_bytes = length * self.modulus_bits / 8
        return {
            "clients": m,
            "survivors": survivors,
            "dropped": dropped,
            "threshold_fraction": self.threshold,
            "upload_bytes_per_client": masked_bytes + 32 + 2 * (m - 1) * _SHARE_BYTES,
            "download_bytes_per_client": (m - 1) * (32 + 2 * _SHARE_BYTES),
            "expansion_vs_float32": (masked_bytes + 32 + 2 * (m - 1) * _SHARE_BYTES) / max(1, 4 * length),
            "client_key_agreements": m - 1,
            "client_prg_words": m * length,
            "server_reconstructions": survivors + dropped,
            "server_prg_words": (survivors + dropped * survivors) * length,
        }
