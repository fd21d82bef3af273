"""bertkit.metrics.squad on hand-computed cases (official SQuAD rules; JGLUE's JSQuAD rules)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bertkit.errors import BertkitError
from bertkit.metrics.squad import exact_match, f1, normalize_answer_en, normalize_answer_ja, squad_scores


# English normalisation ----------------------------------------------------------------------------

@pytest.mark.parametrize("raw, normalized", [
    ("The Eiffel Tower", "eiffel tower"),
    ("  an   apple,  a pear!", "apple pear"),
    ("U.S.A.", "usa"),
    ("theater", "theater"),                # articles only as whole words
    ("the-end", "theend"),                 # punctuation goes before articles, as in the script
    ("Denver Broncos.", "denver broncos"),
    ("“quoted”", "“quoted”"),              # only ASCII punctuation is removed
    ("", ""),
])
def test_normalize_answer_en(raw, normalized):
    assert normalize_answer_en(raw) == normalized


# English EM / F1 ----------------------------------------------------------------------------------

def test_em_ignores_case_articles_and_punctuation():
    assert exact_match("the Denver Broncos!", ["Denver Broncos"]) == 1.0
    assert exact_match("Denver", ["Denver Broncos"]) == 0.0


def test_f1_partial_overlap_worked():
    # gold {eiffel, tower}; pred {eiffel, tower, in, paris}: P = 2/4, R = 2/2, F1 = 2*(1/2)/(3/2) = 2/3
    assert f1("Eiffel Tower in Paris", ["the Eiffel Tower"]) == pytest.approx(2 / 3)


def test_f1_counts_repeated_tokens_once_per_occurrence():
    # pred "new new york" vs gold "new york": common = min(2,1) new + 1 york = 2; P = 2/3, R = 1, F1 = 4/5
    assert f1("new new york", ["New York"]) == pytest.approx(4 / 5)


def test_best_gold_wins():
    golds = ["Broncos", "the Denver Broncos", "Denver"]
    assert exact_match("Denver Broncos", golds) == 1.0
    # vs "Denver Broncos" F1 = 1 though "Broncos" alone gives 2/3
    assert f1("Denver Broncos", golds) == 1.0
    # pred "Broncos team": vs "Broncos" P 1/2 R 1 -> 2/3; vs "denver broncos" P 1/2 R 1/2 -> 1/2
    assert f1("Broncos team", golds) == pytest.approx(2 / 3)


def test_no_overlap_and_empty_prediction_score_zero_on_answerable_questions():
    assert f1("Paris", ["London"]) == 0.0
    assert f1("", ["London"]) == 0.0 and exact_match("", ["London"]) == 0.0
    assert f1("the", ["London"]) == 0.0  # "the" normalises to nothing: an abstention


def test_a_single_gold_string_is_one_answer_not_characters():
    assert exact_match("Paris", "Paris") == 1.0
    assert f1("Paris", "Paris") == 1.0


# SQuAD v2 no-answer rules -------------------------------------------------------------------------

@pytest.mark.parametrize("golds", [[], [""], ["  "], ["", "the"]])
def test_no_answer_golds_score_one_only_for_empty_predictions(golds):
    assert exact_match("", golds) == 1.0 and f1("", golds) == 1.0
    assert exact_match("a", golds) == 1.0  # "a" normalises to "" as well
    assert exact_match("Paris", golds) == 0.0 and f1("Paris", golds) == 0.0


def test_empty_golds_are_ignored_beside_real_ones():
    assert exact_match("", ["", "Paris"]) == 0.0
    assert exact_match("Paris", ["", "Paris"]) == 1.0


def test_squad_scores_v1_has_no_breakdown():
    scores = squad_scores({"q1": "Denver Broncos", "q2": "Eiffel Tower in Paris"},
                          {"q1": ["Denver Broncos"], "q2": ["the Eiffel Tower"]})
    # EM: 1 and 0 -> 50; F1: 1 and 2/3 -> 83.33
    assert scores == {"exact_match": 50.0, "f1": pytest.approx(100 * (1 + 2 / 3) / 2), "total": 2}


def test_squad_scores_v2_breakdown():
    predictions = {"a1": "Denver Broncos", "a2": "Eiffel Tower in Paris", "n1": "", "n2": "Paris"}
    references = {"a1": ["Denver Broncos"], "a2": ["the Eiffel Tower"], "n1": [], "n2": []}
    scores = squad_scores(predictions, references)
    assert scores["total"] == 4
    assert scores["exact_match"] == pytest.approx(100 * 2 / 4)           # a1, n1
    assert scores["f1"] == pytest.approx(100 * (1 + 2 / 3 + 1 + 0) / 4)
    assert (scores["HasAns_total"], scores["NoAns_total"]) == (2, 2)
    assert scores["HasAns_exact"] == 50.0 and scores["HasAns_f1"] == pytest.approx(100 * (1 + 2 / 3) / 2)
    assert scores["NoAns_exact"] == 50.0 and scores["NoAns_f1"] == 50.0


def test_missing_prediction_counts_as_empty_string():
    references = {"a1": ["Denver"], "n1": []}
    assert squad_scores({"a1": None, "n1": None}, references) == squad_scores({}, references)
    scores = squad_scores({}, references)
    # a1 unanswered scores 0; n1 unanswered is a correct abstention
    assert (scores["exact_match"], scores["HasAns_exact"], scores["NoAns_exact"]) == (50.0, 0.0, 100.0)


def test_no_answer_ids_override_listed_answers():
    references = {"q1": ["Paris"], "q2": ["London"]}
    scores = squad_scores({"q1": "Paris", "q2": ""}, references, no_answer_ids=["q2"])
    assert scores["exact_match"] == 100.0
    assert (scores["HasAns_total"], scores["NoAns_total"]) == (1, 1)


def test_groups_without_questions_are_left_out():
    scores = squad_scores({"n1": ""}, {"n1": []})
    assert scores == {"exact_match": 100.0, "f1": 100.0, "total": 1,
                      "NoAns_exact": 100.0, "NoAns_f1": 100.0, "NoAns_total": 1}


def test_empty_references_score_zero():
    assert squad_scores({}, {}) == {"exact_match": 0.0, "f1": 0.0, "total": 0}


@pytest.mark.parametrize("kwargs, needle", [
    ({"predictions": {"q9": "x"}}, "predictions has 1 question id"),
    ({"predictions": {1: "x"}}, "predictions has 1 question id"),  # int vs str ids
    ({"predictions": {}, "no_answer_ids": ["q9"]}, "no_answer_ids has 1 question id"),
    ({"predictions": {}, "lang": "fr"}, "unknown QA metric language 'fr'"),
])
def test_squad_scores_errors(kwargs, needle):
    with pytest.raises(BertkitError, match=needle) as info:
        squad_scores(references={"1": ["x"]}, **kwargs)
    assert info.value.hint


# Japanese (JGLUE's JSQuAD evaluation) -------------------------------------------------------------

@pytest.mark.parametrize("raw, normalized", [
    ("東京タワー。", "東京タワー"),        # trailing 。 stripped
    ("東京。タワー", "東京。タワー"),      # only trailing
    ("東京。 ", "東京。"),                # whitespace is collapsed after the 。 strip, as in JGLUE
    ("「東京」、", "「東京」、"),          # other punctuation is kept
    ("ＡＢＣ  Def", "ａｂｃ def"),        # lowercased, no NFKC: full-width stays full-width
])
def test_normalize_answer_ja(raw, normalized):
    assert normalize_answer_ja(raw) == normalized


def test_ja_exact_match():
    assert exact_match("東京タワー。", ["東京タワー"], lang="ja") == 1.0
    assert exact_match("「東京タワー」", ["東京タワー"], lang="ja") == 0.0
    assert exact_match("ABC", ["ＡＢＣ"], lang="ja") == 0.0


def test_ja_character_f1_worked():
    # gold 東京タワー (5 chars), pred 東京タワーの展望台 (9 chars), 5 shared: P 5/9, R 1, F1 = 5/7
    assert f1("東京タワーの展望台", ["東京タワー"], lang="ja") == pytest.approx(5 / 7)
    # repeated characters: pred あい vs gold ああい: shared あ×1 + い×1 = 2; P 1, R 2/3, F1 = 4/5
    assert f1("あい", ["ああい"], lang="ja") == pytest.approx(4 / 5)
    # brackets count as characters: pred 「東京」 (4) vs gold 東京 (2): P 1/2, R 1, F1 = 2/3
    assert f1("「東京」", ["東京"], lang="ja") == pytest.approx(2 / 3)
    # the space counts too: pred 東京 タワー (6) vs 東京タワー (5): P 5/6, R 1, F1 = 10/11
    assert f1("東京 タワー", ["東京タワー"], lang="ja") == pytest.approx(10 / 11)


def test_ja_scores_differ_from_en_rules():
    # English rules would see one token on each side and give 0; characters give partial credit
    assert f1("東京都", ["東京"], lang="en") == 0.0
    assert f1("東京都", ["東京"], lang="ja") == pytest.approx(0.8)  # P 2/3, R 1


def test_ja_squad_scores():
    scores = squad_scores({"q1": "東京タワー。", "q2": "東京タワーの展望台"},
                          {"q1": ["東京タワー"], "q2": ["東京タワー", "展望台"]}, lang="ja")
    # q2: vs 展望台 P 3/9 R 1 -> 1/2; vs 東京タワー 5/7 -> best 5/7
    assert scores == {"exact_match": 50.0, "f1": pytest.approx(100 * (1 + 5 / 7) / 2), "total": 2}


# Properties ---------------------------------------------------------------------------------------

texts = st.text(alphabet="ab the,.東京。 ", max_size=12)


@settings(max_examples=200, deadline=None)
@given(pred=texts, gold=texts, lang=st.sampled_from(["en", "ja"]))
def test_f1_is_bounded_symmetric_and_one_on_exact_match(pred, gold, lang):
    score = f1(pred, [gold], lang=lang)
    assert 0.0 <= score <= 1.0
    assert score == pytest.approx(f1(gold, [pred], lang=lang))
    if exact_match(pred, [gold], lang=lang):
        assert score == 1.0


def test_bertkit_metrics_load_offline_as_evaluate_modules() -> None:
    """evaluate.load(path) on bertkit's modules works with no network and gives bertkit's numbers."""
    import evaluate

    from bertkit.metrics import entities, evaluate_module, squad

    module = evaluate.load(evaluate_module("squad"))
    preds = [{"id": "a", "prediction_text": "the Denver Broncos"}, {"id": "b", "prediction_text": "1990"}]
    refs = [{"id": "a", "answers": {"text": ["Denver Broncos"], "answer_start": [3]}},
            {"id": "b", "answers": {"text": ["in 1991", "1991"], "answer_start": [0, 3]}}]
    got = module.compute(predictions=preds, references=refs)
    assert got == squad.squad_scores({"a": "the Denver Broncos", "b": "1990"}, {"a": ["Denver Broncos"], "b": ["in 1991", "1991"]})
    assert got["exact_match"] == 50.0
    ja = module.compute(predictions=[{"id": "q", "prediction_text": "東京都。"}],
                        references=[{"id": "q", "answers": {"text": ["東京"], "answer_start": [0]}}], lang="ja")
    assert ja["f1"] == pytest.approx(100 * 2 * (2 / 3) * 1 / (2 / 3 + 1))  # 東京都 vs 東京 by characters
    ner = evaluate.load(evaluate_module("entities"))
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG"]]
    pred = [["B-PER", "I-PER", "O", "O"], ["O", "B-ORG"]]
    scores = ner.compute(predictions=pred, references=gold)
    assert scores == entities.entity_scores(gold, pred, "IOB2")
    assert scores["precision"] == 1.0 and scores["recall"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="no bertkit evaluate module 'bleu'"):
        evaluate_module("bleu")
