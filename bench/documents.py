"""Help documents: does an FAQ written as a Word document or printed to PDF read back as it was written
(``core.documents``), and how fast?

The demo knowledge base (``serving/demo_data``: 77 intents, each answer written for the demo bank, Markdown
with bold words) is written out as an FAQ: each intent's question (its first training question that ends
with "?", else its title with "?") followed by its answer, in sections of ten intents, in four layouts
that help documents use:

- ``headings``: a title, section headings, each question a smaller heading;
- ``bold``: the questions in bold at the size of the text, no headings (an FAQ sheet);
- ``manual``: numbered sections, each question numbered ("3.2 ") or labelled ("Q: " with "A: " answers);
- ``labels``: no headings and no bold, each question a plain paragraph labelled "Q: ", its answer "A: ";

each as a Word document (python-docx, the styles Word gives them) and as a PDF printed by Chromium (A4, a
running header and page numbers, as "Save as PDF" makes them). Read back through the import
(``core.kb_files``), the figures are: questions found, questions read word for word, answers read word for
word (PDF: the text without Markdown's bold, which a PDF keeps as a font and the reader does not carry
over; Word: the Markdown itself), pages and seconds. Nothing here is tuned: the documents are written from
the knowledge base as it is.

    .venv/bin/python bench/documents.py   # needs Debian's chromium (scripts/ensure-chromium.sh)

Writes bench/results/documents.json.
"""

from __future__ import annotations

import argparse
import csv
import html
import io
import json
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.kb_files import read_knowledge_base_files  # noqa: E402

DEMO = ROOT / "serving" / "demo_data"
LAYOUTS = ("headings", "bold", "manual", "labels")
PAPER = ("A4", "A5")  # A5: narrow lines, and more questions, answers and paragraphs cut by a page break
HEADER = '<div style="font-size:8pt;width:100%;text-align:right;margin-right:1cm">HelpLoop Bank help</div>'
FOOTER = (
    '<div style="font-size:8pt;width:100%;text-align:center">'
    'Page <span class="pageNumber"></span> of <span class="totalPages"></span></div>'
)


def faq() -> list[tuple[str, str]]:
    """(question, answer) for each demo intent, in the answers file's order."""
    with (DEMO / "examples.csv").open(newline="", encoding="utf-8") as handle:
        examples: dict[str, list[str]] = {}
        for row in csv.DictReader(handle):
            examples.setdefault(row["label"], []).append(row["text"].strip())
    with (DEMO / "answers.csv").open(newline="", encoding="utf-8") as handle:
        answers = list(csv.DictReader(handle))
    entries = []
    for row in answers:
        asked = [e for e in examples.get(row["label"], []) if e.endswith("?") and len(e) < 120]
        question = asked[0] if asked else row["title"].rstrip(".") + "?"
        entries.append((question[0].upper() + question[1:], row["answer"].strip()))
    return entries


def _inline_html(markdown: str) -> str:
    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html.escape(markdown))


def as_html(entries: list[tuple[str, str]], layout: str) -> str:
    title = "HelpLoop Bank: questions and answers"
    parts = {"bold": [f'<p class="title">{title}</p>'], "labels": [f"<p>{title}</p>"]}.get(
        layout, [f"<h1>{title}</h1>"]
    )
    for index, (question, answer) in enumerate(entries):
        section, number = divmod(index, 10)
        if number == 0 and layout in ("headings", "manual"):
            prefix = f"{section + 1} " if layout == "manual" else ""
            parts.append(
                f"<h2>{prefix}Topics {section * 10 + 1} to {min(section * 10 + 10, len(entries))}</h2>"
            )
        if layout == "headings":
            parts.append(f"<h3>{html.escape(question)}</h3><p>{_inline_html(answer)}</p>")
        elif layout == "bold":
            parts.append(f'<p class="q">{html.escape(question)}</p><p>{_inline_html(answer)}</p>')
        elif layout == "labels":
            parts.append(f"<p>Q: {html.escape(question)}</p><p>A: {_inline_html(answer)}</p>")
        elif index % 2:
            parts.append(f"<h3>Q: {html.escape(question)}</h3><p>A: {_inline_html(answer)}</p>")
        else:
            parts.append(
                f"<h3>{section + 1}.{number + 1} {html.escape(question)}</h3><p>{_inline_html(answer)}</p>"
            )
    style = (
        "body{font-family:'Liberation Serif',serif;font-size:11pt;line-height:1.3}"
        "h1{font-size:20pt}h2{font-size:15pt}h3{font-size:12.5pt}p{margin:0 0 8pt 0}"
        "p.q{font-weight:bold;margin-top:12pt;margin-bottom:3pt}p.title{font-size:18pt;font-weight:bold}"
    )
    head = f'<head><meta charset="utf-8"><style>{style}</style></head>'
    return f'<!doctype html><html lang="en">{head}<body>{"".join(parts)}</body></html>'


