"""Which Keras callbacks write validation metrics to disk, by class name, without TensorFlow: the one list that
`privacy.keras.monitoring` names such callbacks from and that a privacy ledger (`pipelines.privacy_ledger`) names
where it cannot tell which ran."""

WRITERS = ("TensorBoard", "CSVLogger")
"""Known Keras callbacks that write every entry of the logs, the validation metrics included, to disk (event files,
a CSV file)."""
