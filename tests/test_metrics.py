"""Tests for doctune.metrics, with expected values computed by hand."""

import json

import pytest

from doctune.metrics import anls, exact_match, normalize_answer, score_jsonl, summarize


def test_normalize_answer_strips_lowercases_and_collapses_whitespace():
    assert normalize_answer("  Total \t Amount\n DUE ") == "total amount due"


def test_exact_answer_scores_one():
    assert anls("42.50", ["42.50"]) == 1.0
    assert exact_match("42.50", ["42.50"]) == 1.0


def test_case_and_whitespace_differences_score_one():
    assert anls("  ACME   Corp ", ["acme corp"]) == 1.0
    assert exact_match("  ACME   Corp ", ["acme corp"]) == 1.0


def test_distance_below_threshold_keeps_similarity():
    # "abcde" -> "abcxy": 2 substitutions / 5 chars = NL 0.4 -> 0.6.
    assert anls("abcde", ["abcxy"]) == pytest.approx(0.6)
    assert exact_match("abcde", ["abcxy"]) == 0.0


def test_distance_exactly_at_threshold_scores_zero():
    # "abcd" -> "abxy": 2 / 4 = NL 0.5, not strictly below 0.5.
    assert anls("abcd", ["abxy"]) == 0.0


def test_distance_above_threshold_scores_zero():
    # "abcde" -> "abxyz": 3 / 5 = NL 0.6.
    assert anls("abcde", ["abxyz"]) == 0.0


def test_one_insertion_uses_longer_length():
    # "invoice" vs "invoices": 1 insertion / 8 chars -> 1 - 0.125.
    assert anls("invoice", ["invoices"]) == pytest.approx(0.875)


def test_best_gold_answer_wins():
    # NL 0.6 -> 0, NL 0.4 -> 0.6, exact -> 1.
    assert anls("abcde", ["abxyz", "abcxy"]) == pytest.approx(0.6)
    assert anls("abcde", ["abxyz", "ABCDE", "abcxy"]) == 1.0
    assert exact_match("abcde", ["zzz", "ABCDE"]) == 1.0


def test_empty_prediction_scores_zero_against_non_empty_answer():
    assert anls("", ["paris"]) == 0.0
    assert anls("   ", ["paris"]) == 0.0


def test_both_empty_score_one():
    assert anls("", [""]) == 1.0


def test_empty_answers_raise():
    with pytest.raises(ValueError, match="at least one gold answer"):
        anls("x", [])
    with pytest.raises(ValueError, match="at least one gold answer"):
        exact_match("x", [])


def test_single_string_answers_raise():
    with pytest.raises(TypeError, match="not a single string"):
        anls("x", "x")


def test_summarize_means():
    rows = [
        {"prediction": "abcde", "answers": ["abcxy"]},  # anls 0.6, em 0
        {"prediction": "Paris", "answers": ["paris"]},  # anls 1.0, em 1
        {"prediction": "", "answers": ["london"]},  # anls 0, em 0
        {"prediction": "abcd", "answers": ["abxy"]},  # anls 0, em 0
    ]
    result = summarize(rows)
    assert result["num_samples"] == 4
    assert result["anls"] == pytest.approx(1.6 / 4)
    assert result["exact_match"] == pytest.approx(0.25)


