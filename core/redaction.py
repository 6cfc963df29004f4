"""Redact personal data before reviewers see a message.

Replaced by typed placeholders: e-mail addresses, payment card numbers (Luhn-checked), IBANs (mod-97 and
length checked), US social security numbers, phone numbers, IP addresses (v4 and v6, checked by
``ipaddress``), UK National Insurance numbers, a name the customer gives ("my name is ...", "Hi, I'm Sarah",
"Thanks, John", "Mr Smith", "my husband Tom", "the name on my card is ..."), a date of birth ("born on ...",
"DOB ..."), an ID number named as one ("passport number ...", "driving licence ..."), UK postcodes, a postcode
or ZIP code named as one, street addresses ("221B Baker Street"), bank details named as such ("account number
...", "sort code ..."), and secrets ("my pin is 1234", "cvv 123", "password: ..."). Look-alikes stay: order
and reference numbers, amounts, dates and times that nobody called a birth date, version numbers, card numbers
that fail the Luhn check, IBANs that fail the checksum, "my name is" followed by something that is not a name
("my name is wrong on the card"), capitalised words after "I am" or a sign-off that are not names ("I am
Unable", "Thanks Again"), and capitals in a message typed in Title Case. The original text is kept only in the
turn log, visible to operators.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![\w-])")
DIGIT_RUN = re.compile(r"(?<![\w-])\d+(?:[ -]\d+)*(?![\w-])")  # digit groups joined by spaces or hyphens
# How card numbers are printed and typed (16 digits: 4-4-4-4; American Express 15: 4-6-5; Diners 14: 4-6-4;
# 19: 4-4-4-4-3; old 13-digit Visa: 4-4-5 or 4-4-4-1). A card among other digits ("order 12 4111 1111 1111
# 1111") is looked for in these shapes only.
CARD_SHAPES = frozenset({(4, 4, 4, 4), (4, 6, 5), (4, 6, 4), (4, 4, 4, 4, 3), (4, 4, 5), (4, 4, 4, 1)})
IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?:[ ]?[A-Za-z0-9]){11,30}(?![A-Za-z0-9])")
SSN = re.compile(r"(?<![\w-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w-])")
PHONE = re.compile(r"(?<![\w+/])(?:\+|00)?\(?\d[\d ().-]{6,}\d(?![\w])")
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
    r"(?<![\w/.-])\d{1,5}[A-Za-z]?,?\s+(?:[A-Z][a-z]+\s+){1,3}"  # not a date's or code's last digits
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
# Bank details named as such: an account number ("account number 12345678"), a sort code, routing (ABA) or
# BSB number ("sort code 12-34-56").
ACCOUNT_NUMBER = re.compile(
    r"\b(?:account|acct|a/c)(?: (?:number|no\.?|num|#))?\s*(?:is|:|-|=)?\s*(\d(?:[ -]?\d){5,16})(?![\w-])",
    re.IGNORECASE,
)
BANK_CODE = re.compile(
    r"\b(?:sort ?code|routing(?: (?:number|no\.?))?|aba(?: (?:number|no\.?))?|bsb)\s*(?:is|:|-|=)?\s*"
    r"(\d(?:[ -]?\d){5,8})(?![\w-])",
    re.IGNORECASE,
)
# Secrets: a PIN, card security code or one-time code named as one, with its digits ("my pin is 1234",
# "cvv 123"); a password or username given as one ("password: Summer2024!", "my username is jdoe84").
NAMED_CODE = re.compile(
    r"\b(?:pin(?: ?(?:code|number|no\.?))?|cvv2?|cvc2?|csc|security code|passcode|one[- ]time (?:pass)?code"
    r"|otp|verification code|auth(?:entication)? code|2fa code|sms code)\s*(?:is|was|:|=|-)?\s*"
    r"(\d{3,8})(?![\w-])",
    re.IGNORECASE,
)
NAMED_SECRET = re.compile(
    r"\b(?:(password|passwd|pwd|passphrase|pass phrase)|(user ?name|user id|login(?: name| id)?))"
    r"\s*(?:(?:is|was)\s+|[:=]\s*)(\S{2,64})",
    re.IGNORECASE,
)
# Words after "my password is" that say something about it rather than give it ("my password is not working").
NOT_SECRETS = frozenset(
    """wrong not incorrect invalid expired locked blocked changed reset forgotten lost stolen compromised too
    very the a an my same different correct right fine ok okay working weak strong long short new old being
    still no now there that this required needed missing saved stored hacked leaked known simple easy hard
    secure safe case accepted rejected asked shown empty blank always never also just only definitely
    wrong. right. correct. in on at for of from with by and or but since case-sensitive""".split()
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
# A name slot: as after "my name is", a lower-case name counts ("the name on my card is jane doe").
NAME_SLOT = re.compile(
    r"\b(?:(?:the )?name on (?:the|my|our) (?:card|account)(?: is| says| reads|:)"
    r"|(?:account|card) ?holder(?:'s)? name(?: is|:))\s+",
    re.IGNORECASE,
)
# After these only a capitalised word is a name, and only in a message whose capitals mean something.
NAME_TITLE = re.compile(r"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof)\.?[ ]+")  # "Mr Smith": case-sensitive
NAME_RELATION = re.compile(
    r"\bmy (?:husband|wife|partner|son|daughter|mother|mum|mom|father|dad|brother|sister|friend|colleague"
    r"|boss|child|kid|boyfriend|girlfriend|fianc[eé]e?|grandson|granddaughter|grandmother|grandfather|grandma"
    r"|grandpa|aunt|uncle|niece|nephew|cousin|flatmate|roommate|landlord|landlady|tenant|carer),?[ ]+",
    re.IGNORECASE,
)
NAME_HOLDER = re.compile(
    r"\b(?:in the name of|under the name(?: of)?|(?:account|card) ?holder(?: is)?)[ ]+", re.IGNORECASE
)
GREETING = (
    r"(?:hi|hello|hey|hiya|good (?:morning|afternoon|evening)|dear [A-Za-z]+)(?: there| all| team| everyone)?"
)
# "Hi, I'm Sarah": "I am" and "this is" give a name after a greeting, or at the start of the message when the
# name ends it or a clause ("I'm Tom, ...", "This is Ana here").
SELF_INTRO = re.compile(rf"^\W*(?:({GREETING})\W+)?(?:this is|i am|i'm|i’m|im)[ ]+", re.IGNORECASE)
# The same after a clause, where the name ends the message or a clause: "my card has not come, I am Sarah
# Jones", "Still waiting. This is Tom here."
CLAUSE_SELF_INTRO = re.compile(r"[,.;!?][ \t]+(?:this is|i am|i'm|i’m|im)[ ]+", re.IGNORECASE)
AFTER_SELF_NAME = re.compile(r"\s*(?:$|[,.!;:\n]|(?:here|speaking|from)\b)", re.IGNORECASE)
DEAR = re.compile(r"^\W*dear[ ]+", re.IGNORECASE)
# Where capitals say nothing (a message in lower case), a word there is a name only if it is a common first
# name that is no everyday word (core/data/first_names.txt says where the list comes from).
FIRST_NAMES = frozenset(
    line.strip()
    for line in (Path(__file__).parent / "data" / "first_names.txt").read_text(encoding="utf-8").splitlines()
    if line.strip() and not line.startswith("#")
)
SIGN_OFF = re.compile(
    r"(?:^|(?<=\W))(?:(?:many thanks|thanks(?: again| a lot| so much)?|thank you(?: very much| so much)?)"
    r"(?: for (?:your|the|all the|all your) help)?|thx"
    r"|kind regards|best regards|warm regards|regards|best wishes|best|cheers|sincerely"
    r"|yours(?: truly| sincerely| faithfully)?)[ \t]*[,.!:-]*\s*(?:-\s*)?(?=[A-Za-z])",
    re.IGNORECASE,
)
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
    afternoon evening monday tuesday wednesday thursday friday saturday sunday
    apple google visa mastercard amex paypal old mine fine incomplete outdated""".split()
)
# Words that follow a greeting, a sign-off or "I am" and are not a name ("I am Unable to log in", "Thanks
# Again", "Dear Support Team", "I'm British"): checked where only a capital marks a name.
NOT_NAMES_CAPITALISED = NOT_NAMES | frozenset(
    """able unable new sure happy unhappy sorry afraid abroad overseas currently already really also much
    lot guys mate pal buddy folks heaps loads all everyone everybody team support customer customers
    service services staff helpdesk bank banking sirs advance urgent hello hi hey thanks thank cheers
    regards best kind warm british english scottish welsh irish american canadian australian german
    french spanish italian dutch polish indian chinese japanese european african asian mexican brazilian
    portuguese romanian russian ukrainian turkish swiss swedish norwegian danish finnish greek pakistani
    nigerian filipino locked blocked charged confused worried frustrated annoyed disappointed concerned
    interested stuck surprised shocked tired scared pleased satisfied dissatisfied married retired
    employed unemployed based located registered verified approved declined rejected finally actually
    only literally totally completely absolutely extremely unlikely crazy absurd insane awful stupid
    silly great good bad nice amazing strange weird odd important serious fraud scam theft ok okay lost late
    early ready gutted livid broke desperate upset angry furious sick ill busy free home away online offline
    disabled owed premium standard metal plus user member client owner student business personal""".split()
)
# Endings of longer words that read as a verb, an adjective or a nationality after "I am" ("I am Trying",
# "I'm Nervous", "I'm Vietnamese"): checked only there, since surnames end so too ("Mr Manning").
NOT_NAME_ENDINGS = ("ing", "ous", "ful", "ive", "able", "ible", "ese", "ish")
DATE_LIKE = re.compile(r"^\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}$")
REFERENCE_WORDS = re.compile(
    r"(order|invoice|ref(erence)?|tracking|ticket|case|transaction|account no|booking|#)\W{0,3}$",
    re.IGNORECASE,
)


