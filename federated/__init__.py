"""ppml.federated: federated averaging simulation for Keras models.

Rooms: `partitioners` (how data is split among clients), `data` (client data from numpy, tf.data,
TFRecords).
"""
