"""The pre-training pages and questions (reading_pages, row_questions, party_pages) and the
key-side probe's parsers: what the training text says must be on the page, once."""

import random
import sys
from pathlib import Path

import pytest

from doctune.synth import generate_document
from doctune.synth.parts import ITEM_HEADERS
from doctune.synth.questions import count_runs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import party_pages  # noqa: E402
import probe_key_side  # noqa: E402
import reading_pages  # noqa: E402
import row_questions  # noqa: E402


def test_character_centres_follow_glyph_advances():
    edges = reading_pages.advance_edges("mil")
    assert edges[0] == 0 and edges[-1] == pytest.approx(1)
    widths = [b - a for a, b in zip(edges, edges[1:])]
    assert widths[0] > 2 * widths[1]  # 'm' is much wider than 'i'


def test_synth_pages_keep_characters_inside_their_words():
    page = reading_pages.synth_page("receipt", 3, random.Random(0))
    assert page.chars and page.qa
    width, height = page.image.size
    assert all(0 <= x <= width and 0 <= y <= height for _, x, y, _ in page.chars)


def test_all_rows_adds_the_remaining_cells_and_keeps_the_rest():
    plain = reading_pages.synth_page("purchase_order", 5, random.Random(0))
    rows = reading_pages.synth_page("purchase_order", 5, random.Random(0), all_rows=True)
    # The page's own questions come first, unchanged; the added ones are new cells only.
    assert rows.qa[: len(plain.qa)] == plain.qa
    added = rows.qa[len(plain.qa):]
    answers = [a for _, a in rows.qa]
    assert added and len(answers) == len(set(answers))
    doc = generate_document("purchase_order", 5)
    cells = {v for k, v in doc.fields.items() if k.startswith("item_") and count_runs(doc.words, v) == 1}
    assert {a for _, a in added} <= cells
    assert cells <= set(answers)


def test_party_pages_ask_each_party_by_its_role_and_never_name_the_target_kind():
    wordings = set()
    for seed in range(12):
        doc = party_pages.generate(seed)
        assert party_pages.generate(seed).qa == doc.qa  # a seed gives the same page
        asked = dict((a, q) for q, a in doc.qa)
        for key in ("party0_name", "party1_name"):
            if key in doc.fields and count_runs(doc.words, doc.fields[key]) == 1:
                wordings.add(asked[doc.fields[key]])
                assert doc.fields[key] != doc.fields["issuer_name"]
        for question, answer in doc.qa:
            assert count_runs(doc.words, answer) == 1, (seed, question, answer)
        cells = {v for k, v in doc.fields.items() if k.startswith("item_") and count_runs(doc.words, v) == 1}
        assert cells and cells <= set(asked)
        # (a company's mailbox may be billing@...: an address, not a heading or a question)
        text = " ".join([w for w in doc.words if "@" not in w] + [q for q, _ in doc.qa]).lower()
        assert "invoice" not in text and "bill" not in text
    assert len(wordings) > 5  # the parties are asked for in many wordings
    page = reading_pages.synth_page(party_pages.KIND, 3, random.Random(0), all_rows=True)
    assert page.kind == party_pages.KIND and page.chars and len(page.qa) > 10


def test_visual_rows_join_a_label_and_its_value_by_x():
    lines = [
        {"text": "$12.00", "box": (300, 100, 360, 114)},
        {"text": "Total:", "box": (40, 101, 90, 115)},
        {"text": "Thank you", "box": (40, 140, 120, 154)},
    ]
    assert row_questions.visual_rows(lines) == ["Total: $12.00", "Thank you"]


def test_follow_questions_are_answered_by_the_rest_of_their_row():
    lines = [{"text": t, "box": (20, 20 * i, 200, 20 * i + 12)} for i, t in enumerate(
        ["Invoice # INV-2201", "Date: 03/04/2025", "Bananas 2 3.49 6.98", "Date: 04/04/2025 due"])]
    rows = row_questions.visual_rows(lines)
    qa = row_questions.follow_questions(lines, random.Random(0), n=10)
    assert qa
    for q, a in qa:
        prefix = q[len('What follows "'):-len('"?')]
        matches = [r for r in rows if r.startswith(prefix + " ")]
        assert len(matches) == 1 and matches[0] == f"{prefix} {a}"
    # "Date:" starts two rows: it is never asked alone.
    assert all(q != 'What follows "Date:"?' for q, _ in qa)


