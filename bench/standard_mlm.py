"""The standard way to adapt an encoder to a domain: the Hugging Face ``run_mlm`` example, in our own words.

    python bench/standard_mlm.py --train train.txt --validation valid.txt --model DIR --out result.json \
        [--max-steps 150] [--batch-size 32] [--lr 1e-4] [--seed 42] [--max-length 128] \
        [--precision fp32|bf16|fp16] [--mlm-probability 0.15] [--mask-replace 0.8] [--random-replace 0.1] \
        [--whole-word-mask]

Written for ``bench/bench_mlm.py`` from the approach of ``examples/pytorch/language-modeling/run_mlm.py``
(not copied from it): the text files are read a line per example (``datasets``' text loader), every
line is tokenised with its special tokens, the token stream of each 1,000 lines is concatenated and cut
into blocks of ``max_length`` (the remainder dropped: ``group_texts``), batches are masked afresh by
``DataCollatorForLanguageModeling`` (whole words from the fast tokenizer's offsets with
``--whole-word-mask``), and the stock ``Trainer`` trains with its own defaults (random batches, linear
decay without warm-up, no weight decay, no evaluation or checkpoints while training), at the precision
given. Then, as ``run_mlm --do_eval`` does: save the model, evaluate the validation blocks once (eval
loss, perplexity = exp(loss), and masked-token accuracy from the argmax of the full logits).

Deliberately not imported from bertkit, so that nothing bertkit does leaks into the baseline.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from itertools import chain
from pathlib import Path

STARTED = time.perf_counter()


def tokenized_blocks(paths: dict[str, str], tokenizer, max_length: int, whole_word: bool):
    """{split: Dataset of max_length blocks}: each line tokenised with its special tokens, 1,000 lines
    concatenated at a time and cut into full blocks (``group_texts``)."""
    from datasets import load_dataset

    raw = load_dataset("text", data_files=paths)

    def tokenize(batch):
        # The collator masks faster with the special-tokens mask at hand; whole words need the offsets.
        return tokenizer(batch["text"], return_special_tokens_mask=True, return_offsets_mapping=whole_word)

    def group(batch):
        joined = {k: list(chain(*batch[k])) for k in batch}
        total = len(joined["input_ids"])
        total = (total // max_length) * max_length if total >= max_length else total
        return {k: [v[i:i + max_length] for i in range(0, total, max_length)] for k, v in joined.items()}

    tokens = raw.map(tokenize, batched=True, remove_columns=["text"], desc="tokenising")
    return tokens.map(group, batched=True, desc=f"grouping into blocks of {max_length}")


def collator(tokenizer, args, seed: int | None = None):
    from transformers import DataCollatorForLanguageModeling

    return DataCollatorForLanguageModeling(tokenizer=tokenizer, mlm_probability=args.mlm_probability,
                                           mask_replace_prob=args.mask_replace, random_replace_prob=args.random_replace,
                                           whole_word_mask=args.whole_word_mask, seed=seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", required=True)
    parser.add_argument("--validation", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--work", default="/tmp/standard-mlm")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--max-steps", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    parser.add_argument("--mlm-probability", type=float, default=0.15)
    parser.add_argument("--mask-replace", type=float, default=0.8)
    parser.add_argument("--random-replace", type=float, default=0.1)
    parser.add_argument("--whole-word-mask", action="store_true")
    args = parser.parse_args()

    import numpy as np
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer, Trainer, TrainingArguments, set_seed

    set_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForMaskedLM.from_pretrained(args.model)
    model.resize_token_embeddings(len(tokenizer))
    blocks = tokenized_blocks({"train": args.train, "validation": args.validation}, tokenizer, args.max_length,
                              args.whole_word_mask)
    training = TrainingArguments(output_dir=args.work, max_steps=args.max_steps, learning_rate=args.lr,
                                 per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=8,
                                 seed=args.seed, bf16=args.precision == "bf16", fp16=args.precision == "fp16",
                                 save_strategy="no", eval_strategy="no", logging_steps=50, report_to="none",
                                 use_cpu=not torch.cuda.is_available(),
                                 # the collator needs the offsets for whole words; the Trainer would drop them
                                 remove_unused_columns=not args.whole_word_mask)

    def argmax(logits, labels):  # keep (batch, seq) predictions, not (batch, seq, vocabulary) logits
        return (logits[0] if isinstance(logits, tuple) else logits).argmax(dim=-1)

    def accuracy(eval_pred):
        predictions, labels = eval_pred
        keep = labels != -100
        return {"accuracy": float(np.mean(predictions[keep] == labels[keep]))}

    trainer = Trainer(model=model, args=training, train_dataset=blocks["train"], eval_dataset=blocks["validation"],
                      processing_class=tokenizer, data_collator=collator(tokenizer, args), compute_metrics=accuracy,
                      preprocess_logits_for_metrics=argmax)
    started = time.perf_counter()
    train_output = trainer.train()
    train_seconds = time.perf_counter() - started
    trainer.save_model(str(Path(args.work) / "model"))
    metrics = trainer.evaluate()
    result = {"eval_loss": metrics["eval_loss"], "perplexity": math.exp(min(metrics["eval_loss"], 700.0)),
              "accuracy": metrics["eval_accuracy"], "train_loss": train_output.training_loss,
              "train_seconds": round(train_seconds, 1), "train_blocks": len(blocks["train"]),
              "validation_blocks": len(blocks["validation"]), "model_dir": str(Path(args.work) / "model"),
              "precision": args.precision, "seconds": round(time.perf_counter() - STARTED, 1)}
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
