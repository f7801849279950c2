"""Checks of a record's id and text values; each returns the reason a value is
refused, or None."""

from dataclasses import dataclass
from typing import Any, Optional

from .records import IdType


def id_type_of(value: Any) -> Optional[IdType]:
    """``"int"`` or ``"str"`` for a usable id, None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return "int"
    if isinstance(value, str):
        return "str"
    return None


def check_id(value: Any, field: str, expected: IdType) -> Optional[str]:
    """Ids are all integers or all strings (the type of the input's first good
    record), so that every output file has one id type."""
    found = id_type_of(value)
    if found is None:
        return f"id field {field!r} is {_describe(value)}, not a string or an integer"
    if found != expected:
        wanted = "an integer" if expected == "int" else "a string"
        return f"id field {field!r} is {_describe(value)}, but the input's ids are {wanted} (its first good record)"
    return None


def check_text(value: Any, field: str) -> Optional[str]:
    """A text must be a string with something besides whitespace."""
    if value is None:
        return f"text field {field!r} is null"
    if not isinstance(value, str):
        return f"text field {field!r} is {_describe(value)}, not a string"
    if not value.strip():
        return f"text field {field!r} is empty" if not value else f"text field {field!r} is only whitespace"
    return None


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, (int, float)):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({value[:20]!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


@dataclass(frozen=True)
class Fields:
    """Where a record's text and id are, and the type all ids must have."""

    text: str = "text"
    id: str = "id"
    id_type: IdType = "int"
