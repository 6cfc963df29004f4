"""An FAQ page saved as HTML, or an FAQ in Markdown, read as a knowledge base (core.faq_pages, and through
core.kb_files as an upload is): which questions are found, their answers as Markdown, and the errors that
name the file, line and field."""

from __future__ import annotations

import io
import re
import zipfile

import pytest

from core.faq_pages import FaqEntry, FaqPageError, read_html_faq, read_markdown_faq
from core.kb_files import KnowledgeBaseFormatError, read_knowledge_base_files

JSON_LD_PAGE = """<!doctype html><html><head><title>Help</title>
<script type="application/ld+json">{"@context": "https://schema.org", "@graph": [
 {"@type": "WebPage", "name": "Help"},
 {"@type": ["FAQPage", "WebPage"], "mainEntity": [
  {"@type": "Question", "name": "How do I reset my PIN?", "acceptedAnswer": {"@type": "Answer",
   "text":
"<p>Go to <b>Cards</b> &rarr; <a href='/pin'>PIN</a>.</p><ol><li>Open the app</li><li>Tap reset</li></ol>"}},
  {"@type": "Question", "name": "When will my card arrive?",
   "suggestedAnswer": [{"@type": "Answer", "text": "Within 5 working days."}]}]}]}
</script></head>
<body><h1>FAQ</h1><h2>Is this read twice?</h2><p>No: the JSON-LD is read first.</p></body></html>
"""

ACCORDION_PAGE = """<html><body><header><h1>Any questions?</h1><p>Log in</p></header>
<main><h1>Frequently asked questions</h1>
<section><h2>Cards</h2>
<h3>How do I freeze my card?</h3>
<p>Open the app and tap <strong>Freeze</strong>.<br>It takes a second.
<p>Unfreeze it the <a href="/help/unfreeze">same way</a>.
<h3>Can I have two cards?</h3>
<ul><li>Yes, one physical
<li>and one <em>virtual</em> card<ul><li>both free</li></ul></ul>
</section>
<div class="accordion"><div class="item"><h2 class="accordion-header"><button>Is there a fee?</button></h2>
<div class="accordion-body"><p>No fee in the EU.</p><script>track()</script></div></div></div>
<dl><dt>Who are we</dt><dd>A bank.</dd></dl>
</main><footer><h3>Need more help?</h3><p>Call us</p></footer></body></html>
"""


def test_schema_org_faq_data_is_read_first_with_its_answers_as_markdown() -> None:
    assert read_html_faq(JSON_LD_PAGE) == [
        FaqEntry(
            "How do I reset my PIN?", "Go to **Cards** → [PIN](/pin).\n\n1. Open the app\n2. Tap reset", 2
        ),
        FaqEntry("When will my card arrive?", "Within 5 working days.", 2),
    ]


def test_headings_and_terms_that_ask_are_answered_by_what_follows_them() -> None:
    entries = read_html_faq(ACCORDION_PAGE)
    assert [(e.question, e.line) for e in entries] == [
        ("How do I freeze my card?", 4),
        ("Can I have two cards?", 7),
        ("Is there a fee?", 11),
    ]  # not the header's, the footer's, a section title or a term that asks nothing
    assert entries[0].answer == (
        "Open the app and tap **Freeze**.\nIt takes a second.\n\nUnfreeze it the [same way](/help/unfreeze)."
    )
    assert entries[1].answer == "- Yes, one physical\n- and one *virtual* card\n  - both free"
    assert entries[2].answer == "No fee in the EU."  # the script left out
    terms = read_html_faq("<dl><dt>Where is my IBAN?</dt><dd>In <em>Account details</em>.</dd></dl>")
    assert terms == [FaqEntry("Where is my IBAN?", "In *Account details*.", 1)]


def test_a_lower_heading_that_asks_nothing_is_part_of_the_answer() -> None:
    page = (
        "<h2>How do I reset my PIN?</h2><h3>In the app</h3><p>Tap Reset.</p><h3>At an ATM</h3><p>Choose PIN."
        "</p><h3>Does it cost anything?</h3><p>No.</p><h2>Cards</h2><p>About cards.</p>"
    )
    assert read_html_faq(page) == [
        FaqEntry("How do I reset my PIN?", "**In the app**\n\nTap Reset.\n\n**At an ATM**\n\nChoose PIN.", 1),
        FaqEntry("Does it cost anything?", "No.", 1),  # a question, though lower: its own
    ]
    text = "## How do I reset my PIN?\n### In the app\nTap Reset.\n## Cards\nAbout cards.\n"
    assert read_markdown_faq(text) == [FaqEntry("How do I reset my PIN?", "**In the app**\nTap Reset.", 1)]


