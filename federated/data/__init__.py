"""Client data: in-memory datasets split among simulated clients, from numpy, tf.data or TFRecords."""

from federated.data.client_data import ClientData, load_digits_clients, load_digits_split
from federated.data.examples import read_tf_examples

__all__ = ["ClientData", "load_digits_clients", "load_digits_split", "read_tf_examples"]