# What each placeholder stands for (reviewers see these where personal data was).
PLACEHOLDERS = {
    "EMAIL": "an e-mail address",
    "PHONE": "a phone number",
    "CARD_NUMBER": "a payment card number",
    "IBAN": "a bank account number (IBAN)",
    "SSN": "a social security number",
    "ID_NUMBER": "an ID number",
    "IP_ADDRESS": "an IP address",
    "NAME": "a person's name",
    "DATE_OF_BIRTH": "a date of birth",
    "POSTCODE": "a postcode",
    "ADDRESS": "a street address",
    "ACCOUNT_NUMBER": "a bank account number",
    "BANK_CODE": "a bank sort code or routing number",
    "SECRET": "a password, PIN or security code",
    "USERNAME": "a username",
}
PLACEHOLDER = re.compile(r"\[(" + "|".join(PLACEHOLDERS) + r")\]")


@dataclass(frozen=True)
class Redaction:
    kind: str
    start: int
    end: int


def _card_numbers(run: re.Match[str]) -> Iterator[tuple[int, int]]:
    """The card numbers in a run of digit groups: the whole run when it is one (13 to 19 digits, Luhn), else
    each stretch of whole groups, longest first, that is typed as a card is (one group of 13 to 19 digits or
    a shape of ``CARD_SHAPES``) and passes Luhn. So digits before or after a card (an amount, an order or
    phone number) do not hide it."""
    digits = re.sub(r"\D", "", run.group())
    if 13 <= len(digits) <= 19 and luhn_valid(digits):
        yield run.start(), run.end()
        return
    groups = [(m.start(), m.end()) for m in re.finditer(r"\d+", run.group())]
    first = 0
    while first < len(groups):
        for last in range(len(groups) - 1, first - 1, -1):
            sizes = tuple(end - start for start, end in groups[first : last + 1])
            card_like = sizes in CARD_SHAPES or (len(sizes) == 1 and 13 <= sizes[0] <= 19)
            span = run.group()[groups[first][0] : groups[last][1]]
            if card_like and luhn_valid(re.sub(r"\D", "", span)):
                yield run.start() + groups[first][0], run.start() + groups[last][1]
                first = last
                break
        first += 1


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


