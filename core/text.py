"""Text checks that need no database driver (the KB file readers use them on machines without one)."""

from __future__ import annotations


def unstorable_text(value: str) -> str | None:
    """Why ``value`` cannot be stored in every supported database, or None: PostgreSQL refuses a NUL
    character, and no UTF-8 column holds a lone surrogate (a broken UTF-16 pair a JSON body can carry)."""
    if "\x00" in value:
        return "contains a NUL character (U+0000)"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"is not valid Unicode text (a lone surrogate, U+{ord(value[exc.start]):04X})"
    return None
