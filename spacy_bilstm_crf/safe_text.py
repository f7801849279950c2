"""Text from someone else (a model's labels, a document), made safe to print.

A terminal obeys the control characters in what it prints: ``\\x1b]0;...\\x07``
sets its title, other escape sequences move the cursor, recolour or clear the
screen, and bidirectional overrides make text read differently from what it
is. :func:`printable` writes such characters as Python escapes instead.
"""

import unicodedata

# Bidirectional embeddings, overrides and isolates (the "Trojan source" characters).
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})


def _escape(ch: str) -> str:
    code = ord(ch)
    if ch == "\n":
        return "\\n"
    if ch == "\t":
        return "\\t"
    if ch == "\r":
        return "\\r"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with control characters (newlines and tabs too), lone
    surrogates, line and paragraph separators and bidirectional controls
    written as escapes (``\\x1b``, ``\\n``, ``\\u202e``); other text unchanged."""
    if text.isprintable() and not any(ch in BIDI_CONTROLS for ch in text):
        return text
    return "".join(
        _escape(ch) if ch in BIDI_CONTROLS or unicodedata.category(ch) in _ESCAPED_CATEGORIES else ch for ch in text
    )
