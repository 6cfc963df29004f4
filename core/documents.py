"""A company's help documents as a knowledge base: an FAQ or manual written in Word (``.docx``) or saved as a
PDF, read as Azure question answering reads such files (HelpLoop reads the text; it recognises no scans).

Both are turned into an outline, the tree ``core.faq_pages`` reads an FAQ page into, and read by its
heading rule: each heading that ends with "?" is a question, answered by what follows it up to the next
heading of its level or above, or the next question (a lower heading that asks nothing, "In the app", is a
bold line of the answer). What counts as a heading:

- **Word**: paragraphs in a heading style (Heading 1–9, Title, a style based on one, or any paragraph given
  an outline level), and a paragraph set in bold all through that ends with "?", the usual
  way an FAQ sheet marks its questions. Lists (bulleted or numbered), bold, italics, links, line breaks and
  tables are kept in the answers as Markdown; the table of contents, headers and footers are left out.
- **PDF**: lines set larger than the body text (one level per size, largest first), and lines of the body's
  size set in bold all through that end with "?". The running header and footer (a line at the top or
  bottom of the page that repeats on the pages, and page numbers) is left out, lines are joined into
  paragraphs by their spacing, a paragraph that runs over a page break is joined again, indented lines
  that start with a bullet or a number (or lines indented together) become lists, and ligatures (ﬁ, ﬂ) are
  read as their letters. Pages are read top to bottom: a page set in two columns is read across them.
- **Both**: a paragraph labelled as a question ("Q: ", "Question 3: ") that ends with "?", in any type, is
  a question too, and its answer's label ("A: ") is left off; so is a question's number ("1.2 ").

Errors name the paragraph (Word: counted from the start of the document, tables counted as one) or the
page (PDF) of the question, since neither file has lines."""

from __future__ import annotations

import io
import math
import re
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.faq_pages import QUESTION_END, Element, FaqEntry, read_outline

MAX_DOCUMENT_BYTES = 50 * 1024 * 1024  # a .docx's unpacked size (a small zip can unpack to far more)
MAX_PDF_PAGES = 1000

HEADING_STYLE = re.compile(
    r"^heading\s*(\d)$", re.I
)  # Word keeps built-in names in English in every language
LIGATURES = str.maketrans({"ﬀ": "ff", "ﬁ": "fi", "ﬂ": "fl", "ﬃ": "ffi", "ﬄ": "ffl", "ﬅ": "st", "ﬆ": "st"})
BOLD_FONT = re.compile(r"bold|black|heavy|semibold|demibold|demi\b|,b$", re.I)
LIST_MARKER = re.compile(
    r"^(?:(?P<number>\(?(?:\d{1,3}|[a-zA-Z]|[ivxIVX]{1,4})[.)])|(?P<bullet>[•◦▪▫●○■□‣⁃∙·\-–—*\uf0b7\uf0a7]))\s+"
)
PAGE_NUMBER = re.compile(r"^(?:page\s+)?[-–—]?\s*\d{1,4}\s*[-–—]?(?:\s*(?:/|of)\s*\d{1,4})?$", re.I)
NUMBERED_QUESTION = re.compile(r"^(?:\d{1,3}(?:\.\d{1,3})*\.?|\d{1,3}\))\s+(?=\S)")
QUESTION_LABEL = re.compile(r"^(?:q|question)\s*\d{0,3}\s*[:.)]\s*", re.I)
ANSWER_LABEL = re.compile(r"^(?:a|answer)\s*\d{0,3}\s*[:.)]\s*", re.I)
LABELLED_LINE = re.compile(r"^(?:q|question|a|answer)\s*\d{0,3}\s*:", re.I)  # starts its own paragraph
SENTENCE_END = (".", "!", "?", ":", ";", "。", "？", "！")


class DocumentError(ValueError):
    """A document that cannot be read at all (not a Word document, a protected PDF, a scan): no location."""


ProgressCallback = Callable[[int, int], None]  # (pages read, pages) while a PDF is read