# IBAN lengths by country (the SWIFT IBAN registry): a checksum passes by chance once in 97 tries, so "GB82 …
# 32 to GB33" must not pass as a longer IBAN. Countries not listed: any length from 15 to 34.
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29,
    "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip


def iban_valid(candidate: str) -> bool:
    compact = candidate.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34 or not compact[:2].isalpha() or not compact[2:4].isdigit():
        return False
    if len(compact) != IBAN_LENGTHS.get(compact[:2], len(compact)):
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


def _name_end(text: str, start: int, *, capitalised: bool, strict: bool = False) -> int:
    """End of the name that starts at ``start``: up to three words one space apart, none of them a NOT_NAMES
    word (each capitalised when ``capitalised``, and not an acronym); ``strict`` also turns away words that
    follow a greeting or "I am" without being a name ("Unable", "British", "Trying"). ``start`` itself when
    the first word is not a name."""
    end = start
    for count in range(3):
        if count and text[end : end + 1] != " ":
            break
        match = NAME_TOKEN.match(text, end + (1 if count else 0))
        if match is None or match.group().lower().strip("'’-") in NOT_NAMES:
            break
        if capitalised and not _capitalised_name(match.group(), strict=strict):
            break
        if capitalised and count and match.group().islower():
            break  # a lower-case first name stands alone: "Mr Kind jane@…" does not take "jane" on
        end = match.end()
        if match.group().endswith(("'s", "’s")):  # "Mr Smith's card": the name, not its 's
            return end - 2
    return end


