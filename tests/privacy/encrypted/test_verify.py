"""`VerificationReport.reason`: what the encrypted gate's `passes` compared, as the gate's reason shows it."""

import pytest

from privacy.encrypted.verify import VerificationReport


def _report(agreement, points):
    return VerificationReport(
        examples=200,
        decision_agreement=agreement,
        max_abs_error=0.01,
        plaintext_accuracy=0.9,
        encrypted_accuracy=0.9,
        accuracy_difference_points=points,
        latency_ms_per_batch=1.0,
        batch_size=100,
        rounds_per_batch=10,
        bytes_per_batch=1000,
    )


@pytest.mark.parametrize(
    "agreement, points, shown",
    [
        # two decimals for both, as `format_text` prints them (12.35 points, not 12.3; 0.00, not 0)
        (
            1.0,
            12.345,
            "decision agreement 100.00 % (needs >= 99.50 %), accuracy difference 12.35 points (needs <= 0.50)",
        ),
        (0.999, 0.0, "decision agreement 99.90 % (needs >= 99.50 %), accuracy difference 0.00 points (needs <= 0.50)"),
        # widened where two decimals would print the value at its threshold
        (
            0.9949999999,
            0.5000001,
            "decision agreement 99.49999999 % (needs >= 99.50000000 %), accuracy difference "
            "0.5000001 points (needs <= 0.5000000)",
        ),
        (0.999, None, "decision agreement 99.90 % (needs >= 99.50 %), accuracy difference not measured (no labels)"),
    ],
)
def test_the_reason_prints_what_passes_compares(agreement, points, shown):
    report = _report(agreement, points)
    assert report.reason(min_agreement=0.995, max_accuracy_drop=0.5) == shown
    assert report.passes(min_agreement=0.995, max_accuracy_drop=0.5) is (agreement >= 0.995 and (points or 0) <= 0.5)
