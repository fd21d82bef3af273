"""Benchmark: bertkit's Japanese fast path vs transformers' BertJapaneseTokenizer, one run.

    python bench/bench_ja_tokenize.py [--data ../shared/data] [--tokenizer DIR | --mecab-dic ipadic]
                                      [--repeat 3] [--json FILE]

On all real Japanese lines (ja_sentiment, ja_ner, JSQuAD contexts and questions, ja_medical) and a
Tohoku-style tokenizer (MeCab unidic-lite + WordPiece; built from the data unless --tokenizer is
given) it times, best of --repeat runs:

- baseline: ``tokenizer(text, add_special_tokens=False)`` per text (ids only, no offsets), and
  ``tokenizer(texts)`` in batches of 1,000; the faster of the two is the baseline;
- fast (cold): ``bertkit.japanese.align_batch`` on a freshly loaded tokenizer, so its word cache
  starts empty: a first pass over a corpus; it returns ids, offsets and word ids. Its one-off
  set-up (MeCab tagger, WordPiece table, self-check) is timed apart as "set-up", as loading the
  baseline tokenizer is;
- fast (warm): the same call again, word cache filled (a long job after its first minutes);
- slow alignment: bertkit's exact mirror of the tokenizer, for reference.

Every timed run starts after a full garbage collection and ends with a collection of the young
generation (the fast path defers its collection to the end of a batch; it is charged here).
Throughput is lines and tokens per second; the ratio is fast (cold) / baseline.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

from bertkit.build import build_tokenizer, read_corpus  # noqa: E402
from bertkit.japanese import _fast_path_for, align_batch  # noqa: E402

def timed(fn) -> tuple[float, object]:
    """Seconds for fn(), including a collection of the young objects it left to the collector.

    The fast path pauses the garbage collector while it builds results; the collection of what
    it made then happens at the next allocation, and must be charged to it, not to whatever
    runs next. Both sides get the same treatment.
    """
    gc.collect()
    t0 = time.perf_counter()
    result = fn()
    gc.collect(0)
    return time.perf_counter() - t0, result


def best(runs: list[tuple[float, object]]) -> tuple[float, object]:
    return min(runs, key=lambda r: r[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.path.join(REPO, "..", "shared", "data"))
    parser.add_argument("--tokenizer", help="a BertJapaneseTokenizer directory (default: build one)")
    parser.add_argument("--mecab-dic", default="unidic_lite", help="dictionary of the built tokenizer")
    parser.add_argument("--vocab-size", type=int, default=32000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--limit", type=int, default=0, help="use only the first N lines")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    from transformers import AutoTokenizer

    corpus = common.japanese_files(args.data)
    texts = list(read_corpus(corpus))[: args.limit or None]
    with tempfile.TemporaryDirectory() as tmp:
        path = args.tokenizer or build_tokenizer(corpus, "ja", args.vocab_size, tmp, mecab_dic=args.mecab_dic)
        load = lambda: AutoTokenizer.from_pretrained(path)  # noqa: E731
        tok = load()
        align_batch(load(), texts[:50])  # one-off set-up (dictionaries, tables) outside the timing

        def per_text():
            return [tok(t, add_special_tokens=False)["input_ids"] for t in texts]

        def batched():
            return [ids for i in range(0, len(texts), 1000) for ids in tok(texts[i : i + 1000], add_special_tokens=False)["input_ids"]]

        runs = {"per_text": [], "batched": [], "setup": [], "fast_cold": [], "fast_warm": [], "slow_alignment": []}
        for _ in range(args.repeat):
            runs["per_text"].append(timed(per_text))
            runs["batched"].append(timed(batched))
            fresh = load()
            runs["setup"].append(timed(lambda: _fast_path_for(fresh)))
            runs["fast_cold"].append(timed(lambda: align_batch(fresh, texts)))
            runs["fast_warm"].append(timed(lambda: align_batch(fresh, texts)))
        runs["slow_alignment"].append(timed(lambda: align_batch(tok, texts, method="slow")))

    setup = best(runs.pop("setup"))[0]
    seconds = {k: best(v)[0] for k, v in runs.items()}
    reference = best(runs["per_text"])[1]
    fast_ids = [a.input_ids for a in best(runs["fast_cold"])[1]]
    if fast_ids != reference:
        sys.exit("fast path ids differ from BertJapaneseTokenizer: not benchmarking a wrong answer")
    n_tokens = sum(map(len, reference))
    baseline = min(seconds["per_text"], seconds["batched"])
    report = {
        "tokenizer": args.tokenizer or f"built: mecab_dic={args.mecab_dic}, vocab {args.vocab_size}",
        "lines": len(texts),
        "tokens": n_tokens,
        "chars": sum(map(len, texts)),
        "lines_per_s": {k: len(texts) / s for k, s in seconds.items()},
        "tokens_per_s": {k: n_tokens / s for k, s in seconds.items()},
        "speedup_cold": baseline / seconds["fast_cold"],
        "speedup_warm": baseline / seconds["fast_warm"],
        "fast_setup_seconds": setup,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    print(f"tokenizer: {report['tokenizer']}")
    print(f"{len(texts)} lines, {report['chars']} characters, {n_tokens} tokens; best of {args.repeat}")
    names = {
        "per_text": "BertJapaneseTokenizer, per text",
        "batched": "BertJapaneseTokenizer, batches of 1000",
        "fast_cold": "bertkit fast path, cold cache (+offsets)",
        "fast_warm": "bertkit fast path, warm cache (+offsets)",
        "slow_alignment": "bertkit slow alignment (+offsets)",
    }
    for key, name in names.items():
        print(f"  {name:42s} {report['lines_per_s'][key]:9.0f} lines/s {report['tokens_per_s'][key]:10.0f} tokens/s")
    print(f"  fast path one-off set-up (tagger, WordPiece table, self-check): {setup:.3f} s")
    print(f"speed-up vs the faster BertJapaneseTokenizer call: {report['speedup_cold']:.2f}x cold, {report['speedup_warm']:.2f}x warm")


if __name__ == "__main__":
    main()