def _capitalised_name(word: str, *, strict: bool) -> bool:
    bare = word.strip("'’-")
    lower = bare.lower()
    if bare.islower():  # "hi i'm sarah", "thanks tom": in lower case only a known first name counts
        return lower in FIRST_NAMES
    if not bare[:1].isupper() or (len(bare) > 1 and bare.isupper()):  # URGENT, ATM, UK: not names
        return False
    if bare in ("I", "I'm", "I’m"):  # "Mr John I am ...": the name ends before "I"
        return False
    return not strict or (
        lower not in NOT_NAMES_CAPITALISED and not (len(lower) > 5 and lower.endswith(NOT_NAME_ENDINGS))
    )


SENTENCE_WORD = re.compile(r"(^|[.!?\n]\s*)?([A-Za-z][A-Za-z'’-]*)")


def _plainly_a_name(words: str) -> bool:
    """Words after "I am" that are a name wherever the sentence goes on ("I am John and my card is lost", "I'm
    Ahmed Khan and ..."): a listed first name, or two or three capitalised words (each already past the
    strict not-a-name checks). A single other word needs the end of a clause after it ("I'm Tom, ...")."""
    parts = words.split()
    if len(parts) >= 2:
        return all(part[:1].isupper() for part in parts)
    return len(parts) == 1 and parts[0].lower() in FIRST_NAMES


def capitals_mark_names(text: str) -> bool:
    """Whether a capital letter says anything in this message: not in Title Case, where nearly every word
    inside a sentence is capitalised and a capitalised word is no sign of a name. Words in capitals
    throughout (ATM, PIN, an IBAN's letters, SHOUTING) do not count either way: they are never taken as
    names."""
    inside = [
        m.group(2)
        for m in SENTENCE_WORD.finditer(text)
        if m.group(1) is None and m.group(2) not in ("I", "I'm", "I’m") and not m.group(2).isupper()
    ]
    capitalised = sum(1 for word in inside if word[0].isupper())
    return not (len(inside) >= 6 and capitalised >= 0.6 * len(inside))


