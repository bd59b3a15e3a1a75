"""The scrubber's executor: read each split's tf.Examples, scrub (and generalize) them, write them back."""

from __future__ import annotations

import json
import os
from typing import Any

from absl import logging
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils

from pipelines.components import example_records
from pipelines.components.pii_scrubber import spec
from privacy.minimization import KAnonymitySettings, Scrubber, ScrubSettings, mondrian_generalize


class Executor(base_executor.BaseExecutor):
    """Writes the scrubbed splits, the report JSON and the report's counts as custom properties."""

    def Do(
        self, input_dict: dict[str, list[Any]], output_dict: dict[str, list[Any]], exec_properties: dict[str, Any]
    ) -> None:
        settings = ScrubSettings.from_json(exec_properties[spec.SETTINGS_KEY])
        generalization = exec_properties.get(spec.GENERALIZATION_KEY)
        generalization = KAnonymitySettings.from_json(generalization) if generalization else None
        suppressed = 0
        raw = artifact_utils.get_single_instance(input_dict[spec.EXAMPLES_KEY])
        scrubbed = artifact_utils.get_single_instance(output_dict[spec.SCRUBBED_EXAMPLES_KEY])
        splits = artifact_utils.decode_split_names(raw.split_names)
        scrubbed.split_names = raw.split_names
        scrubbed.span = raw.span
        examples_utils.set_payload_format(scrubbed, examples_utils.get_payload_format(raw))
        scrubber = Scrubber(settings)
        for split in splits:
            present = set().union(*(r.keys() for r in example_records.read_split(raw, split)))
            absent = settings.absent_columns(present) + [
                q for q in (generalization.quasi_identifiers if generalization else ()) if q not in present
            ]
            if absent and present:  # an empty split (a 2:1 hash split of few rows) has nothing to check
                raise ValueError(
                    f"declared column(s) {absent} are in no record of split {split} (columns: {sorted(present)})"
                )
            records = (scrubber.scrub_record(r) for r in example_records.read_split(raw, split))
            if generalization is not None:
                records = list(records)
                generalized = mondrian_generalize(records, generalization.quasi_identifiers, generalization.target_k)
                suppressed += len(records) - len(generalized)
                records = generalized
            example_records.write_split(scrubbed, split, records)
        report = scrubber.report.to_dict()
        if generalization is not None:
            report["generalization"] = {
                "quasi_identifiers": list(generalization.quasi_identifiers),
                "k": generalization.target_k,
                "suppressed_rows": suppressed,
            }
        io_utils.write_string_file(os.path.join(scrubbed.uri, spec.REPORT_FILE), json.dumps(report, indent=2))
        for name in spec.REPORT_PROPERTIES:
            scrubbed.set_int_custom_property(f"pii_{name}", report[name])
        logging.info(
            "PII scrubber: %d of %d records touched; entities per column: %s",
            report["rows_touched"],
            report["rows"],
            report["entities"],
        )
