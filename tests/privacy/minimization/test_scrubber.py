"""PII scrubbing on the bundled tickets: recall/precision per entity type against the generator's ground truth,
the four operators, dropped columns, the report's contents and the HMAC key's handling."""

import collections
import hashlib
import hmac
import json
import os
import stat

import pytest

from pipelines.datasets import pii_tickets
from privacy.minimization import PATTERN_ENTITIES, Scrubber, ScrubSettings, check_key_file, load_or_create_key

TICKETS = ScrubSettings(columns=(("ticket_text", "replace"),), drop_columns=pii_tickets.IDENTIFYING_COLUMNS)
SAME_ENTITY = {"CUSTOMER_NAME": "PERSON", "EMAIL": "EMAIL_ADDRESS"}
"""Declared identifying columns found in the text, named after their column, and the ground truth's type."""


@pytest.fixture(scope="module")
def tickets():
    return pii_tickets.load()


@pytest.fixture(scope="module")
def measured(tickets):
    """Per ground-truth type: (spans fully covered by detections, spans); per detected type: (detections that
    overlap a ground-truth span of that type, detections)."""
    records, spans = tickets
    scrubber = Scrubber(TICKETS)
    recall, precision = collections.defaultdict(lambda: [0, 0]), collections.defaultdict(lambda: [0, 0])
    for record, truth in zip(records, spans, strict=True):
        known = {"CUSTOMER_NAME": record["customer_name"], "EMAIL": record["email"]}
        found = scrubber.detect(record["ticket_text"], known)
        covered = {i for r in found for i in range(r.start, r.end)}
        for start, end, entity in truth:
            recall[entity][0] += set(range(start, end)) <= covered
            recall[entity][1] += 1
        for r in found:
            precision[r.entity_type][0] += any(
                r.start < e and s < r.end and SAME_ENTITY.get(r.entity_type, r.entity_type) == t for s, e, t in truth
            )
            precision[r.entity_type][1] += 1
    print("\nrecall", {k: f"{a}/{n}" for k, (a, n) in sorted(recall.items())})
    print("precision", {k: f"{a}/{n}" for k, (a, n) in sorted(precision.items())})
    return recall, precision


def test_recall_of_pattern_types_is_at_least_99_percent(measured):
    recall, _ = measured
    assert set(PATTERN_ENTITIES) <= set(recall)
    for entity in PATTERN_ENTITIES:
        found, total = recall[entity]
        assert total >= 100 and found / total >= 0.99, (entity, found, total)


def test_names_are_found_where_they_equal_a_dropped_column_and_places_are_not(measured):
    """The generator writes the customer's full name into the text; street addresses are left to NER, which does
    not run (no model installs from PyPI): the gap is measured, not hidden."""
    recall, _ = measured
    assert recall["PERSON"][0] == recall["PERSON"][1] > 100
    assert recall["LOCATION"][0] == 0 < recall["LOCATION"][1]


def test_precision_per_detected_type(measured):
    _, precision = measured
    for entity, (right, total) in precision.items():
        assert total > 0 and right / total >= 0.95, (entity, right, total)


def _pii_values(records, spans):
    return {
        r["ticket_text"][s:e] for r, truth in zip(records, spans, strict=True) for s, e, t in truth if t != "LOCATION"
    }


@pytest.mark.parametrize("operator", ["redact", "mask", "replace", "hash"])
def test_scrubbed_records_hold_no_detected_value_and_drop_identifying_columns(tickets, operator):
    records, spans = tickets
    records, spans = records[:60], spans[:60]
    scrubber = Scrubber(
        ScrubSettings(columns=(("ticket_text", operator),), drop_columns=pii_tickets.IDENTIFYING_COLUMNS)
    )
    out = [scrubber.scrub_record(r) for r in records]
    assert all(set(o) == set(r) - set(pii_tickets.IDENTIFYING_COLUMNS) for o, r in zip(out, records, strict=True))
    text = "\n".join(o["ticket_text"] for o in out)
    leaked = [v for v in _pii_values(records, spans) if v in text]
    assert not leaked
    report = json.dumps(scrubber.report.to_dict())
    assert not [v for v in _pii_values(records, spans) | {r["customer_name"] for r in records} if v in report]
    assert scrubber.report.rows == scrubber.report.rows_touched == 60
    counts = scrubber.report.entities["ticket_text"]
    expected = collections.Counter(SAME_ENTITY.get(t, t) for truth in spans for _, _, t in truth if t != "LOCATION")
    assert sum(counts.values()) == sum(expected.values())
    assert scrubber.report.recognizers and scrubber.report.ner is False
    if operator == "replace":
        assert "<EMAIL_ADDRESS>" in text or "<EMAIL>" in text
    if operator == "mask":
        assert "*****" in text


