"""The help-documents benchmark, run whole (about five seconds): the demo knowledge base written as Word
documents and printed by Chromium to PDF in four layouts and two paper sizes reads back question for
question and answer for answer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import load_bench


def test_every_question_and_answer_of_the_demo_reads_back_word_for_word(tmp_path: Path, browser: Any) -> None:
    bench = load_bench("documents.py")
    returned = bench.run(tmp_path, browser)
    result: dict[str, Any] = json.loads((tmp_path / "documents.json").read_text())
    assert result == returned
    assert result["questions"] == 77
    rows = {(row["layout"], row["format"]): row for row in result["rows"]}
    assert sorted(rows) == sorted(
        (layout, fmt)
        for layout in ("headings", "bold", "manual", "labels")
        for fmt in ("docx", "pdf A4", "pdf A5")
    )
    for key, row in rows.items():
        assert (row["intents_read"], row["questions_found"], row["answers_word_for_word"]) == (77, 77, 77), (
            key,
            row["first_differences"],
        )
        assert row["pages"] is None if key[1] == "docx" else row["pages"] >= 8
    assert rows[("bold", "pdf A5")]["pages"] > rows[("bold", "pdf A4")]["pages"]


def test_the_questions_are_the_demo_intents_own(tmp_path: Path) -> None:
    bench = load_bench("documents.py")
    entries = bench.faq()
    assert len(entries) == 77 and all(q.endswith("?") for q, _ in entries)
    assert len({q for q, _ in entries}) == 77  # one question an intent, none twice
    html = bench.as_html(entries[:12], "manual")
    assert "<h2>1 Topics 1 to 10</h2>" in html and "<h3>1.1 " in html and "<h3>Q: " in html
    assert "<p>A: " in html and "<b>" in html  # the answers' Markdown bold as HTML bold
