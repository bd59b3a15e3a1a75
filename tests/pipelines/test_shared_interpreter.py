"""`run_snippets`: snippets share one interpreter, each with its own namespace, folder, stdout and failure."""

import os

from .shared_interpreter import run_snippets

PATCH = """
from privacy import validation
validation.probability = lambda *args, **kwargs: "patched"
validation.added_by_a_snippet = 1
import privacy.accounting.report  # a submodule imported here stays importable after the snippet
print("patched", validation.probability("delta", 2.0))
"""

SEES_ORIGINAL = """
import os
import privacy.accounting.report
from privacy import validation
try:
    validation.probability("delta", 2.0)
except ValueError as err:
    print("original refuses", err)
print("added attribute seen:", hasattr(validation, "added_by_a_snippet"), "tmp_dir:", os.listdir(tmp_dir), __name__)
open(os.path.join(tmp_dir, "written"), "w").close()
"""


def test_snippets_share_one_interpreter_but_not_their_patches_folders_output_or_failures(tmp_path):
    results = run_snippets(
        {
            "patch": PATCH,
            "raises": "print('before'); raise KeyError('boom')",
            "exits": "import sys; sys.exit(3)",
            "sees_original": SEES_ORIGINAL,
        },
        str(tmp_path / "runs"),
        legacy_keras=False,
        timeout=120,
    )
    assert results["patch"] == {"stdout": "patched patched\n", "error": None, "dir": str(tmp_path / "runs" / "patch")}
    assert results["raises"]["stdout"] == "before\n" and "KeyError: 'boom'" in results["raises"]["error"]
    assert "SystemExit: 3" in results["exits"]["error"]
    seen = results["sees_original"]
    assert seen["error"] is None, seen["error"]
    assert seen["stdout"].splitlines()[0].startswith("original refuses delta must be"), seen["stdout"]
    assert seen["stdout"].splitlines()[1] == "added attribute seen: False tmp_dir: [] __main__"
    assert os.listdir(seen["dir"]) == ["written"] and seen["dir"] != results["patch"]["dir"]
