"""A company's FAQ page as a knowledge base: the page saved as HTML, or an FAQ written in Markdown.

Most help centres already have their questions and answers on a web page; Azure question answering imports
such pages, and so does HelpLoop (from the file: the app fetches nothing). Read, in this order (the first
that finds questions is used, so a page's markup is not read twice):

1. schema.org ``FAQPage`` JSON-LD (``<script type="application/ld+json">``, what search engines read: most
   FAQ pages carry it): each ``Question``'s ``name`` and its ``acceptedAnswer`` (or ``suggestedAnswer``)
   ``text``;
2. ``<details><summary>question</summary>answer</details>``, the usual accordion;
3. headings (``<h1>``–``<h6>``) and ``<dt>`` terms that end with a question mark, each answered by what
   follows it up to the next heading of its level or above, or the next that asks (a lower heading that
   asks nothing, "In the app", is a bold line of the answer).

A Markdown file (``.md``) is read as in 3: ``#``–``######`` headings that end with "?", answered by the text
under them (kept as written: the widget renders Markdown). An answer in HTML becomes Markdown
(paragraphs, bold, italics, links, lists, line breaks); scripts, styles, navigation, headers and footers are
left out. Each question becomes an intent whose example is the question, as an FAQ sheet's rows do
(``core.kb_files``)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
SKIPPED = {"script", "style", "noscript", "template", "svg", "nav", "header", "footer", "head", "form"}
HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
BLOCKS = {"p", "ul", "ol", "pre", "blockquote", "table", "address", "figure"}
# An open element that a new one of these closes, as browsers do ("<p>a<p>b", "<li>a<li>b").
IMPLIED_END = {
    "p": {"p"},
    "li": {"li"},
    "dt": {"dt", "dd"},
    "dd": {"dt", "dd"},
    "tr": {"tr"},
    "td": {"td", "th"},
}
QUESTION_END = ("?", "？", "؟")
# Elements nest at most this deep (a browser's page rarely passes 30), so that a pathological page cannot
# exhaust the recursion of the readers below: past it a tag is left out and its text read as its parent's,
# except the tags that carry questions and answers, which have a few levels more.
MAX_DEPTH = 100
KEPT_PAST_DEPTH = HEADINGS | {"p", "ul", "ol", "li", "dl", "dt", "dd", "details", "summary", "script"}
DEPTH_MARGIN = 20
MARKDOWN_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")
FENCE = re.compile(r"^ {0,3}(```|~~~)")


class FaqPageError(ValueError):
    def __init__(self, line: int | None, field_name: str | None, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.field_name = field_name
        self.message = message


@dataclass(frozen=True)
class FaqEntry:
    question: str
    answer: str
    line: int


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    line: int
    children: list[Element | str] = field(default_factory=list)


class _TreeBuilder(HTMLParser):
    """A forgiving HTML tree: unclosed paragraphs and list items close as browsers close them, a stray end
    tag is ignored."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#root", {}, 1)
        self.stack = [self.root]
        self.left_out: dict[str, int] = {}  # tags left out past MAX_DEPTH, whose end tags are to be skipped

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        closes = {opener for opener, closers in IMPLIED_END.items() if tag in closers}
        if tag in BLOCKS | HEADINGS | {"div", "section", "article", "details", "dl"}:
            closes.add("p")
        while len(self.stack) > 1 and self.stack[-1].tag in closes:
            self.stack.pop()
        depth = len(self.stack)
        if tag not in VOID and depth >= MAX_DEPTH + (DEPTH_MARGIN if tag in KEPT_PAST_DEPTH else 0):
            self.left_out[tag] = self.left_out.get(tag, 0) + 1
            return
        element = Element(tag, {k: v or "" for k, v in attrs}, self.getpos()[0])
        self.stack[-1].children.append(element)
        if tag not in VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Element(tag, {k: v or "" for k, v in attrs}, self.getpos()[0]))

    def handle_endtag(self, tag: str) -> None:
        if self.left_out.get(tag):
            self.left_out[tag] -= 1
            return
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def _text(node: Element | str) -> str:
    """The plain text of a node, spaces collapsed."""
    if isinstance(node, str):
        return node
    if node.tag in SKIPPED:
        return ""
    return " ".join("".join(_text(child) for child in node.children).split()) if node.tag != "br" else " "