def test_details_and_summary_questions_are_read() -> None:
    page = (
        "<details><summary>How do I close my account?</summary><p>Go to Profile &gt; Close.</p></details>\n"
        "<details open><summary>Do you charge for top-ups?</summary>Top-ups are free.</details>"
    )
    assert read_html_faq(page) == [
        FaqEntry("How do I close my account?", "Go to Profile > Close.", 1),
        FaqEntry("Do you charge for top-ups?", "Top-ups are free.", 2),
    ]


def test_markdown_headings_that_ask_are_answered_by_the_text_under_them() -> None:
    text = (
        "# Help\n\n## How do I reset my PIN?\nGo to **Cards → PIN**.\n\n- open the app\n- tap reset\n\n"
        "## Fees\n### Is there a fee for transfers? ###\nNo fee in the EU.\n```\n# is this a heading?\n```\n"
    )
    assert read_markdown_faq(text) == [
        FaqEntry("How do I reset my PIN?", "Go to **Cards → PIN**.\n\n- open the app\n- tap reset", 3),
        FaqEntry("Is there a fee for transfers?", "No fee in the EU.\n```\n# is this a heading?\n```", 10),
    ]


@pytest.mark.parametrize(
    ("read", "text", "line", "message"),
    [
        (read_html_faq, "<h1>Cards</h1><p>We have cards.</p>", None, "no questions found: an FAQ page needs"),
        (read_markdown_faq, "# Notes\nNothing asked.\n", None, "write each question as a heading that ends"),
        (
            read_html_faq,
            "<h2>Where is my card?</h2>\n<h2>Why?</h2><p>Because.</p>",
            1,
            "has no answer under it",
        ),
        (
            read_markdown_faq,
            "## Fee?\nNone.\n## Fee?\nOne euro.\n",
            3,
            "'Fee?' is asked again with another answer (first on line 1)",
        ),
        (
            read_html_faq,
            '<p>x</p>\n<script type="application/ld+json">\n{"@type": "FAQPage",\n "mainEntity": [}\n'
            "</script>",
            4,
            "not valid JSON",
        ),
        (
            read_html_faq,
            '<script type="application/ld+json">{"@type": "FAQPage", "mainEntity": '
            '{"@type": "Question", "name": "Fee?"}}</script>',
            1,
            "the question 'Fee?' has no answer",
        ),
    ],
)
def test_a_page_that_cannot_be_read_is_refused_naming_the_line(
    read: object, text: str, line: int | None, message: str
) -> None:
    with pytest.raises(FaqPageError, match=re.escape(message)) as raised:
        read(text)  # type: ignore[operator]
    assert raised.value.line == line


def test_a_page_nested_past_any_real_one_is_read_without_exhausting_recursion() -> None:
    deep = "<div>" * 50_000 + "<h2>Is it deep?</h2><p>Very.</p>" + "</div>" * 50_000
    assert read_html_faq(deep) == [FaqEntry("Is it deep?", "Very.", 1)]  # the divs past 100 left out
    nested = "<ul><li>" * 20_000 + "<h2>Is it deeper?</h2><p>Yes.</p>" + "</li></ul>" * 20_000
    with pytest.raises(FaqPageError, match="no questions found"):  # a clear refusal, not a crash
        read_html_faq(nested)


def test_the_same_question_with_the_same_answer_is_kept_once() -> None:
    assert read_markdown_faq("## Fee?\nNone.\n## Fee?\nNone.\n") == [FaqEntry("Fee?", "None.", 1)]


def test_an_uploaded_page_becomes_intents_and_a_bad_one_names_the_file() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("site/help.html", ACCORDION_PAGE)
        archive.writestr("site/faq.md", "## Is there a fee for transfers?\nNo fee in the EU.\n")
    kb = read_knowledge_base_files([("site.zip", buffer.getvalue())])
    assert list(kb.intents) == [
        "is_there_a_fee_for_transfers",
        "how_do_i_freeze_my_card",
        "can_i_have_two_cards",
        "is_there_a_fee",
    ]
    fee = kb.intents["is_there_a_fee"]
    assert (fee.title, fee.examples, fee.answer) == (
        "Is there a fee?",
        ["Is there a fee?"],
        "No fee in the EU.",
    )
    with pytest.raises(KnowledgeBaseFormatError) as raised:
        read_knowledge_base_files([("help.htm", b"<h2>Where is my card?</h2><h2>Cards</h2>")])
    assert str(raised.value).startswith(
        "help.htm:1: field 'answer' the question 'Where is my card?' has no answer under it"
    )
    with pytest.raises(
        KnowledgeBaseFormatError, match=r"\.html \(an FAQ page\), \.md, or a help document as \.docx or \.pdf"
    ):
        read_knowledge_base_files([("help.txt", b"Fee? None.")])
