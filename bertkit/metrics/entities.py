"""NER tag schemes, and entity-level scores by seqeval.

Tags are ``"O"`` or ``PREFIX-TYPE`` (``B-PER``, ``I-LOC``, ``E-ORG``, ``S-MISC``; the type may itself
contain hyphens). Four schemes: ``IOB1`` (B- only splits two touching entities of one type), ``IOB2``
(every entity opens with B-), ``BIOES`` (B-/I-/E- for long entities, S- for one-token ones; seqeval
calls it IOBES) and ``IO`` (I- only; touching entities of one type cannot be told apart).

Entities are ``(type, start, end)`` token spans with ``end`` exclusive, per sentence.

Scoring (``entity_scores``) is seqeval's own ``classification_report``, default mode or
``mode="strict"`` with the scheme's class; this module adds only what seqeval lacks: errors that
name the bad tag, the side and the sentence, token accuracy without a division by zero, the count
of predicted entities and a macro F1 that is 0.0 (not nan) with no types.

Kept here because seqeval does not offer them: scheme detection (``detect_scheme``), validation
with readable problems (``validate_tags``), conversion between schemes (``convert_tags``,
``entities_to_tags``), which tag may follow which (``may_follow``, for constrained decoding), the
label list a model predicts (``label_list``), and two decoders that
turn one tag sequence into exclusive-end spans for ``bertkit.tasks.ner``'s decoding and data
checks, matching seqeval 1.2.2 exactly (checked against it in the tests). seqeval's own decoders
return inclusive ends or token objects, warn instead of raising on malformed tags, and its strict
mode has no IO scheme:

- ``get_entities`` (seqeval's default mode, conlleval's rules): every non-O token belongs to an
  entity; a token joins the previous token's entity only when the previous tag is B-/I-, its own is
  I-/E-, and the types agree. So ``O I-PER`` opens an entity, ``I-PER I-LOC`` is two, ``E-PER I-PER``
  is two. These rules do not depend on the scheme; ``scheme`` only says which prefixes are allowed.
- ``get_entities_strict`` (seqeval ``mode="strict"``): only well-formed entities of the scheme count;
  a span with an invalid transition produces nothing (``O I-PER`` in IOB2, ``B-PER I-PER O`` in BIOES).

Not handled: suffix tags (``PER-B``), BILOU and IOE schemes, nested or overlapping entities. A tag
that is not ``O`` or ``PREFIX-TYPE``, or a prefix the scheme does not use, raises ``BertkitError``
(``validate_tags`` reports such problems instead of raising).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from bertkit.errors import BertkitError

SCHEMES = ("IOB1", "IOB2", "BIOES", "IO")
_PREFIXES = {"IOB1": "BI", "IOB2": "BI", "BIOES": "BIES", "IO": "I"}
_PREFIX_ORDER = "BIES"
_OUTSIDE = ("O", None)  # the parsed form of "O"; also stands before a sentence and after it

Entity = tuple[str, int, int]


def _check_scheme(scheme: str) -> str:
    if scheme not in _PREFIXES:
        raise BertkitError(f"unknown NER tag scheme '{scheme}'", f"use one of {', '.join(SCHEMES)}")
    return scheme


def _split(tag: str) -> tuple[str, str | None] | None:
    """``"B-PER"`` -> ``("B", "PER")``, ``"O"`` -> ``("O", None)``, anything else -> None."""
    if tag == "O":
        return _OUTSIDE
    if isinstance(tag, str) and len(tag) > 2 and tag[0] in _PREFIX_ORDER and tag[1] == "-":
        return tag[0], tag[2:]
    return None


def _parse(tags: Sequence[str], scheme: str | None, where: str = "") -> list[tuple[str, str | None]]:
    """Parse every tag, raising on the first malformed one or one the scheme does not use.

    ``where`` ("gold sentence 3, ") starts the error message, to point into a corpus.
    """
    allowed = _PREFIXES[_check_scheme(scheme)] + "O" if scheme else _PREFIX_ORDER + "O"
    parsed = []
    for i, tag in enumerate(tags):
        part = _split(tag)
        if part is None:
            raise BertkitError(f"{where}token {i}: tag {tag!r} is neither 'O' nor PREFIX-TYPE",
                               "NER tags look like B-PER, I-LOC or O")
        if part[0] not in allowed:
            raise BertkitError(f"{where}token {i}: tag {tag!r} is not used in the {scheme} scheme",
                               f"{scheme} uses {_describe(scheme)}; set the scheme the data was written in")
        parsed.append(part)
    return parsed


def _describe(scheme: str) -> str:
    return ", ".join(f"{p}-" for p in _PREFIXES[scheme]) + " and O"


def get_entities(tags: Sequence[str], scheme: str = "IOB2") -> list[Entity]:
    """Entities as seqeval's default (lenient, conlleval-compatible) mode reads them.

    The decoding is the same for every scheme; ``scheme`` only decides which prefixes are accepted.
    """
    return _lenient(_parse(tags, scheme))


def _lenient(parsed) -> list[Entity]:
    entities, start = [], None
    for i, cur in enumerate(parsed):
        if start is not None and not _continues(parsed[i - 1], cur):
            entities.append((parsed[start][1], start, i))
            start = None
        if start is None and cur[0] != "O":
            start = i
    if start is not None:
        entities.append((parsed[start][1], start, len(parsed)))
    return entities


def _continues(prev, cur) -> bool:
    # The one continuation rule of the lenient mode; everything else opens or closes an entity.
    # The strict scan extends entities by the same rule (E- only parses in BIOES; nothing follows E-).
    return prev[0] in "BI" and cur[0] in "IE" and prev[1] == cur[1]


def get_entities_strict(tags: Sequence[str], scheme: str) -> list[Entity]:
    """Entities as seqeval ``mode="strict"`` reads them with the given scheme.

    A scan: at a token that may open an entity in this scheme, take the run of same-type I- tokens
    (and, in BIOES, one closing E-) after it; keep the span only if the scheme lets it end there.
    Tokens in a rejected span are not looked at again; the scan resumes after the run.
    """
    return _strict(_parse(tags, scheme), scheme)


def _strict(parsed, scheme: str) -> list[Entity]:
    opens, closes = _STRICT[scheme]
    entities, prev, i = [], _OUTSIDE, 0
    while i < len(parsed):
        cur = parsed[i]
        if not opens(prev, cur):
            prev, i = cur, i + 1
            continue
        j = i + 1
        while j < len(parsed) and _continues(parsed[j - 1], parsed[j]):
            j += 1
        if closes(parsed[j - 1], parsed[j] if j < len(parsed) else _OUTSIDE):
            entities.append((cur[1], i, j))
        prev, i = parsed[j - 1], j
    return entities


def _iob1_opens(prev, cur) -> bool:
    # IOB1 writes B- only where an entity touches one of its own type; a B- elsewhere is invalid
    # and opens nothing (the I- after it then opens the entity, as in seqeval).
    if cur[0] == "I":
        return not (prev[0] == "I" and prev[1] == cur[1])
    return cur[0] == "B" and prev[0] in "BI" and prev[1] == cur[1]


def _iob1_closes(last, nxt) -> bool:
    # A lone B-X followed by B-Y: the B-Y is invalid and seqeval drops B-X with it.
    return not (last[0] == "B" and nxt[0] == "B" and last[1] != nxt[1])


def _always(*_) -> bool:
    return True


# scheme -> (may cur open an entity after prev?, may an entity whose last token is `last` end before `nxt`?)
_STRICT = {
    "IOB1": (_iob1_opens, _iob1_closes),
    "IOB2": (lambda prev, cur: cur[0] == "B", _always),
    "BIOES": (lambda prev, cur: cur[0] in "BS", lambda last, nxt: last[0] in "ES"),
    # seqeval has no IO scheme; IO has no invalid transitions, so strict equals lenient here.
    "IO": (lambda prev, cur: cur[0] == "I" and prev[1] != cur[1], _always),
}


def may_follow(prev: str, cur: str, scheme: str) -> bool:
    """Whether tag ``cur`` may come right after tag ``prev`` in a well-formed sequence of ``scheme``;
    ``"O"`` stands for the start (as ``prev``) and the end (as ``cur``) of a sentence. The table behind
    constrained decoding (``bertkit.tasks.ner.decoding.best_path``)."""
    p, c = _parse([prev, cur], scheme)
    inside = p[0] in "BI" and p[1] == c[1]  # cur would continue prev's entity
    if scheme == "IOB2":
        return c[0] != "I" or inside
    if scheme == "BIOES":
        return inside if c[0] in "IE" else p[0] not in "BI"
    if scheme == "IOB1":
        return c[0] != "B" or inside
    return True  # IO: every sequence is well formed


def entities_to_tags(n_tokens: int, entities: Iterable[Entity], scheme: str) -> list[str]:
    """Write ``(type, start, end)`` spans as tags of ``scheme``; the other tokens get ``O``.

    Spans must lie inside ``[0, n_tokens)``, be non-empty and not overlap. With ``IO``, two touching
    entities of one type become one (IO cannot mark the boundary).
    """
    _check_scheme(scheme)
    tags = ["O"] * n_tokens
    last_type, last_end = None, -1
    for etype, start, end in sorted(entities, key=lambda e: e[1]):
        if not (0 <= start < end <= n_tokens) or start < last_end:
            raise BertkitError(f"entity {(etype, start, end)} is empty, out of range for {n_tokens} tokens "
                               "or overlaps the one before it",
                               "entities are non-overlapping (type, start, end_exclusive) token spans")
        touching = start == last_end and etype == last_type
        for i in range(start, end):
            tags[i] = f"{_prefix(scheme, i - start, end - start, touching)}-{etype}"
        last_type, last_end = etype, end
    return tags


def _prefix(scheme: str, offset: int, length: int, touching: bool) -> str:
    """The prefix of the token at ``offset`` in an entity of ``length`` tokens."""
    if scheme == "IOB2":
        return "B" if offset == 0 else "I"
    if scheme == "IOB1":
        return "B" if offset == 0 and touching else "I"
    if scheme == "BIOES":
        if length == 1:
            return "S"
        return "B" if offset == 0 else "E" if offset == length - 1 else "I"
    return "I"


def convert_tags(tags: Sequence[str], src: str, dst: str) -> list[str]:
    """Rewrite tags from scheme ``src`` to ``dst`` through their entities.

    Lossless for sequences valid in ``src`` (see ``validate_tags``) unless ``dst`` is ``IO`` and two
    entities of one type touch. Invalid sequences are repaired the lenient way (``O I-PER`` in IOB2
    becomes an entity), so converting a scheme to itself normalises it.
    """
    return entities_to_tags(len(tags), get_entities(tags, src), _check_scheme(dst))


def validate_tags(tags: Sequence[str], scheme: str) -> list[str]:
    """Human-readable problems with ``tags`` under ``scheme``; an empty list when the sequence is valid.

    Reports malformed tags, prefixes the scheme does not use and invalid transitions, one line per
    problem (``"token 3: I-PER follows O, but IOB2 entities open with B-PER"``). Never raises for
    bad tags, only for an unknown scheme.
    """
    allowed = _PREFIXES[_check_scheme(scheme)]
    problems, prev = [], _OUTSIDE
    for i, tag in enumerate(tags):
        cur = _split(tag)
        if cur is None:
            problems.append(f"token {i}: {tag!r} is neither 'O' nor PREFIX-TYPE")
            cur = _OUTSIDE
        elif cur[0] not in allowed + "O":
            problems.append(f"token {i}: {tag} is not used in {scheme} ({scheme} uses {_describe(scheme)})")
            cur = _OUTSIDE
        else:
            problems += _transition_problems(scheme, i, prev, cur, tags)
        prev = cur
    if scheme == "BIOES" and prev[0] in "BI":
        problems.append(f"token {len(tags) - 1}: {tags[-1]} ends the sentence without E-{prev[1]}")
    return problems


def _transition_problems(scheme: str, i: int, prev, cur, tags) -> list[str]:
    after = f"follows {tags[i - 1]}" if i else "opens the sentence"
    tag, etype = tags[i], cur[1]
    continues = prev[0] in "BI" and prev[1] == etype
    if scheme == "IOB2" and cur[0] == "I" and not continues:
        return [f"token {i}: {tag} {after}, but IOB2 entities open with B-{etype}"]
    if scheme == "IOB1" and cur[0] == "B" and not continues:
        return [f"token {i}: {tag} {after}, but IOB1 uses B- only right after another {etype} entity"]
    if scheme == "BIOES":
        problems = []
        if prev[0] in "BI" and not (cur[0] in "IE" and prev[1] == etype):
            problems.append(f"token {i - 1}: {tags[i - 1]} is not closed: it needs I-{prev[1]} or E-{prev[1]} after it")
        if cur[0] in "IE" and not continues:
            problems.append(f"token {i}: {tag} {after}, but BIOES entities open with B-{etype} or S-{etype}")
        return problems
    return []


def detect_scheme(tag_sequences: Iterable[Sequence[str]]) -> str:
    """Guess the scheme of gold data from the tags it uses.

    ``BIOES`` if any E-/S- appears; ``IO`` if only I- and O appear; ``IOB1`` if some I- opens an
    entity and every B- sits right after an entity of its own type; otherwise ``IOB2`` (also for
    data with no entities). IOB2 data with a few stray ``O I-X`` transitions stays IOB2 because its
    B- tags follow O. Meant for gold data: model predictions can look like anything.
    """
    prefixes, i_opens, b_opens = set(), False, False
    for n, seq in enumerate(tag_sequences):
        prev = _OUTSIDE
        for cur in _parse(seq, None, where=f"sentence {n}, "):
            prefixes.add(cur[0])
            continues = prev[0] in "BI" and prev[1] == cur[1]
            i_opens |= cur[0] == "I" and not continues
            b_opens |= cur[0] == "B" and not continues
            prev = cur
    if prefixes & {"E", "S"}:
        return "BIOES"
    if "B" not in prefixes:
        return "IO" if "I" in prefixes else "IOB2"
    return "IOB1" if i_opens and not b_opens else "IOB2"


def label_list(tag_sequences: Iterable[Sequence[str]], scheme: str | None = None) -> list[str]:
    """Every tag seen, in a stable order: ``"O"`` first, then by type, B- before I- before E- before S-.

    ``"O"`` is always included. With ``scheme``, each type seen also gets every prefix of that scheme,
    so a model can predict e.g. ``I-PER`` even if the training data only ever had one-token persons.
    """
    seen = {part for n, seq in enumerate(tag_sequences)
            for part in _parse(seq, scheme, where=f"sentence {n}, ") if part[0] != "O"}
    if scheme:
        seen |= {(p, etype) for _, etype in seen for p in _PREFIXES[scheme]}
    ordered = sorted(seen, key=lambda part: (part[1], _PREFIX_ORDER.index(part[0])))
    return ["O"] + [f"{p}-{etype}" for p, etype in ordered]


def entity_scores(y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]],
                  scheme: str = "IOB2", strict: bool = False) -> dict:
    """Entity-level precision/recall/F1 from seqeval, plus token accuracy.

    An entity counts as correct only when its type, sentence, start and end all match. ``strict``
    picks seqeval's ``mode="strict"`` with the scheme's class over its default mode; seqeval has no
    IO scheme, and IO has no invalid transitions, so IO is scored in the default mode either way.

    Returns ``precision``, ``recall``, ``f1`` (micro over all entities), ``accuracy`` (token level),
    ``per_type`` (``{type: {precision, recall, f1, support}}``, types from gold and predictions,
    support = gold count), ``macro_f1`` (unweighted mean over those types), ``n_true``, ``n_pred``.
    Any ratio with a zero denominator is 0.0 (seqeval's ``zero_division=0``).

    Computed here rather than read from seqeval, and why: ``macro_f1`` is the plain Python mean of
    seqeval's per-type F1 (seqeval's own macro average of no types is nan, and numpy's summation
    order can differ in the last bit); ``n_pred`` counts seqeval's own entities of the predictions
    (its reports give only gold support); ``accuracy`` is 0.0 without tokens (seqeval divides by
    zero). Tags are parsed first (``_parse``), so a malformed tag or a prefix the scheme does not
    use is a ``BertkitError`` naming the side and sentence, never a seqeval warning or KeyError.
    """
    import warnings

    from seqeval.metrics import accuracy_score, classification_report
    from seqeval.metrics.sequence_labeling import get_entities as seqeval_entities
    from seqeval.scheme import IOB1, IOB2, IOBES, Entities

    _check_aligned(y_true, y_pred)
    for side, sequences in (("gold", y_true), ("predicted", y_pred)):
        for n, seq in enumerate(sequences):
            _parse(seq, scheme, where=f"{side} sentence {n}, ")
    # seqeval wants lists of lists and rejects a corpus of no sentences; one empty sentence scores the same.
    y_true, y_pred = [list(s) for s in y_true] or [[]], [list(s) for s in y_pred] or [[]]
    seqeval_scheme = {"IOB1": IOB1, "IOB2": IOB2, "BIOES": IOBES}.get(scheme) if strict else None
    kwargs = {"mode": "strict", "scheme": seqeval_scheme} if seqeval_scheme else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numpy's "mean of empty slice" for seqeval's macro average of no types
        report = classification_report(y_true, y_pred, output_dict=True, zero_division=0, **kwargs)
    n_pred = (sum(len(sent) for sent in Entities(y_pred, seqeval_scheme, False).entities) if seqeval_scheme
              else len(seqeval_entities(y_pred)))
    micro = report.pop("micro avg")
    per_type = {t: {"precision": float(r["precision"]), "recall": float(r["recall"]), "f1": float(r["f1-score"]),
                    "support": int(r["support"])}
                for t, r in report.items() if t not in ("macro avg", "weighted avg")}
    n_tokens = sum(len(s) for s in y_true)
    return {
        "precision": float(micro["precision"]),
        "recall": float(micro["recall"]),
        "f1": float(micro["f1-score"]),
        "accuracy": accuracy_score(y_true, y_pred) if n_tokens else 0.0,
        "per_type": per_type,
        "macro_f1": sum(s["f1"] for s in per_type.values()) / len(per_type) if per_type else 0.0,
        "n_true": int(micro["support"]),
        "n_pred": n_pred,
    }


def _check_aligned(y_true, y_pred) -> None:
    if len(y_true) != len(y_pred):
        raise BertkitError(f"{len(y_true)} gold sentences but {len(y_pred)} predicted ones",
                           "score predictions for exactly the sentences of the gold data, in order")
    for n, (ts, ps) in enumerate(zip(y_true, y_pred)):
        if len(ts) != len(ps):
            raise BertkitError(f"sentence {n} has {len(ts)} gold tags but {len(ps)} predicted tags",
                               "predict one tag per gold word (label the first sub-token of each word)")
