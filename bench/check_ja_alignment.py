"""Check bertkit.japanese on every real Japanese line: ids identical, offsets exact.

    python bench/check_ja_alignment.py [--data ../shared/data] [--limit N] [--json]

Builds a Tohoku-style tokenizer (MeCab unidic-lite + WordPiece) on the data with
``bertkit.build.build_tokenizer``, and one with ipadic when that package is installed, then runs
the slow alignment and the fast path over ja_sentiment, ja_ner (texts), JSQuAD (contexts and
questions) and ja_medical. Per tokenizer and path it prints:

- ids: % of lines whose ids equal ``tokenizer(text, add_special_tokens=False)["input_ids"]``;
- exact: % of tokens whose original slice ``text[start:end]``, normalised the way the tokenizer
  normalises (NFKC, lower-casing if configured, whitespace dropped), is the token without ``##``
  (or, where NFKC expanded one character into several tokens, is the smallest slice holding it);
  an added token must be its slice; an ``[UNK]`` must cover a whole unknown word (WordPiece of
  the normalised slice is ``[UNK]``);
- fast == slow: % of lines where both paths give the same ids, offsets and word ids;
- ids only: % of lines whose ``token_ids_batch`` ids (the fast path without offsets, as
  classification uses it; built in MeCab helper processes for a batch this big) equal the tokenizer's.

When NFKC makes several tokens from one original character (``㈱`` -> ``(``, ``株``, ``)``), each
token spans that whole character, the smallest slice of the original it came from: that counts as
exact. Examples of inexact tokens are listed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
import unicodedata
from collections import Counter

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

from bertkit.build import build_tokenizer, read_corpus  # noqa: E402
from bertkit.japanese import align_batch, token_ids_batch  # noqa: E402

def is_exact(tok, added: set[str], text: str, token: str, start: int, end: int) -> bool:
    """Is the original slice exactly what the token came from? (independent of bertkit.japanese)

    Either the slice normalises to the token, or NFKC expanded the slice into several tokens and
    the slice is the smallest one that still holds this token (``℃`` -> ``°``, ``c``: each token's
    source is the one character ``℃``; nothing finer exists in the original text).
    """
    piece = text[start:end]
    if token in added and token != tok.unk_token:
        return piece == token
    if token == tok.unk_token:
        norm = _norm(tok, piece)
        return bool(norm) and tok.subword_tokenizer.tokenize(norm) == [tok.unk_token]
    bare = token[2:] if token.startswith("##") else token
    norm = _norm(tok, piece)
    if norm == bare:
        return True
    return bare in norm and bare not in _norm(tok, piece[1:]) and bare not in _norm(tok, piece[:-1])


def _norm(tok, piece: str) -> str:
    norm = unicodedata.normalize("NFKC", piece)
    return "".join((norm.lower() if tok.do_lower_case else norm).split())


def check(tok, lines: list[str], method: str) -> dict:
    t0 = time.perf_counter()
    results = align_batch(tok, lines, method=method)
    seconds = time.perf_counter() - t0
    same_ids = tokens = exact = 0
    misses: Counter = Counter()
    added = set(tok.added_tokens_encoder)
    for text, a in zip(lines, results):
        same_ids += a.input_ids == tok(text, add_special_tokens=False)["input_ids"]
        for token, (s, e) in zip(tok.convert_ids_to_tokens(a.input_ids), a.offsets):
            tokens += 1
            if is_exact(tok, added, text, token, s, e):
                exact += 1
            else:
                misses[(token, text[s:e])] += 1
    return {
        "lines": len(lines),
        "ids_identical_pct": 100 * same_ids / len(lines),
        "tokens": tokens,
        "exact_offsets_pct": 100 * exact / max(tokens, 1),
        "seconds": seconds,
        "inexact_examples": [f"{t!r} <- {p!r} x{n}" for (t, p), n in misses.most_common(8)],
        "_results": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.path.join(REPO, "..", "shared", "data"))
    parser.add_argument("--vocab-size", type=int, default=32000)
    parser.add_argument("--limit", type=int, default=0, help="check only the first N lines")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from transformers import AutoTokenizer

    corpus = common.japanese_files(args.data)
    lines = list(read_corpus(corpus))
    if args.limit:
        lines = lines[: args.limit]
    dics = ["unidic_lite"] + (["ipadic"] if importlib.util.find_spec("ipadic") else [])
    report = {"lines": len(lines), "tokenizers": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for dic in dics:
            path = build_tokenizer(corpus, "ja", args.vocab_size, os.path.join(tmp, dic), mecab_dic=dic)
            tok = AutoTokenizer.from_pretrained(path)
            slow, fast = check(tok, lines, "slow"), check(tok, lines, "fast")
            same = sum(a == b for a, b in zip(slow.pop("_results"), fast.pop("_results")))
            ids_only = token_ids_batch(tok, lines)
            same_ids = sum(got == tok(text, add_special_tokens=False)["input_ids"] for got, text in zip(ids_only, lines))
            report["tokenizers"][dic] = {
                "vocab": len(tok),
                "slow": slow,
                "fast": fast,
                "fast_equals_slow_pct": 100 * same / len(lines),
                "ids_only_identical_pct": 100 * same_ids / len(lines),
            }
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
        return
    print(f"{len(lines)} Japanese lines from {args.data}")
    for dic, r in report["tokenizers"].items():
        print(f"\nmecab_dic={dic}  vocab={r['vocab']}  fast == slow on {r['fast_equals_slow_pct']:.2f}% of lines; "
              f"ids only (token_ids_batch) identical on {r['ids_only_identical_pct']:.2f}% of lines")
        for path in ("slow", "fast"):
            x = r[path]
            print(
                f"  {path:4s}  ids identical {x['ids_identical_pct']:6.2f}% of lines   "
                f"exact offsets {x['exact_offsets_pct']:7.3f}% of {x['tokens']} tokens   ({x['seconds']:.1f} s)"
            )
        if r["fast"]["inexact_examples"]:
            print("  inexact (token <- original slice):", "; ".join(r["fast"]["inexact_examples"]))


if __name__ == "__main__":
    main()
