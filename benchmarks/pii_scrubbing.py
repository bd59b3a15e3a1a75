"""Rows per second of ppml's PII scrubbing against calling Presidio directly, on the bundled tickets.

Three ways over the same rows (`pipelines.datasets.pii_tickets`, the ``ticket_text`` column, replace):
- ``presidio_stock``: Presidio's AnalyzerEngine (no-op NLP engine, its stock pattern recognizers for the same
  entity types) and AnonymizerEngine, called per row;
- ``ppml_scrubber``: `privacy.minimization.Scrubber.scrub_record` (ppml's recognizer configuration, the row's
  dropped-column values matched in the text, overlap resolution, counting);
- ``ppml_tfx_executor``: the PiiScrubber component's executor on the rows as gzipped tf.Examples (reading,
  scrubbing, writing; and building the analyzer, once per run as in a pipeline), with --tfx.
No NER figure: no NER model installs from PyPI here, so "with NER" was not measured. Each figure is the median
of --repeats passes; prints a table (ratios to presidio_stock) and writes JSON.

    python benchmarks/pii_scrubbing.py [--repeats 3] [--copies 5] [--tfx] [--out benchmarks/results/pii_scrubbing.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from pipelines.datasets import pii_tickets
from privacy.minimization import PATTERN_ENTITIES, Scrubber, ScrubSettings
from results_io import write_results

SETTINGS = ScrubSettings(columns=((pii_tickets.TEXT_COLUMN, "replace"),), drop_columns=pii_tickets.IDENTIFYING_COLUMNS)


def presidio_stock(records):
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NoOpNlpEngine
    from presidio_anonymizer import AnonymizerEngine

    registry = RecognizerRegistry(supported_languages=["en"])
    registry.load_predefined_recognizers(languages=["en"])
    registry.recognizers = [r for r in registry.recognizers if set(r.supported_entities) & set(PATTERN_ENTITIES)]
    analyzer = AnalyzerEngine(
        registry=registry,
        nlp_engine=NoOpNlpEngine([{"lang_code": "en", "model_name": "-"}]),
        supported_languages=["en"],
    )
    anonymizer = AnonymizerEngine()

    def run():
        for r in records:
            text = r[pii_tickets.TEXT_COLUMN]
            found = analyzer.analyze(text=text, language="en", entities=list(PATTERN_ENTITIES))
            anonymizer.anonymize(text=text, analyzer_results=found)

    return run


def ppml_scrubber(records):
    scrubber = Scrubber(SETTINGS)

    def run():
        for r in records:
            scrubber.scrub_record(r)

    return run


def ppml_tfx_executor(records):
    from pipelines.keras_env import use_tf_keras

    use_tf_keras()
    import tensorflow as tf
    from tfx.types import standard_artifacts

    from pipelines.components.pii_scrubber import spec
    from pipelines.components.pii_scrubber.executor import Executor

    folder = tempfile.mkdtemp()
    raw = standard_artifacts.Examples()
    raw.uri, raw.split_names = os.path.join(folder, "raw"), '["train"]'
    os.makedirs(os.path.join(raw.uri, "Split-train"))
    with tf.io.TFRecordWriter(os.path.join(raw.uri, "Split-train", "data.gz"), options="GZIP") as writer:
        for r in records:
            example = tf.train.Example()
            for key, value in r.items():
                feature = example.features.feature[key]
                if isinstance(value, int):
                    feature.int64_list.value.append(value)
                else:
                    feature.bytes_list.value.append(value.encode())
            writer.write(example.SerializeToString())
    passes = iter(range(10**6))

    def run():
        out = standard_artifacts.Examples()
        out.uri = os.path.join(folder, f"out{next(passes)}")
        Executor().Do(
            {spec.EXAMPLES_KEY: [raw]}, {spec.SCRUBBED_EXAMPLES_KEY: [out]}, {spec.SETTINGS_KEY: SETTINGS.to_json()}
        )

    return run


def measure(name, make, records, repeats):
    run = make(records)
    run()  # warm-up: imports, compiled patterns
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return {
        "method": name,
        "rows": len(records),
        "seconds_median": statistics.median(times),
        "rows_per_second": len(records) / statistics.median(times),
        "seconds_all": times,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--copies", type=int, default=5, help="rows = the 400 tickets, this many times over")
    parser.add_argument("--tfx", action="store_true", help="also time the TFX component's executor")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "pii_scrubbing.json"))
    args = parser.parse_args()

    records = pii_tickets.load()[0] * args.copies
    methods = [("presidio_stock", presidio_stock), ("ppml_scrubber", ppml_scrubber)]
    if args.tfx:
        methods.append(("ppml_tfx_executor", ppml_tfx_executor))
    rows = [measure(name, make, records, args.repeats) for name, make in methods]
    base = rows[0]["rows_per_second"]
    print(f"{'method':>18} {'rows':>5} {'rows/s':>9} {'ratio':>6}")
    for r in rows:
        r["ratio_to_presidio_stock"] = r["rows_per_second"] / base
        print(f"{r['method']:>18} {r['rows']:>5} {r['rows_per_second']:>9.1f} {r['ratio_to_presidio_stock']:>6.2f}")
    write_results(
        args.out,
        {
            "benchmark": "pii_scrubbing",
            "ner": False,
            "copies": args.copies,
            "entities": list(PATTERN_ENTITIES),
            "rows": rows,
        },
    )
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
