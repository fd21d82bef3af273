"""Build a randomly initialised encoder of another family, at MiniLM-L6's size, for speed benchmarks.

    python bench/make_family_model.py roberta OUT_DIR [--data ../shared/data] [--vocab 30000]

No non-BERT weights can be downloaded here, so the non-BERT numbers of ``bench/parity.py --model``
come from a random model: the same shape as all-MiniLM-L6-v2 (6 layers, 384 wide, 12 heads, 1,536
intermediate) in the chosen family's architecture, with the family's tokenizer kind trained on the
English texts of ``../shared/data`` (IMDb reviews, NCBI sentences, SQuAD contexts and questions).
Both sides of a parity run start from the same random weights, so their accuracies compare with each
other (not with a pretrained model's) and their times measure each side's own work.

Families: ``roberta`` (byte-level BPE, ``<s> A </s></s> B </s>``, one token type) and ``modernbert``
(byte-level BPE, ``[CLS] A [SEP]``, no token types, rotary positions).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

SIZE = {"hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12, "intermediate_size": 1536}


def texts(data: Path, limit: int = 60_000):
    n = 0
    for row in common.read_jsonl(data / "imdb" / "train.jsonl"):
        yield row["text"]
        n += 1
        if n >= limit // 2:
            break
    for line in (data / "ncbi_disease" / "train.tsv").read_text(encoding="utf-8").splitlines():
        if line.strip():
            yield line.split("\t")[0]
    for article in json.loads((data / "squad" / "train.json").read_text(encoding="utf-8"))["data"][:200]:
        for paragraph in article["paragraphs"]:
            yield paragraph["context"]
            for qa in paragraph["qas"]:
                yield qa["question"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("family", choices=["roberta", "modernbert"])
    parser.add_argument("out")
    parser.add_argument("--data", default=str(common.DEFAULT_DATA))
    parser.add_argument("--vocab", type=int, default=30000)
    args = parser.parse_args()

    import torch
    import transformers as tf
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"] if args.family == "roberta" else ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(texts(Path(args.data)), trainers.BpeTrainer(
        vocab_size=args.vocab, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    torch.manual_seed(0)
    if args.family == "roberta":
        merges = [tuple(m) for m in json.loads(bpe.to_str())["model"]["merges"]]
        tokenizer = tf.RobertaTokenizer(vocab=bpe.get_vocab(), merges=merges, model_max_length=512)
        config = tf.RobertaConfig(**SIZE, vocab_size=len(tokenizer), type_vocab_size=1, pad_token_id=tokenizer.pad_token_id,
                                  bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
                                  max_position_embeddings=514)
        model = tf.RobertaForMaskedLM(config)
    else:
        cls_id, sep_id = bpe.token_to_id("[CLS]"), bpe.token_to_id("[SEP]")
        bpe.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                           special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
        tokenizer = tf.PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
                                               pad_token="[PAD]", mask_token="[MASK]", model_max_length=8192,
                                               model_input_names=["input_ids", "attention_mask"])
        config = tf.ModernBertConfig(**SIZE, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                                     cls_token_id=cls_id, sep_token_id=sep_id, bos_token_id=cls_id, eos_token_id=sep_id)
        model = tf.ModernBertForMaskedLM(config)
    tokenizer.save_pretrained(args.out)
    model.save_pretrained(args.out)
    print(f"{args.family}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters, vocabulary {len(tokenizer)} -> {args.out}")


if __name__ == "__main__":
    main()