def _inline(node: Element | str) -> str:
    """Markdown of inline content (bold, italics, links, code, line breaks); spaces kept for joining."""
    if isinstance(node, str):
        return re.sub(r"\s+", " ", node)
    tag = node.tag
    if tag in SKIPPED or tag == "img":
        return ""
    if tag == "br":
        return "\n"
    inner = "".join(_inline(child) for child in node.children)
    stripped = inner.strip()
    if not stripped:
        return inner
    if tag in ("strong", "b"):
        return f"**{stripped}**"
    if tag in ("em", "i"):
        return f"*{stripped}*"
    if tag == "code":
        return f"`{stripped}`"
    if tag == "a" and node.attrs.get("href", "").strip() and not node.attrs["href"].startswith("#"):
        return f"[{stripped}]({node.attrs['href'].strip()})"
    return inner


def _clean(text: str) -> str:
    lines = [" ".join(line.split()) for line in text.split("\n")]
    return "\n".join(line for line in lines if line)


def _list(node: Element, depth: int) -> list[str]:
    lines: list[str] = []
    number = 0
    for child in node.children:
        if not isinstance(child, Element) or child.tag != "li":
            continue
        number += 1
        marker = f"{number}." if node.tag == "ol" else "-"
        words = _clean("".join(_inline(c) for c in child.children if not _is_list(c))).replace("\n", " ")
        lines.append(f"{'  ' * depth}{marker} {words}".rstrip())
        for nested in child.children:
            if _is_list(nested):
                assert isinstance(nested, Element)
                lines += _list(nested, depth + 1)
    return lines


def _is_list(node: Element | str) -> bool:
    return isinstance(node, Element) and node.tag in ("ul", "ol")


def _markdown(nodes: list[Element | str]) -> str:
    """Markdown of a run of nodes: paragraphs (and other blocks) separated by a blank line."""
    blocks: list[str] = []
    run: list[str] = []  # inline content between blocks

    def flush() -> None:
        text = _clean("".join(run))
        if text:
            blocks.append(text)
        run.clear()

    for node in nodes:
        if isinstance(node, Element) and node.tag in SKIPPED:
            continue
        if isinstance(node, Element) and node.tag in ("ul", "ol"):
            flush()
            blocks.append("\n".join(_list(node, 0)))
        elif isinstance(node, Element) and node.tag == "pre":
            flush()
            blocks.append(_text(node))
        elif isinstance(node, Element) and node.tag == "table":
            flush()
            rows = [row for row in _descendants(node) if row.tag == "tr"]
            blocks.append(
                "\n".join(
                    " | ".join(_text(c) for c in row.children if isinstance(c, Element)) for row in rows
                )
            )
        elif isinstance(node, Element) and node.tag in BLOCKS | HEADINGS | {
            "div",
            "section",
            "article",
            "dd",
            "dl",
            "li",
        }:
            flush()
            inner = _markdown(node.children)
            if inner:
                blocks.append(inner)
        else:
            run.append(_inline(node))
    flush()
    return "\n\n".join(block for block in blocks if block.strip())


def _descendants(node: Element) -> list[Element]:
    found: list[Element] = []
    for child in node.children:
        if isinstance(child, Element):
            found.append(child)
            found += _descendants(child)
    return found


def _is_question(text: str) -> bool:
    return text.endswith(QUESTION_END)


# ------------------------------------------------------------------------------------------- JSON-LD


