"""The ```python examples of every docs/*.md page run, in order, in one fresh interpreter per page.

Only fences whose info string is exactly ``python`` run; ```py-norun, ```python title="...",
```sh and the like are documentation only. The script given to the interpreter keeps every line
of the page (blanked outside the examples) and is compiled under the page's path, so a traceback
names the page and the line of the failing example.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
TIMEOUT_SECONDS = 120
MIN_PAGES_WITH_EXAMPLES = 5

_OPENING_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>.*)$")

# Runs the script read from stdin as __main__, compiled under the file name given as argv[1].
_DRIVER = (
    "import sys\n"
    "source = sys.stdin.read()\n"
    "exec(compile(source, sys.argv[1], 'exec'), {'__name__': '__main__'})\n"
)


def python_script(markdown: str, page: str = "<markdown>") -> str | None:
    """The page's ```python blocks as one script, each on its own lines; None if it has none."""
    lines = markdown.splitlines()
    script = [""] * len(lines)
    found = False
    fence: str | None = None
    indent = 0
    runs = False
    start = 0
    for number, line in enumerate(lines):
        if fence is None:
            opening = _OPENING_FENCE.match(line)
            if opening is not None:
                fence = opening["fence"]
                indent = len(opening["indent"])
                runs = opening["info"].strip() == "python"
                found = found or runs
                start = number + 1
            continue
        stripped = line.strip()
        if stripped and set(stripped) == {fence[0]} and len(stripped) >= len(fence):
            fence = None
            continue
        if runs:
            script[number] = line[min(indent, len(line) - len(line.lstrip(" "))) :]
    if fence is not None and runs:
        raise ValueError(f"{page}: the ```python block opened on line {start} is never closed")
    return "\n".join(script) + "\n" if found else None


def _pages_with_examples() -> list[Path]:
    return [
        page
        for page in sorted(DOCS.glob("*.md"))
        if python_script(page.read_text(encoding="utf-8"), page.name) is not None
    ]


PAGES_WITH_EXAMPLES = _pages_with_examples()


def test_enough_pages_have_examples() -> None:
    names = [page.name for page in PAGES_WITH_EXAMPLES]
    assert len(names) >= MIN_PAGES_WITH_EXAMPLES, (
        f"expected at least {MIN_PAGES_WITH_EXAMPLES} docs pages with ```python examples "
        f"in {DOCS}, found {names}"
    )


@pytest.mark.parametrize("page", PAGES_WITH_EXAMPLES, ids=lambda page: page.name)
def test_page_examples_run(page: Path) -> None:
    name = page.relative_to(ROOT).as_posix()
    script = python_script(page.read_text(encoding="utf-8"), name)
    assert script is not None
    # the pages start from the default backend, whatever the environment of the test run
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHEUS_")}
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])
    )
    try:
        result = subprocess.run(
            [sys.executable, "-c", _DRIVER, name],
            input=script,
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env,
            timeout=TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{name}: the examples did not finish within {TIMEOUT_SECONDS} seconds")
    if result.returncode != 0:
        pytest.fail(
            f"{name}: the examples exited with status {result.returncode}\n"
            f"--- stderr ---\n{result.stderr}--- stdout ---\n{result.stdout}",
            pytrace=False,
        )


def test_only_python_fences_run() -> None:
    markdown = "\n".join(
        [
            "# Page",
            "```python",
            "x = 1",
            "```",
            "```py-norun",
            "app.run()",
            "```",
            '```python title="example.py"',
            "app.run()",
            "```",
            "````python",
            "y = '''",
            "```",
            "'''",
            "````",
            "   ```python",
            "   z = 3",
            "   ```",
        ]
    )
    script = python_script(markdown)
    assert script is not None
    assert script.splitlines() == [
        "", "", "x = 1", "", "", "", "", "", "", "",
        "", "y = '''", "```", "'''", "", "", "z = 3", "",
    ]  # fmt: skip
    assert python_script("no examples\n```sh\nls\n```\n") is None
    with pytest.raises(ValueError, match="never closed"):
        python_script("```python\nx = 1\n", "unclosed.md")
