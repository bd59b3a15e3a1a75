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
* Public: the architecture (layer kinds and shapes), the fixed-point format, the batch size, and the
  per-layer communication pattern. Private: input values and weight values.
* The client learns the output it asked for (logits, or only the label) and the overflow monitor's
  words: for each securely compared value v, the bits of (v XOR sign) above 2^(62 - f). They are zero
  unless v left the representable range (a failed probabilistic truncation), in which case the client
  discards the result. Outputs themselves can leak the model to a client making many queries (model
  extraction); revealing only labels reduces but does not remove that.
* Randomness comes only from AES-128-CTR keyed from os.urandom (`privacy.encrypted.randomness`), with
  a known-answer self-test at start-up. Pairwise keys are exchanged over mutually authenticated TLS
  1.3 between processes (`privacy.encrypted.network`); certificates come from `ppml encrypted setup`.
* Out of scope: side channels (timing of the parties' arithmetic is data-independent except numpy's),
  denial of service by a party, and the security of the machines holding keys and share bundles.

Accuracy: fixed point with f fractional bits (16 by default) and probabilistic truncation after every
product (result floor(z/2^f) or one more, failing with probability |z|/2^64, detected by the monitor);
ReLU and max-pooling are exact on the fixed-point values; hidden sigmoids are piecewise linear with
error at most `SIGMOID_MAX_ERROR`. `simulate` computes the same fixed-point arithmetic in the clear
with bounds every protocol output must lie in.

Front door: `import_keras_model` -> `InProcessCluster` (one process) or `share_model` + `serve_party`
+ `RemoteClient` (three processes); `verify_model` compares encrypted and plaintext predictions.
"""

from privacy.encrypted.activations import SIGMOID_MAX_ERROR
from privacy.encrypted.client import OverflowDetected, Prediction
from privacy.encrypted.costs import CostReport
from privacy.encrypted.keras_import import UnsupportedModelError, import_keras_model
from privacy.encrypted.local import InProcessCluster
from privacy.encrypted.model_shares import PartyModel, share_model
from privacy.encrypted.plan import Architecture, ModelPlan
from privacy.encrypted.randomness import RandomnessSelfTestError
from privacy.encrypted.ring import FixedPoint
from privacy.encrypted.simulation import simulate
from privacy.encrypted.transport import TransportError

__all__ = [
    "Architecture", "CostReport", "FixedPoint", "InProcessCluster", "ModelPlan", "OverflowDetected", "PartyModel",
    "Prediction", "RandomnessSelfTestError", "SIGMOID_MAX_ERROR", "TransportError", "UnsupportedModelError",
    "import_keras_model", "share_model", "simulate",
]
