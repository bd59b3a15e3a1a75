"""The DP-SGD mechanism as the accountant sees it: sampling, noise, steps, adjacency.

`DpSgdMechanism` holds only public hyperparameters and turns them into one dp-accounting
`DpEvent` (and the neighbouring relation it must be accounted under). Noise multipliers are in
units of the clipping norm C: the Gaussian noise added to the *sum* of clipped gradients has
standard deviation ``noise_multiplier * C``.

Which analyses exist (dp-accounting 0.6.0):

=========  ============  =============================================  =====  =====
sampling   adjacency     event                                          RDP    PLD
=========  ============  =============================================  =====  =====
poisson    add-remove    T x PoissonSampled(q, Gaussian(sigma / m))     yes    yes
noisy pad  add-remove    T x PoissonSampled(q, Gaussian(sigma_eff))     yes    yes
poisson    replace-one   T x PoissonSampled(q, Gaussian(sigma / m))     no     yes
truncated  either        T x TruncatedSubsampledGaussian(n, q, K,       no     yes
poisson                  sigma)
fixed      replace-one   T x SampledWithoutReplacement(n, B,            yes    no
                         Gaussian(sigma / 2))
fixed      add-remove    (refused: the batch size reveals n)            --     --
shuffle    replace-one   E x Gaussian(sigma / 2)                        yes    yes
shuffle    add-remove    (refused: one added example shifts every       --     --
                         later batch, and the batch count reveals n)
=========  ============  =============================================  =====  =====

Truncated Poisson sampling (``truncated_batch_size`` K): a Poisson batch of more than K examples is cut to
K of them, a uniformly random subset of those drawn, which is what dp-accounting's
`TruncatedSubsampledGaussianDpEvent` analyses (a mixture of the sampled Gaussian and, with the probability
that the batch is cut, a sensitivity-2 one; Feldman et al. 2025, arXiv:2508.15089). It is analysed per
example only (microbatches refused) and by PLD only. Under add-remove the event's dataset size is n + 1
(`truncated_event_dataset_size`), the size of the neighbour that adds an example.

The default adjacency is the sampling's natural one (`resolve_adjacency`): add-remove for Poisson
sampling, replace-one for fixed and shuffled batches.

* ``m`` is 2 when microbatches can hold several examples: a clipped microbatch *mean* can
  swing from v to -v when one example joins it, so the sum moves by 2C instead of C. Under
  Poisson sampling this holds whatever the adjacency: dp-accounting's REPLACE_ONE analysis of a
  Poisson-sampled Gaussian puts x's and x''s contributions on either side of the sum without
  them, each at most ``m`` C away (4C apart when microbatched).
* Replace-one moves one example's clipped gradient to another: sensitivity 2C. dp-accounting's
  PLD models this itself for REPLACE_ONE; its RDP Gaussian and sampled-without-replacement
  terms take the noise multiplier relative to the full sensitivity, hence ``sigma / 2``. Fixed
  and shuffled batches put x' in x's slot, so its microbatch moves by 2C at most either way.
* Shuffle-and-iterate has no known tight analysis (Chua et al., ICML 2024). What is reported is
  the bound for "each example is used at most once per epoch", with no amplification: E
  compositions of the Gaussian mechanism, E the number of epochs started. It holds under
  replace-one adjacency only, where the replaced example sits in one batch of each epoch and
  every other batch is unchanged (sensitivity 2C). An epoch is ``steps_per_epoch`` steps when the
  training loop says so (Keras: ceil(n / B)); otherwise the conservative floor(n / B), which never
  undercounts whether the last partial batch is kept or dropped. The bound assumes each epoch is
  a fresh permutation batched within the epoch: a batch that straddles two epochs (e.g.
  ``repeat().batch(B)``) can hold one example twice, which this analysis does not cover. The
  Gaussian's loss depends only on sigma / sensitivity, so the sensitivity is folded into the
  noise multiplier.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from fractions import Fraction

import dp_accounting
from dp_accounting import dp_event

from privacy import validation
from privacy.accounting import noisy_padding, truncation
from privacy.accounting.accountants import UnsupportedAccounting, epsilon_of
from privacy.compared import compared

NeighboringRelation = dp_accounting.NeighboringRelation

NOISE_MULTIPLIER_RANGE = (1e-3, 1e6)
"""Noise multipliers a mechanism may have. Below, epsilon is in the thousands and PLD's grid does not fit
in memory; above, noise hides everything (and dp-accounting's RDP terms overflow at about 1e154)."""
MAX_STEPS = 10**12
"""Most steps a mechanism may have: more than any training runs (a sign of mixed-up units)."""
SLACK = Fraction(1, 1024)
"""ppml's DP-SGD step (`privacy.keras`, which exports it as `privacy.keras.params.SLACK`): each unit's contribution to
the clipped sum is at most C (1 + SLACK), its floating-point rounding included (the clipping divides by at least that
rounding's bound / SLACK: `privacy.keras.roundoff`), and the noise's standard deviation is sigma C (1 + SLACK)
(`privacy.keras.DPParams.exact_noise_stddev`), so the accountant's sigma is unchanged. Defined here, without
TensorFlow, for the texts that state it (`SLACK_TEXT`)."""
SLACK_TEXT = f"2^{math.log2(SLACK):g}"
"""`SLACK` as texts write it: '2^-10'."""
PLD_MIN_STEP_NOISE = 0.2
"""PLD is not asked to compose Poisson-sampled Gaussians of a smaller noise multiplier (relative to how far
one example moves the sum): 0.1 took 18 s and 0.05 over a minute for 1000 steps on 2 cores."""
PLD_MAX_UNITS = 10**7
"""PLD is not asked to compose more Poisson-sampled steps (10^7 at q = 0.05: 24 s; 10^12 needs 450 GB)."""
PLD_MAX_EPSILON = 100.0
"""PLD is not asked for Poisson-sampled runs whose RDP epsilon exceeds this: its grid of privacy losses
grows with epsilon (epsilon 28 800 took a minute), and such a guarantee says nothing anyway."""


class Sampling(str, enum.Enum):
    """How batches are formed."""

    POISSON = "poisson"
    """Each example joins each batch independently with probability q."""
    FIXED = "fixed"
    """Each batch is B examples drawn uniformly without replacement."""
    SHUFFLE = "shuffle"
    """The data is shuffled and cut into consecutive batches, epoch after epoch."""


class Adjacency(str, enum.Enum):
    """Which datasets are neighbours."""

    ADD_REMOVE = "add-remove"
    """One example added or removed (the dataset size is private)."""
    REPLACE_ONE = "replace-one"
    """One example replaced by another (the dataset size is public)."""


def noisy_padding_uncovered(sampling: Sampling, adjacency: Adjacency, truncated_batch_size, num_microbatches):
    """Why a run with these settings is outside what `noisy_padding`'s analysis covers, naming the setting; None
    where it is covered (the one list `DpSgdMechanism` and `make_private` both refuse from)."""
    if sampling is not Sampling.POISSON:
        return f"sampling={sampling.value!r} (Poisson only)"
    if adjacency is not Adjacency.ADD_REMOVE:
        return f"adjacency={adjacency.value!r} (add-remove only)"
    if truncated_batch_size is not None:
        return f"truncated_batch_size={truncated_batch_size!r} (a cut batch's size is not m + 1)"
    if num_microbatches:
        return f"num_microbatches={num_microbatches!r} (per-example clipping only)"
    return None


@dataclasses.dataclass(frozen=True)
class DpSgdMechanism:
    """Public hyperparameters of a DP-SGD run.

    Attributes:
      dataset_size: n, the number of training examples.
      batch_size: B; for Poisson sampling the expected batch size q * n (may be fractional).
      noise_multiplier: sigma, the noise's std over each unit's bound on the summed clipped gradients: sigma * C
        (ppml's step: sigma * C (1 + SLACK), each unit's term within C (1 + SLACK), `privacy.keras.roundoff`).
      steps: T, the number of noisy gradient steps.
      sampling: the batch sampling scheme that actually ran.
      adjacency: the neighbouring relation of the guarantee; None (the default) takes the
        sampling's natural one (`resolve_adjacency`). Always a concrete `Adjacency` once built.
      num_microbatches: M if gradients were clipped per microbatch, else None (per example).
      max_examples_per_user: K for a user-level guarantee via group privacy, else None.
      steps_per_epoch: steps in one shuffled epoch, when known (shuffle sampling only).
      truncated_batch_size: K when Poisson batches of more than K examples were cut to a uniformly random
        K of them (truncated Poisson sampling), else None (batches never cut).
      batch_size_noise_multiplier: sigma_c, in rows, when each Poisson step ran on its drawn examples plus a
        Gaussian number of padding rows (noisy padding, `privacy.accounting.noisy_padding`): each step is then one
        Gaussian of `effective_noise_multiplier`. None: batches padded to a fixed size (or the padding left out
        outside the guarantee).
    """

    dataset_size: int
    batch_size: float
    noise_multiplier: float
    steps: int
    sampling: Sampling = Sampling.POISSON
    adjacency: Adjacency | None = None
    num_microbatches: int | None = None
    max_examples_per_user: int | None = None
    steps_per_epoch: int | None = None
    truncated_batch_size: int | None = None
    batch_size_noise_multiplier: float | None = None

    def __post_init__(self):
        object.__setattr__(self, "sampling", Sampling(self.sampling))
        object.__setattr__(self, "adjacency", resolve_adjacency(self.sampling, self.adjacency))
        self._integer_field("dataset_size")
        object.__setattr__(
            self,
            "batch_size",
            validation.number(
                "batch_size", self.batch_size, low=0, high=self.dataset_size, low_open=True, note="dataset_size"
            ),
        )
        if self.sampling is not Sampling.POISSON and float(self.batch_size) != int(self.batch_size):
            raise ValueError(
                f"batch_size must be a whole number for {self.sampling.value} batches, got {self.batch_size!r}"
            )
        low, high = NOISE_MULTIPLIER_RANGE
        object.__setattr__(
            self, "noise_multiplier", validation.number("noise_multiplier", self.noise_multiplier, low=low, high=high)
        )
        object.__setattr__(self, "steps", validation.integer("steps", self.steps, minimum=1, maximum=MAX_STEPS))
        if self.num_microbatches is not None:
            self._integer_field("num_microbatches")
            if self.num_microbatches > self.batch_size:  # Poisson too: most microbatches would be empty
                raise ValueError(
                    f"num_microbatches={self.num_microbatches} exceeds the "
                    f"{'expected ' if self.sampling is Sampling.POISSON else ''}batch size "
                    f"{self.batch_size:g}"
                )
        if self.max_examples_per_user is not None:
            self._integer_field("max_examples_per_user")
            if self.max_examples_per_user > self.dataset_size:
                raise ValueError(
                    f"max_examples_per_user={self.max_examples_per_user} exceeds the dataset size {self.dataset_size}"
                )
        if self.steps_per_epoch is not None:
            self._integer_field("steps_per_epoch")
            if self.sampling is not Sampling.SHUFFLE:
                raise ValueError(
                    "steps_per_epoch only applies to shuffle sampling (for Poisson and fixed "
                    "batches an epoch is n / B steps by definition)"
                )
        if self.truncated_batch_size is not None:
            self._integer_field("truncated_batch_size")
            truncation.check_truncated_batch_size(self.truncated_batch_size, self.dataset_size, self.batch_size)
            if self.sampling is not Sampling.POISSON:
                raise ValueError(f"truncated_batch_size only applies to Poisson sampling, not {self.sampling.value!r}")
            if self.num_microbatches is not None:
                raise ValueError(
                    "truncated Poisson sampling is analysed for per-example clipping only; drop "
                    "num_microbatches or truncated_batch_size"
                )

        if self.batch_size_noise_multiplier is not None:
            self._check_noisy_padding()

    def _check_noisy_padding(self) -> None:
        """Validates `batch_size_noise_multiplier` and refuses the runs `noisy_padding` does not cover."""
        low, high = NOISE_MULTIPLIER_RANGE
        object.__setattr__(
            self,
            "batch_size_noise_multiplier",
            validation.number("batch_size_noise_multiplier", self.batch_size_noise_multiplier, low=low, high=high),
        )
        why = noisy_padding_uncovered(self.sampling, self.adjacency, self.truncated_batch_size, self.num_microbatches)
        if why:
            raise ValueError(
                "batch_size_noise_multiplier is analysed only for untruncated Poisson batches under add-remove "
                f"adjacency with per-example clipping: {why}"
            )

    @property
    def effective_noise_multiplier(self) -> float:
        """The per-step Gaussian's noise multiplier: sigma, or with noisy padding (sigma^-2 + sigma_c^-2)^-1/2."""
        return noisy_padding.effective_noise_multiplier(self.noise_multiplier, self.batch_size_noise_multiplier)

    def _integer_field(self, name: str) -> None:
        """Checks that field ``name`` is an integer >= 1 and keeps it as a Python int."""
        object.__setattr__(self, name, validation.integer(name, getattr(self, name), minimum=1))

    @classmethod
    def from_epochs(cls, *, dataset_size: int, batch_size: float, epochs: float, **kwargs) -> "DpSgdMechanism":
        """Builds the mechanism for ``epochs`` passes over the data.

        T = ceil(epochs * n / B) steps; for shuffled batches an epoch is ceil(n / B) steps (the last
        batch may be partial, as in Keras) and T = ceil(epochs * ceil(n / B)).
        """
        validation.positive("epochs", epochs)
        validation.number("batch_size", batch_size, low=0, high=dataset_size, low_open=True, note="dataset_size")
        sampling = Sampling(kwargs.get("sampling", Sampling.POISSON))
        per_epoch = kwargs.pop("steps_per_epoch", None) or steps_per_epoch(dataset_size, batch_size, sampling)
        if epochs * per_epoch > MAX_STEPS:
            raise ValueError(
                f"{epochs:g} epochs of {per_epoch:.3g} steps are {epochs * per_epoch:.3g} steps, more "
                f"than {MAX_STEPS:.0e}"
            )
        if sampling is Sampling.SHUFFLE:
            return cls(
                dataset_size=dataset_size,
                batch_size=batch_size,
                steps_per_epoch=per_epoch,
                steps=max(1, math.ceil(epochs * per_epoch - 1e-9)),
                **kwargs,
            )
        steps = steps_for_epochs(epochs, dataset_size, batch_size)
        return cls(dataset_size=dataset_size, batch_size=batch_size, steps=steps, **kwargs)

    def replace(self, **changes) -> "DpSgdMechanism":
        """Returns a copy with some fields changed (and validated).

        The adjacency is kept as it is: give it again when changing the sampling to one it does not
        fit (e.g. ``replace(sampling="shuffle", adjacency="replace-one")`` from a Poisson run).
        """
        return dataclasses.replace(self, **changes)

    @property
    def sampling_probability(self) -> float:
        """q = B / n."""
        return self.batch_size / self.dataset_size

    @property
    def epoch_length(self) -> float:
        """Steps per epoch: n / B, or for shuffled batches `steps_per_epoch` (default floor(n / B))."""
        if self.sampling is Sampling.SHUFFLE:
            return self.steps_per_epoch or max(1, math.floor(self.dataset_size / self.batch_size))
        return self.dataset_size / self.batch_size

    @property
    def epochs(self) -> float:
        """Passes over the data, possibly fractional: T / epoch_length."""
        return self.steps / self.epoch_length

    @property
    def passes(self) -> int:
        """Epochs started: under shuffle-and-iterate, the most times one example is used."""
        return math.ceil(self.epochs - 1e-9)

    def steps_for(self, epochs: float) -> int:
        """Steps in the first ``epochs`` epochs of this run (capped at `steps`)."""
        if self.sampling is Sampling.SHUFFLE:
            return min(self.steps, math.ceil(epochs * self.epoch_length - 1e-9))
        return min(self.steps, steps_for_epochs(epochs, self.dataset_size, self.batch_size))

    @property
    def microbatches_hold_several_examples(self) -> bool:
        """True when a clipped unit may average more than one example.

        Fixed and shuffled batches of B split into M = B microbatches hold one example each;
        Poisson batches vary in size, so any microbatching may put two examples together.
        """
        if self.num_microbatches is None:
            return False
        return self.sampling is Sampling.POISSON or self.num_microbatches < self.batch_size

    @property
    def truncation_probability(self) -> float:
        """Probability that one step's Poisson batch is cut, P(Binomial(n, q) > K); 0 when never cut."""
        if self.truncated_batch_size is None:
            return 0.0
        from scipy import stats

        return float(stats.binom.sf(self.truncated_batch_size, self.dataset_size, self.sampling_probability))

    @property
    def truncated_event_dataset_size(self) -> int:
        """The ``dataset_size`` of the `TruncatedSubsampledGaussianDpEvent`: dp-accounting counts the others
        that may fill a batch with x in it as ``dataset_size - 1``, i.e. takes the size of the dataset that
        holds x. Under add-remove that is n + 1 for the neighbour D + x of the n examples trained on (n for
        D - x); epsilon grows with it, so n + 1 covers both. Replace-one: n."""
        return self.dataset_size + (1 if self.adjacency is Adjacency.ADD_REMOVE else 0)

    @property
    def per_side(self) -> float:
        """How far, in units of C, adding one example (or putting it in a free slot) moves one step's
        sum of clipped gradients: 2 when it can flip a microbatch of several examples, else 1."""
        return 2.0 if self.microbatches_hold_several_examples else 1.0

    @property
    def sensitivity(self) -> float:
        """Largest L2 distance, in units of C, between one step's summed clipped gradients on two
        neighbouring datasets (the one that differs sampled: Poisson replace-one counts x against x').
        Truncated Poisson: 2 under either adjacency, since an added x can push another example out of a
        batch that is then cut (C otherwise; see `truncation_probability`)."""
        if self.sampling is Sampling.POISSON and self.truncated_batch_size is not None:
            return 2.0
        if self.sampling is Sampling.POISSON:
            return 2 * self.per_side if self.adjacency is Adjacency.REPLACE_ONE else self.per_side
        return 2.0  # replace-one in x's slot: its example or microbatch moves by at most 2C

    @property
    def neighboring_relation(self) -> NeighboringRelation:
        """The relation `dp_event()` must be accounted under."""
        if self.sampling is Sampling.SHUFFLE:
            return NeighboringRelation.ADD_OR_REMOVE_ONE  # sensitivity folded into sigma
        if self.sampling is Sampling.FIXED or self.adjacency is Adjacency.REPLACE_ONE:
            return NeighboringRelation.REPLACE_ONE
        return NeighboringRelation.ADD_OR_REMOVE_ONE

    def unit_event(self) -> dp_event.DpEvent:
        """The event that `dp_event` composes: one step, or one epoch under shuffling."""
        if self.sampling is Sampling.SHUFFLE:
            return dp_event.GaussianDpEvent(self.noise_multiplier / self.sensitivity)
        if self.sampling is Sampling.FIXED:
            return dp_event.SampledWithoutReplacementDpEvent(
                source_dataset_size=self.dataset_size,
                sample_size=int(self.batch_size),
                event=dp_event.GaussianDpEvent(self.noise_multiplier / 2.0),
            )
        if self.truncated_batch_size is not None:  # per-example clipping: x's inclusion moves the sum by C
            return dp_event.TruncatedSubsampledGaussianDpEvent(
                dataset_size=self.truncated_event_dataset_size,
                sampling_probability=self.sampling_probability,
                truncated_batch_size=self.truncated_batch_size,
                noise_multiplier=self.noise_multiplier,
            )
        # Poisson: the noise relative to how far x's inclusion moves the sum (under replace-one,
        # dp-accounting's PLD puts x and x' on either side of the sum without them).
        return dp_event.PoissonSampledDpEvent(
            sampling_probability=self.sampling_probability,
            event=dp_event.GaussianDpEvent(self.effective_noise_multiplier / self.per_side),
        )

    def units(self, steps: int | None = None) -> int:
        """How many unit events ``steps`` steps (default: all) amount to."""
        steps = self.steps if steps is None else steps
        if self.sampling is Sampling.SHUFFLE:
            return math.ceil(steps / self.epoch_length - 1e-9)
        return steps

    def dp_event(self, steps: int | None = None) -> dp_event.DpEvent:
        """The whole run (or its first ``steps`` steps) as one DpEvent."""
        return dp_event.SelfComposedDpEvent(self.unit_event(), self.units(steps))

    def unsupported_reason(self, accountant: str) -> str | None:
        """Why ``accountant`` ('rdp' or 'pld') cannot analyse this mechanism, or None."""
        if accountant == "rdp" and self.truncated_batch_size is not None:
            return (
                "dp-accounting's RDP accountant has no analysis of truncated Poisson sampling; the PLD "
                "accountant covers it"
            )
        if accountant == "rdp" and self.sampling is Sampling.POISSON and self.adjacency is Adjacency.REPLACE_ONE:
            return (
                "dp-accounting's RDP accountant analyses Poisson sampling only under add/remove "
                "adjacency; the PLD accountant covers replace-one"
            )
        if accountant == "pld" and self.sampling is Sampling.FIXED:
            return (
                "dp-accounting's PLD accountant has no analysis of fixed-size sampling without "
                "replacement; the RDP accountant covers it"
            )
        return None

    @property
    def pld_step_move(self) -> float:
        """How far, in units of C, one example moves a Poisson step's sum in the worst case PLD analyses:
        `per_side`, or 2 in a truncated batch (an added example pushes another out of a cut batch)."""
        return 2.0 if self.truncated_batch_size is not None else self.per_side

    def pld_step_noise_reason(self) -> str | None:
        """Why PLD is not asked to account these Poisson-sampled steps at all (their noise multiplier
        relative to one example's move, sigma / `pld_step_move`, is below `PLD_MIN_STEP_NOISE`), or None."""
        step_noise = self.effective_noise_multiplier / self.pld_step_move
        if self.sampling is Sampling.POISSON and step_noise < PLD_MIN_STEP_NOISE:
            shown, bound = compared(step_noise, PLD_MIN_STEP_NOISE, digits=3)
            return (
                f"PLD is not asked to account a noise multiplier of {shown} per step (below "
                f"{bound}: minutes and gigabytes){self._rdp_instead()}"
            )
        return None

    def _rdp_instead(self) -> str:
        return (
            "; the RDP accountant covers it"
            if self.unsupported_reason("rdp") is None
            else "; no other accountant covers it here"
        )

    def cost_reason(self, accountant: str, delta: float) -> str | None:
        """Why ``accountant`` is not asked for this mechanism's epsilon at ``delta`` (minutes of work and
        gigabytes: PLD of Poisson-sampled steps beyond `PLD_MIN_STEP_NOISE`, `PLD_MAX_UNITS` or
        `PLD_MAX_EPSILON`), or None. Checked before any PLD work, with RDP (milliseconds)."""
        if accountant != "pld" or self.sampling is not Sampling.POISSON:
            return None
        reason = self.pld_step_noise_reason()
        if reason:
            return reason
        if self.units() > PLD_MAX_UNITS:
            return (
                f"PLD is not asked to compose more than {PLD_MAX_UNITS:.0e} steps (got "
                f"{self.units():.3g}){self._rdp_instead()}"
            )
        # RDP of the same steps under add/remove (truncated: untruncated at half the noise, the cut batch's
        # sensitivity 2); replace-one moves the sum twice as far at most.
        untruncated = (
            self
            if self.truncated_batch_size is None
            else self.replace(truncated_batch_size=None, noise_multiplier=self.noise_multiplier / 2)
        )
        try:
            rough = epsilon_of(untruncated.dp_event(), target_delta=delta, accountant="rdp")
        except UnsupportedAccounting:  # RDP's numerical floor: an epsilon near 0, cheap for PLD
            rough = 0.0
        if self.adjacency is Adjacency.REPLACE_ONE:
            rough *= 2
        if rough > PLD_MAX_EPSILON:
            shown, bound = compared(rough, PLD_MAX_EPSILON, digits=3)
            return (
                f"PLD is not asked for an epsilon of about {shown} by RDP (above {bound}, its "
                f"grid needs minutes and gigabytes){self._rdp_instead()}"
            )
        return None


def resolve_adjacency(sampling: Sampling | str, adjacency: Adjacency | str | None = None) -> Adjacency:
    """The adjacency a run of ``sampling`` is accounted under.

    Args:
      sampling: the batch sampling scheme.
      adjacency: the relation asked for, or None for the sampling's natural one: add/remove for
        Poisson sampling; replace-one for fixed-size and shuffled batches, whose number and
        positions depend on n, so that only a replaced example leaves the other batches unchanged.

    Raises:
      ValueError: naming the value, for an unknown adjacency, or add/remove with fixed-size or
        shuffled batches (no analysis backs that claim).
    """
    sampling = Sampling(sampling)
    if adjacency is None:
        return Adjacency.ADD_REMOVE if sampling is Sampling.POISSON else Adjacency.REPLACE_ONE
    adjacency = Adjacency(adjacency)
    if adjacency is Adjacency.ADD_REMOVE and sampling is not Sampling.POISSON:
        batches, why = (
            ("fixed-size", "the batch size reveals the dataset size")
            if sampling is Sampling.FIXED
            else (
                "shuffled",
                "one added example shifts every later batch of the epoch, and the "
                "number of batches reveals the dataset size",
            )
        )
        raise ValueError(
            f"adjacency={adjacency.value!r} with sampling={sampling.value!r}: {batches} batches are analysed "
            f"only under replace-one adjacency ({why}); use adjacency='replace-one' or Poisson sampling"
        )
    return adjacency


def steps_per_epoch(dataset_size: int, batch_size: float, sampling: Sampling | str) -> float:
    """Steps of one epoch as `DpSgdMechanism.from_epochs` counts them: ceil(n / B) for shuffled batches
    (the last one partial, as in Keras), n / B (possibly fractional) otherwise."""
    if Sampling(sampling) is Sampling.SHUFFLE:
        return math.ceil(dataset_size / batch_size)
    return dataset_size / batch_size


def steps_for_epochs(epochs: float, dataset_size: int, batch_size: float) -> int:
    """T = ceil(epochs * n / B), the convention of TF Privacy's statements."""
    return max(1, math.ceil(epochs * dataset_size / batch_size - 1e-9))


def folded_multiplier(multiplier: Fraction) -> tuple[Fraction, int]:
    """(m, k) with ``multiplier`` = m 2^k, k >= 0 the least making m <= 1: how ppml's DP-SGD step
    (`privacy.keras.train_step.released_sums`) applies 1 / B. The clip factors take m: the clipped sums'
    rounding bounds hold for scales s <= 1 (`privacy.keras.clipping.divisors`; above 1 an operand read as 0 loses
    s |y| < s lambda, and the scaled side can overflow: a one-position product keeps |a| up to 2^64 at D = |a| |g| <= C,
    and s = m scales it to inf from m = 2^64). The noisy sums are multiplied by 2^k afterwards: the release is a
    post-processing of a step of expected batch size 2^k B (on several replicas too: a power of two scales each
    replica's part and their sum exactly, barring overflow and subnormals)."""
    doublings = 0
    while multiplier > 1:
        multiplier, doublings = multiplier / 2, doublings + 1
    return multiplier, doublings
