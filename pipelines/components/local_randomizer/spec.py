"""Settings of the Local Randomizer: which columns, by which mechanism, at which per-person epsilon.

What the guarantee covers: each declared column of each record is replaced by one report of an epsilon-LDP
randomizer whose coins come from the OS CSPRNG, so everything downstream of this component that reads only the
randomized examples learns about one person's declared values what epsilon-LDP allows (per record, the
declared columns' epsilons add up: basic composition). What it does not cover: the raw values passed through
ExampleGen first, whose output stays in the pipeline root, so the collector was trusted up to here (this is
local DP applied by the pipeline, not at collection on each person's device); undeclared columns pass through
raw, by design; a person with several records spends epsilon once per record. Only tf.Example records are read:
any other payload, or a record with fields tf.Example does not define, is refused (such fields would be
written back out raw).

A report is stored in the column's place as an int64 list: rr and grr one value in [0, k), oue k bits, olh
[a, b, y] (`privacy.local.olh.HashedReports`). Declared columns must hold exactly one int64 in [0, k) per record.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from privacy.local import MECHANISMS, make_oracle

EXAMPLES_KEY = "examples"
RANDOMIZED_EXAMPLES_KEY = "randomized_examples"
COLUMNS_KEY = "columns"
MAX_OUE_DOMAIN = 4096
"""Largest k for OUE here: its report is k int64 bits per record (use OLH beyond)."""
REPORT_FILE = "local_dp.json"
"""Written into the output artifact: each column's mechanism, epsilon, k and the oracle's probabilities."""


@dataclasses.dataclass(frozen=True)
class ColumnRandomizer:
    """One declared column: values 0..k-1, randomized by ``mechanism`` at per-person ``epsilon``."""

    name: str
    mechanism: str
    epsilon: float
    k: int

    def oracle(self):
        return make_oracle(self.mechanism, self.epsilon, self.k)


def parse_columns(columns: Any) -> tuple[ColumnRandomizer, ...]:
    """``columns``, a mapping of column name to {"mechanism", "epsilon", "k"} (or its JSON), checked.

    Raises:
      ValueError: one line naming the column and the bad setting.
    """
    if isinstance(columns, str):
        columns = json.loads(columns)
    if not isinstance(columns, dict) or not columns:
        raise ValueError(f"columns must map column names to {{mechanism, epsilon, k}}, got {columns!r}")
    parsed = []
    for name, setting in columns.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"column names must be non-empty strings, got {name!r}")
        if not isinstance(setting, dict) or set(setting) - {"mechanism", "epsilon", "k"}:
            raise ValueError(
                f"column {name!r}: give mechanism ({', '.join(MECHANISMS)}), epsilon and k, got {setting!r}"
            )
        column = ColumnRandomizer(name, setting.get("mechanism"), setting.get("epsilon"), setting.get("k"))
        try:
            oracle = column.oracle()
        except ValueError as err:
            raise ValueError(f"column {name!r}: {err}") from None
        if oracle.name == "oue" and oracle.k > MAX_OUE_DOMAIN:
            raise ValueError(
                f"column {name!r}: oue stores k bits per record, so k must be at most "
                f"{MAX_OUE_DOMAIN}, got {oracle.k}; use olh for larger domains"
            )
        parsed.append(dataclasses.replace(column, epsilon=oracle.epsilon, k=oracle.k))
    return tuple(parsed)


def columns_json(columns: tuple[ColumnRandomizer, ...]) -> str:
    """The exec property: the columns as JSON."""
    return json.dumps(
        {c.name: {"mechanism": c.mechanism, "epsilon": c.epsilon, "k": c.k} for c in columns}, sort_keys=True
    )


def report(columns: tuple[ColumnRandomizer, ...]) -> dict[str, Any]:
    """The content of `REPORT_FILE`."""
    return {
        "columns": {c.name: c.oracle().to_dict() for c in columns},
        "epsilon_per_record": sum(c.epsilon for c in columns),
        "trust_model": "local randomizer applied after ExampleGen: the raw examples upstream are not covered",
        "unprotected": "undeclared columns; a person's records beyond the first (epsilon per record)",
    }
