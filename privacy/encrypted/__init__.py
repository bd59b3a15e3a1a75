"""Encrypted inference: three servers predict with a Keras model on secret-shared inputs and weights.

A model owner secret-shares a trained model's weights among three parties; a client secret-shares
its input; the parties run the model on shares (3-party replicated secret sharing over Z_2^64,
ABY3-style) and return shares of the output that only the client reconstructs.

Threat model
------------
* Three parties, at most one of them corrupted, and that one semi-honest (honest but curious): it
  follows the protocol and tries to learn from what it sees. Any single party's view (its two
  components of every shared value and the messages it receives) is independent of the input and of
  the weights. Two colluding parties can reconstruct everything; an actively cheating party can make
  the result wrong (there are no MACs) but still learns nothing beyond its view.
* Public: the architecture (layer kinds and shapes), the fixed-point format, the batch size, the
  per-layer communication pattern, and the model's range plan: the declared input bounds (on the inputs'
  grid, less its top value if shared half-open), the bounds the servers check (by default the declared ones
  widened outward to a window one comparison checks) and, per layer, the bit length of the largest value
  the layer can produce over those (`model.ranges`), and where the window was not proven, which limit it
  exceeds (not by how much). Private: input values and weight values.
* The client learns the predicted label and nothing else (a client that bypasses its own check of
  the declared bounds can also query inputs within the wider bounds the servers check: the model's
  exact output on them): no intermediate value and no per-neuron signal; logits only where the model
  owner allowed them at sharing time (`share_model(..., allow_logits=True)`, enforced by every party).
  Outputs are the fixed-point model's exact values (exact truncation), so asking one input again
  reveals nothing new. When a truncation's randomness falls into its failure window, the two parties
  that see it withhold that example's output shares and the client runs it again; that event has a
  fixed probability (the plan's ``rerun_probability``, about 1e-5 per example for the reference MLP)
  and does not depend on any data, so the retry tells
  the client nothing (the servers see one bit per query). The servers check every input's shares
  against the bounds they check (`RangePlan.server_bounds`: by default the declared bounds widened to
  a window of 2^k grid values per feature, k from the widest declared span, only where that at most
  doubles every feature's declared grid values (else, and with `input_check="exact"`, the declared
  bounds) so no feature is served over more than about twice its declared span) and
  for consistency (`protocol.input_check`) and release nothing when the check fails, so a client that
  bypasses the library gets no output for inputs outside the checked bounds or inconsistent inputs.
  Outputs themselves can leak the model to a client making many different queries (model extraction;
  far fewer with logits).
* Randomness comes only from AES-128-CTR keyed from os.urandom (`privacy.encrypted.protocol.randomness`), with
  a known-answer self-test at start-up. Pairwise keys are exchanged over mutually authenticated TLS
  1.3 between processes (`privacy.encrypted.network`); certificates come from `ppml encrypted setup`,
  one per party and one per client (revocable, which also ends its open connections;
  `network.certificates`). Weight shares are re-randomized, under freshly exchanged pairwise keys,
  whenever the parties connect and every ``refresh_every`` sessions, so one party's memory before a
  refresh and another party's share after it reveal nothing (`PartyModel.refreshed`).
* Availability: no client behaviour stops a server process (bounded connections, memory budget, strict
  message parsing, request expiry, sessions aborted instead of servers; `network.server`). Sessions run
  one at a time and clients take turns: an authenticated client delays another by at most one session
  (of up to the largest batch) per request of the other's (see the README).
* Out of scope: side channels (timing of the parties' arithmetic is data-independent except numpy's and,
  in the comparison's compiled kernels (`protocol.kernels`, which pick the pair's fixed vector and test
  for a zero without branches), the rotation's memory reads at the row's secret offset and its division
  of the secret rotation word, as numpy's rotation did, and the PRF's rejection sampling, whose number
  and positions of redrawn (discarded) bytes show), denial of service by a party, and the security of the
  machines holding keys and share bundles.

Correctness: a wrap-around in the ring cannot be detected after the fact, so it is prevented. At sharing time an
interval analysis over the input bounds the servers check (`model.ranges.analyse`) proves that every value
entering a truncation or a comparison fits the ring's headroom, and refuses the model otherwise; the client
refuses inputs outside the declared bounds and the servers check the bounds the analysis covers. Truncation
returns floor(z / 2^f) exactly and never a wrong value unnoticed (`protocol.truncation`). Comparisons are exact
for proven-range operands (`protocol.comparison`); ReLU and max-pooling are exact on the fixed-point values;
hidden sigmoids are piecewise linear with error at most `SIGMOID_MAX_ERROR`; the last layer's logits are opened
before truncation (2f fractional bits), and a model may release them only if they are proven to fit 63 bits
(`LogitsOutOfRange`). `simulate` computes the same fixed-point arithmetic in the clear; the protocol's output
equals it bit for bit.

Modules, by group: `model` (the plaintext side: fixed point, plans, Keras import, layers, interval
analysis, ranges), `protocol` (the three-party protocol on shares, the client's and the model owner's
side of it), `network` (parties as processes: wire format, certificates, memory budget, server, remote
client). Front door (exported here): `import_keras_model` -> `InProcessCluster` (one process), or
`save_model_shares` (model owner) + `run_party` (each server) + `RemoteClient` (each client) for three
processes (`loopback_parties` starts three on one machine); `verify_model` compares encrypted and
plaintext predictions.
"""

from privacy.encrypted.in_process import InProcessCluster
from privacy.encrypted.model.activations import SIGMOID_MAX_ERROR
from privacy.encrypted.model.intervals import simulate
from privacy.encrypted.model.keras_import import UnsupportedModelError, import_keras_model
from privacy.encrypted.model.plan import Architecture, ModelPlan
from privacy.encrypted.model.ranges import InputBounds, InputOutOfBounds, LogitsOutOfRange, ModelRangeError, RangePlan
from privacy.encrypted.model.ring import FixedPoint
from privacy.encrypted.network.processes import loopback_parties, run_party, save_model_shares
from privacy.encrypted.network.remote import RemoteClient
from privacy.encrypted.protocol.backend import OutputNotAllowed
from privacy.encrypted.protocol.client import InputRefused, Prediction, ResultRejected
from privacy.encrypted.protocol.costs import CostReport
from privacy.encrypted.protocol.model_shares import PartyModel, share_model
from privacy.encrypted.protocol.randomness import RandomnessSelfTestError
from privacy.encrypted.protocol.transport import TransportError
from privacy.encrypted.verify import VerificationReport, verify_model

__all__ = [
    "Architecture",
    "CostReport",
    "FixedPoint",
    "InProcessCluster",
    "InputBounds",
    "InputOutOfBounds",
    "InputRefused",
    "LogitsOutOfRange",
    "ModelPlan",
    "ModelRangeError",
    "OutputNotAllowed",
    "PartyModel",
    "Prediction",
    "RandomnessSelfTestError",
    "RangePlan",
    "RemoteClient",
    "ResultRejected",
    "SIGMOID_MAX_ERROR",
    "TransportError",
    "UnsupportedModelError",
    "VerificationReport",
    "import_keras_model",
    "loopback_parties",
    "run_party",
    "save_model_shares",
    "share_model",
    "simulate",
    "verify_model",
]
