"""Synthetic support tickets with PII in free text, for the data-minimization stage (shipped; tests never run Faker).

`data/pii_tickets.csv` holds the records and `data/pii_tickets_spans.json` the ground truth: for each record the
``[start, end, entity_type]`` spans of PII in its ``ticket_text``. Both were written by `generate` with Faker
(en_US, seed `SEED`): ``python -m pipelines.datasets.pii_tickets`` rewrites them byte for byte with the pinned
Faker. Columns: ``ticket_id``; ``customer_name``, ``email`` (declared identifying); ``age``, ``zip3``,
``gender`` (quasi-identifiers); ``product`` (sensitive for l-diversity); ``ticket_text`` (free text);
``escalated`` (0/1 label).
"""

from __future__ import annotations

import csv
import json
import os
import random

DATA_DIR = os.path.join(os.path.dirname(__file__), "data")
CSV_PATH = os.path.join(DATA_DIR, "pii_tickets.csv")
SPANS_PATH = os.path.join(DATA_DIR, "pii_tickets_spans.json")
SEED = 19
ROWS = 400
COLUMNS = ("ticket_id", "customer_name", "email", "age", "zip3", "gender", "product", "ticket_text", "escalated")
IDENTIFYING_COLUMNS = ("customer_name", "email")
QUASI_IDENTIFIERS = ("age", "zip3", "gender")
SENSITIVE_COLUMN = "product"
TEXT_COLUMN = "ticket_text"
PRODUCTS = ("checking", "savings", "mortgage", "credit card", "student loan", "auto loan")

# Sentence templates: {field} is filled by the Faker method of the same name (entity type in _ENTITY).
_SENTENCES = (
    "Hi, this is {name}.",
    "You can reach me at {phone_number}.",
    "Please reply to {email} rather than the old address.",
    "My card {credit_card_number} was charged twice this month.",
    "For verification my SSN is {ssn}.",
    "Please send the refund to IBAN {iban}.",
    "I logged in from {ipv4_public} and got locked out.",
    "The statement page {url} does not load.",
    "I moved to {street_address} last spring.",
    "My name is {name} and nobody has answered me yet.",
    "Call {phone_number} after 5pm, or email {email}.",
)
_FILLER = (
    "The app keeps timing out.",
    "I have waited two weeks.",
    "Thanks for looking into it.",
    "This is the third time I write about this.",
    "The fee seems wrong to me.",
)
_ENTITY = {
    "name": "PERSON",
    "phone_number": "PHONE_NUMBER",
    "email": "EMAIL_ADDRESS",
    "credit_card_number": "CREDIT_CARD",
    "ssn": "US_SSN",
    "iban": "IBAN_CODE",
    "ipv4_public": "IP_ADDRESS",
    "url": "URL",
    "street_address": "LOCATION",
}


def generate(seed: int = SEED, rows: int = ROWS) -> tuple[list[dict], list[list]]:
    """Records and per-record ground-truth spans, from Faker seeded with ``seed`` (Faker imported here only)."""
    from faker import Faker

    fake = Faker("en_US")
    fake.seed_instance(seed)
    rng = random.Random(seed)
    records, spans = [], []
    for i in range(rows):
        identity = {"name": fake.name(), "email": fake.email()}
        text, found = "", []
        for template in rng.sample(_SENTENCES, rng.randint(2, 4)) + [rng.choice(_FILLER)]:
            pieces = template.replace("}", "{").split("{")
            for j, piece in enumerate(pieces):
                if j % 2 == 0:
                    text += piece
                    continue
                value = identity.get(piece) or getattr(fake, piece)()
                found.append([len(text), len(text) + len(value), _ENTITY[piece]])
                text += value
            text += " "
        records.append(
            {
                "ticket_id": i,
                "customer_name": identity["name"],
                "email": identity["email"],
                "age": rng.randint(18, 85),
                "zip3": rng.choice(("100", "303", "554", "606", "941", "981")),
                "gender": rng.choice(("F", "M")),
                "product": rng.choice(PRODUCTS),
                "ticket_text": text.strip(),
                "escalated": int(rng.random() < 0.3),
            }
        )
        spans.append(found)
    return records, spans


def write(records: list[dict], spans: list[list], csv_path: str = CSV_PATH, spans_path: str = SPANS_PATH) -> None:
    with open(csv_path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
    with open(spans_path, "w", encoding="utf-8") as fh:
        json.dump(spans, fh, separators=(",", ":"))
        fh.write("\n")


def load() -> tuple[list[dict], list[list]]:
    """The shipped records (``age``, ``ticket_id``, ``escalated`` as int) and their ground-truth spans."""
    with open(CSV_PATH, newline="", encoding="utf-8") as fh:
        records = [
            dict(r, ticket_id=int(r["ticket_id"]), age=int(r["age"]), escalated=int(r["escalated"]))
            for r in csv.DictReader(fh)
        ]
    with open(SPANS_PATH, encoding="utf-8") as fh:
        return records, json.load(fh)


if __name__ == "__main__":
    write(*generate())
    print(f"wrote {CSV_PATH} and {SPANS_PATH}")
