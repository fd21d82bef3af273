"""Check ``bertkit embed --pooling mean --normalize`` against sentence-transformers' ``encode`` on MiniLM.

    python bench/check_embed_parity.py [--data ../shared/data] [--limit 120]

Texts: real IMDb reviews (many longer than MiniLM's 256-token max_seq_length, so truncation is
exercised), PubMed sentences from ncbi_disease and Japanese reviews from ja_sentiment (mostly
[UNK] for this English vocabulary, but the same path), plus a few short hand-written lines.

The vectors ``bertkit embed`` writes to .npy are compared with:

1. ``sentence_transformers.SentenceTransformer(<MiniLM dir>).encode(texts)``, when the package can
   be imported (install it for this check only: ``pip install --no-deps sentence-transformers``);
2. an independent reference written here from sentence-transformers' documented pipeline
   (Transformer -> mean Pooling -> Normalize): each text alone, unpadded, through
   ``transformers.AutoModel`` with the tokenizer's own truncation at max_seq_length, averaged over
   its tokens and divided by its L2 norm.

Prints the max absolute difference of each comparison; exits 1 if any exceeds 1e-5.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HAND_WRITTEN = ["A man is playing a guitar.", "Someone plays an instrument.", "ok", "The stock market fell sharply.",
                "東京都に本社を置く会社です。"]
TOLERANCE = 1e-5


def load_texts(data: Path, limit: int) -> list[str]:
    texts = list(HAND_WRITTEN)
    per_source = max(1, (limit - len(texts)) // 3)
    with open(data / "imdb" / "train.jsonl", encoding="utf-8") as fh:
        texts += [json.loads(line)["text"] for _, line in zip(range(per_source), fh)]
    with open(data / "ncbi_disease" / "abstract_sentences.txt", encoding="utf-8") as fh:
        texts += [line.strip() for _, line in zip(range(per_source), fh) if line.strip()]
    with open(data / "ja_sentiment" / "train.jsonl", encoding="utf-8") as fh:
        texts += [json.loads(line)["text"] for _, line in zip(range(per_source), fh)]
    return [" ".join(t.split()) for t in texts]  # one text per input line


def reference(model_dir: str, texts: list[str], max_seq_length: int):
    """Transformer -> mean Pooling -> Normalize, one text at a time (no padding at all)."""
    import numpy as np
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    vectors = []
    with torch.inference_mode():
        for text in texts:
            batch = tokenizer(text, truncation=True, max_length=max_seq_length, return_tensors="pt")
            hidden = model(**batch).last_hidden_state[0]  # (seq, 384)
            mean = hidden.mean(dim=0)
            vectors.append((mean / mean.norm()).numpy())
    return np.stack(vectors)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--limit", type=int, default=120)
    args = parser.parse_args()

    import numpy as np
    from transformers.utils import logging as hf_logging

    from bertkit import embed, models

    hf_logging.disable_progress_bar()
    model_dir, _ = models.resolve("minilm-l6")
    max_seq_length = json.loads((Path(model_dir) / "sentence_bert_config.json").read_text())["max_seq_length"]
    texts = load_texts(Path(args.data), args.limit)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "texts.txt"
        source.write_text("\n".join(texts) + "\n", encoding="utf-8")
        result = embed.run("minilm-l6", str(source), pooling="mean", normalize=True, output=str(Path(tmp) / "v.npy"),
                           chunk=50)
        ours = np.load(Path(tmp) / "v.npy")
    print(f"texts: {len(texts)} ({result['truncated']} longer than max_seq_length={max_seq_length}, cut); "
          f"bertkit vectors {ours.shape}")

    worst = 0.0
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        print(f"sentence-transformers: not importable ({exc}); skipped")
    else:
        import sentence_transformers

        st = SentenceTransformer(model_dir, device="cpu")
        theirs = st.encode(texts, batch_size=32, convert_to_numpy=True)
        diff = float(np.abs(ours - theirs).max())
        worst = max(worst, diff)
        print(f"sentence-transformers {sentence_transformers.__version__} encode: max abs difference {diff:.3e}")
    ref = reference(model_dir, texts, max_seq_length)
    diff = float(np.abs(ours - ref).max())
    worst = max(worst, diff)
    print(f"independent reference (one text at a time, unpadded): max abs difference {diff:.3e}")
    print(f"{'PASS' if worst <= TOLERANCE else 'FAIL'}: worst {worst:.3e} (tolerance {TOLERANCE:g})")
    return 0 if worst <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