def _names(text: str, found: list[Redaction]) -> list[tuple[int, int]]:
    """Spans of the names a message gives: introduced ("my name is", "call me"), in a name slot ("the name on
    my card is"), and, where capitals mark names, after a title ("Mr"), a relation ("my husband John"), "in
    the name of", a greeting's "I am" or "this is", "Dear", and in a closing sign-off ("Thanks, John").
    Whether capitals mark names is judged on the text as redacted so far (an address's capitals do not count),
    so that redacting a redacted text finds nothing more."""
    spans = [
        (match.end(), _name_end(text, match.end(), capitalised=match.group(1) is not None))
        for match in NAME_INTRO.finditer(text)
    ]
    spans += [(m.end(), _name_end(text, m.end(), capitalised=False)) for m in NAME_SLOT.finditer(text)]
    spans = [(start, end) for start, end in spans if all(end <= r.start or start >= r.end for r in found)]
    redacted = [*found, *(Redaction("NAME", start, end) for start, end in spans if end > start)]
    # Names redacted take their capitals away too: judge again on the text without them.
    if not capitals_mark_names(_replace(text, sorted(redacted, key=lambda r: r.start))):
        return spans
    for pattern in (NAME_TITLE, NAME_RELATION, NAME_HOLDER):
        spans += [(m.end(), _name_end(text, m.end(), capitalised=True)) for m in pattern.finditer(text)]
    for match in DEAR.finditer(text):
        spans.append((match.end(), _name_end(text, match.end(), capitalised=True, strict=True)))
    intro = SELF_INTRO.match(text)
    if intro:
        end = _name_end(text, intro.end(), capitalised=True, strict=True)
        if intro.group(1) or AFTER_SELF_NAME.match(text, end) or _plainly_a_name(text[intro.end() : end]):
            spans.append((intro.end(), end))
    for match in CLAUSE_SELF_INTRO.finditer(text):
        end = _name_end(text, match.end(), capitalised=True, strict=True)
        if end > match.end() and (
            AFTER_SELF_NAME.match(text, end) or _plainly_a_name(text[match.end() : end])
        ):
            spans.append((match.end(), end))
    for match in SIGN_OFF.finditer(text):
        end = _name_end(text, match.end(), capitalised=True, strict=True)
        if not text[end:].strip(" \t\n.!,:;)(-"):  # the name closes the message
            spans.append((match.end(), end))
    return spans


