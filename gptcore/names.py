"""The one name rule: every name that becomes a folder or file name (versions of every stage, runs, registries,
retrain cycles, pipeline names, upstream names read back from manifests) passes ``check_name``.

A name is a letter or digit, then up to 63 letters, digits, ``.``, ``_`` or ``-``, matched in full (``re.match``
with ``$`` would accept ``"v1\\n"``), and never contains ``..``. So it has no separator (``/``, ``\\``), no leading
dot (hidden files, work folders), no whitespace or control characters, ASCII only: joined under a folder it always
names a direct child of that folder.
"""
from __future__ import annotations

import re

NAME_RE = re.compile(r"(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
RULE = ("a letter or digit, then up to 63 letters, digits, '.', '_' or '-' (no '/', '\\', '..', spaces or leading "
        "dot)")
EXAMPLE = "'v0001' or 'weekly-0003'"


def check_name(value: str, what: str) -> str:
    """``value`` when it is a valid name, else ValueError naming ``what`` (the parameter), the value and the rule."""
    if isinstance(value, str) and NAME_RE.fullmatch(value):
        return value
    raise ValueError(f"{what} {value!r} is not a valid folder name: use {RULE}, e.g. {EXAMPLE}")
