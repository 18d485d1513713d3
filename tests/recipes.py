"""The recipes of ``docs/patterns.md``: each ```python title="NAME"`` block is a file, written
out as it stands on the page so that the tests run exactly what the page shows."""

from __future__ import annotations

import re
from pathlib import Path

PAGE = Path(__file__).resolve().parent.parent / "docs" / "patterns.md"
_BLOCK = re.compile(r'^```python title="(?P<name>[^"]+)"\n(?P<source>.*?)^```$', re.M | re.S)


def recipes() -> dict[str, str]:
    """File name -> source of every titled block of the page."""
    return {m["name"]: m["source"] for m in _BLOCK.finditer(PAGE.read_text(encoding="utf-8"))}


def write_recipes(directory: Path) -> Path:
    """Write every recipe into ``directory``; return it."""
    for name, source in recipes().items():
        (directory / name).write_text(source, encoding="utf-8")
    return directory
