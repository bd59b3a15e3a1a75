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


def test_an_interpreter_ending_inside_a_snippet_fails_that_snippet_and_the_next_ones_run_in_a_fresh_one(tmp_path):
    """``os._exit`` and a hang past the timeout fail their own snippet, with its stdout; process state a snippet
    changed (working folder, umask) is put back for the next."""
    results = run_snippets(
        {
            "moves": "import os; print(os.getcwd(), oct(os.umask(0o077))); os.chdir('/')",
            "after": "import os; print(os.getcwd(), oct(os.umask(0o077)))",
            "exits": "import os; print('exiting'); os._exit(5)",
            "hangs": "import time; print('hanging', flush=True); time.sleep(1000)",
            "last": "print('last')",
        },
        str(tmp_path / "runs"),
        legacy_keras=False,
        timeout=30,
    )
    assert results["moves"]["error"] is None
    assert results["exits"]["stdout"] == "exiting\n"
    assert "the shared interpreter exited with status 5 in this snippet" in results["exits"]["error"]
    assert results["hangs"]["stdout"] == "hanging\n"
    assert "the shared interpreter ran past its timeout of 30 s in this snippet" in results["hangs"]["error"]
    assert results["after"]["stdout"] == results["moves"]["stdout"], results["after"]
    assert results["last"] == {"stdout": "last\n", "error": None, "dir": str(tmp_path / "runs" / "last")}
