"""Griffe extension for the docs build: the package's ``Example:`` sections are read as Google ``Examples:``.

Google style names the section ``Examples``; griffe reads the singular ``Example:`` as an admonition, which
would render the doctests as Markdown text. The package is left as it is; only the docs see the plural.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)


class ExampleSections(griffe.Extension):
    """Rewrite ``Example:`` headings to ``Examples:`` before any docstring is parsed."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _EXAMPLE.sub(r"\1Examples:", obj.docstring.value)
