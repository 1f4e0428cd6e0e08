"""The two string rules every layer shares: what a name is, and what free text may contain.

Names identify objects and end up in URLs, labels and log lines, so they are a small safe alphabet.
Free text (descriptions, label values) may be any Unicode except characters that act on a terminal
or reorder what is displayed: C0/DEL/C1 controls and the bidirectional marks, embeddings, overrides
and isolates. The patterns use only `\\uXXXX` escapes, so the same text works in Python `re`,
pydantic's Rust regex and ECMA-262 (the OpenAPI document).
"""

from __future__ import annotations

import re

from poolvisor.domain.errors import InvalidInputError

MAX_NAME_LEN = 63
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
NAME_RULE = "names are 1..63 letters, digits, '-', '_' or '.', starting with a letter or digit"

# C0 controls, DEL, C1 controls; Arabic letter mark; LRM, RLM; LRE..RLO; LRI..PDI.
FORBIDDEN_CLASS = r"\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069"
TEXT_PATTERN = rf"^[^{FORBIDDEN_CLASS}]*$"
TEXT_RULE = "control characters (C0, DEL, C1) and bidirectional formatting characters are not allowed"

_NAME = re.compile(NAME_PATTERN[1:-1])
_FORBIDDEN = re.compile(f"[{FORBIDDEN_CLASS}]")


def is_name(value: object) -> bool:
    return isinstance(value, str) and _NAME.fullmatch(value) is not None


def check_name(kind: str, name: str) -> str:
    """`name` when it follows the name rule, else InvalidInputError saying which rule it breaks."""
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME_LEN:
        raise InvalidInputError(f"{kind} name must be 1..{MAX_NAME_LEN} characters")
    if _NAME.fullmatch(name) is None:
        raise InvalidInputError(f"invalid {kind} name {name!r}: {NAME_RULE}")
    return name


def forbidden_char(text: str) -> int | None:
    """Index of the first character free text may not contain, or None."""
    m = _FORBIDDEN.search(text)
    return None if m is None else m.start()


def check_text(kind: str, text: str) -> str:
    """`text` when it holds no control or bidirectional formatting character."""
    at = forbidden_char(text)
    if at is not None:
        raise InvalidInputError(f"{kind}: character U+{ord(text[at]):04X} at {at}: {TEXT_RULE}")
    return text