def test_summarize_empty_raises():
    with pytest.raises(ValueError, match="no rows"):
        summarize([])


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"answers": ["a"]}, r"row 1: 'prediction' must be a string"),
        ({"prediction": "a", "answers": "a"}, r"row 1: 'answers' must be a non-empty list of strings, got str"),
        ({"prediction": "a", "answers": []}, r"row 1: 'answers' must be a non-empty list of strings"),
        ({"prediction": "a", "answers": ["a", 3]}, r"row 1: 'answers' must be a non-empty list of strings"),
        ({"prediction": 7, "answers": ["a"]}, r"row 1: 'prediction' must be a string, got int"),
    ],
)
def test_summarize_names_bad_row_and_field(row, message):
    rows = [{"prediction": "ok", "answers": ["ok"]}, row]
    with pytest.raises(ValueError, match=message):
        summarize(rows)


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def test_score_jsonl_round_trip_keeps_fields(tmp_path):
    preds = tmp_path / "preds.jsonl"
    rows = [
        {"id": "q1", "prediction": "abcde", "answers": ["abcxy"], "model": "m"},
        {"id": "q2", "prediction": "Paris", "answers": ["paris", "Paris, France"]},
    ]
    _write_jsonl(preds, rows)
    out = tmp_path / "per_sample.jsonl"

    result = score_jsonl(preds, per_sample_out=out)

    assert result == {"anls": pytest.approx(0.8), "exact_match": 0.5, "num_samples": 2}
    written = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [row["id"] for row in written] == ["q1", "q2"]
    assert written[0]["model"] == "m"
    assert written[0]["answers"] == ["abcxy"]
    assert written[0]["anls"] == pytest.approx(0.6)
    assert written[0]["exact_match"] == 0.0
    assert written[1]["anls"] == 1.0 and written[1]["exact_match"] == 1.0
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_score_jsonl_skips_blank_lines_but_counts_them(tmp_path):
    preds = tmp_path / "preds.jsonl"
    preds.write_text('{"prediction": "a", "answers": ["a"]}\n\n{"prediction": "b", "answers": "b"}\n')
    with pytest.raises(ValueError, match=r"preds\.jsonl line 3: 'answers' must be a non-empty list of strings"):
        score_jsonl(preds)


def test_score_jsonl_bad_answers_names_file_and_line(tmp_path):
    preds = tmp_path / "preds.jsonl"
    rows = [{"prediction": "a", "answers": ["a"]}] * 6 + [{"prediction": "a", "answers": "a"}]
    _write_jsonl(preds, rows)
    with pytest.raises(ValueError, match=r"preds\.jsonl line 7: 'answers' must be a non-empty list of strings"):
        score_jsonl(preds)


def test_score_jsonl_malformed_json_names_file_and_line(tmp_path):
    preds = tmp_path / "preds.jsonl"
    preds.write_text('{"prediction": "a", "answers": ["a"]}\n{"prediction": "a", answers\n')
    with pytest.raises(ValueError, match=r"preds\.jsonl line 2: not valid JSON"):
        score_jsonl(preds)


def test_score_jsonl_non_object_line(tmp_path):
    preds = tmp_path / "preds.jsonl"
    preds.write_text('["a", ["a"]]\n')
    with pytest.raises(ValueError, match=r"preds\.jsonl line 1: row must be an object"):
        score_jsonl(preds)


def test_score_jsonl_error_leaves_existing_output_untouched(tmp_path):
    preds = tmp_path / "preds.jsonl"
    preds.write_text('{"prediction": "a", "answers": ["a"]}\n{"prediction": "a"}\n')
    out = tmp_path / "per_sample.jsonl"
    out.write_text("previous\n")
    with pytest.raises(ValueError, match="line 2: 'answers'"):
        score_jsonl(preds, per_sample_out=out)
    assert out.read_text() == "previous\n"


def test_score_jsonl_empty_file_raises(tmp_path):
    preds = tmp_path / "preds.jsonl"
    preds.write_text("\n")
    with pytest.raises(ValueError, match="no prediction rows"):
        score_jsonl(preds)


def test_score_jsonl_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    preds = tmp_path / "preds.jsonl"
    _write_jsonl(preds, [{"prediction": "a", "answers": ["a"]}])
    out = tmp_path / "per_sample.jsonl"
    out.write_text("previous\n")

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("doctune.metrics.os.replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        score_jsonl(preds, per_sample_out=out)
    assert out.read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["per_sample.jsonl", "preds.jsonl"]
