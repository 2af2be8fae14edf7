"""Replace one ``## `` section of docs/benchmarks.md, keeping every other section as it is.

Several scripts write to that page (core speed, presets, GUI responsiveness, accuracy, large
volumes); each owns the sections it names and must not drop the others.
"""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
TITLE = "# Benchmarks\n"


def find_section(heading: str, path: Path = DOCS) -> str | None:
    """The current text of the section titled ``heading`` (``## ...``), or None."""
    text = path.read_text() if path.is_file() else ""
    found = _pattern(heading).search(text)
    return found.group(0) if found else None


def replace_section(heading: str, block: str, path: Path = DOCS) -> None:
    """Put ``block`` (starting with ``heading``) in place of that section, or append it."""
    text = path.read_text() if path.is_file() else TITLE
    block = block.rstrip("\n") + "\n"
    pattern = _pattern(heading)
    if pattern.search(text):
        text = pattern.sub(lambda _: block + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.rstrip("\n") + "\n")


def _pattern(heading: str) -> re.Pattern:
    return re.compile(r"^" + re.escape(heading) + r"\n.*?(?=^## |\Z)", re.S | re.M)