def _json_ld_entries(root: Element) -> list[FaqEntry]:
    entries: list[FaqEntry] = []
    for script in _descendants(root):
        if script.tag != "script" or script.attrs.get("type", "").strip().lower() != "application/ld+json":
            continue
        source = "".join(child for child in script.children if isinstance(child, str))
        try:
            data = json.loads(source)
        except json.JSONDecodeError as exc:
            raise FaqPageError(
                script.line + exc.lineno - 1, "application/ld+json", f"not valid JSON: {exc.msg}"
            ) from None
        for question in _faq_questions(data):
            name = question.get("name")
            answer = question.get("acceptedAnswer") or question.get("suggestedAnswer")
            if isinstance(answer, list):
                answer = answer[0] if answer else None
            text = answer.get("text") if isinstance(answer, dict) else None
            if not isinstance(name, str) or not name.strip():
                raise FaqPageError(script.line, "mainEntity.name", "a Question has no name (its text)")
            if not isinstance(text, str) or not text.strip():
                raise FaqPageError(
                    script.line, "acceptedAnswer.text", f"the question {name.strip()!r} has no answer"
                )
            entries.append(FaqEntry(_text(_parse(name)), _markdown(_parse(text).children), script.line))
    return entries


def _types(node: dict[str, Any]) -> set[str]:
    kind = node.get("@type", [])
    return {str(k).rsplit("/", 1)[-1] for k in (kind if isinstance(kind, list) else [kind])}


def _faq_questions(data: Any) -> list[dict[str, Any]]:
    """The ``Question`` objects of every ``FAQPage`` in a JSON-LD document (lists and ``@graph`` walked)."""
    found: list[dict[str, Any]] = []
    if isinstance(data, list):
        for item in data:
            found += _faq_questions(item)
    elif isinstance(data, dict):
        if "FAQPage" in _types(data):
            entities = data.get("mainEntity", [])
            for entity in entities if isinstance(entities, list) else [entities]:
                if isinstance(entity, dict) and "Question" in _types(entity):
                    found.append(entity)
        for key in ("@graph", "mainEntityOfPage", "hasPart"):
            if key in data:
                found += _faq_questions(data[key])
    return found


# ---------------------------------------------------------------------------------------- the page


def _details_entries(root: Element) -> list[FaqEntry]:
    entries: list[FaqEntry] = []
    for details in _descendants(root):
        if details.tag != "details":
            continue
        summary = next((c for c in details.children if isinstance(c, Element) and c.tag == "summary"), None)
        if summary is None:
            continue
        question = _text(summary)
        rest = [c for c in details.children if c is not summary]
        if question:
            entries.append(FaqEntry(question, _markdown(rest), summary.line))
    return entries


def _is_heading(node: Element | str) -> bool:
    return isinstance(node, Element) and (node.tag in HEADINGS or node.tag == "dt")


def _heading_holders(node: Element, holders: set[int]) -> bool:
    """Whether ``node`` holds a heading; the ids of the elements that do are added to ``holders`` (one walk
    of the page, rather than one of each element's descendants per element)."""
    holds = False
    for child in node.children:
        if isinstance(child, Element) and (_heading_holders(child, holders) or _is_heading(child)):
            holds = True
    if holds:
        holders.add(id(node))
    return holds


def _linear(node: Element, out: list[tuple[str, Element | str]], holders: set[int]) -> None:
    """The page in reading order as ("heading", element) and ("content", node) events: an element that holds
    a heading (in ``holders``) is opened, any other is content whole (a list stays a list)."""
    for child in node.children:
        if isinstance(child, Element) and child.tag in SKIPPED:
            continue
        if _is_heading(child):
            out.append(("heading", child))
        elif isinstance(child, Element) and id(child) in holders:
            _linear(child, out, holders)
        else:
            out.append(("content", child))


def _level(heading: Element) -> int:
    return int(heading.tag[1]) if heading.tag in HEADINGS else 7  # a <dt> ranks under every heading