def _tidy(entry: FaqEntry) -> FaqEntry:
    """A question without its number ("1.2 ", "3) ") or label ("Q: ", "Question 4."), and after a label its
    answer without one ("A: "): a manual's way of setting them, not the customer's words."""
    question = NUMBERED_QUESTION.sub("", entry.question, count=1)
    labelled = QUESTION_LABEL.match(question)
    answer = entry.answer
    if labelled:
        question = question[labelled.end() :]
        answer = ANSWER_LABEL.sub("", answer, count=1)
    return FaqEntry(question or entry.question, answer, entry.line)


def _questions(root: Element, where: str, how: str) -> list[FaqEntry]:
    """The document's questions by the heading rule (``where``: "on page {}"), or the error that says ``how``
    a question is written when none is found."""
    entries = read_outline(root, tidy=_tidy, where=where.format)
    if not entries:
        raise DocumentError(f"no questions found: {how}")
    return entries


# --------------------------------------------------------------------------------------------- Word


def read_docx_faq(content: bytes) -> list[FaqEntry]:
    """The questions and answers of a Word document (see the module's docstring); each entry's ``line`` is
    the paragraph of its question."""
    _check_unpacked_size(content)
    import docx  # python-docx: imported here, as only an import of a .docx needs it

    try:
        document = docx.Document(io.BytesIO(content))
    except (
        Exception
    ) as exc:  # python-docx raises zip, XML, KeyError and its own errors for a file that is no .docx
        raise DocumentError(f"not a readable Word document (.docx): {exc}") from None
    root = Element("#root", {}, 1)
    try:
        reader = _WordReader(document)
        for number, block in enumerate(document.iter_inner_content(), start=1):
            reader.add(root, block, number)
    except Exception as exc:  # a part or a reference the document lacks (a style, a link's target)
        raise DocumentError(f"not a readable Word document (.docx): {type(exc).__name__}: {exc}") from None
    return _questions(
        root,
        "in paragraph {}",
        "put each question in a heading style (Heading 1, 2, …) or in bold, ending with '?', with its "
        "answer under it",
    )


def _check_unpacked_size(content: bytes) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            unpacked = sum(member.file_size for member in archive.infolist())
    except zipfile.BadZipFile:
        raise DocumentError(
            "not a Word document (.docx): a .doc file from Word 97-2003 must be saved as .docx first"
        ) from None
    if unpacked > MAX_DOCUMENT_BYTES:
        raise DocumentError(f"unpacks to more than {MAX_DOCUMENT_BYTES // (1024 * 1024)} MB")


@dataclass
class _Style:
    level: int | None  # the heading level it gives (1-6), or None
    bold: bool
    italic: bool
    listed: bool  # the style numbers its paragraphs (List Bullet, List Number)
    toc: bool


