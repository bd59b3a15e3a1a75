"""A trainer module that fails at import (user code), for the implementation check's tests
(tests/pipelines/test_privacy_audit_gate.py): the Evaluator must fail the check closed, not crash."""

raise RuntimeError("this trainer module fails at import")
