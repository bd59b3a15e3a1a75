"""The project's Markdown files: a blank line before every heading (outside code fences), as the rest of the
files have; some renderers do not start a heading on the line right after a paragraph."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _headings_without_a_blank_line(text: str) -> list[str]:
    found, fenced, previous = [], False, ""
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#") and previous.strip():
            found.append(f"{number}: {line}")
        previous = line
    return found


def test_every_heading_follows_a_blank_line():
    paths = sorted(ROOT.glob("*.md")) + sorted(ROOT.glob("benchmarks/*.md"))  # the project's Markdown files
    assert {p.relative_to(ROOT).as_posix() for p in paths} >= {"README.md", "benchmarks/README.md"}
    problems = {p.relative_to(ROOT).as_posix(): _headings_without_a_blank_line(p.read_text()) for p in paths}
    assert {name: found for name, found in problems.items() if found} == {}


def test_a_heading_right_after_a_paragraph_is_found_and_one_in_a_code_fence_is_not():
    assert _headings_without_a_blank_line("# A\n\ntext\n## B\n```\nx\n# comment\n```\n") == ["4: ## B"]