class _WordReader:
    """Paragraphs and tables of a Word document as outline elements (lists of consecutive list paragraphs
    gathered into one list)."""

    def __init__(self, document: Any) -> None:
        self.styles: dict[str, _Style] = {}
        self.numbering = self._numbering(document)
        self.current_list: Element | None = None

    @staticmethod
    def _numbering(document: Any) -> Any:
        try:
            return document.part.numbering_part.element
        except (KeyError, NotImplementedError, AttributeError):
            return None

    def style(self, style: Any) -> _Style:
        """What a paragraph style gives, following the styles it is based on."""
        if style is None:
            return _Style(None, False, False, False, False)
        key = style.style_id or style.name or ""
        if key in self.styles:
            return self.styles[key]
        self.styles[key] = _Style(None, False, False, False, False)  # a loop of based-on styles ends here
        base = self.style(style.base_style)
        name = (style.name or "").strip().lower()
        level = base.level
        outline = _outline_level(style.element.pPr)
        match = HEADING_STYLE.match(name)
        if name == "title":
            level = 1
        elif match:
            level = min(int(match.group(1)), 6)
        elif outline is not None:
            level = outline
        font = style.font
        found = _Style(
            level=level,
            bold=base.bold if font.bold is None else bool(font.bold),
            italic=base.italic if font.italic is None else bool(font.italic),
            listed=base.listed or _num_id(style.element.pPr) is not None,
            toc=base.toc or name.startswith("toc"),
        )
        self.styles[key] = found
        return found

    def add(self, root: Element, block: Any, number: int) -> None:
        from docx.table import Table

        if isinstance(block, Table):
            self.current_list = None
            root.children.append(self._table(block, number))
            return
        style = self.style(block.style)
        if style.toc:
            return
        p_pr = block._p.pPr
        children = self._inline(block, style)
        text = " ".join("".join(_plain(c) for c in children).split())
        if not text:
            return  # an empty paragraph (spacing) ends nothing
        level = _outline_level(p_pr)
        level = style.level if level is None else level
        num_id = _num_id(p_pr)
        listed = (num_id is not None and num_id != "0") or (style.listed and num_id is None)
        if level is not None:
            self.current_list = None
            root.children.append(Element(f"h{level}", {}, number, [text]))
        elif (_all_bold(children) or QUESTION_LABEL.match(text)) and text.endswith(QUESTION_END):
            self.current_list = None
            root.children.append(Element("dt", {}, number, [text]))  # an FAQ sheet's bold question
        elif listed:
            tag = "ol" if self._ordered(p_pr, block) else "ul"
            if self.current_list is None or self.current_list.tag != tag:
                self.current_list = Element(tag, {}, number)
                root.children.append(self.current_list)
            self.current_list.children.append(Element("li", {}, number, children))
        else:
            self.current_list = None
            root.children.append(Element("p", {}, number, children))

    def _ordered(self, p_pr: Any, block: Any) -> bool:
        num_id, ilvl = _num_id(p_pr), _ilvl(p_pr)
        if num_id is None or self.numbering is None or not (num_id.isdigit() and ilvl.isdigit()):
            return "number" in (block.style.name or "").lower() if block.style is not None else False
        formats = self.numbering.xpath(
            f'./w:abstractNum[@w:abstractNumId=string(/w:numbering/w:num[@w:numId="{num_id}"]'
            f'/w:abstractNumId/@w:val)]/w:lvl[@w:ilvl="{ilvl}"]/w:numFmt/@w:val'
        )
        return bool(formats) and formats[0] not in ("bullet", "none")

    def _inline(self, paragraph: Any, style: _Style) -> list[Element | str]:
        """The paragraph's runs as inline elements: bold, italic, links and line breaks; neighbouring runs of
        one kind are joined first, so Word's many runs do not become many bold spans."""
        from docx.text.hyperlink import Hyperlink

        pieces: list[tuple[str, bool, bool, str]] = []  # text, bold, italic, link
        for item in paragraph.iter_inner_content():
            runs, url = (item.runs, item.url) if isinstance(item, Hyperlink) else ([item], "")
            for run in runs:
                bold = _flag(run.bold, _character_style(run, "bold"), style.bold)
                italic = _flag(run.italic, _character_style(run, "italic"), style.italic)
                text = run.text.replace("\t", " ")
                if text:
                    if pieces and pieces[-1][1:] == (bold, italic, url):
                        pieces[-1] = (pieces[-1][0] + text, bold, italic, url)
                    else:
                        pieces.append((text, bold, italic, url))
        children: list[Element | str] = []
        for text, bold, italic, url in pieces:
            nodes: list[Element | str] = []
            for position, part in enumerate(text.split("\n")):
                if position:
                    nodes.append(Element("br", {}, 0))
                if part:
                    nodes.append(part)
            node: list[Element | str] = nodes
            if italic and text.strip():
                node = [Element("em", {}, 0, node)]
            if bold and text.strip():
                node = [Element("strong", {}, 0, node)]
            if url:
                node = [Element("a", {"href": url}, 0, node)]
            children += node
        return children

    def _table(self, table: Any, number: int) -> Element:
        rows = []
        for row in table.rows:
            cells = [Element("td", {}, number, [" ".join(cell.text.split())]) for cell in row.cells]
            rows.append(Element("tr", {}, number, list(cells)))
        return Element("table", {}, number, list(rows))


def _outline_level(p_pr: Any) -> int | None:
    """A paragraph's (or style's) outline level as a heading level 1-6; None for body text."""
    if p_pr is None:
        return None
    found = p_pr.xpath("./w:outlineLvl/@w:val")
    if not found or not str(found[0]).isdigit() or int(found[0]) >= 9:
        return None
    return min(int(found[0]) + 1, 6)


