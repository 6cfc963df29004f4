"""Redact personal data before reviewers see a message.

Replaced by typed placeholders: e-mail addresses, payment card numbers (Luhn-checked), IBANs (mod-97
checked), US social security numbers, and phone numbers. Look-alikes stay: order and reference numbers,
amounts, dates and times, card numbers that fail the Luhn check, IBANs that fail the checksum. The original
text is kept only in the turn log, visible to operators.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![\w-])")
CARD = re.compile(r"(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w-])")
IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?:[ ]?[A-Za-z0-9]){11,30}(?![A-Za-z0-9])")
SSN = re.compile(r"(?<![\w-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w-])")
PHONE = re.compile(r"(?<![\w+])(?:\+|00)?\(?\d[\d ().-]{6,}\d(?![\w])")
DATE_LIKE = re.compile(r"^\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}$")
REFERENCE_WORDS = re.compile(
    r"(order|invoice|ref(erence)?|tracking|ticket|case|transaction|account no|booking|#)\W{0,3}$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Redaction:
    kind: str
    start: int
    end: int


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def iban_valid(candidate: str) -> bool:
    compact = candidate.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34 or not compact[:2].isalpha() or not compact[2:4].isdigit():
        return False
    rearranged = compact[4:] + compact[:4]
    numeric = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(numeric) % 97 == 1


def _phone_ok(text: str, start: int, candidate: str) -> bool:
    digits = re.sub(r"\D", "", candidate)
    if not 9 <= len(digits) <= 15:
        return False
    stripped = candidate.strip()
    if (
        DATE_LIKE.match(stripped)
        or re.search(r"\d\.\d{2}$", stripped)
        and "." in stripped
        and " " not in stripped
    ):
        return False
    if re.match(r"^\d{4}([ -]\d{4}){2,}", stripped):
        return False  # grouped like a card or IBAN (one that failed its checksum), not like a phone
    before = text[max(0, start - 20) : start]
    if REFERENCE_WORDS.search(before) or re.search(r"[$£€¥]\s*$", before):
        return False
    grouped = bool(re.search(r"[ ().-]", stripped))
    international = stripped.startswith(("+", "00", "("))
    trunk = stripped.startswith("0") and len(digits) >= 10
    # An ungrouped run of digits without + or a trunk 0 is more likely an order or account number.
    return international or trunk or (grouped and len(digits) >= 10)


def find_personal_data(text: str) -> list[Redaction]:
    found: list[Redaction] = []

    def free(start: int, end: int) -> bool:
        return all(end <= r.start or start >= r.end for r in found)

    for match in IBAN.finditer(text):
        # The pattern may run into following words ("... 7654 32 today"): try the longest valid prefix.
        tokens = match.group().split(" ")
        for count in range(len(tokens), 0, -1):
            candidate = " ".join(tokens[:count])
            if iban_valid(candidate):
                found.append(Redaction("IBAN", match.start(), match.start() + len(candidate)))
                break
    for match in EMAIL.finditer(text):
        if free(match.start(), match.end()):
            found.append(Redaction("EMAIL", match.start(), match.end()))
    for match in CARD.finditer(text):
        digits = re.sub(r"\D", "", match.group())
        if 13 <= len(digits) <= 19 and luhn_valid(digits) and free(match.start(), match.end()):
            found.append(Redaction("CARD_NUMBER", match.start(), match.end()))
    for match in SSN.finditer(text):
        if free(match.start(), match.end()):
            found.append(Redaction("SSN", match.start(), match.end()))
    for match in PHONE.finditer(text):
        candidate = match.group().rstrip(" .-(")
        end = match.start() + len(candidate)
        if _phone_ok(text, match.start(), candidate) and free(match.start(), end):
            found.append(Redaction("PHONE", match.start(), end))
    return sorted(found, key=lambda r: r.start)


def redact(text: str) -> str:
    """Replace personal data with placeholders such as ``[EMAIL]`` and ``[CARD_NUMBER]``."""
    pieces: list[str] = []
    cursor = 0
    for item in find_personal_data(text):
        pieces.append(text[cursor : item.start])
        pieces.append(f"[{item.kind}]")
        cursor = item.end
    pieces.append(text[cursor:])
    return "".join(pieces)
