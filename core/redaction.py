"""Redact personal data before reviewers see a message.

Replaced by typed placeholders: e-mail addresses, payment card numbers (Luhn-checked), IBANs (mod-97
checked), US social security numbers, phone numbers, IP addresses (v4 and v6, checked by ``ipaddress``),
UK National Insurance numbers, a name the customer gives ("my name is ..."), a date of birth ("born on ...",
"DOB ..."), an ID number named as one ("passport number ...", "driving licence ..."), UK postcodes, a postcode
or ZIP code named as one, and street addresses ("221B Baker Street"). Look-alikes stay: order and reference
numbers, amounts, dates and times that nobody called a birth date, version numbers, card numbers that fail the
Luhn check, IBANs that fail the checksum, and "my name is" followed by something that is not a name ("my name
is wrong on the card"). The original text is kept only in the turn log, visible to operators.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![\w-])")
CARD = re.compile(r"(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w-])")
IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?:[ ]?[A-Za-z0-9]){11,30}(?![A-Za-z0-9])")
SSN = re.compile(r"(?<![\w-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w-])")
PHONE = re.compile(r"(?<![\w+])(?:\+|00)?\(?\d[\d ().-]{6,}\d(?![\w])")
IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)")
IPV6 = re.compile(r"(?<![\w:])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![\w:])")
VERSION_WORDS = re.compile(r"(version|ver\.?|v|release|build|firmware|app)\W{0,3}$", re.IGNORECASE)
# UK National Insurance number: two prefix letters (some never used), six digits, a suffix A-D.
NINO = re.compile(
    r"\b(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b"
)
UK_POSTCODE = re.compile(r"\b(?:GIR ?0AA|[A-PR-UWYZ][A-HK-Y]?\d[A-Z\d]? ?\d[ABD-HJLNP-UW-Z]{2})\b")
NAMED_POSTCODE = re.compile(
    r"\b(?:zip(?: ?code)?|post ?code|postal code)\s*(?:is|:|-)?\s*"
    r"(\d{5}(?:-\d{4})?|[A-Za-z]\d[A-Za-z] ?\d[A-Za-z]\d|\d{4})(?![\w-])",
    re.IGNORECASE,
)
STREET = re.compile(
    r"\b\d{1,5}[A-Za-z]?,?\s+(?:[A-Z][a-z]+\s+){1,3}"
    r"(?:Street|St|Road|Rd|Avenue|Ave|Lane|Ln|Drive|Dr|Boulevard|Blvd|Way|Court|Ct|Place|Pl|Terrace|Close"
    r"|Crescent|Square|Sq|Parkway|Pkwy|Highway|Hwy|Gardens|Grove|Row|Mews|Strasse|Straße)\b\.?"
)
_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_DATE = (
    r"(?:\d{1,4}[./-]\d{1,2}[./-]\d{1,4}"
    rf"|\d{{1,2}}(?:st|nd|rd|th)?(?: of)? {_MONTH},? \d{{4}}"
    rf"|{_MONTH} \d{{1,2}}(?:st|nd|rd|th)?,? \d{{4}})"
)
BIRTH_DATE = re.compile(
    r"\b(?:born(?: on| in)?|date of birth|birth ?date|birthday|d\.?o\.?b\.?)"
    rf"(?:\s*(?:is|was|:|-))?\s*({_DATE})(?![\w])",
    re.IGNORECASE,
)
NAMED_ID = re.compile(
    r"\b(?:passport|driv(?:ing|er'?s?) licen[cs]e|licen[cs]e|national id(?:entity)?|id card|identity card"
    r"|national insurance|n\.?i\.?(?= (?:number|no))|social insurance|tax id|tax identification"
    r"|personal id(?:entity)?)"
    r"(?: number| no\.?| #| num)?\s*(?:is|:|-)?\s*([A-Za-z0-9][A-Za-z0-9-]{4,19})(?![\w-])",
    re.IGNORECASE,
)
NAME_INTRO = re.compile(
    r"\b(?:my (?:full |first |last |sur|given |family )?name(?: is|'s|’s|:)|name\s*:|(i am called|i'm called"
    r"|call me))\s+",
    re.IGNORECASE,
)  # group 1: an intro after which only a capitalised word is taken as a name ("call me back" stays)
NAME_TOKEN = re.compile(r"[A-Za-zÀ-ÖØ-öø-ÿ][A-Za-zÀ-ÖØ-öø-ÿ'’-]*")
# Words that follow "my name is" when what comes next is not a name ("my name is wrong on my card").
NOT_NAMES = frozenset(
    """a about above after again also an and any are as at back be because been before being below but by
    can changed correct could did different displayed do does done down due during each even ever for from
    had has have here how if in incorrect into is it its just listed misspelled misspelt missing more my
    needed no nor not now of off on once only or other our out over printed right same shown showing so
    spelled spelt still such that the their then there these this those through to too under until up
    very was wrong were what when where which while who why will with written yet you your later
    anytime anything asap please sir madam mr mrs ms miss dr today tomorrow tonight soon morning
    afternoon evening monday tuesday wednesday thursday friday saturday sunday""".split()
)
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


def _ip_ok(text: str, start: int, candidate: str) -> bool:
    if VERSION_WORDS.search(text[max(0, start - 12) : start]):
        return False  # "version 10.0.0.1" is a version, not an address
    try:
        address = ipaddress.ip_address(candidate)
    except ValueError:
        return False
    if address.version == 6:  # times (12:30:45) and other colon lists are not addresses
        return "::" in candidate or candidate.count(":") == 7
    return True


def _name_end(text: str, start: int, *, capitalised: bool) -> int:
    """End of the name that starts at ``start``: up to three words one space apart, none of them a NOT_NAMES
    word (each capitalised when ``capitalised``); ``start`` itself when the first word is not a name."""
    end = start
    for count in range(3):
        if count and text[end : end + 1] != " ":
            break
        match = NAME_TOKEN.match(text, end + (1 if count else 0))
        if match is None or match.group().lower().strip("'’-") in NOT_NAMES:
            break
        if capitalised and not match.group()[0].isupper():
            break
        end = match.end()
    return end


def find_personal_data(text: str) -> list[Redaction]:
    found: list[Redaction] = []

    def add(kind: str, start: int, end: int) -> None:  # the first finding wins where two overlap
        if end > start and all(end <= r.start or start >= r.end for r in found):
            found.append(Redaction(kind, start, end))

    for match in IBAN.finditer(text):
        # The pattern may run into following words ("... 7654 32 today"): try the longest valid prefix.
        tokens = match.group().split(" ")
        for count in range(len(tokens), 0, -1):
            candidate = " ".join(tokens[:count])
            if iban_valid(candidate):
                add("IBAN", match.start(), match.start() + len(candidate))
                break
    for match in EMAIL.finditer(text):
        add("EMAIL", match.start(), match.end())
    for match in CARD.finditer(text):
        digits = re.sub(r"\D", "", match.group())
        if 13 <= len(digits) <= 19 and luhn_valid(digits):
            add("CARD_NUMBER", match.start(), match.end())
    for match in SSN.finditer(text):
        add("SSN", match.start(), match.end())
    for match in NINO.finditer(text):
        add("ID_NUMBER", match.start(), match.end())
    for match in NAMED_ID.finditer(text):
        if re.search(r"\d", match.group(1)):
            add("ID_NUMBER", match.start(1), match.end(1))
    for match in BIRTH_DATE.finditer(text):
        add("DATE_OF_BIRTH", match.start(1), match.end(1))
    for pattern in (IPV4, IPV6):
        for match in pattern.finditer(text):
            if _ip_ok(text, match.start(), match.group()):
                add("IP_ADDRESS", match.start(), match.end())
    for match in STREET.finditer(text):
        add("ADDRESS", match.start(), match.end())
    for match in NAMED_POSTCODE.finditer(text):
        add("POSTCODE", match.start(1), match.end(1))
    for match in UK_POSTCODE.finditer(text):
        add("POSTCODE", match.start(), match.end())
    for match in NAME_INTRO.finditer(text):
        add("NAME", match.end(), _name_end(text, match.end(), capitalised=match.group(1) is not None))
    for match in PHONE.finditer(text):
        candidate = match.group().rstrip(" .-(")
        end = match.start() + len(candidate)
        if _phone_ok(text, match.start(), candidate):
            add("PHONE", match.start(), end)
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
