"""bertkit.metrics.entities against the installed seqeval (the reference) and hand-computed cases."""

from __future__ import annotations

import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bertkit.errors import BertkitError
from bertkit.metrics.entities import (
    SCHEMES,
    convert_tags,
    detect_scheme,
    entities_to_tags,
    entity_scores,
    get_entities,
    get_entities_strict,
    label_list,
    validate_tags,
)

seqeval_metrics = pytest.importorskip("seqeval.metrics")
from seqeval.metrics.sequence_labeling import get_entities as seqeval_get_entities  # noqa: E402
from seqeval.scheme import IOB1, IOB2, IOBES, Tokens  # noqa: E402

TYPES = ("PER", "LOC", "ORG", "MISC", "GPE-X")  # a hyphenated type checks type parsing
PREFIXES = {"IOB1": "BI", "IOB2": "BI", "BIOES": "BIES", "IO": "I"}
SEQEVAL_SCHEME = {"IOB1": IOB1, "IOB2": IOB2, "BIOES": IOBES}
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def tag_strategy(scheme: str):
    """Any tag the scheme allows, so invalid transitions are common."""
    return st.sampled_from(["O"] + [f"{p}-{t}" for p in PREFIXES[scheme] for t in TYPES])


def tag_lists(scheme: str, max_size: int = 14):
    return st.lists(tag_strategy(scheme), max_size=max_size)


def paired_corpus(scheme: str):
    """(y_true, y_pred): up to 5 sentences, the two sides of equal length."""
    pairs = st.lists(st.tuples(tag_strategy(scheme), tag_strategy(scheme)), max_size=10)
    return st.lists(pairs, min_size=1, max_size=5).map(
        lambda sents: ([[t for t, _ in s] for s in sents], [[p for _, p in s] for s in sents]))


@st.composite
def spans(draw, max_tokens: int = 12):
    """(n_tokens, non-overlapping sorted entities) drawn directly, not through tags."""
    n = draw(st.integers(0, max_tokens))
    entities, i = [], 0
    while i < n:
        i += draw(st.integers(0, 2))
        length = draw(st.integers(1, 3))
        if i + length > n:
            break
        entities.append((draw(st.sampled_from(TYPES[:3])), i, i + length))
        i += length
    return n, entities


def seqeval_lenient(tags):
    return [(t, s, e + 1) for t, s, e in seqeval_get_entities(list(tags))]  # seqeval ends inclusively


def seqeval_strict(tags, scheme):
    return [(e.tag, e.start, e.end) for e in Tokens(list(tags), SEQEVAL_SCHEME[scheme]).entities]


# Decoding matches seqeval -------------------------------------------------------------------------

@pytest.mark.parametrize("scheme", SCHEMES)
@FAST
@given(data=st.data())
def test_lenient_decoding_matches_seqeval_default_mode(scheme, data):
    tags = data.draw(tag_lists(scheme))
    assert get_entities(tags, scheme) == seqeval_lenient(tags)


@pytest.mark.parametrize("scheme", ["IOB1", "IOB2", "BIOES"])
@FAST
@given(data=st.data())
def test_strict_decoding_matches_seqeval_strict_mode(scheme, data):
    tags = data.draw(tag_lists(scheme))
    assert get_entities_strict(tags, scheme) == seqeval_strict(tags, scheme)


@FAST
@given(tags=tag_lists("IO"))
def test_io_strict_equals_lenient_because_io_has_no_invalid_transitions(tags):
    # seqeval has no IO scheme to compare with; its lenient mode is the reference here.
    assert get_entities_strict(tags, "IO") == get_entities(tags, "IO") == seqeval_lenient(tags)


