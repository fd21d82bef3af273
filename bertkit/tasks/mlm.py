"""Masked-language modelling (``task: mlm``): adapt an encoder to a domain, or pretrain one from scratch.

The corpus (``bertkit.corpus``: files, folders, globs, JSONL, hub datasets; one document per row) is
tokenised with word ids and cut into examples, line by line or grouped into ``block_size`` blocks with
``[SEP]`` between documents; ``datasets`` caches the result on disk, tokenising in several processes
for large corpora. Validation holds out whole documents (seeded). Training batches are masked afresh
by ``bertkit.masking`` (whole words by default: the tokenizer's words, MeCab words for a Japanese
tokenizer); evaluation splits are masked once with the recipe's seed, so the held-out perplexity
measured before training (``before_training``, ``metrics.json["before"]``) and after it are computed
on the same predictions.

A starting model without pretrained masked-language-model head weights (the MiniLM sentence
encoder, for one) gets a fresh head whose decoder is tied to the word embeddings; the log and the
model card say so. The saved model is a ``*ForMaskedLM`` checkpoint that ``finetune`` loads for any
task (the head is dropped, the encoder kept).

Not handled: next-sentence prediction, span masking, and perplexity of causal language models.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from bertkit import corpus, masking
from bertkit.tasks import mlm_head
from bertkit.tasks import task_text
from bertkit.errors import BertkitError
from bertkit.recipe import Recipe, register_task_options

FEATURES_VERSION = 1  # part of the cache fingerprint: bump when the cached features change shape
LOGITS_BUDGET = 1 << 26  # evaluation batches hold at most this many logits (256 MB in fp32)


@dataclass(frozen=True)
class Options:
    line_by_line: bool = False  # each line an example; else documents grouped into blocks, [SEP] between them
    block_size: int | None = None  # tokens per example with [CLS] and [SEP]; default max_length
    documents: Literal["auto", "line", "paragraph", "file"] = "auto"  # what a document is in a plain-text file
    mlm_probability: float = 0.15  # share of tokens predicted
    mask_replace: float = 0.8  # of the predicted tokens: shown as [MASK]
    random_replace: float = 0.1  # shown as a random token (the rest are left unchanged)
    whole_word_mask: bool = True  # predict all tokens of a word or none
    num_proc: int | None = None  # tokenising processes; default all cores (up to 8) from 10,000 documents
    cache_dir: str | None = None  # datasets cache for the Arrow copy of the corpus and its features
    vocabulary_report: int = 0  # list this many frequent words the tokenizer cuts into many pieces
    vocabulary_min_pieces: int = 3  # ... at least this many
    # Add the N most frequent corpus words cut into vocabulary_min_pieces+ pieces to a WordPiece vocabulary,
    # each embedding the mean of its old pieces' (bertkit.vocabulary); saved with the model's tokenizer.
    add_domain_tokens: int = 0
    # A model without a pretrained MLM head: train the fresh head alone (encoder frozen) for this many
    # steps first (a float < 1: a share of all steps), so its random gradients never reach the encoder.
    head_warmup_steps: float = 0.1
    # The finetune recipe the adaptation is for (bertkit.tasks.task_text.Probe): after training, the
    # starting and the adapted model are fine-tuned with it over several seeds and compared.
    probe: dict[str, Any] | None = None
    # Add the probe recipe's training inputs (unlabelled) to the corpus: task-adaptive pretraining.
    # (data.train: task adapts on the task text alone.)
    task_text: bool = False
    # Adapting on the probe's validation or test text makes its scores optimistic: refused unless true.
    allow_eval_overlap: bool = False

    def rates(self) -> masking.Rates:
        return masking.Rates(self.mlm_probability, self.mask_replace, self.random_replace, self.whole_word_mask)

    def check(self, recipe: Recipe) -> list[str]:
        problems = []
        if not 0 < self.mlm_probability < 1:
            problems.append(f"'mlm.mlm_probability' must be between 0 and 1, got {self.mlm_probability}")
        for key in ("mask_replace", "random_replace"):
            if not 0 <= getattr(self, key) <= 1:
                problems.append(f"'mlm.{key}' must be between 0 and 1, got {getattr(self, key)}")
        if self.mask_replace + self.random_replace > 1:
            problems.append(f"'mlm.mask_replace' + 'mlm.random_replace' must be at most 1, got "
                            f"{self.mask_replace + self.random_replace:g}")
        if self.block_size is not None and self.block_size < 8:
            problems.append(f"'mlm.block_size' must be at least 8, got {self.block_size}")
        if self.num_proc is not None and self.num_proc < 1:
            problems.append(f"'mlm.num_proc' must be at least 1, got {self.num_proc}")
        if self.vocabulary_report < 0 or self.vocabulary_min_pieces < 2:
            problems.append("'mlm.vocabulary_report' must be 0 or more and 'mlm.vocabulary_min_pieces' 2 or more")
        if self.add_domain_tokens < 0:
            problems.append(f"'mlm.add_domain_tokens' must be 0 or more, got {self.add_domain_tokens}")
        if self.head_warmup_steps < 0 or (self.head_warmup_steps >= 1 and self.head_warmup_steps != int(self.head_warmup_steps)):
            problems.append(f"'mlm.head_warmup_steps' must be a whole number of steps or a share below 1, "
                            f"got {self.head_warmup_steps}")
        if self.probe is not None:
            problems += task_text.check_probe_section(self.probe)
        if (self.task_text or recipe.data.train == "task") and not self.probe:
            problems.append("'mlm.task_text' and 'data.train: task' take the text of the probe's training split, and "
                            "no probe is set: add mlm.probe.recipe=FINETUNE_RECIPE")
        if recipe.training.get("remove_unused_columns") is True:
            problems.append("'training.remove_unused_columns' must stay false for task mlm: masking needs the "
                            "word_ids column, which the model does not take")
        return problems


register_task_options("mlm", Options)

PIPELINE_TAG = "fill-mask"
# Perplexity before and after is measured on held-out documents, so they are held out even when a
# test split is given (data.ensure_validation).
SCORES_HELD_OUT = True
# The masking collator reads word_ids, a column the model's forward() does not take.
TRAINING_DEFAULTS = {"remove_unused_columns": False}
# Training runs the head at the predicted positions only (the projection is ~half a small model's forward FLOPs).
training_loss = mlm_head.masked_loss


@dataclass
class Spec:
    """Masking rates, plus what is learnt about the run on the way (for the log, card and metrics)."""

    rates: masking.Rates
    fresh_head: list[str] = field(default_factory=list)  # head modules the starting checkpoint lacked
    vocabulary: dict[str, Any] | None = None  # the domain vocabulary report
    overlap: dict[str, Any] = field(default_factory=dict)  # probe validation/test inputs found in the corpus
    added_tokens: list[dict[str, Any]] = field(default_factory=list)  # words added to the vocabulary
    first_new_id: int | None = None  # the id of the first added word

    def model_kwargs(self) -> dict[str, Any]:
        return {}


def model_class() -> Any:
    from transformers import AutoModelForMaskedLM

    return AutoModelForMaskedLM


def best_metric(recipe: Recipe) -> tuple[str, bool]:
    # Evaluation during training reports eval_loss only (see compute_metrics); lower is better.
    return recipe.metric_for_best_model or "loss", False


def load_raw(recipe: Recipe) -> Any:
    """The corpus; with ``mlm.task_text`` (or ``data.train: task``) the probe's training inputs join
    (or make) its training split, one document per row."""
    import datasets

    from bertkit.console import log

    opts, column = recipe.options, recipe.data.text_column
    task_only = recipe.data.train == "task"
    raw = corpus.load(dataclasses.replace(recipe, data=dataclasses.replace(recipe.data, train=None)) if task_only
                      else recipe)
    if not (task_only or opts.task_text):
        return raw
    texts = task_text.training_texts(recipe)
    log(f"task text: {len(texts)} training inputs of the probe recipe {opts.probe['recipe']}")
    task_docs = datasets.Dataset.from_dict({column: texts})
    if not task_only and "train" in raw:
        task_docs = datasets.concatenate_datasets([raw["train"].select_columns([column]), task_docs])
    raw["train"] = task_docs
    return raw


def clean_split(dataset: Any, recipe: Recipe, split: str) -> tuple[Any, int]:
    """Check the text column, then drop (or refuse) blank documents; return (dataset, n_dropped)."""
    from bertkit import console
    from bertkit.data import require_columns

    column = recipe.data.text_column
    require_columns(dataset, {"text_column": column}, split)
    with console.library_phase(len(dataset), f"checking {split} documents") as counted:
        kept = dataset.filter(counted(corpus.has_text), input_columns=column, batched=True,
                              desc=f"checking {split} documents")
    dropped = len(dataset) - len(kept)
    if dropped and recipe.data.empty_text == "error":
        raise BertkitError(f"the {split} corpus has {dropped} blank documents", "remove them, or set data.empty_text=drop")
    return kept, dropped


def prepare(raw: Any, recipe: Recipe) -> Spec:
    if len(raw["train"]) == 0:
        raise BertkitError(f"the training corpus ({recipe.data.train or recipe.data.dataset}) holds no text",
                           "give files with at least a few lines of text")
    return Spec(rates=recipe.options.rates(), overlap=task_text.guard(raw, recipe))


def adapt_tokenizer(tokenizer: Any, raw: Any, recipe: Recipe, spec: Spec) -> Any:
    """With ``mlm.add_domain_tokens``: the tokenizer with the corpus's most frequent split words added
    (``bertkit.vocabulary``); the model's new rows are set in ``before_training``."""
    n = recipe.options.add_domain_tokens
    if not n:
        return tokenizer
    import tempfile

    from bertkit import vocabulary
    from bertkit.console import log

    vocabulary.require_wordpiece(tokenizer)
    found = vocabulary.candidates(raw["train"], tokenizer, n, recipe.options.vocabulary_min_pieces,
                                  column=recipe.data.text_column)
    if not found:
        log(f"mlm.add_domain_tokens: no word of the corpus is cut into {recipe.options.vocabulary_min_pieces}+ pieces")
        return tokenizer
    first = vocabulary.first_new_id(tokenizer)
    with tempfile.TemporaryDirectory(prefix="bertkit-vocab-") as work:
        extended = vocabulary.extend_tokenizer(tokenizer, [w["word"] for w in found], work)
    spec.added_tokens, spec.first_new_id = found, first
    shown = ", ".join(f"{w['word']} ({len(w['pieces'])} pieces)" for w in found[:8])
    log(f"vocabulary: {len(found)} domain words added as whole tokens (ids {first}-{first + len(found) - 1}): {shown}")
    return extended