def _num_id(p_pr: Any) -> str | None:
    if p_pr is None:
        return None
    found = p_pr.xpath("./w:numPr/w:numId/@w:val")
    return str(found[0]) if found else None


def _ilvl(p_pr: Any) -> str:
    found = p_pr.xpath("./w:numPr/w:ilvl/@w:val") if p_pr is not None else []
    return str(found[0]) if found else "0"


def _character_style(run: Any, attribute: str) -> bool | None:
    """Bold or italic from the run's character style (Word's "Strong", "Emphasis"), following its base."""
    style = run.style
    while style is not None and style.name not in (None, "Default Paragraph Font"):
        value = getattr(style.font, attribute)
        if value is not None:
            return bool(value)
        style = style.base_style
    return None


def _flag(direct: bool | None, character: bool | None, paragraph: bool) -> bool:
    if direct is not None:
        return bool(direct)
    return paragraph if character is None else character


def _plain(node: Element | str) -> str:
    if isinstance(node, str):
        return node
    return " " if node.tag == "br" else "".join(_plain(c) for c in node.children)


def _all_bold(children: list[Element | str]) -> bool:
    """Whether every visible character is inside bold."""
    found = False
    for child in children:
        if isinstance(child, str):
            if child.strip():
                return False
        elif child.tag == "strong":
            found = found or bool(_plain(child).strip())
        elif child.tag != "br" and not _all_bold(child.children):
            return False
        elif child.tag != "br":
            found = True
    return found


# ---------------------------------------------------------------------------------------------- PDF


@dataclass
class _Line:
    page: int
    text: str
    size: float
    bold: bool
    x0: float
    x1: float
    y0: float
    y1: float
    margin: bool  # in the page's top or bottom 12 %, where running headers and footers are
    bullet: bool = False  # a small drawn mark just left of it (a browser draws list bullets, not text)


@dataclass
class _Block:
    kind: str  # "h1".."h6", "dt" (a bold question), "strong" (a bold line), "p", "li"
    lines: list[_Line]
    ordered: bool = False
    marked: bool = False  # a list item that starts with a bullet or a number

    @property
    def text(self) -> str:
        text = ""
        for line in self.lines:
            if text.endswith(("-", "–", "—")) and text[-2:-1].isalnum() and line.text[:1].isalnum():
                text += line.text  # broken after a hyphen or a dash: "self-" "service", "1–" "5 days"
            else:
                text = f"{text} {line.text}" if text else line.text
        return text


def read_pdf_faq(content: bytes, *, progress: ProgressCallback | None = None) -> list[FaqEntry]:
    """The questions and answers of a PDF (see the module's docstring); each entry's ``line`` is the page of
    its question. ``progress(pages_read, pages)`` is called after each page."""
    lines = _pdf_lines(content, progress)
    if not lines:
        raise DocumentError(
            "no text found: a scanned document has only pictures of its pages, and needs text recognition "
            "(OCR) first"
        )
    kept = _without_running_heads(lines)
    root = Element("#root", {}, 1, _elements(_blocks(kept)))
    return _questions(
        root,
        "on page {}",
        "a PDF's questions must be headings (set larger than the text) or bold lines that end with '?', "
        "each followed by its answer",
    )


