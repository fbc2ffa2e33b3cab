"""The README and docs/*.md describe the package, never how they were made."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import REPO

# words about the process that wrote the docs; a user has none of these
PROCESS_WORDS = [
    r"\bissues?\b",
    r"\bprototyp\w*",
    r"\bsessions?\b",
    r"\b(?:this|next|previous|second|first) round\b",
    r"\bround (?:\d+|one|two|three)\b",
    r"\bas (?:was )?asked\b",
    r"\b(?:was|were) (?:asked|requested)\b",
    r"\btargets? set\b",
    r"\bthis work\b",
    r"\bstarted this\b",
    r"\bdevelopment machine\b",
    r"\b(?:helpers?|engineers?|reviewers?|the lead)\b",
    r"\b(?:we|our|ours)\b",
    r"\b(?:TODO|FIXME|XXX)\b",
    r"/work/|\.\./shared\b|\bshared/data\b",
]
PATTERN = re.compile("|".join(f"(?:{w})" for w in PROCESS_WORDS), re.IGNORECASE)


def pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def process_words(path: Path) -> list[str]:
    """``file:line: word`` for every process word in the file."""
    return [
        f"{path.relative_to(REPO)}:{n}: {m.group(0)!r} in {line.strip()[:100]!r}"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        for m in PATTERN.finditer(line)
    ]


@pytest.mark.parametrize("path", pages(), ids=lambda p: p.name)
def test_docs_speak_only_of_the_package(path: Path) -> None:
    found = process_words(path)
    assert not found, "words about how the docs were made:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "line",
    [
        "This follows the issue that started this work.",
        "See the prototype scripts.",
        "It meets the targets set for this work.",
        "Done as was asked.",
        "Measured on the 2-core development machine.",
        "In round 2 we fixed it.",
    ],
)
def test_the_word_list_catches_process_words(tmp_path: Path, line: str, monkeypatch: pytest.MonkeyPatch) -> None:
    page = tmp_path / "page.md"
    page.write_text(f"# A page\n\nThe torus has one circle.\n{line}\n")
    monkeypatch.setattr("tests.test_docs_wording.REPO", tmp_path)
    found = process_words(page)
    assert found and all(f.startswith("page.md:4: ") for f in found)


def test_the_word_list_leaves_the_packages_own_words_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "Rounding along the base gradient; a round cloud; the digit it is asked for; "
        "the target of a rename; 10 iterations of the protocol.\n"
    )
    monkeypatch.setattr("tests.test_docs_wording.REPO", tmp_path)
    assert process_words(page) == []