def test_precede_questions_are_answered_by_the_start_of_their_row():
    lines = [{"text": t, "box": (20, 20 * i, 200, 20 * i + 12)} for i, t in enumerate(
        ["Qty Item Price", "2 Bananas 3.49", "12 Apples 0.99", "Total: 4.48", "2 Pears 3.49"])]
    rows = row_questions.visual_rows(lines)
    page = "\n".join(rows)
    qa = row_questions.precede_questions(lines, random.Random(0), n=10)
    assert len(qa) >= 3
    for q, a in qa:
        key = q[len('What precedes "'):-len('"?')]
        assert page.count(key) == 1, q  # the key names one place on the page
        assert sum(r.startswith(f"{a} {key}") for r in rows) == 1, (q, a)
    # "3.49" ends two rows: it is asked about only with the words that tell them apart.
    assert all(q != 'What precedes "3.49"?' for q, _ in qa)


def test_transcribe_questions_name_one_line():
    assert row_questions.transcribe_question("Account holder: Ann", ["Account no: 12", "Account holder: Ann"]) == (
        'Transcribe the line that starts with "Account holder:".', "Account holder: Ann")
    assert row_questions.transcribe_question("Total", ["Total", "Total due 5.00"]) is None
    pages = [reading_pages.render_generic(s) for s in range(40)]
    pages += [reading_pages.synth_page("bank_statement", s, random.Random(s)) for s in range(6)]
    asked = 0
    for page in pages:
        texts = [line["text"] for line in page.lines]
        for question, answer in page.qa:
            if question.startswith(row_questions.TRANSCRIBE):
                start = question.split('"')[1]
                assert answer.startswith(start) and sum(t.startswith(start) for t in texts) == 1, question
                asked += 1
    assert asked > 20


def test_generic_tables_put_the_row_name_anywhere_only_when_asked():
    def sides(pages):
        return [side for *_, side in probe_key_side.questions(pages, probe_key_side.generic_side)]

    first = sides([reading_pages.render_generic(s) for s in range(40)])
    assert len(first) > 30 and set(first) == {"right"}
    anywhere = [reading_pages.render_generic(s, key_anywhere=1.0) for s in range(40)]
    moved = sides(anywhere)
    assert moved.count("left") > 10 and moved.count("right") > 10
    counts = [a for page in anywhere for q, a in page.qa
              if (fields := probe_key_side.parse(q, reading_pages.TABLE_QUESTIONS)) and fields["head"] in reading_pages.COUNTS]
    assert counts and all(a.isdigit() and 1 <= int(a) <= 50 for a in counts)


def test_quantity_probe_tells_the_two_column_orders_apart():
    pages = [reading_pages.synth_page("purchase_order", s, random.Random(s), all_rows=True) for s in range(16)]
    items = probe_key_side.questions(pages, probe_key_side.quantity_side)
    assert {side for *_, side in items} == {"left", "right"}
    for page, _, _, side in items:  # the table's own header says which column comes first
        texts = {line["text"] for line in page.lines}
        order = (1, 0, 2, 3) if side == "left" else (0, 1, 2, 3)
        assert any(" ".join(h[k] for k in order) in texts for h in ITEM_HEADERS)


def test_lookup_samples_have_one_answer_in_their_context():
    rng = random.Random(0)
    for length in (12, 48, 384):
        context, question, answer = row_questions.lookup_sample(rng, length)
        key = question.split('"')[1]
        assert len(context) == length and context.count(key) == 1
        after = context[context.index(key) + len(key) :]
        if question.startswith("Transcribe"):
            assert answer.startswith(key) and after.startswith(answer[len(key) :]) and len(answer) == 9
        else:
            assert after.startswith(answer) and len(answer) == 6


def test_backward_lookups_are_answered_by_what_precedes_their_key():
    rng = random.Random(0)
    forms = []
    for length in (9, 12, 48, 384) * 20:
        context, question, answer = row_questions.lookup_sample(rng, length, back=0.5)
        key = question.split('"')[1]
        assert context.count(key) == 1
        if question.startswith(row_questions.PRECEDES):
            assert len(answer) == 6 and context.endswith(answer + key, 0, context.index(key) + len(key))
        forms.append(question.startswith(row_questions.PRECEDES))
    assert 20 < sum(forms) < 60
    assert not any(row_questions.lookup_sample(rng, 48)[1].startswith(row_questions.PRECEDES) for _ in range(50))