def _pdf_lines(content: bytes, progress: ProgressCallback | None) -> list[_Line]:
    from pdfminer.converter import PDFPageAggregator
    from pdfminer.layout import LAParams, LTChar, LTCurve, LTFigure, LTTextLineHorizontal
    from pdfminer.pdfdocument import PDFDocument, PDFEncryptionError, PDFPasswordIncorrect
    from pdfminer.pdfinterp import PDFPageInterpreter, PDFResourceManager
    from pdfminer.pdfpage import PDFPage
    from pdfminer.pdfparser import PDFParser
    from pdfminer.pdftypes import resolve1

    def text_lines(item: Any) -> list[Any]:
        if isinstance(item, LTTextLineHorizontal):
            return [item]
        found: list[Any] = []
        if hasattr(item, "__iter__"):
            for child in item:
                found += text_lines(child)
        return found

    def marks(layout: Any) -> list[tuple[float, float, float, float]]:
        """Small drawn shapes (list bullets: a disc, a square) on the page, as (x0, y0, x1, y1)."""
        return [
            (float(item.x0), float(item.y0), float(item.x1), float(item.y1))
            for item in layout
            if isinstance(item, (LTCurve, LTFigure)) and 1 < item.width <= 8 and 1 < item.height <= 8
        ]

    lines: list[_Line] = []
    try:
        parser = PDFParser(io.BytesIO(content))
        document = PDFDocument(parser)
        try:
            pages = int(resolve1(resolve1(document.catalog["Pages"])["Count"]))
        except (KeyError, TypeError, ValueError):
            pages = 0
        if pages > MAX_PDF_PAGES:
            raise DocumentError(f"has {pages} pages; at most {MAX_PDF_PAGES} are read: split it")
        manager = PDFResourceManager()
        device = PDFPageAggregator(manager, laparams=LAParams())
        interpreter = PDFPageInterpreter(manager, device)
        for number, page in enumerate(PDFPage.create_pages(document), start=1):
            if number > MAX_PDF_PAGES:
                raise DocumentError(f"has more than {MAX_PDF_PAGES} pages: split it")
            interpreter.process_page(page)
            layout = device.get_result()
            height = float(layout.height) or 1.0
            bullets = marks(layout)
            for item in text_lines(layout):
                chars = [c for c in item if isinstance(c, LTChar) and c.get_text().strip()]
                text = " ".join(item.get_text().translate(LIGATURES).split())
                if not chars or not text:
                    continue
                sizes: Counter[float] = Counter(round(c.size * 2) / 2 for c in chars)
                bold = sum(1 for c in chars if BOLD_FONT.search(c.fontname.split("+")[-1])) / len(chars)
                lines.append(
                    _Line(
                        page=number,
                        text=text,
                        size=sizes.most_common(1)[0][0],
                        bold=bold >= 0.8,
                        x0=float(item.x0),
                        x1=float(item.x1),
                        y0=float(item.y0),
                        y1=float(item.y1),
                        margin=item.y0 > height * 0.88 or item.y1 < height * 0.12,
                        bullet=any(
                            item.x0 - 30 <= x0
                            and x1 <= item.x0 + 1
                            and item.y0 - 2 <= y0
                            and y1 <= item.y1 + 2
                            for x0, y0, x1, y1 in bullets
                        ),
                    )
                )
            if progress is not None:
                progress(number, max(pages, number))
    except (PDFPasswordIncorrect, PDFEncryptionError):
        raise DocumentError("the PDF is protected by a password: save a copy without one") from None
    except DocumentError:
        raise
    except Exception as exc:  # pdfminer raises its own errors, zlib's, struct's, KeyError, … for a bad file
        raise DocumentError(f"not a readable PDF ({type(exc).__name__}: {exc})") from None
    lines.sort(key=lambda line: (line.page, -line.y1, line.x0))
    return lines


def _running_key(text: str) -> str:
    return re.sub(r"\d+", "#", " ".join(text.lower().split()))


def _without_running_heads(lines: list[_Line]) -> list[_Line]:
    """The lines without the running header and footer: a line in a page's margin that repeats (numbers
    aside) on at least two pages and half of them, and page numbers there."""
    pages = len({line.page for line in lines})
    seen: dict[str, set[int]] = {}
    for line in lines:
        if line.margin:
            seen.setdefault(_running_key(line.text), set()).add(line.page)
    repeated = {key for key, on in seen.items() if len(on) >= max(2, math.ceil(pages / 2))}
    return [
        line
        for line in lines
        if not (line.margin and (_running_key(line.text) in repeated or PAGE_NUMBER.match(line.text)))
    ]


