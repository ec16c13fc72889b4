"""Griffe extension used by the docs build: render stepsched's docstrings as Markdown.

The docstrings are written for ``help()`` and doctest (reST-flavoured): ``>>>``
examples, ``.. math::`` blocks and ``:math:`` roles. This turns them into
fenced ``pycon`` blocks and ``$...$`` / ``$$...$$`` maths (pymdownx.arithmatex)
so the API reference reads well and Markdown does not mistake ``>>>`` for a
quotation or ``[a]\\n[b]`` for a link.
"""

from __future__ import annotations

import re

import griffe

_ROLE = re.compile(r":math:`([^`]*)`")


def to_markdown(text: str) -> str:
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.lstrip()
        indent = line[: len(line) - len(stripped)]
        if stripped.startswith(">>> "):
            block = []
            while i < len(lines) and lines[i].strip():
                block.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
                i += 1
            out += [indent + "```pycon", *(indent + b for b in block), indent + "```"]
            continue
        if stripped.startswith(".. math::"):
            first = stripped[len(".. math::"):].strip()
            body = [first] if first else []
            i += 1
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith(indent + " ")):
                if lines[i].strip():
                    body.append(lines[i].strip())
                i += 1
            while body and not body[-1]:
                body.pop()
            out += [indent + "$$", *(indent + b for b in body), indent + "$$", ""]
            continue
        out.append(_ROLE.sub(lambda m: f"${m.group(1)}$", line))
        i += 1
    return "\n".join(out)


class ReSTToMarkdown(griffe.Extension):
    """Rewrite every docstring with :func:`to_markdown`."""

    def on_instance(self, *, node, obj, agent, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = to_markdown(obj.docstring.value)