def spec_from_model(config: Any, recipe: Recipe) -> Spec:
    return Spec(rates=recipe.options.rates())


# ---------------------------------------------------------------------------------------------
# Features


def block_size(recipe: Recipe, tokenizer: Any) -> int:
    """Tokens per example; an error when the tokenizer or the model's positions allow fewer."""
    size = recipe.options.block_size or recipe.max_length
    limits = []
    declared = getattr(tokenizer, "model_max_length", None)
    if isinstance(declared, int) and declared < 100_000:
        limits.append(declared)
    config = Path(recipe.model) / "config.json"
    if config.is_file():
        positions = json.loads(config.read_text(encoding="utf-8")).get("max_position_embeddings")
        if isinstance(positions, int):
            limits.append(positions)
    if limits and size > min(limits):
        key = "mlm.block_size" if recipe.options.block_size else "max_length"
        raise BertkitError(f"{key}={size} is more than the model takes ({min(limits)} tokens)",
                           f"set {key}={min(limits)} or less")
    return size


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps([FEATURES_VERSION, *parts], sort_keys=True, default=str).encode()).hexdigest()[:20]


def _tokenizer_identity(tokenizer: Any) -> list[Any]:
    settings = {k: v for k, v in tokenizer.init_kwargs.items() if k not in ("name_or_path", "vocab_file", "tokenizer_file")}
    segmenter = getattr(tokenizer, "_bertkit_segmenter", None)
    # "words-2": MeCab word ids for Japanese text in SentencePiece / BPE tokenizers (features cached
    # before that had whitespace words); the segmenter: japanese.pre_segment changes the ids.
    return [type(tokenizer).__name__, settings, sorted(tokenizer.get_vocab().items()), "words-2",
            segmenter.kind if segmenter is not None else None]