def test_keyed_hash_is_hmac_sha256_under_the_key_file_and_joins_across_records(tmp_path):
    key_file = str(tmp_path / "key")
    settings = ScrubSettings(columns=(("note", "hash"),), key_file=key_file)
    rows = [{"note": "write to ann@example.com"}, {"note": "ANN: ann@example.com!"}]
    out = [Scrubber(settings).scrub_record(r)["note"] for r in rows]
    key = open(key_file, "rb").read()
    token = hmac.new(key, b"ann@example.com", hashlib.sha256).hexdigest()[:32]
    assert out == [f"write to {token}", f"ANN: {token}!"]
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600 and len(key) == 32
    assert Scrubber(ScrubSettings(columns=(("note", "hash"),))).scrub_record(rows[0])["note"] != out[0]


def test_keyed_hash_gives_one_token_per_value_however_it_is_spelled():
    scrubber = Scrubber(ScrubSettings(operator="hash"))
    for spellings in (
        ["ann@example.com", "Ann@Example.COM"],
        ["555-867-5309", "555.867.5309", "(555) 867-5309"],
        ["4111 1111 1111 1111", "4111-1111-1111-1111"],
        ["DE89 3704 0044 0532 0130 00", "de89370400440532013000"],
    ):
        tokens = {scrubber.scrub_text(f"x {s} y", "hash")[0] for s in spellings}
        assert len(tokens) == 1 and spellings[0] not in tokens.pop(), spellings
    dropped = Scrubber(ScrubSettings(columns=(("note", "hash"),), drop_columns=("name",)))
    a, b = (dropped.scrub_record({"name": n, "note": f"from {n}"})["note"] for n in ("Ann Lee", "ANN LEE"))
    assert a == b and "Ann" not in a
    assert scrubber.scrub_text("x http://a.io/Doc y", "hash") != scrubber.scrub_text("x http://a.io/doc y", "hash")


def test_a_dropped_value_and_its_other_spellings_found_by_recognizers_get_one_token():
    scrubber = Scrubber(ScrubSettings(columns=(("note", "hash"),), drop_columns=("phone", "ip", "url")))
    record = {"phone": "555-867-5309", "ip": "2001:db8::1", "url": "http://example.com/a"}
    dropped = scrubber.scrub_record({**record, "note": "call 555-867-5309 at 2001:db8::1 see http://example.com/a"})
    for spelling in (
        "call (555) 867-5309 at 2001:DB8::1 see HTTP://Example.COM/a",
        "call +1-555-867-5309 at 2001:0db8:0:0::1 see http://EXAMPLE.com/a",
    ):
        assert scrubber.scrub_text(spelling, "hash")[0] == dropped["note"], spelling
    assert scrubber.keyed_hash("555-867-5309x123", "PHONE_NUMBER") == scrubber.keyed_hash("5558675309", "PHONE_NUMBER")
    assert scrubber.keyed_hash("http://a.io/Doc", "URL") != scrubber.keyed_hash("http://a.io/doc", "URL")


def test_a_non_utf8_byte_next_to_pii_is_scanned_as_latin1_and_nothing_of_the_value_stays():
    scrubber = Scrubber(ScrubSettings(operator="hash"))
    latin1 = "mail zo\udceb.lee@example.com now"  # the latin-1 byte 0xeb, decoded with surrogateescape
    out, counts = scrubber.scrub_text(latin1, "hash")
    assert out == scrubber.scrub_text("mail zo\u00eb.lee@example.com now", "hash")[0]  # one token, both encodings
    assert "zo" not in out and counts == {"EMAIL_ADDRESS": 1}


