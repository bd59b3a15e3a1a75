"""The plaintext side of encrypted inference: what is computed, and proofs about it.

`ring` (the ring Z_2^64 and fixed point), `plan` (a model as a public architecture plus private
weights), `keras_import` (Keras models into plans), `activations` and `layers` (the layers, written
once against a backend interface), `intervals` (exact interval arithmetic over the fixed-point
computation) and `ranges` (input bounds, and the analysis that proves every shared value fits the ring).
Nothing here touches shares or the network.
"""
