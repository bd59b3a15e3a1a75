"""The validator's executor: per split, the k-anonymity report, an Anomalies proto and the blessed property."""

from __future__ import annotations

import json
import os
from typing import Any

from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.dsl.components.base import base_executor
from tfx.dsl.io import fileio
from tfx.types import artifact_utils
from tfx.utils import io_utils, writer_utils

from pipelines.components import example_records
from pipelines.components.kanonymity_validator import spec
from privacy.minimization import KAnonymitySettings, kanonymity_report

ANOMALIES_FILE = "SchemaDiff.pb"
"""ExampleValidator's file name for a split's Anomalies proto."""


class Executor(base_executor.BaseExecutor):
    """Writes each split's Anomalies proto and report; sets ``blessed`` per split."""

    def Do(
        self, input_dict: dict[str, list[Any]], output_dict: dict[str, list[Any]], exec_properties: dict[str, Any]
    ) -> None:
        settings = KAnonymitySettings.from_json(exec_properties[spec.SETTINGS_KEY])
        examples = artifact_utils.get_single_instance(input_dict[spec.EXAMPLES_KEY])
        anomalies = artifact_utils.get_single_instance(output_dict[spec.ANOMALIES_KEY])
        splits = artifact_utils.decode_split_names(examples.split_names)
        anomalies.split_names = examples.split_names
        anomalies.span = examples.span
        blessed = {}
        for split in splits:
            records = list(example_records.read_split(examples, split))
            report = kanonymity_report(
                records, settings.quasi_identifiers, target_k=settings.target_k, sensitive=settings.sensitive
            )
            out_dir = artifact_utils.get_split_uri([anomalies], split)
            fileio.makedirs(out_dir)
            io_utils.write_string_file(os.path.join(out_dir, spec.REPORT_FILE), json.dumps(report.to_dict(), indent=2))
            proto = anomalies_pb2.Anomalies()
            if not report.meets_target:
                info = proto.anomaly_info[spec.ANOMALY_KEY]
                info.severity = anomalies_pb2.AnomalyInfo.ERROR
                info.short_description = f"k-anonymity {report.k} < {report.target_k}"
                info.description = (
                    f"{report.rows_below_target} of {report.rows} records "
                    f"({100 * report.share_below_target:.1f} %) are in classes smaller than "
                    f"{report.target_k} on {', '.join(report.quasi_identifiers)}; smallest class "
                    f"sizes {list(report.smallest_classes)}. Generalize or suppress "
                    f"(privacy.minimization.mondrian_generalize) or drop quasi-identifiers."
                )
            writer_utils.write_anomalies(os.path.join(out_dir, ANOMALIES_FILE), proto)
            blessed[split] = int(report.meets_target)
        anomalies.set_json_value_custom_property(spec.BLESSED_PROPERTY, blessed)