def _heading_entries(root: Element) -> list[FaqEntry]:
    """Each heading that asks, answered up to the next heading of its level or above, or the next that asks;
    a lower heading that asks nothing ("In the app") is a bold line of the answer (a term, ``<dt>``, is
    never part of another's answer)."""
    events: list[tuple[str, Element | str]] = []
    holders: set[int] = set()
    _heading_holders(root, holders)
    _linear(root, events, holders)
    entries: list[FaqEntry] = []
    current: Element | None = None
    answer: list[Element | str] = []
    for kind, node in events + [("heading", Element("h1", {}, 0))]:
        if kind != "heading":
            if current is not None:
                answer.append(node)
            continue
        assert isinstance(node, Element)
        text = _text(node)
        sub_heading = node.tag in HEADINGS and current is not None and _level(node) > _level(current)
        if sub_heading and not _is_question(text):
            answer.append(Element("p", {}, node.line, [Element("strong", {}, node.line, [text])]))
            continue
        if current is not None:
            entries.append(FaqEntry(_text(current), _markdown(answer), current.line))
        current = node if _is_question(text) else None
        answer = []
    return entries


def _parse(html: str) -> Element:
    builder = _TreeBuilder()
    builder.feed(html)
    builder.close()
    return builder.root


def read_html_faq(html: str) -> list[FaqEntry]:
    """The questions and answers of an FAQ page saved as HTML (see the module's docstring)."""
    root = _parse(html)
    for read in (_json_ld_entries, _details_entries, _heading_entries):
        entries = read(root)
        if entries:
            return _checked(entries)
    raise FaqPageError(
        None,
        None,
        "no questions found: an FAQ page needs schema.org FAQPage JSON-LD, <details><summary> questions, or "
        "headings that end with '?' followed by their answers",
    )


def read_outline(
    root: Element, *, tidy: Callable[[FaqEntry], FaqEntry], where: Callable[[int], str]
) -> list[FaqEntry]:
    """The questions of a document given as an outline, the tree a page is parsed into (headings, ``<dt>``
    terms, paragraphs, lists), by the heading rule above: ``core.documents`` builds one from a Word document
    or a PDF, whose elements' ``line`` is a paragraph or a page. ``tidy`` rewrites each entry before the
    checks; ``where(line)`` says where an earlier question is ("in paragraph 3"). Empty when no heading
    asks."""
    entries = [tidy(e) for e in _heading_entries(root)]
    return _checked(entries, where=where) if entries else []


def read_markdown_faq(text: str) -> list[FaqEntry]:
    """The questions of an FAQ in Markdown: headings that end with '?', answered by the text under them."""
    entries: list[FaqEntry] = []
    current: tuple[str, int, int] | None = None  # question, line, heading level
    answer: list[str] = []
    fenced = False
    lines = text.splitlines()
    for number, line in enumerate(lines + ["# end"], start=1):
        heading = None if fenced else MARKDOWN_HEADING.match(line)
        if FENCE.match(line):
            fenced = not fenced
        if heading is None:
            if current is not None:
                answer.append(line)
            continue
        title, level = heading.group(2).strip(), len(heading.group(1))
        if current is not None and not _is_question(title) and level > current[2] and number <= len(lines):
            answer.append(f"**{title}**")  # a sub-heading of the answer ("### In the app")
            continue
        if current is not None:
            entries.append(FaqEntry(current[0], "\n".join(answer).strip("\n"), current[1]))
        current = (title, number, level) if number <= len(lines) and _is_question(title) else None
        answer = []
    if not entries:
        raise FaqPageError(
            None, None, "no questions found: write each question as a heading that ends with '?'"
        )
    return _checked(entries)


def _checked(entries: list[FaqEntry], *, where: Callable[[int], str] = "on line {}".format) -> list[FaqEntry]:
    """Every question answered, and a question asked twice only with the same answer (kept once)."""
    seen: dict[str, FaqEntry] = {}
    kept: list[FaqEntry] = []
    for entry in entries:
        if not entry.answer.strip():
            raise FaqPageError(
                entry.line, "answer", f"the question {entry.question!r} has no answer under it"
            )
        key = " ".join(entry.question.lower().split())
        if key in seen:
            if seen[key].answer != entry.answer:
                raise FaqPageError(
                    entry.line,
                    "question",
                    f"{entry.question!r} is asked again with another answer (first {where(seen[key].line)})",
                )
            continue
        seen[key] = entry
        kept.append(entry)
    return kept