def test_each_value_of_a_multi_valued_dropped_column_is_removed_from_the_text():
    scrubber = Scrubber(ScrubSettings(columns=(("note", "replace"),), drop_columns=("names",)))
    out = scrubber.scrub_record({"names": ("bytes_list", ("Ann Lee", "Bob Roe")), "note": "Ann Lee and Bob Roe"})
    assert out == {"note": "<NAMES> and <NAMES>"}


def test_a_key_file_that_is_a_dangling_symlink_is_refused_naming_it(tmp_path):
    path = tmp_path / "key"
    path.symlink_to(tmp_path / "nowhere")
    for check in (check_key_file, load_or_create_key):
        with pytest.raises(ValueError, match=f"key file {path} is a symbolic link to a missing file"):
            check(str(path))


def test_internationalized_host_names_are_replaced_whole():
    scrubber = Scrubber(ScrubSettings(operator="redact"))
    for text in ("see www.café.fr/x ok", "see https://münchen.de/a/b ok", "see b\udce9b.example.com/p ok"):
        assert scrubber.scrub_text(text, "redact")[0] == "see  ok", text


def test_key_files_open_to_others_or_too_short_are_refused(tmp_path):
    path = tmp_path / "key"
    path.write_bytes(os.urandom(32))
    os.chmod(path, 0o644)
    with pytest.raises(ValueError, match="accessible to group or others"):
        load_or_create_key(str(path))
    os.chmod(path, 0o600)
    assert load_or_create_key(str(path)) == path.read_bytes()
    path.write_bytes(b"short")
    with pytest.raises(ValueError, match="holds 5 bytes"):
        load_or_create_key(str(path))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"operator": "shred"}, "operator must be one of redact, mask, replace, hash, got 'shred'"),
        ({"columns": (("t", "shred"),)}, "the operator of column 't' must be one of .*, got 'shred'"),
        ({"columns": (("t", "mask"), ("t", "hash"))}, "column 't' is listed twice"),
        ({"columns": (("t", "mask"),), "drop_columns": ("t",)}, "both scanned and dropped"),
        ({"columns": (("t", "mask"),), "entities": ("PERSON",)}, "entity must be one of .*, got 'PERSON'"),
        ({"columns": (("t", "mask"),), "score_threshold": 2.0}, r"score_threshold must be in \[0, 1\], got 2.0"),
        ({"drop_columns": ("",)}, "column name is empty"),
    ],
)
def test_bad_settings_name_the_bad_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ScrubSettings(**kwargs)


def test_without_declared_columns_every_string_column_is_scanned():
    scrubber = Scrubber(ScrubSettings(operator="redact"))
    out = scrubber.scrub_record({"a": "mail ann@example.com", "b": "from 10.1.2.3", "n": 5})
    assert out == {"a": "mail ", "b": "from ", "n": 5}
    assert scrubber.report.entities == {"a": {"EMAIL_ADDRESS": 1}, "b": {"IP_ADDRESS": 1}}


def test_the_report_counts_text_left_raw_in_columns_that_are_not_declared():
    scrubber = Scrubber(ScrubSettings(columns=(("ticket_text", "replace"),)))
    rows = [
        {"ticket_text": "hi", "notes": "mail ann@example.com", "tags": ("bytes_list", ("a", "b")), "n": 5},
        {"ticket_text": "hi", "notes": "", "n": 6},
    ]
    assert [scrubber.scrub_record(r)["notes"] for r in rows] == ["mail ann@example.com", ""]
    assert scrubber.report.unscanned_columns == {"notes": 1, "tags": 2} and scrubber.report.unscanned_values == {}
    assert scrubber.report.to_dict()["unscanned_columns"] == {"notes": 1, "tags": 2}
    everything = Scrubber(ScrubSettings(operator="redact"))
    everything.scrub_record(rows[0])
    assert everything.report.unscanned_columns == {} and everything.report.unscanned_values == {"n": 1}