@pytest.mark.parametrize("tags, expected", [
    (["O", "I-PER", "I-PER"], [("PER", 1, 3)]),                # I- after O opens an entity
    (["B-PER", "I-LOC"], [("PER", 0, 1), ("LOC", 1, 2)]),      # a type change closes one
    (["B-PER", "B-PER"], [("PER", 0, 1), ("PER", 1, 2)]),
    (["I-PER", "B-PER", "I-PER"], [("PER", 0, 1), ("PER", 1, 3)]),
    (["B-GPE-X", "I-GPE-X", "O"], [("GPE-X", 0, 2)]),
    ([], []),
])
def test_lenient_decoding_hand_cases(tags, expected):
    assert get_entities(tags, "IOB2") == expected


def test_lenient_bioes_quirks():
    # E-/S- close their entity; I- right after E- opens a new one.
    assert get_entities(["E-PER", "I-PER"], "BIOES") == [("PER", 0, 1), ("PER", 1, 2)]
    assert get_entities(["B-PER", "I-PER", "O"], "BIOES") == [("PER", 0, 2)]
    assert get_entities(["S-PER", "E-PER"], "BIOES") == [("PER", 0, 1), ("PER", 1, 2)]


def test_strict_decoding_hand_cases():
    assert get_entities_strict(["O", "I-PER", "I-PER", "B-LOC"], "IOB2") == [("LOC", 3, 4)]
    assert get_entities_strict(["B-PER", "I-PER", "O", "S-LOC"], "BIOES") == [("LOC", 3, 4)]
    assert get_entities_strict(["B-PER", "I-PER", "E-PER"], "BIOES") == [("PER", 0, 3)]
    # IOB1: B- opens only after an entity of its own type
    assert get_entities_strict(["I-PER", "B-PER", "O"], "IOB1") == [("PER", 0, 1), ("PER", 1, 2)]
    assert get_entities_strict(["O", "B-PER", "I-PER"], "IOB1") == [("PER", 2, 3)]


# Scores match seqeval -----------------------------------------------------------------------------

def seqeval_scores(y_true, y_pred, scheme, strict):
    kwargs = {"mode": "strict", "scheme": SEQEVAL_SCHEME[scheme]} if strict else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # UndefinedMetricWarning on empty classes
        report = seqeval_metrics.classification_report(y_true, y_pred, output_dict=True, **kwargs)
        return {
            "precision": seqeval_metrics.precision_score(y_true, y_pred, **kwargs),
            "recall": seqeval_metrics.recall_score(y_true, y_pred, **kwargs),
            "f1": seqeval_metrics.f1_score(y_true, y_pred, **kwargs),
            "macro_f1": seqeval_metrics.f1_score(y_true, y_pred, average="macro", **kwargs),
            "accuracy": seqeval_metrics.accuracy_score(y_true, y_pred) if sum(map(len, y_true)) else None,
            "per_type": {t: (r["precision"], r["recall"], r["f1-score"], r["support"])
                         for t, r in report.items() if not t.endswith(" avg")},
        }


@pytest.mark.parametrize("scheme, strict", [(s, False) for s in ("IOB1", "IOB2", "BIOES")]
                         + [(s, True) for s in ("IOB1", "IOB2", "BIOES")])
@FAST
@given(data=st.data())
def test_entity_scores_match_seqeval(scheme, strict, data):
    y_true, y_pred = data.draw(paired_corpus(scheme))
    ours = entity_scores(y_true, y_pred, scheme=scheme, strict=strict)
    ref = seqeval_scores(y_true, y_pred, scheme, strict)
    for key in ("precision", "recall", "f1"):
        assert ours[key] == pytest.approx(ref[key])
    if ref["accuracy"] is not None:  # seqeval divides by zero on no tokens; we return 0.0
        assert ours["accuracy"] == pytest.approx(ref["accuracy"])
    if ours["per_type"]:  # seqeval's macro average of no classes is nan
        assert ours["macro_f1"] == pytest.approx(ref["macro_f1"])
    assert list(ours["per_type"]) == list(ref["per_type"])
    for etype, (p, r, f, support) in ref["per_type"].items():
        got = ours["per_type"][etype]
        assert (got["precision"], got["recall"], got["f1"]) == pytest.approx((p, r, f))
        assert got["support"] == support


