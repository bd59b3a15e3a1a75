"""PATE: private aggregation of teacher ensembles (Papernot et al. 2018, "Scalable Private Learning with PATE").

Teachers trained on disjoint partitions of the private data vote on queries from a public, unlabeled set; a
noisy aggregator (`GNMax`, `ConfidentGNMax`) turns the votes into labels for a student. One teacher's
partition changing changes at most one vote per query, so the guarantee is per teacher, and per record under
add/remove (or per holder, when partitions are formed by holder key) since each record lies in one partition;
replacing a record may move it to another teacher: two teachers.

Analyses, each named wherever its numbers are printed:
  - `data_independent`: the guarantee, through dp-accounting's RDP accountant (Gaussian events).
  - `data_dependent`: the paper's tighter per-query RDP bounds; they depend on the private votes and are
    never a guarantee by themselves.
  - `smooth_sensitivity`: the release of the data-dependent bound with Gaussian noise scaled to its
    smooth sensitivity (the paper's GNSS mechanism), whose own cost is included; made once per history, and
    composed into the guarantee of any report that carries it (`analysis`).

The student learns from the answered queries, optionally self-trained on the unanswered ones
(`privacy.pate.student.SelfTraining`): post-processing of the release, so the same epsilon.

Importing this package does not import TensorFlow (`privacy.pate.keras_training` does).
"""

from privacy.pate.aggregators import ConfidentGNMax, GNMax, VoteHistory, make_aggregator
from privacy.pate.analysis import PateReport, analyze, release_or_refusal
from privacy.pate.data_independent import data_independent_epsilon, pate_dp_event
from privacy.pate.partitions import check_disjoint, check_public_private, partition_by_key
from privacy.pate.smooth_sensitivity import SmoothedRdp, SmoothSensitivityRelease
from privacy.pate.votes import PateConfigurationError, check_votes

__all__ = [
    "ConfidentGNMax",
    "GNMax",
    "PateConfigurationError",
    "PateReport",
    "SmoothSensitivityRelease",
    "SmoothedRdp",
    "VoteHistory",
    "analyze",
    "check_disjoint",
    "check_public_private",
    "check_votes",
    "data_independent_epsilon",
    "make_aggregator",
    "partition_by_key",
    "pate_dp_event",
    "release_or_refusal",
]