def test_dropped_values_are_removed_from_the_text_as_whole_words_only():
    scrubber = Scrubber(ScrubSettings(columns=(("note", "replace"),), drop_columns=("name",)))
    out = scrubber.scrub_record({"name": "Ann", "note": "ANN asked about the annual fee; ann."})
    assert out == {"note": "<NAME> asked about the annual fee; <NAME>."}
    assert scrubber.report.entities == {"note": {"NAME": 2}}


def test_a_dropped_integer_identifier_is_removed_from_the_text():
    scrubber = Scrubber(ScrubSettings(columns=(("note", "replace"),), drop_columns=("customer_id", "n")))
    out = scrubber.scrub_record({"customer_id": 884213, "n": 12, "note": "customer 884213 complained, 12 times"})
    assert out == {"note": "customer <CUSTOMER_ID> complained, 12 times"}  # 2 digits are too few to search


def test_multi_valued_and_non_utf8_text_is_scanned_and_hashed_losslessly():
    scrubber = Scrubber(ScrubSettings(operator="hash"))
    note = "Zo\udceb: ann@example.com"  # the surrogate stands for the latin-1 byte 0xeb
    out = scrubber.scrub_record({"note": note, "emails": ("bytes_list", ("ann@example.com", "")), "n": 5})
    token = scrubber.keyed_hash("ann@example.com")
    assert out == {"note": f"Zo\udceb: {token}", "emails": ("bytes_list", (token, "")), "n": 5}
    assert scrubber.report.unscanned_values == {"n": 1} and scrubber.keyed_hash(note)  # surrogates hash


OTHER_SPELLINGS = {
    "card 4111.1111.1111.1111 ok": "4111.1111.1111.1111",
    "card 4111 1111-1111 1111 ok": "4111 1111-1111 1111",
    "card 3782 822463 10005 ok": "3782 822463 10005",
    "iban de89370400440532013000 ok": "de89370400440532013000",
    "iban de89 3704 0044 0532 0130 00 ok": "de89 3704 0044 0532 0130 00",
    "iban gb82west12345698765432 ok": "gb82west12345698765432",
    "see www.example.biz/users/ann.lee ok": "www.example.biz/users/ann.lee",
    "see example.io/a ok": "example.io/a",
    "call 555.867.5309 now": "555.867.5309",
    "call +44 20 7946 0958 now": "+44 20 7946 0958",
    "from 2001:db8::1 ok": "2001:db8::1",
    "from ::ffff:192.0.2.128 ok": "::ffff:192.0.2.128",
    "ssn 219 09 9999 ok": "219 09 9999",
    "mail ANN.LEE@EXAMPLE.COM ok": "ANN.LEE@EXAMPLE.COM",
}
"""Spellings Faker's en_US formats never produce (review pii-1 M1), each with the PII it holds."""


def test_other_spellings_are_replaced_whole():
    scrubber = Scrubber(ScrubSettings(operator="redact"))
    found = {}
    for text, pii in OTHER_SPELLINGS.items():
        out, _ = scrubber.scrub_text(text, "redact")
        found[text] = out == text.replace(pii, "")
    print(f"\nother spellings replaced whole: {sum(found.values())}/{len(found)}")
    assert all(found.values()), [t for t, ok in found.items() if not ok]
    assert (
        scrubber.scrub_text("see report.pdf and ann.lee, e.g. this", "redact")[0]
        == "see report.pdf and ann.lee, e.g. this"
    )


def test_settings_round_trip_through_json_and_column_specs():
    settings = ScrubSettings(columns=ScrubSettings.parse_columns(["a", "b=hash"]), drop_columns=("c",))
    assert settings.columns == (("a", "replace"), ("b", "hash"))
    assert ScrubSettings.from_json(settings.to_json()) == settings


def test_the_shipped_tickets_are_what_the_seeded_generator_writes(tmp_path):
    pytest.importorskip("faker")
    csv_path, spans_path = str(tmp_path / "t.csv"), str(tmp_path / "s.json")
    pii_tickets.write(*pii_tickets.generate(), csv_path=csv_path, spans_path=spans_path)
    assert open(csv_path, "rb").read() == open(pii_tickets.CSV_PATH, "rb").read()
    assert open(spans_path, "rb").read() == open(pii_tickets.SPANS_PATH, "rb").read()