def test_entity_scores_seqeval_docstring_example():
    y_true = [["O", "O", "O", "B-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    y_pred = [["O", "O", "B-MISC", "I-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    s = entity_scores(y_true, y_pred)
    # 2 gold entities, 2 predicted, 1 exact match (PER); 8 of 10 tokens right
    assert (s["precision"], s["recall"], s["f1"], s["accuracy"]) == (0.5, 0.5, 0.5, 0.8)
    assert s["per_type"]["MISC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert s["per_type"]["PER"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    assert (s["macro_f1"], s["n_true"], s["n_pred"]) == (0.5, 2, 2)


def test_entity_scores_worked_micro_and_macro():
    y_true = [["B-PER", "O", "B-PER", "I-PER", "O", "B-LOC"], ["B-PER", "O", "B-ORG"]]
    y_pred = [["B-PER", "O", "B-PER", "O", "O", "B-PER"], ["B-PER", "O", "B-ORG"]]
    s = entity_scores(y_true, y_pred)
    # gold: PER(0,1) PER(2,4) LOC(5,6) | PER(0,1) ORG(2,3)  -> 5
    # pred: PER(0,1) PER(2,3) PER(5,6) | PER(0,1) ORG(2,3)  -> 5, correct: PER, PER, ORG = 3
    assert (s["n_true"], s["n_pred"]) == (5, 5)
    assert s["precision"] == pytest.approx(3 / 5) and s["recall"] == pytest.approx(3 / 5)
    # PER: 2 of 4 predicted right, 2 of 3 gold found -> P 1/2, R 2/3, F1 = 2*(1/3)/(7/6) = 4/7
    assert s["per_type"]["PER"]["f1"] == pytest.approx(4 / 7)
    assert s["per_type"]["LOC"]["f1"] == 0.0 and s["per_type"]["ORG"]["f1"] == 1.0
    assert s["macro_f1"] == pytest.approx((4 / 7 + 0 + 1) / 3)
    assert s["accuracy"] == pytest.approx(7 / 9)


def test_strict_scores_count_invalid_predictions_as_nothing():
    y_true = [["B-PER", "I-PER", "O", "B-LOC"]]
    y_pred = [["I-PER", "I-PER", "O", "B-LOC"]]
    assert entity_scores(y_true, y_pred)["f1"] == 1.0
    strict = entity_scores(y_true, y_pred, strict=True)
    # only LOC is predicted: P = 1/1, R = 1/2, F1 = 2/3
    assert (strict["precision"], strict["recall"]) == (1.0, 0.5)
    assert strict["f1"] == pytest.approx(2 / 3)


def test_entity_scores_without_entities_are_zero_not_nan():
    s = entity_scores([["O", "O"]], [["O", "O"]])
    assert (s["precision"], s["recall"], s["f1"], s["macro_f1"], s["accuracy"]) == (0.0, 0.0, 0.0, 0.0, 1.0)
    assert s["per_type"] == {}


def test_entities_cannot_cross_sentences():
    # flattened, B-PER I-PER would be one entity; per sentence it is two
    s = entity_scores([["B-PER"], ["I-PER"]], [["B-PER"], ["I-PER"]])
    assert (s["n_true"], s["f1"]) == (2, 1.0)


# Errors -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("tags, scheme, needle", [
    (["B-PER", "PER"], "IOB2", "token 1"),
    (["B-"], "IOB2", "token 0"),
    (["b-per"], "IOB2", "token 0"),
    (["S-PER"], "IOB2", "not used in the IOB2 scheme"),
    (["B-PER"], "IO", "not used in the IO scheme"),
    (["U-PER"], "BIOES", "token 0"),
])
def test_bad_tags_raise_bertkit_error(tags, scheme, needle):
    with pytest.raises(BertkitError, match=needle) as info:
        get_entities(tags, scheme)
    assert info.value.hint


def test_corpus_errors_name_the_side_and_sentence():
    with pytest.raises(BertkitError, match="predicted sentence 1, token 0: tag 'X' "):
        entity_scores([["O"], ["O"]], [["O"], ["X"]])
    with pytest.raises(BertkitError, match="sentence 1, token 1"):
        detect_scheme([["O"], ["O", "B-"]])


def test_unknown_scheme_and_misaligned_inputs_raise():
    with pytest.raises(BertkitError, match="unknown NER tag scheme 'BILOU'"):
        get_entities_strict(["O"], "BILOU")
    with pytest.raises(BertkitError, match="sentence 1 has 2 gold tags but 1 predicted"):
        entity_scores([["O"], ["O", "O"]], [["O"], ["O"]])
    with pytest.raises(BertkitError, match="2 gold sentences but 1 predicted"):
        entity_scores([["O"], ["O"]], [["O"]])


# Writing, converting, validating ------------------------------------------------------------------

@pytest.mark.parametrize("scheme, expected", [
    ("IOB2", ["B-PER", "I-PER", "B-PER", "O", "B-LOC"]),
    ("IOB1", ["I-PER", "I-PER", "B-PER", "O", "I-LOC"]),
    ("BIOES", ["B-PER", "E-PER", "S-PER", "O", "S-LOC"]),
    ("IO", ["I-PER", "I-PER", "I-PER", "O", "I-LOC"]),
])
def test_entities_to_tags(scheme, expected):
    assert entities_to_tags(5, [("PER", 0, 2), ("PER", 2, 3), ("LOC", 4, 5)], scheme) == expected


@pytest.mark.parametrize("entities", [[("PER", 0, 2), ("LOC", 1, 3)], [("PER", 2, 2)], [("PER", 3, 5)]])
def test_entities_to_tags_rejects_bad_spans(entities):
    with pytest.raises(BertkitError):
        entities_to_tags(4, entities, "IOB2")


@pytest.mark.parametrize("scheme", ["IOB1", "IOB2", "BIOES"])
@FAST
@given(drawn=spans())
def test_written_tags_are_valid_and_decode_back(scheme, drawn):
    n, entities = drawn
    tags = entities_to_tags(n, entities, scheme)
    assert validate_tags(tags, scheme) == []
    assert get_entities(tags, scheme) == entities
    assert get_entities_strict(tags, scheme) == entities
    assert seqeval_strict(tags, scheme) == entities


@FAST
@given(drawn=spans())
def test_conversion_is_lossless_between_iob1_iob2_bioes(drawn):
    n, entities = drawn
    for src in ("IOB1", "IOB2", "BIOES"):
        tags = entities_to_tags(n, entities, src)
        for dst in ("IOB1", "IOB2", "BIOES"):
            there = convert_tags(tags, src, dst)
            assert there == entities_to_tags(n, entities, dst)
            assert convert_tags(there, dst, src) == tags


def test_conversion_to_io_merges_touching_entities_of_one_type():
    assert convert_tags(["B-PER", "B-PER", "B-LOC"], "IOB2", "IO") == ["I-PER", "I-PER", "I-LOC"]
    assert get_entities(["I-PER", "I-PER", "I-LOC"], "IO") == [("PER", 0, 2), ("LOC", 2, 3)]


def test_conversion_repairs_invalid_sequences_leniently():
    assert convert_tags(["O", "I-PER", "I-PER"], "IOB2", "IOB2") == ["O", "B-PER", "I-PER"]
    assert convert_tags(["B-PER", "I-PER", "O"], "BIOES", "BIOES") == ["B-PER", "E-PER", "O"]


@pytest.mark.parametrize("scheme", ["IOB1", "IOB2", "BIOES"])
@FAST
@given(data=st.data())
def test_valid_sequences_decode_the_same_strictly_and_leniently(scheme, data):
    tags = data.draw(tag_lists(scheme))
    if not validate_tags(tags, scheme):
        assert get_entities_strict(tags, scheme) == get_entities(tags, scheme)


@pytest.mark.parametrize("tags, scheme, expected", [
    (["B-PER", "I-PER", "O"], "IOB2", []),
    (["O", "I-PER"], "IOB2", ["token 1: I-PER follows O, but IOB2 entities open with B-PER"]),
    (["I-PER"], "IOB2", ["token 0: I-PER opens the sentence, but IOB2 entities open with B-PER"]),
    (["B-LOC", "I-PER"], "IOB2", ["token 1: I-PER follows B-LOC, but IOB2 entities open with B-PER"]),
    (["O", "B-PER"], "IOB1", ["token 1: B-PER follows O, but IOB1 uses B- only right after another PER entity"]),
    (["I-PER", "B-PER"], "IOB1", []),
    (["B-PER", "O"], "BIOES", ["token 0: B-PER is not closed: it needs I-PER or E-PER after it"]),
    (["O", "E-PER"], "BIOES", ["token 1: E-PER follows O, but BIOES entities open with B-PER or S-PER"]),
    (["S-PER", "B-LOC", "I-LOC"], "BIOES", ["token 2: I-LOC ends the sentence without E-LOC"]),
    (["S-PER", "PER"], "IOB2", ["token 0: S-PER is not used in IOB2 (IOB2 uses B-, I- and O)",
                                "token 1: 'PER' is neither 'O' nor PREFIX-TYPE"]),
])
def test_validate_tags_messages(tags, scheme, expected):
    assert validate_tags(tags, scheme) == expected


# Detecting schemes, listing labels ----------------------------------------------------------------

@pytest.mark.parametrize("sequences, expected", [
    ([["B-PER", "I-PER", "O"], ["B-LOC"]], "IOB2"),
    ([["I-PER", "I-PER", "B-PER", "O"]], "IOB1"),
    ([["B-PER", "E-PER", "O", "S-LOC"]], "BIOES"),
    ([["I-PER", "O", "I-LOC"]], "IO"),
    ([["O"], []], "IOB2"),
    # a stray I- start in IOB2 data: its B- tags follow O, which IOB1 never does
    ([["B-PER", "O"], ["O", "I-LOC"]], "IOB2"),
])
def test_detect_scheme(sequences, expected):
    assert detect_scheme(sequences) == expected


@pytest.mark.parametrize("scheme", ["IOB1", "IOB2", "BIOES", "IO"])
@FAST
@given(corpus=st.lists(spans(), max_size=4))
def test_detected_scheme_decodes_written_data_correctly(scheme, corpus):
    sequences = [entities_to_tags(n, ents, scheme) for n, ents in corpus]
    detected = detect_scheme(sequences)
    if not any(tag != "O" for seq in sequences for tag in seq):
        assert detected == "IOB2"
    elif scheme == "IOB1":  # without touching same-type entities IOB1 has no B- and is valid IO
        assert detected in ("IOB1", "IO")
    else:
        assert detected == scheme
    for seq in sequences:
        assert get_entities(seq, detected) == get_entities(seq, scheme)


def test_label_list_order():
    seqs = [["O", "S-PER", "B-LOC", "E-LOC"], ["B-PER", "I-PER", "E-PER", "B-LOC"]]
    assert label_list(seqs) == ["O", "B-LOC", "E-LOC", "B-PER", "I-PER", "E-PER", "S-PER"]
    assert label_list(seqs, scheme="BIOES") == ["O", "B-LOC", "I-LOC", "E-LOC", "S-LOC",
                                                "B-PER", "I-PER", "E-PER", "S-PER"]
    assert label_list([["B-PER"]], scheme="IOB2") == ["O", "B-PER", "I-PER"]
    assert label_list([]) == ["O"]
