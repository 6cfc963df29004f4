import pytest

from core.redaction import iban_valid, luhn_valid, redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail me at jane.doe+bank@example.co.uk please", "mail me at [EMAIL] please"),
        ("my card 4111 1111 1111 1111 was charged", "my card [CARD_NUMBER] was charged"),
        ("card number 5500-0000-0000-0004", "card number [CARD_NUMBER]"),
        ("card 4111111111111111 blocked", "card [CARD_NUMBER] blocked"),
        ("send it to GB82 WEST 1234 5698 7654 32 today", "send it to [IBAN] today"),
        ("IBAN DE89370400440532013000", "IBAN [IBAN]"),
        ("call me on +44 20 7946 0958", "call me on [PHONE]"),
        ("my number is 07700 900123", "my number is [PHONE]"),
        ("reach me at (555) 123-4567 after 5", "reach me at [PHONE] after 5"),
        ("or 555-123-4567", "or [PHONE]"),
        ("ssn 123-45-6789", "ssn [SSN]"),
        ("a@b.io and +1 415 555 0100", "[EMAIL] and [PHONE]"),
    ],
)
def test_personal_data_is_replaced_by_typed_placeholders(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "my order 123456789 has not arrived",
        "order #1234567890123 is late",
        "invoice ref 2026-0042-7781",
        "I was charged £1,234.56 twice",
        "I paid $12,500.00 on 2026-11-28",
        "transfer of 10.000,00 EUR on 28/11/2026 at 12:30",
        "card ending 1234",
        "4111 1111 1111 1112 is not a valid card",
        "GB82 WEST 1234 5698 7654 33 has a bad checksum",
        "tracking number 940010000000000000",
        "version 1.2.3 of the app",
        "the 3 cards cost 15 each",
    ],
)
def test_look_alikes_stay(text: str) -> None:
    assert redact(text) == text


def test_checksums() -> None:
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert iban_valid("GB82 WEST 1234 5698 7654 32") and not iban_valid("GB82 WEST 1234 5698 7654 33")
    assert not iban_valid("XX00")