def _blocks(lines: list[_Line]) -> list[_Block]:
    """Lines joined into headings, questions, paragraphs and list items by size, weight, indent and
    spacing."""
    if not lines:
        return []
    weights: Counter[float] = Counter()
    for line in lines:
        weights[line.size] += len(line.text)
    body = weights.most_common(1)[0][0]
    larger = sorted({line.size for line in lines if line.size >= body + 0.9}, reverse=True)
    levels = {size: min(rank + 1, 6) for rank, size in enumerate(larger)}
    body_lines = [line for line in lines if line.size == body] or lines
    left = Counter(round(line.x0) for line in body_lines).most_common(1)[0][0]
    right = max(line.x1 for line in body_lines)

    def kind(line: _Line) -> str:
        if line.size in levels:
            return f"h{levels[line.size]}"
        if line.bold:
            return "strong"
        return "li" if line.x0 > left + 8 else "p"

    blocks: list[_Block] = []
    previous: _Line | None = None
    for line in lines:
        current = kind(line)
        marker = LIST_MARKER.match(line.text) if current in ("li", "p") else None
        if marker and current == "p" and not (blocks and blocks[-1].kind == "li"):
            marker = None  # "1. " at the margin after a paragraph: a numbered heading or a date, not a list
        marked = bool(marker) or (line.bullet and current in ("li", "p"))
        if marked:
            current = "li"
        # bold words that fill a line of their own, at the start or the end of a paragraph, stay in it (a
        # bold line that asks is a question, however wide)
        mixed = (
            previous is not None
            and blocks
            and {blocks[-1].kind, current} in ({"p", "strong"}, {"li", "strong"})
            and not (blocks[-1].text if current != "strong" else line.text).endswith(QUESTION_END)
            and previous.size == line.size
            and _full(previous, line, right)
        )
        joined = (
            previous is not None
            and blocks
            and (blocks[-1].kind == current or mixed)
            and not marked
            and not LABELLED_LINE.match(line.text)
            and _continues(previous, line, current, right)
        )
        if joined:
            if mixed:
                blocks[-1].kind = blocks[-1].kind if current == "strong" else current
            blocks[-1].lines.append(line)
        else:
            text = line.text[marker.end() :] if marker else line.text
            ordered = bool(marker and marker.group("number"))
            blocks.append(_Block(current, [_Line(**{**line.__dict__, "text": text})], ordered, marked))
        previous = line
    for block in blocks:
        asks = block.text.endswith(QUESTION_END)
        if asks and (block.kind == "strong" or (block.kind == "p" and QUESTION_LABEL.match(block.text))):
            block.kind = "dt"
    return blocks


def _continues(previous: _Line, line: _Line, kind: str, right: float) -> bool:
    """Whether ``line`` goes on with the block that ``previous`` ended: the next line at the usual line
    spacing, or the top of the next page after a line that ended no sentence."""
    if line.page != previous.page:
        return line.page == previous.page + 1 and not previous.text.endswith(SENTENCE_END)
    height = max(line.y1 - line.y0, 1.0)
    gap = previous.y0 - line.y1
    if gap > 0.6 * height or gap < -0.5 * height:
        return False
    if kind in ("p", "li") and not _full(previous, line, right):
        return False  # the next word would have fitted: the line ended its paragraph, or its list item
    return True


def _full(previous: _Line, line: _Line, right: float) -> bool:
    """Whether ``previous`` was broken because ``line``'s first word did not fit after it (the line is
    full), rather than ended where its paragraph ends."""
    first_word = line.text.split()[0]
    width = (line.x1 - line.x0) / max(len(line.text), 1)  # of a character, on average
    return previous.x1 + width * (len(first_word) + 2) >= right


def _elements(blocks: list[_Block]) -> list[Element | str]:
    """The blocks as outline elements; neighbouring list items in one list. Indented lines without a marker
    that make a single item are an indented paragraph, not a list."""
    elements: list[Element | str] = []
    index = 0
    while index < len(blocks):
        block = blocks[index]
        page = block.lines[0].page
        text = block.text
        if block.kind != "li":
            index += 1
            if block.kind.startswith("h") or block.kind == "dt":
                elements.append(Element(block.kind, {}, page, [text]))
            elif block.kind == "strong":
                elements.append(Element("p", {}, page, [Element("strong", {}, page, [text])]))
            else:
                elements.append(Element("p", {}, page, [text]))
            continue
        end = index + 1
        while end < len(blocks) and blocks[end].kind == "li" and blocks[end].ordered == block.ordered:
            end += 1
        if end == index + 1 and not block.marked:
            elements.append(Element("p", {}, page, [text]))
        else:
            items = [Element("li", {}, b.lines[0].page, [b.text]) for b in blocks[index:end]]
            elements.append(Element("ol" if block.ordered else "ul", {}, page, list(items)))
        index = end
    return elements
