"""The seeded random streams of a simulation: round t's draws of one kind come from (seed, t, stream[, the
client's key]), one stream id per kind, so no two kinds of draw share a stream (one list, for every module
that draws)."""

import enum


class Stream(enum.IntEnum):
    """Purpose ids of the seeded streams (their values are part of every seeded run's results)."""

    SAMPLING = 0  # the round's client sample (`federated.simulation.round.RoundPlan`)
    SERVER = 1  # the server's draws, e.g. seeded DP noise (`RoundContext.rng`)
    DROPOUT = 2  # which sampled clients drop out
    CLIENT = 3  # each client's batch shuffling, with its key
    ROUNDING = 4  # secure aggregation's seeded stochastic rounding, with the client's key