def features(dataset: Any, tokenizer: Any, recipe: Recipe, spec: Spec, split: str = "train") -> tuple[Any, dict[str, Any]]:
    """Tokenise and cut a split (cached on disk); mask evaluation splits once with the recipe's seed."""
    import datasets

    from bertkit import console, encoding

    opts = recipe.options
    size = block_size(recipe, tokenizer)
    types = datasets.Features({"input_ids": datasets.Sequence(datasets.Value("int32")),
                               "word_ids": datasets.Sequence(datasets.Value("int16")),
                               "piece": datasets.Value("int32"), "length": datasets.Value("int32")})
    processes = opts.num_proc or (min(os.cpu_count() or 1, 8) if len(dataset) >= 10_000 else None)
    with console.library_phase(len(dataset), f"tokenising {split}") as counted:
        feats = dataset.map(
            counted(corpus.encode_batch), batched=True, remove_columns=dataset.column_names, features=types,
            fn_kwargs={"tokenizer": tokenizer, "column": recipe.data.text_column, "budget": size - encoding.n_specials(tokenizer, False),
                       "line_by_line": opts.line_by_line},
            num_proc=processes if processes and processes > 1 else None, desc=f"tokenising {split}",
            new_fingerprint=_fingerprint(dataset._fingerprint, _tokenizer_identity(tokenizer), recipe.data.text_column,
                                         size, opts.line_by_line))
    if len(feats) == 0:
        raise BertkitError(f"the {split} corpus holds no tokens", "check that its text is in the tokenizer's language")
    lengths = feats["length"]
    stats, _, _ = encoding.length_stats(lengths, size)
    report: dict[str, Any] = {**stats, "documents": len(dataset), "tokens": int(sum(lengths)), "block_size": size}
    if opts.line_by_line:
        cut_lines = sum(1 for k in feats["piece"] if k == 1)
        if cut_lines:
            report["note_split"] = f"{cut_lines} lines longer than block_size={size} became several examples (none truncated)"
    else:
        report["note_blocks"] = f"{len(dataset)} documents in {len(feats)} blocks of up to {size} tokens, [SEP] between documents"
    if split != "train":
        collate = masking.Collator.for_tokenizer(tokenizer, spec.rates)
        with console.library_phase(len(feats), f"masking {split} (seed {recipe.seed})") as counted:
            feats = feats.map(counted(collate.mask_fixed), batched=True, with_indices=True,
                              remove_columns=["word_ids", "piece"], fn_kwargs={"seed": recipe.seed},
                              desc=f"masking {split} (seed {recipe.seed})",
                              new_fingerprint=_fingerprint(feats._fingerprint, recipe.seed, spec.rates, len(tokenizer)))
        report["masked_tokens"] = int(sum(feats["masked"]))
        if report["masked_tokens"] == 0:
            raise BertkitError(f"the {split} split is too small to measure: no token was chosen for prediction",
                               "give it more text, or raise mlm.mlm_probability")
    elif opts.vocabulary_report:
        spec.vocabulary = corpus.domain_vocabulary(dataset, tokenizer, recipe.data.text_column, opts.vocabulary_report,
                                                   opts.vocabulary_min_pieces)
        report["note_vocabulary"] = _vocabulary_note(spec.vocabulary)
    return feats, report


