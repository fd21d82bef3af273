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
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

from bertkit.build import read_corpus  # noqa: E402
from bertkit.japanese import align_batch, mecab_pool, token_ids_batch  # noqa: E402
from bertkit.japanese.fast import _fast_path_for  # noqa: E402

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


def build_apart(corpus: list[str], vocab_size: int, mecab_dic: str, out: str) -> str:
    """Build the tokenizer in a child process, as a user builds one (``bertkit build-tokenizer``)
    before using it: training it here left this process 10-15 % slower on every side afterwards."""
    code = ("import sys, json; from bertkit.build import build_tokenizer; "
            "a = json.loads(sys.argv[1]); build_tokenizer(a[0], 'ja', a[1], a[3], mecab_dic=a[2])")
    subprocess.run([sys.executable, "-c", code, json.dumps([corpus, vocab_size, mecab_dic, out])], check=True,
                   env={**os.environ, "PYTHONPATH": REPO})
    return out


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
        path = args.tokenizer or build_apart(corpus, args.vocab_size, args.mecab_dic, tmp)
        load = lambda: AutoTokenizer.from_pretrained(path)  # noqa: E731
        tok = load()
        # One-off set-up outside the timing: dictionaries, tables, and the MeCab helper processes
        # (started by the first big batch of the process; timed apart, like loading a tokenizer).
        align_batch(load(), texts[:50])
        helpers_start, _ = timed(lambda: token_ids_batch(load(), texts))

        def per_text():
            return [tok(t, add_special_tokens=False)["input_ids"] for t in texts]

        def batched():
            return [ids for i in range(0, len(texts), 1000) for ids in tok(texts[i : i + 1000], add_special_tokens=False)["input_ids"]]

        def one_process(fn):
            """fn() with the MeCab helpers turned off: what one core does."""
            old = os.environ.get(mecab_pool.WORKERS_ENV)
            os.environ[mecab_pool.WORKERS_ENV] = "0"
            try:
                return fn()
            finally:
                if old is None:
                    del os.environ[mecab_pool.WORKERS_ENV]
                else:
                    os.environ[mecab_pool.WORKERS_ENV] = old

        runs = {k: [] for k in ("per_text", "batched", "setup", "ids_cold", "fast_cold", "fast_warm", "ids_cold_1",
                                "fast_cold_1", "slow_alignment")}
        for _ in range(args.repeat):
            runs["per_text"].append(timed(per_text))
            runs["batched"].append(timed(batched))
            fresh = load()
            runs["setup"].append(timed(lambda: _fast_path_for(fresh)))
            runs["fast_cold"].append(timed(lambda: align_batch(fresh, texts)))
            runs["fast_warm"].append(timed(lambda: align_batch(fresh, texts)))
            fresh = load()
            _fast_path_for(fresh)
            runs["ids_cold"].append(timed(lambda: token_ids_batch(fresh, texts)))
            fresh = load()
            _fast_path_for(fresh)
            runs["ids_cold_1"].append(timed(lambda: one_process(lambda: token_ids_batch(fresh, texts))))
            fresh = load()
            _fast_path_for(fresh)
            runs["fast_cold_1"].append(timed(lambda: one_process(lambda: align_batch(fresh, texts))))
        runs["slow_alignment"].append(timed(lambda: align_batch(tok, texts, method="slow")))

    setup = best(runs.pop("setup"))[0]
    seconds = {k: best(v)[0] for k, v in runs.items()}
    reference = best(runs["per_text"])[1]
    for key in ("fast_cold", "fast_cold_1"):
        if [a.input_ids for a in best(runs[key])[1]] != reference:
            sys.exit("fast path ids differ from BertJapaneseTokenizer: not benchmarking a wrong answer")
    for key in ("ids_cold", "ids_cold_1"):
        if best(runs[key])[1] != reference:
            sys.exit("fast path ids differ from BertJapaneseTokenizer: not benchmarking a wrong answer")
    n_tokens = sum(map(len, reference))
    baseline = min(seconds["per_text"], seconds["batched"])
    report = {
        "tokenizer": args.tokenizer or f"built: mecab_dic={args.mecab_dic}, vocab {args.vocab_size}",
        "lines": len(texts),
        "tokens": n_tokens,
        "chars": sum(map(len, texts)),
        "mecab_helpers": mecab_pool.configured_workers(),
        "cpus": len(os.sched_getaffinity(0)),
        "seconds": seconds,
        "lines_per_s": {k: len(texts) / s for k, s in seconds.items()},
        "tokens_per_s": {k: n_tokens / s for k, s in seconds.items()},
        "speedup": {k: baseline / seconds[k] for k in ("ids_cold", "fast_cold", "fast_warm", "ids_cold_1", "fast_cold_1")},
        "fast_setup_seconds": setup,
        "first_call_with_helper_start_seconds": helpers_start,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    print(f"tokenizer: {report['tokenizer']}")
    print(f"{len(texts)} lines, {report['chars']} characters, {n_tokens} tokens; best of {args.repeat}; "
          f"{report['cpus']} CPUs, {report['mecab_helpers']} MeCab helper processes")
    names = {
        "per_text": "BertJapaneseTokenizer, per text (ids)",
        "batched": "BertJapaneseTokenizer, batches of 1000 (ids)",
        "ids_cold": "bertkit fast path, ids (cold cache)",
        "fast_cold": "bertkit fast path, ids+offsets+word ids (cold)",
        "fast_warm": "bertkit fast path, ids+offsets+word ids (warm)",
        "ids_cold_1": "  same, one process: ids (cold)",
        "fast_cold_1": "  same, one process: ids+offsets+word ids (cold)",
        "slow_alignment": "bertkit slow alignment (ids+offsets+word ids)",
    }
    for key, name in names.items():
        ratio = f"{report['speedup'][key]:6.2f}x" if key in report["speedup"] else ""
        print(f"  {name:48s} {report['lines_per_s'][key]:8.0f} lines/s {report['tokens_per_s'][key]:9.0f} tokens/s {ratio}")
    print(f"  fast path one-off set-up (tagger, WordPiece table, self-check): {setup:.3f} s; "
          f"first pass of a process, ids, incl. starting the helpers: {helpers_start:.3f} s")
    sp = report["speedup"]
    print(f"speed-up vs the faster BertJapaneseTokenizer call (cold cache): ids {sp['ids_cold']:.2f}x, "
          f"ids+offsets+word ids {sp['fast_cold']:.2f}x; one process: {sp['ids_cold_1']:.2f}x, {sp['fast_cold_1']:.2f}x")


if __name__ == "__main__":
    main()