def find_personal_data(text: str) -> list[Redaction]:
    found: list[Redaction] = []

    def add(kind: str, start: int, end: int) -> None:  # the first finding wins where two overlap
        if end > start and all(end <= r.start or start >= r.end for r in found):
            found.append(Redaction(kind, start, end))

    # Most messages hold no digit, and then nothing that needs one can be there: those patterns are skipped.
    numbered = any(ch.isdigit() for ch in text)

    def with_digits(pattern: re.Pattern[str]) -> Iterator[re.Match[str]]:
        return pattern.finditer(text) if numbered else iter(())

    position = 0
    while numbered and (match := IBAN.search(text, position)):
        # The pattern may run into following words ("... 7654 32 today", "... 32 to GB33 ..."): take the
        # longest valid prefix, and look for the next IBAN right after it (the rest may hold one).
        position = match.end()
        tokens = match.group().split(" ")
        for count in range(len(tokens), 0, -1):
            candidate = " ".join(tokens[:count])
            if iban_valid(candidate):
                add("IBAN", match.start(), match.start() + len(candidate))
                position = match.start() + len(candidate)
                break
    for match in EMAIL.finditer(text):
        add("EMAIL", match.start(), match.end())
    for match in with_digits(DIGIT_RUN):
        for start, end in _card_numbers(match):
            add("CARD_NUMBER", start, end)
    for match in with_digits(ACCOUNT_NUMBER):
        add("ACCOUNT_NUMBER", match.start(1), match.end(1))
    for match in with_digits(BANK_CODE):
        if len(re.sub(r"\D", "", match.group(1))) in (6, 9):  # a sort code or BSB; a routing number
            add("BANK_CODE", match.start(1), match.end(1))
    for match in with_digits(NAMED_CODE):
        add("SECRET", match.start(1), match.end(1))
    for match in NAMED_SECRET.finditer(text):
        value = match.group(3).rstrip(".,!?;:)\"'")
        if value and value.lower() not in NOT_SECRETS and not PLACEHOLDER.fullmatch(value):
            add("SECRET" if match.group(1) else "USERNAME", match.start(3), match.start(3) + len(value))
    for match in with_digits(SSN):
        add("SSN", match.start(), match.end())
    for match in with_digits(NINO):
        add("ID_NUMBER", match.start(), match.end())
    for match in with_digits(NAMED_ID):
        if re.search(r"\d", match.group(1)):
            add("ID_NUMBER", match.start(1), match.end(1))
    for match in with_digits(BIRTH_DATE):
        add("DATE_OF_BIRTH", match.start(1), match.end(1))
    for pattern in (IPV4, IPV6):  # an IPv6 address may be all letters ("dead:beef::cafe")
        for match in pattern.finditer(text) if pattern is IPV6 else with_digits(pattern):
            if _ip_ok(text, match.start(), match.group()):
                add("IP_ADDRESS", match.start(), match.end())
    for match in with_digits(STREET):
        add("ADDRESS", match.start(), match.end())
    for match in with_digits(NAMED_POSTCODE):
        add("POSTCODE", match.start(1), match.end(1))
    for match in with_digits(UK_POSTCODE):
        add("POSTCODE", match.start(), match.end())
    for start, end in _names(text, found):
        add("NAME", start, end)
    position = 0
    while numbered and (match := PHONE.search(text, position)):
        candidate = match.group().rstrip(" .-(")
        start, end = match.start(), match.start() + len(candidate)
        position = match.end()
        taken = [r for r in found if r.start < end and start < r.end]
        if taken:  # "pin 1111 4111 12345678": the run holds a finding; read what is before and after it
            before = text[start : min(r.start for r in taken)].rstrip(" .-(")
            if before and _phone_ok(text, start, before):
                add("PHONE", start, start + len(before))
            position = max(r.end for r in taken)
        elif _phone_ok(text, start, candidate):
            add("PHONE", start, end)
    return sorted(found, key=lambda r: r.start)


def redact(text: str) -> str:
    """Replace personal data with placeholders such as ``[EMAIL]`` and ``[CARD_NUMBER]``."""
    return _replace(text, find_personal_data(text))


# Never stored, not even in the turn log operators read: PCI DSS forbids keeping a card's security code or
# PIN after the fact and wants card numbers unreadable where stored; a password or one-time code is no
# operator's business either.
NEVER_STORED = frozenset({"CARD_NUMBER", "SECRET"})


def scrub_secrets(text: str) -> str:
    """The text as it may be stored: card numbers and secrets (PINs, security and one-time codes, passwords)
    replaced, everything else as typed (operators see the rest in the turn log). It runs on every logged
    message, so one without a digit or a password word returns at once."""
    if not any(c.isdigit() for c in text) and not PASSWORD_WORD.search(text):
        return text
    return _replace(text, [r for r in find_personal_data(text) if r.kind in NEVER_STORED])


PASSWORD_WORD = re.compile(r"pass|pwd", re.IGNORECASE)


def _replace(text: str, found: list[Redaction]) -> str:
    pieces: list[str] = []
    cursor = 0
    for item in found:
        pieces.append(text[cursor : item.start])
        pieces.append(f"[{item.kind}]")
        cursor = item.end
    pieces.append(text[cursor:])
    return "".join(pieces)