def _vocabulary_note(vocab: dict[str, Any]) -> str:
    shown = ", ".join(f"{w['word']} ({w['pieces']})" for w in vocab["most_frequent"][:8])
    return (f"{vocab['split_pct']} % of words are cut into {vocab['min_pieces']}+ pieces"
            + (f"; most frequent: {shown}" if shown else ""))


def collator(tokenizer: Any, spec: Spec | None = None) -> Any:
    return masking.Collator.for_tokenizer(tokenizer, spec.rates if spec else masking.Rates())


def compute_metrics(spec: Spec, recipe: Recipe) -> None:
    """None: the Trainer then reports eval_loss only, without gathering (examples x tokens x vocabulary)
    logits; perplexity and accuracy come from ``report`` after training."""
    return None


# ---------------------------------------------------------------------------------------------
# Measuring: perplexity and masked-token accuracy on pre-masked examples


def _scan(model: Any, rows: Any, lengths: list[int], tokenizer: Any, precision: str, batch_size: int, top: int,
          desc: str | None) -> list[dict[str, Any]]:
    """Per example: the predicted positions, gold ids, the ``top`` best ids with log-probabilities, and the
    negative log-likelihood of the gold id (rows carry ``input_ids`` and ``labels``)."""
    import torch

    from bertkit import console
    from bertkit.hardware import autocast
    from bertkit.inference import length_sorted_batches

    collate = masking.Collator.for_tokenizer(tokenizer, masking.Rates())
    on = next(model.parameters()).device.type
    model.eval()
    max_tokens = max(max(lengths, default=1), LOGITS_BUDGET // model.config.vocab_size)
    results: list[dict[str, Any]] = [{} for _ in lengths]
    bar = console.progress(len(lengths), desc)
    with torch.inference_mode(), autocast(precision, on):
        for idx in length_sorted_batches(lengths, batch_size, max_tokens):
            batch = collate([rows[i] for i in idx])
            labels = batch.pop("labels")
            where = labels != masking.IGNORE  # (batch, seq)
            # The head at the predicted positions only (mlm_head: the full-vocabulary projection of
            # every other position is most of a small model's evaluation time).
            logits = mlm_head.masked_logits(model, {k: v.to(on) for k, v in batch.items()}, where.to(on))
            logp = logits.float().log_softmax(-1).cpu()  # (masked, vocab)
            gold = labels[where]
            nll = -logp.gather(1, gold[:, None])[:, 0]
            top_logp, top_ids = logp.topk(top, dim=-1)
            example, position = where.nonzero(as_tuple=True)
            for j, i in enumerate(idx):
                sel = example == j
                results[i] = {"positions": position[sel].numpy(), "gold": gold[sel].numpy(), "nll": nll[sel].numpy(),
                              "top_ids": top_ids[sel].numpy(), "top_logp": top_logp[sel].numpy()}
            bar.update(len(idx))
    bar.close()
    return results


def infer(model: Any, feats: Any, tokenizer: Any, precision: str, batch_size: int, desc: str | None = None,
          recipe: Any = None) -> list[dict[str, Any]]:
    outputs = _scan(model, feats, list(feats["length"]), tokenizer, precision, batch_size, 1, desc)
    for out in outputs:
        out["gold_tokens"] = tokenizer.convert_ids_to_tokens(out["gold"].tolist())
        out["predicted_tokens"] = tokenizer.convert_ids_to_tokens(out["top_ids"][:, 0].tolist())
    return outputs


def report(spec: Spec, recipe: Recipe, outputs: list[dict[str, Any]], feats: Any) -> dict[str, Any]:
    nll = np.concatenate([o["nll"] for o in outputs])
    correct = sum(int((o["top_ids"][:, 0] == o["gold"]).sum()) for o in outputs)
    loss = float(nll.mean())
    return {"perplexity": math.exp(min(loss, 700.0)), "loss": loss, "accuracy": correct / len(nll),
            "masked_tokens": len(nll), "examples": len(outputs)}


def prediction_rows(spec: Spec, recipe: Recipe, outputs: list[dict[str, Any]], raw: Any) -> list[dict[str, Any]]:
    """One row per evaluated example: each predicted position with the gold and the predicted token."""
    rows = []
    for i, out in enumerate(outputs):
        rows.append({"example": i, "masked_tokens": len(out["gold"]),
                     "loss": float(out["nll"].mean()) if len(out["nll"]) else None,
                     "predictions": [{"position": int(p), "gold": g, "predicted": t}
                                     for p, g, t in zip(out["positions"], out["gold_tokens"], out["predicted_tokens"])]})
    return rows


def artifacts(spec: Spec, recipe: Recipe, outputs: Any, raw: Any) -> dict[str, Any]:
    found = {"domain_vocabulary.json": spec.vocabulary} if spec.vocabulary else {}
    if spec.added_tokens:
        found["domain_tokens.json"] = [{"id": spec.first_new_id + i, "word": w["word"], "count": w["count"],
                                       "pieces": w["pieces"]} for i, w in enumerate(spec.added_tokens)]
    if spec.overlap:
        found["probe_overlap.json"] = spec.overlap
    return found


def predict_batch(spec: Spec, recipe: Recipe, tokenizer: Any, model: Any, rows: list[dict[str, Any]],
                  precision: str, batch_size: int, top: int = 5) -> list[dict[str, Any]]:
    """Fill-mask: the ``top`` most likely tokens, with probabilities, for every mask token of each input."""
    from bertkit import encoding

    column, mask_id = recipe.data.text_column, tokenizer.mask_token_id
    budget = block_size(recipe, tokenizer) - encoding.n_specials(tokenizer, False)
    texts = [str(r.get(column, "")) for r in rows]
    examples = []
    for n, ids in enumerate(encoding.token_ids(tokenizer, texts)):
        ids = encoding.with_specials(tokenizer, ids[:budget])[0]
        if mask_id not in ids:
            raise BertkitError(f"an input has no {tokenizer.mask_token} to fill in: {texts[n][:60]!r}",
                               f"write {tokenizer.mask_token} where a token should be predicted")
        examples.append({"input_ids": ids, "labels": [mask_id if i == mask_id else masking.IGNORE for i in ids]})
    outputs = _scan(model, examples, [len(e["input_ids"]) for e in examples], tokenizer, precision, batch_size, top, None)
    results = []
    for row, out in zip(rows, outputs):
        result = {k: row[k] for k in ("id",) if k in row}
        result["masks"] = [[{"token": t, "score": round(float(np.exp(lp)), 6)}
                            for t, lp in zip(tokenizer.convert_ids_to_tokens(ids.tolist()), logps)]
                           for ids, logps in zip(out["top_ids"], out["top_logp"])]
        results.append(result)
    return results


# ---------------------------------------------------------------------------------------------
# Before training: a head for encoders without one, and the baseline measurement


def fresh_head(model_ref: str, model: Any) -> list[str]:
    """Head modules (outside the base encoder) of which the starting checkpoint holds no weights."""
    from bertkit import models

    keys = models.stored_tensor_names(model_ref)
    if keys is None:
        return []
    base = model.base_model_prefix + "."
    heads = sorted({name.split(".")[0] for name in model.state_dict() if not name.startswith(base)})
    return [h for h in heads if not any(k.startswith(h + ".") for k in keys)]


def _tied_names(model: Any) -> list[str]:
    """Parameter names that share the tensor of an earlier parameter (the tied decoder weights)."""
    seen: set[int] = set()
    tied = []
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in seen:
            tied.append(name)
        seen.add(id(param))
    return tied


def before_training(p: Any, model: Any, evaluate: Any) -> dict[str, Any]:
    """Give an encoder without an MLM head a fresh one tied to its embeddings, then measure every
    evaluation split with the initial weights (``evaluate(model, split)`` -> the split's report):
    ``metrics.json["before"]``."""
    from bertkit.console import log

    p.spec.fresh_head = fresh_head(p.recipe.model, model)
    if p.spec.fresh_head:
        decoder, embeddings = model.get_output_embeddings(), model.get_input_embeddings()
        if decoder is not None and decoder.weight is not embeddings.weight and decoder.weight.shape == embeddings.weight.shape:
            decoder.weight = embeddings.weight
        model.config.tie_word_embeddings = True
        log(f"{p.recipe.model} has no pretrained masked-language-model head ({', '.join(p.spec.fresh_head)} weights "
            "missing): training a freshly initialised one, its decoder tied to the word embeddings")
    if p.spec.added_tokens:
        from bertkit import vocabulary

        vocabulary.init_new_embeddings(model, p.spec.added_tokens, p.spec.first_new_id)
        log(f"the {len(p.spec.added_tokens)} added words start from the mean of their old pieces' embeddings")
    # Tied parameters are saved once; unless they are listed here, the Trainer calls them "missing keys"
    # when it restores the best checkpoint (transformers 5 reads only this list there).
    if not model._keys_to_ignore_on_save:
        model._keys_to_ignore_on_save = _tied_names(model)
    before = {}
    for split in ("validation", "test"):
        if split in p.features:
            before[split] = evaluate(model, split)
            log(f"{split} before training: perplexity {before[split]['perplexity']:.2f}, "
                f"masked-token accuracy {before[split]['accuracy']:.4f}")
    return before


def training_callbacks(p: Any, model: Any) -> list[Any]:
    """A fresh head trains alone first (``mlm.head_warmup_steps``): the encoder, the word embeddings
    and so the tied decoder stay frozen, so the head's random gradients never reach them (the
    linear-probe-then-fine-tune order of Kumar et al. 2022, "Fine-Tuning can Distort Pretrained
    Features"). One process only: DDP cannot change which parameters train mid-run."""
    steps = p.recipe.options.head_warmup_steps
    if not p.spec.fresh_head or not steps:
        return []
    from transformers import TrainerCallback

    from bertkit.console import log

    encoder = [param for param in model.base_model.parameters() if param.requires_grad]

    class HeadWarmup(TrainerCallback):
        frozen, until = False, 0

        def _set(self, frozen: bool) -> None:
            for param in encoder:
                param.requires_grad_(not frozen)
            self.frozen = frozen

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.until = int(steps * state.max_steps) if steps < 1 else int(steps)
            if args.world_size > 1:
                log("mlm.head_warmup_steps is skipped with several processes: the head and encoder train together")
            elif state.global_step < self.until:
                log(f"head warm-up: the fresh head trains alone for {self.until} of {state.max_steps} steps "
                    "(encoder frozen), then everything trains")
                self._set(True)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.frozen and state.global_step >= self.until:
                self._set(False)

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.frozen:
                self._set(False)

    return [HeadWarmup()]


def card_notes(recipe: Recipe, spec: Spec) -> list[str]:
    r, opts = spec.rates, recipe.options
    unchanged = max(0.0, 1 - r.mask - r.random)
    notes = [f"Masked-language-model training: {'whole-word' if r.whole_word else 'token'} masking of "
             f"{r.probability:.0%} of tokens ({r.mask:.0%} [MASK], {r.random:.0%} random, {unchanged:.0%} unchanged); "
             + ("one line per example." if opts.line_by_line else "documents grouped into blocks, [SEP] between them."),
             f"Perplexity and masked-token accuracy are measured on held-out documents masked once with seed "
             f"{recipe.seed}, with the starting weights ('before training') and after training."]
    if spec.fresh_head:
        notes.append(f"The starting model had no pretrained masked-language-model head ({', '.join(spec.fresh_head)}): "
                     "a fresh head was trained, its decoder tied to the word embeddings, so the 'before training' "
                     "perplexity is that of an untrained head.")
    if spec.vocabulary:
        notes.append(f"Domain vocabulary: {_vocabulary_note(spec.vocabulary)} (domain_vocabulary.json).")
    if spec.added_tokens:
        notes.append(f"{len(spec.added_tokens)} frequent domain words were added to the vocabulary as whole tokens, "
                     "each embedding started as the mean of its old pieces' (domain_tokens.json).")
    if spec.overlap and any(r["seen"] for r in spec.overlap.values()):
        notes.append(f"The corpus holds {task_text.describe_overlap(spec.overlap)} (allowed by "
                     "mlm.allow_eval_overlap): the probe's scores there are optimistic.")
    if recipe.options.task_text or recipe.data.train == "task":
        notes.append(f"Task-adaptive pretraining: the corpus {'is' if recipe.data.train == 'task' else 'includes'} the "
                     f"training inputs of the probe recipe {recipe.options.probe['recipe']}.")
    return notes