def as_docx(entries: list[tuple[str, str]], layout: str) -> bytes:
    import docx

    document = docx.Document()
    title = "HelpLoop Bank: questions and answers"
    document.add_paragraph(title, style=None if layout == "labels" else "Title")

    def answer(text: str) -> None:
        paragraph = document.add_paragraph()
        for position, piece in enumerate(re.split(r"\*\*(.+?)\*\*", text)):
            if piece:
                paragraph.add_run(piece).bold = position % 2 == 1

    for index, (question, text) in enumerate(entries):
        section, number = divmod(index, 10)
        if number == 0 and layout in ("headings", "manual"):
            prefix = f"{section + 1} " if layout == "manual" else ""
            document.add_heading(
                f"{prefix}Topics {section * 10 + 1} to {min(section * 10 + 10, len(entries))}", 1
            )
        if layout == "headings":
            document.add_heading(question, 2)
        elif layout == "bold":
            document.add_paragraph().add_run(question).bold = True
        elif layout == "labels":
            document.add_paragraph(f"Q: {question}")
        else:
            document.add_heading(
                f"Q: {question}" if index % 2 else f"{section + 1}.{number + 1} {question}", 2
            )
        labelled = layout == "labels" or (layout == "manual" and index % 2)
        answer(f"A: {text}" if labelled else text)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def print_pdfs(pages: dict[str, str], folder: Path, browser: Any = None) -> dict[tuple[str, str], bytes]:
    """Each page printed on each paper size, by ``browser`` (a Playwright Chromium) or one started here."""
    if browser is None:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            started = p.chromium.launch(
                executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-background-networking"]
            )
            try:
                return print_pdfs(pages, folder, started)
            finally:
                started.close()
    printed = {}
    page = browser.new_page()
    try:
        for layout, text in pages.items():
            source = folder / f"{layout}.html"
            source.write_text(text, encoding="utf-8")
            page.goto(source.as_uri())
            for size in PAPER:
                printed[(layout, size)] = page.pdf(
                    format=size,
                    margin={"top": "2cm", "bottom": "2cm", "left": "2cm", "right": "2cm"},
                    display_header_footer=True,
                    header_template=HEADER,
                    footer_template=FOOTER,
                )
    finally:
        page.close()
    return printed


def _words(text: str) -> str:
    return " ".join(text.split())


def read_back(
    name: str, content: bytes, entries: list[tuple[str, str]], *, keeps_bold: bool
) -> dict[str, Any]:
    pages = [0]
    started = time.perf_counter()
    kb = read_knowledge_base_files([(name, content)], progress=lambda _f, done, of: pages.__setitem__(0, of))
    seconds = time.perf_counter() - started
    read = {_words(i.examples[0]): i.answer for i in kb.intents.values()}
    questions = sum(1 for q, _ in entries if _words(q) in read)
    answers = 0
    wrong: list[dict[str, str]] = []
    for question, answer in entries:
        got = read.get(_words(question))
        expected = answer if keeps_bold else answer.replace("**", "")
        if got is not None and _words(got) == _words(expected):
            answers += 1
        elif len(wrong) < 3:
            wrong.append({"question": question, "expected": expected, "read": got or ""})
    return {
        "file": name,
        "bytes": len(content),
        "pages": pages[0] or None,
        "intents_read": len(kb.intents),
        "questions_found": questions,
        "answers_word_for_word": answers,
        "seconds": round(seconds, 3),
        "pages_per_second": round(pages[0] / seconds, 1) if pages[0] else None,
        "first_differences": wrong,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    run(args.out)


def run(out: Path, browser: Any = None) -> dict[str, Any]:
    """The bench: print and write the documents, read them back, print the table, write the JSON."""
    entries = faq()
    with tempfile.TemporaryDirectory() as scratch:
        pdfs = print_pdfs({layout: as_html(entries, layout) for layout in LAYOUTS}, Path(scratch), browser)
    rows = []
    for layout in LAYOUTS:
        rows.append(
            {"layout": layout, "format": "docx"}
            | read_back(f"{layout}.docx", as_docx(entries, layout), entries, keeps_bold=True)
        )
        for size in PAPER:
            rows.append(
                {"layout": layout, "format": f"pdf {size}"}
                | read_back(f"{layout}_{size}.pdf", pdfs[(layout, size)], entries, keeps_bold=False)
            )
    print(f"help documents read back ({len(entries)} questions and answers of the demo knowledge base):")
    print(
        f"{'layout':<10}{'format':<8}{'pages':>6}{'intents':>9}{'questions':>11}{'answers':>9}{'seconds':>9}"
        f"{'pages/s':>9}"
    )
    for row in rows:
        print(
            f"{row['layout']:<10}{row['format']:<8}{row['pages'] or '':>6}{row['intents_read']:>9}"
            f"{row['questions_found']:>11}{row['answers_word_for_word']:>9}{row['seconds']:>9.2f}"
            f"{row['pages_per_second'] or '':>9}"
        )
    out.mkdir(parents=True, exist_ok=True)
    result = {"questions": len(entries), "rows": rows}
    (out / "documents.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return result


if __name__ == "__main__":
    main()
