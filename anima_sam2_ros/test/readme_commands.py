"""The README's code blocks and command lines, by section: tests run them as written.

Extracting them here (instead of copying them into tests) means the README and the tests cannot
drift apart: a command edited in the README is the command the test runs.
"""

from __future__ import annotations

import pathlib
import re
from typing import List, Tuple

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def _sections(text: str) -> List[Tuple[str, str]]:
    """(heading, body) for every markdown heading outside code fences, body up to the next one."""
    out: List[Tuple[str, List[str]]] = []
    fenced = False
    for line in text.splitlines(keepends=True):
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and re.match(r"#{1,6} ", line):
            out.append((line.lstrip("#").strip(), []))
        elif out:
            out[-1][1].append(line)
    return [(title, "".join(body)) for title, body in out]


def blocks(heading: str, lang: str = "bash") -> List[str]:
    """The fenced ``lang`` blocks of the section whose heading starts with ``heading``."""
    found = [body for title, body in _sections(README.read_text()) if title.startswith(heading)]
    assert found, f"README has no section {heading!r}"
    return [m.group(1) for body in found
            for m in re.finditer(r"^```" + re.escape(lang) + r"\n(.*?)^```", body, re.S | re.M)]


def commands(heading: str) -> List[str]:
    """Every command of the section's bash blocks: continuations joined, comments and blanks dropped.

    A trailing ``# comment`` stays out of the command; the full line comment before a command is
    not part of it either.
    """
    out: List[str] = []
    for block in blocks(heading, "bash"):
        pending = ""
        for raw in block.splitlines():
            line = raw.rstrip()
            if not pending and (not line.strip() or line.lstrip().startswith("#")):
                continue
            if line.endswith("\\"):
                pending += line[:-1].rstrip() + " "
                continue
            full = pending + line
            pending = ""
            out.append(_strip_comment(full).strip())
    return out


def _strip_comment(line: str) -> str:
    """``cmd arg   # note`` -> ``cmd arg`` (a ``#`` inside quotes is kept)."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line
