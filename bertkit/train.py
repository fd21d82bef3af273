"""``run(recipe)``: the one path from a recipe to a trained, evaluated, documented model.

    recipe -> data.load -> task.prepare -> models.load -> task.features -> Trainer.train
           -> task.report / task.prediction_rows on validation and test -> outputs (staged, published)

``prepare`` is the part ``validate`` shares: everything up to the features, with a report of split
sizes, labels and lengths, and no model weights loaded.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertkit import data as data_mod
from bertkit import hardware, models, outputs, tasks
from bertkit.errors import BertkitError
from bertkit.recipe import Recipe


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Prepared:
    """Everything known before training starts."""

    recipe: Recipe
    task: Any  # the task module
    spec: Any
    tokenizer: Any
    raw: Any  # DatasetDict of cleaned raw rows
    features: dict[str, Any] = field(default_factory=dict)
    lengths: dict[str, dict[str, Any]] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)

    def split_sizes(self) -> dict[str, int]:
        return {name: len(ds) for name, ds in self.raw.items()}


def prepare(recipe: Recipe) -> Prepared:
    """Load and check data, labels and tokenizer; tokenise every split (no model weights)."""
    task = tasks.get(recipe.task)
    raw = data_mod.load(recipe.data, recipe.task)
    if hasattr(task, "clean_split"):
        cleaned, dropped = {}, {}
        for split in raw:
            cleaned[split], dropped[split] = task.clean_split(raw[split], recipe, split)
        import datasets

        raw = datasets.DatasetDict(cleaned)
    else:
        dropped = {}
    spec = task.prepare(raw, recipe)
    raw = data_mod.ensure_validation(raw, recipe.data, recipe.seed, stratify=task.stratify_labels(raw["train"], recipe)
                                     if hasattr(task, "stratify_labels") else None)
    import datasets

    raw = datasets.DatasetDict({
        split: data_mod.limit(ds, recipe.data.max_train_samples if split == "train" else recipe.data.max_eval_samples)
        for split, ds in raw.items()
    })
    tokenizer = models.load_tokenizer(recipe.model, trust_remote_code=recipe.trust_remote_code)
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and limit < 100_000 and recipe.max_length > limit:
        raise BertkitError(f"max_length={recipe.max_length} is more than the model takes ({limit} tokens)",
                           f"set max_length={limit} or less")
    prepared = Prepared(recipe=recipe, task=task, spec=spec, tokenizer=tokenizer, raw=raw, dropped=dropped)
    for split in raw:
        log(f"tokenising {split} ({len(raw[split])} examples)")
        prepared.features[split], prepared.lengths[split] = task.features(raw[split], tokenizer, recipe, spec, split)
    return prepared


def summary_lines(p: Prepared) -> list[str]:
    lines = [f"model: {models.describe(p.recipe.model)}", f"task: {p.recipe.task}"]
    lines.append("splits: " + ", ".join(f"{k}={v}" for k, v in p.split_sizes().items()))
    for split, n in p.dropped.items():
        if n:
            lines.append(f"dropped {n} {split} rows with empty text")
    labels = getattr(p.spec, "labels", None)
    counts = getattr(p.spec, "class_counts", None)
    if labels:
        shown = ", ".join(f"{l} ({counts.get(l, 0)})" if counts else l for l in labels[:30])
        lines.append(f"labels ({len(labels)}): {shown}")
    for split, rep in p.lengths.items():
        text = (f"{split} tokens: p50={rep['tokens_p50']} p90={rep['tokens_p90']} p99={rep['tokens_p99']} "
                f"max={rep['tokens_max']}")
        if "truncated" in rep:
            text += f"; {rep['truncated']} ({rep['truncated_pct']} %) longer than max_length={p.recipe.max_length}"
        for key, value in rep.items():
            if key.startswith("note"):
                text += f"; {value}"
        lines.append(text)
    return lines


def training_arguments(recipe: Recipe, work: Path, task: Any) -> Any:
    from transformers import TrainingArguments

    args = recipe.training_args()
    metric, greater = task.best_metric(recipe)
    args.setdefault("metric_for_best_model", metric)
    args.setdefault("greater_is_better", greater)
    if args.get("eval_strategy") in ("no", None):
        args["load_best_model_at_end"] = False
    if args.get("load_best_model_at_end"):
        args["save_strategy"] = args.get("eval_strategy", "epoch")
        if args["save_strategy"] == "steps":
            args.setdefault("save_steps", args.get("eval_steps"))
    on = hardware.device()
    precision = hardware.resolve_precision(recipe.precision, on)
    if on == "cpu":
        args.setdefault("use_cpu", True)
    try:
        return TrainingArguments(output_dir=str(work), bf16=precision == "bf16", fp16=precision == "fp16", **args)
    except ValueError as exc:
        raise BertkitError(f"the recipe's training settings do not fit together: {str(exc).splitlines()[0]}",
                           "change the training.* keys it names") from exc


def _loss_with_class_weights(weights: list[float]) -> Any:
    import torch

    def loss(outputs: Any, labels: Any, num_items_in_batch: Any = None) -> Any:
        logits = outputs["logits"]
        w = torch.tensor(weights, dtype=logits.dtype, device=logits.device)
        return torch.nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1), weight=w)

    return loss


def run(recipe: Recipe, *, overwrite: bool = False, resume: bool = False, command: str = "") -> dict[str, Any]:
    """Train, evaluate and write the output directory; return the metrics."""
    from transformers import EarlyStoppingCallback, Trainer, set_seed

    # Until publish(), everything goes to the staging directory: an interrupted run leaves it for
    # --resume and never leaves anything at output_dir that looks like a finished model.
    work = outputs.prepare(recipe.output_dir, overwrite=overwrite, resume=resume)
    set_seed(recipe.seed)
    p = prepare(recipe)
    for line in summary_lines(p):
        log(line)
    model = models.load_model(recipe.model, p.task.model_class(), allow_pickle=recipe.allow_pickle,
                              trust_remote_code=recipe.trust_remote_code, **p.spec.model_kwargs())
    args = training_arguments(recipe, work, p.task)
    log(f"device: {args.device.type}, precision: {hardware.resolve_precision(recipe.precision)}, effective batch: "
        f"{args.per_device_train_batch_size} x {args.world_size} processes x {args.gradient_accumulation_steps} "
        f"accumulation = {args.per_device_train_batch_size * args.world_size * args.gradient_accumulation_steps}")
    callbacks = [EarlyStoppingCallback(recipe.early_stopping_patience)] if recipe.early_stopping_patience else []
    loss_fn = None
    if getattr(recipe.options, "class_weights", False):
        loss_fn = _loss_with_class_weights(p.task.class_weights(p.spec))
    trainer = Trainer(model=model, args=args, train_dataset=p.features["train"],
                      eval_dataset=p.features.get("validation"), processing_class=p.tokenizer,
                      data_collator=p.task.collator(p.tokenizer), compute_metrics=p.task.compute_metrics(p.spec, recipe),
                      callbacks=callbacks, compute_loss_func=loss_fn)
    started = time.perf_counter()
    checkpoint = _last_checkpoint(work) if resume else None
    train_output = trainer.train(resume_from_checkpoint=checkpoint)
    train_seconds = time.perf_counter() - started
    metrics = _finish(p, trainer, work, train_output, train_seconds, command)
    outputs.publish(work, recipe.output_dir)
    return metrics


def _last_checkpoint(work: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    found = get_last_checkpoint(str(work))
    if found is None:
        raise BertkitError(f"no checkpoint to resume from in {work}", "start the run again without --resume")
    return found


def evaluate_split(p: Prepared, model: Any, split: str, batch_size: int
                   ) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """Full metrics, prediction rows and any extra JSON artifacts (e.g. QA's nbest file) for one split."""
    precision = hardware.resolve_precision(p.recipe.precision)
    feats = p.features[split]
    outputs_ = p.task.infer(model, feats, p.tokenizer, precision, batch_size, desc=f"evaluating {split}")
    artifacts = p.task.artifacts(p.spec, p.recipe, outputs_, p.raw[split]) if hasattr(p.task, "artifacts") else {}
    return (p.task.report(p.spec, p.recipe, outputs_, feats),
            p.task.prediction_rows(p.spec, p.recipe, outputs_, p.raw[split]), artifacts)


def padding_stats(trainer: Any, max_length: int) -> dict[str, Any]:
    """How much of one epoch's compute goes to padding with our batches vs. padding='max_length'.

    Re-collates one epoch of training batches (no forward pass) and counts attention-mask positions.
    """
    real = padded = n = 0
    for batch in trainer.get_train_dataloader():
        mask = batch["attention_mask"]
        real += int(mask.sum())
        padded += mask.numel()
        n += mask.shape[0]
    if not padded:
        return {}
    return {"tokens_real": real, "tokens_padded": padded,
            "padding_fraction": round(1 - real / padded, 4),
            "padding_fraction_if_max_length": round(1 - real / (n * max_length), 4)}


def _finish(p: Prepared, trainer: Any, work: Path, train_output: Any, train_seconds: float, command: str) -> dict[str, Any]:
    recipe = p.recipe
    trainer.save_model(str(work))
    (work / "training_args.bin").unlink(missing_ok=True)  # a pickle; recipe.yaml holds the settings
    batch = recipe.training_args().get("per_device_eval_batch_size", 64)
    metrics: dict[str, Any] = {}
    predictions: list[dict[str, Any]] = []
    artifacts: dict[str, Any] = {}
    for split in ("validation", "test"):
        if split in p.features:
            log(f"evaluating {split}")
            # The last evaluated split (test when present) goes to predictions.jsonl.
            metrics[split], predictions, artifacts = evaluate_split(p, trainer.model, split, batch)
    for name, content in artifacts.items():
        outputs.write_json(work / name, content)
    n_train = len(p.features["train"])
    epochs = float(recipe.training_args().get("num_train_epochs", 1))
    metrics["train"] = {
        "loss": train_output.training_loss,
        "seconds": round(train_seconds, 1),
        "samples_per_second": round(n_train * epochs / max(train_seconds, 1e-9), 2),
        "examples": n_train,
        "best_checkpoint_metric": trainer.state.best_metric,
    }
    metrics["train"].update(padding_stats(trainer, recipe.max_length))
    metrics["data"] = {"splits": p.split_sizes(), "dropped_empty": p.dropped, "lengths": p.lengths}
    metrics["evaluated_split"] = "test" if "test" in p.features else "validation"
    outputs.write_json(work / "metrics.json", metrics)
    outputs.write_jsonl(work / "predictions.jsonl", predictions)
    outputs.write_jsonl(work / "train_log.jsonl", trainer.state.log_history)
    from bertkit import recipe as recipe_mod

    precision = hardware.resolve_precision(recipe.precision)
    args = trainer.args
    recipe_mod.save(recipe, work / "recipe.yaml", notes=[
        f"ran on {args.device.type} in {precision}; effective batch size "
        f"{args.per_device_train_batch_size * args.world_size * args.gradient_accumulation_steps}"])
    metric_name, _ = p.task.best_metric(recipe)
    outputs.plot_training(trainer.state.log_history, metric_name, work / "training_curves.png")
    evaluated = metrics.get(metrics["evaluated_split"], {})
    if "confusion_matrix" in evaluated:
        cm = evaluated["confusion_matrix"]
        outputs.plot_confusion(cm["labels"], cm["matrix"], work / "confusion_matrix.png")
    notes = list(getattr(p.task, "card_notes", lambda r, s: [])(recipe, p.spec))
    card = outputs.model_card(recipe=recipe, model_desc=models.describe(recipe.model),
                              task_desc=getattr(p.task, "PIPELINE_TAG", recipe.task),
                              labels=getattr(p.spec, "labels", None), split_sizes=p.split_sizes(),
                              metrics={k: metrics[k] for k in ("validation", "test") if k in metrics},
                              lengths=p.lengths.get("train", {}), notes=notes,
                              command=command or f"bertkit finetune recipe.yaml")
    (work / "README.md").write_text(card, encoding="utf-8")
    return metrics
