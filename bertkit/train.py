"""``run(recipe)``: the one path from a recipe to a trained, evaluated, documented model.

    recipe -> data.load -> task.prepare -> models.load -> task.features -> Trainer.train
           -> task.report / task.prediction_rows on validation and test -> outputs (staged, published)

``prepare`` is the part ``validate`` shares: everything up to the features, with a report of split
sizes, labels and lengths, and no model weights loaded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertkit import data as data_mod
from bertkit import console, distributed, hardware, interrupt, mistakes, models, outputs, plotting, tasks
from bertkit.console import log
from bertkit.errors import BertkitError
from bertkit.recipe import Recipe


@dataclass
class Prepared:
    """Everything known before training starts."""

    recipe: Recipe
    task: Any  # the tasks.Task
    spec: Any
    tokenizer: Any
    raw: Any  # DatasetDict of cleaned raw rows
    features: dict[str, Any] = field(default_factory=dict)
    lengths: dict[str, dict[str, Any]] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    resumed_from_step: int | None = None  # set by run() when it continues from a checkpoint
    before: dict[str, Any] = field(default_factory=dict)  # metrics of the starting model (task.before_training)

    def split_sizes(self) -> dict[str, int]:
        return {name: len(ds) for name, ds in self.raw.items()}


def prepare(recipe: Recipe) -> Prepared:
    """Load and check data, labels and tokenizer; tokenise every split (no model weights)."""
    task = tasks.get(recipe.task)
    models.check_family(recipe.model, task.model_class(), trust_remote_code=recipe.trust_remote_code)
    raw = task.load_raw(recipe) if task.load_raw is not None else data_mod.load(recipe.data, recipe.task)
    if task.clean_split is not None:
        cleaned, dropped = {}, {}
        for split in raw:
            cleaned[split], dropped[split] = task.clean_split(raw[split], recipe, split)
        import datasets

        raw = datasets.DatasetDict(cleaned)
    else:
        dropped = {}
    spec = task.prepare(raw, recipe)
    raw = data_mod.ensure_validation(raw, recipe.data, recipe.seed, stratify=task.stratify_labels(raw["train"], recipe)
                                     if task.stratify_labels is not None else None,
                                     always=task.SCORES_HELD_OUT)
    if "validation" not in raw and recipe.early_stopping_patience:
        raise BertkitError("early_stopping_patience needs a validation split to watch, and this run has none "
                           "(no validation file, and nothing is held out of train)",
                           "give one with data.validation=FILE, or hold some of train out with data.validation_size=0.1")
    import datasets

    raw = datasets.DatasetDict({
        split: data_mod.limit(ds, recipe.data.max_train_samples if split == "train" else recipe.data.max_eval_samples)
        for split, ds in raw.items()
    })
    tokenizer = models.load_tokenizer(recipe.model, trust_remote_code=recipe.trust_remote_code, japanese=recipe.japanese)
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and limit < 100_000 and recipe.max_length > limit:
        raise BertkitError(f"max_length={recipe.max_length} is more than the model takes ({limit} tokens)",
                           f"set max_length={limit} or less")
    if task.adapt_tokenizer is not None:
        tokenizer = task.adapt_tokenizer(tokenizer, raw, recipe, spec)
    prepared = Prepared(recipe=recipe, task=task, spec=spec, tokenizer=tokenizer, raw=raw, dropped=dropped)
    for split in raw:
        log(f"tokenising {split} ({len(raw[split])} examples)")
        prepared.features[split], prepared.lengths[split] = task.features(raw[split], tokenizer, recipe, spec, split)
    return prepared


def summary_lines(p: Prepared) -> list[str]:
    lines = [f"model: {models.describe(p.recipe.model)}", f"task: {p.recipe.task}",
             f"precision: {hardware.precision_choice(p.recipe.precision)[1]}"]
    lines.append("splits: " + ", ".join(f"{k}={v}" for k, v in p.split_sizes().items()))
    for split, n in p.dropped.items():
        if n:
            lines.append(f"dropped {n} {split} rows with empty text")
    labels = getattr(p.spec, "labels", None)
    counts = getattr(p.spec, "class_counts", None)
    if labels:
        shown = ", ".join(f"{label} ({counts.get(label, 0)})" if counts else label for label in labels[:30])
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


def training_arguments(recipe: Recipe, work: Path, task: Any, validation: bool = True) -> Any:
    """The TrainingArguments of a run; ``validation=False``: there is no validation split, so no
    evaluation while training and the last epoch's model is the one kept."""
    from transformers import TrainingArguments

    args = recipe.training_args()
    if not validation:
        args.update(eval_strategy="no", load_best_model_at_end=False)
    for key, value in task.TRAINING_DEFAULTS.items():  # what the task needs, unless the recipe says
        args[key] = recipe.training.get(key, value)
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
    # bertkit's task heads use every parameter, so DDP can skip its per-step search for unused ones
    # (a model that leaves some unused fails loudly; training.ddp_find_unused_parameters=true fixes it).
    args.setdefault("ddp_find_unused_parameters", False)
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
        logits, labels = logits.view(-1, logits.shape[-1]), labels.view(-1)
        if num_items_in_batch is None:  # evaluation: the weighted mean over this batch
            return torch.nn.functional.cross_entropy(logits, labels, weight=w)
        # Training: the Trainer passes the example count of the whole optimizer step (every process,
        # every accumulated micro-batch), then neither divides by accumulation nor undoes its
        # multiplication by the process count; a sum over that count is what fits.
        return torch.nn.functional.cross_entropy(logits, labels, weight=w, reduction="sum") / num_items_in_batch

    return loss


def run(recipe: Recipe, *, overwrite: bool = False, resume: bool = False, command: str = "",
        callbacks: list[Any] | None = None, loss: Any = None) -> dict[str, Any]:
    """Train, evaluate and write the output directory; return the metrics.

    ``loss`` replaces the task's training loss: an object with ``attach(prepared, args) -> args``
    (called once the features exist, before the model loads; it may add training rows and label
    columns) and ``collator(task_collator) -> collator`` (to carry those columns into batches), that is
    then called as ``(model, inputs) -> (loss, outputs)`` (``bertkit.distill``).

    Ctrl-C or SIGTERM while training writes a checkpoint and raises ``interrupt.Interrupted`` with
    the command that resumes (``bertkit.interrupt``). Any other failure before the first checkpoint
    removes the staging directory, so nothing half-written is left behind.
    """
    resume = resume or recipe.resume
    work = outputs.staging_dir(recipe.output_dir)
    with interrupt.Guard() as guard:
        try:
            return _run(recipe, guard, overwrite=overwrite, resume=resume, command=command, extra_callbacks=callbacks,
                        loss=loss)
        except KeyboardInterrupt:
            failure: BaseException = guard.interrupted(work, command)
        except (OSError, RuntimeError, BertkitError) as exc:  # a full disk, whoever noticed it first
            failure = outputs.write_error(work, exc, interrupt.resume_command(command)) \
                if outputs.is_write_failure(exc) else exc
        except BaseException as exc:
            failure = exc
        if not resume and distributed.is_main_process() and outputs.last_complete_checkpoint(work) is None:
            outputs.discard(work)
        raise failure


def _run(recipe: Recipe, guard: interrupt.Guard, *, overwrite: bool, resume: bool, command: str,
         extra_callbacks: list[Any] | None = None, loss: Any = None) -> dict[str, Any]:
    from transformers import EarlyStoppingCallback, set_seed

    from bertkit import tracking
    from bertkit.trainer import BertkitTrainer, signal_callbacks

    if console.level() != "verbose":  # transformers' own bars (loading weights, writing shards)
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

    # Until publish(), everything goes to the staging directory: an interrupted run leaves it for
    # --resume and never leaves anything at output_dir that looks like a finished model. Under a
    # launcher, placement() joins the process group first; the main process alone prepares the
    # staging directory while the others wait for it.
    work = outputs.staging_dir(recipe.output_dir)
    args = training_arguments(recipe, work, tasks.get(recipe.task))
    where = distributed.placement(args)
    distributed.on_main(lambda: outputs.prepare(recipe.output_dir, overwrite=overwrite, resume=resume))
    set_seed(recipe.seed)
    p = prepare(recipe)
    for line in summary_lines(p):
        log(line)
    if "validation" not in p.features:
        log("no validation split: training on every training row, keeping the last epoch's model "
            "(data.validation_size=0.1 holds some out to choose the best epoch)")
        args = training_arguments(recipe, work, p.task, validation=False)
    if loss is not None:
        args = loss.attach(p, args)
    model = models.load_model(recipe.model, p.task.model_class(), allow_pickle=recipe.allow_pickle,
                              trust_remote_code=recipe.trust_remote_code, **p.spec.model_kwargs(),
                              **models.attention_dropout_kwargs(recipe.model, recipe.attention_dropout))
    # BERT-family heads average their loss over their own batch and ignore num_items_in_batch; as they
    # take **kwargs the Trainer would assume otherwise, skip dividing by gradient accumulation and
    # multiply by the process count: losses and gradients N times too large (N=2 on 2 processes).
    model.accepts_loss_kwargs = False
    callbacks = [EarlyStoppingCallback(recipe.early_stopping_patience)] if recipe.early_stopping_patience else []
    counter = distributed.batch_counter()
    callbacks.append(counter)
    callbacks += signal_callbacks(guard)
    callbacks += extra_callbacks or []  # e.g. bertkit tune's pruning
    callbacks += tracking.callbacks(args)  # remembers the tracker runs, for the final metrics
    loss_fn = None
    if getattr(recipe.options, "class_weights", False):
        loss_fn = _loss_with_class_weights(p.task.class_weights(p.spec))
    eval_batch = args.per_device_eval_batch_size
    collator = p.task.collator(p.tokenizer, p.spec)
    if loss is not None:
        collator = loss.collator(collator)
    trainer = BertkitTrainer(model=model, args=args, train_dataset=p.features["train"],
                             eval_dataset=p.features.get("validation"), processing_class=p.tokenizer,
                             data_collator=collator,
                             compute_metrics=p.task.compute_metrics(p.spec, recipe), callbacks=callbacks,
                             compute_loss_func=loss_fn, model_loss=loss or p.task.training_loss,
                             evaluate_validation=(lambda m: evaluate_split(p, m, "validation", eval_batch))
                             if "validation" in p.features else None, console_level=console.level())
    where["strategy"] = distributed.strategy(trainer)
    log(f"device: {distributed.describe(where)}; precision: {hardware.precision_choice(recipe.precision)[1]}; "
        f"effective batch: {effective_batch(args)[1]}")
    if p.task.before_training is not None:
        p.before = p.task.before_training(p, trainer.model, lambda m, split: evaluate_split(p, m, split, eval_batch)[0])
    for callback in p.task.training_callbacks(p, trainer.model) if p.task.training_callbacks is not None else []:
        trainer.add_callback(callback)
    started = time.perf_counter()
    checkpoint = _last_checkpoint(work) if resume else None
    if checkpoint:  # samples/s must count only the steps this process ran
        p.resumed_from_step = int(Path(checkpoint).name.rsplit("-", 1)[-1])
    with guard.deferring():
        train_output = trainer.train(resume_from_checkpoint=checkpoint)
    if guard.signum is not None:
        raise guard.interrupted(work, command)
    train_seconds = time.perf_counter() - started
    if where["processes"] > 1:
        log(f"rank {distributed.rank()}/{where['processes']}: {counter.batches} training batches", every_rank=True)
    metrics = _finish(p, trainer, work, train_output, train_seconds, command, where)
    distributed.on_main(lambda: outputs.publish(work, recipe.output_dir))
    distributed.shutdown()
    return metrics


def _last_checkpoint(work: Path) -> str | None:
    found = outputs.last_complete_checkpoint(work)
    if found is None:
        raise BertkitError(f"no checkpoint to resume from in {work}", "start the run again without --resume")
    return found


def evaluate_split(p: Prepared, model: Any, split: str, batch_size: int
                   ) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """Full metrics, prediction rows and any extra JSON artifacts (e.g. QA's nbest file) for one split."""
    precision = hardware.resolve_precision(p.recipe.precision)
    feats = p.features[split]
    outputs_ = p.task.infer(model, feats, p.tokenizer, precision, batch_size, desc=f"evaluating {split}",
                            recipe=p.recipe)
    artifacts = p.task.artifacts(p.spec, p.recipe, outputs_, p.raw[split]) if p.task.artifacts is not None else {}
    return (p.task.report(p.spec, p.recipe, outputs_, feats),
            p.task.prediction_rows(p.spec, p.recipe, outputs_, p.raw[split]), artifacts)


def padding_stats(trainer: Any, max_length: int) -> dict[str, Any]:
    """How much of one epoch's compute goes to padding with our batches vs. padding='max_length'.

    Re-collates one epoch of training batches (no forward pass) and counts attention-mask positions.
    In a multi-process run every process counts its own share and the counts are summed: a collective,
    so every process must call it.
    """
    real = padded = n = 0
    for batch in trainer.get_train_dataloader():
        mask = batch["attention_mask"]
        real += int(mask.sum())
        padded += mask.numel()
        n += mask.shape[0]
    real, padded, n = distributed.sum_over_processes([real, padded, n], trainer.args.device)
    if not padded:
        return {}
    return {"tokens_real": real, "tokens_padded": padded,
            "padding_fraction": round(1 - real / padded, 4),
            "padding_fraction_if_max_length": round(1 - real / (n * max_length), 4)}


def effective_batch(args: Any) -> tuple[int, str]:
    """The batch one optimizer step sees, and how it is made up."""
    size = args.per_device_train_batch_size * args.world_size * args.gradient_accumulation_steps
    return size, (f"{args.per_device_train_batch_size} per device x {args.world_size} processes x "
                  f"{args.gradient_accumulation_steps} accumulation = {size}")


def _finish(p: Prepared, trainer: Any, work: Path, train_output: Any, train_seconds: float, command: str,
            where: dict[str, Any]) -> dict[str, Any]:
    """Save, evaluate and write the staging directory; the metrics, on every process."""
    # Every process takes part in saving (FSDP and DeepSpeed gather the weights; only the main
    # process writes) and in counting padding; all the rest runs on the main process alone.
    trainer.save_model(str(work))
    padding = padding_stats(trainer, p.recipe.max_length)
    return distributed.on_main(lambda: _write_outputs(p, trainer, work, train_output, train_seconds, command, where,
                                                      padding))


def _fit_on_validation(p: Prepared, model: Any, work: Path, batch_size: int) -> dict[str, Any]:
    """Settings the task fits on validation (classification: thresholds, temperature), kept in the
    saved config.json so evaluate and predict apply them; {} when there are none."""
    if p.task.fit_on_validation is None or "validation" not in p.features:
        return {}
    import json

    feats = p.features["validation"]
    logits = p.task.infer(model, feats, p.tokenizer, hardware.resolve_precision(p.recipe.precision), batch_size,
                          recipe=p.recipe)
    fitted = p.task.fit_on_validation(p.spec, p.recipe, logits, feats)
    if fitted:
        log("fitted on validation: " + ", ".join(f"{k.removeprefix('bertkit_')} {v}" for k, v in fitted.items()))
        config = json.loads((work / "config.json").read_text(encoding="utf-8"))
        config.update(fitted)
        outputs.write_json(work / "config.json", config)
        for key, value in fitted.items():
            setattr(model.config, key, value)
    return fitted


def _write_outputs(p: Prepared, trainer: Any, work: Path, train_output: Any, train_seconds: float, command: str,
                   where: dict[str, Any], padding: dict[str, Any]) -> dict[str, Any]:
    recipe = p.recipe
    (work / "training_args.bin").unlink(missing_ok=True)  # a pickle; training_args.json says the same
    # The TrainingArguments as resolved (bertkit's defaults, the task's, the recipe's, the hardware's):
    # with recipe.yaml, the output directory alone explains and reproduces the run.
    (work / "training_args.json").write_text(trainer.args.to_json_string(), encoding="utf-8")
    # The final numbers come from the model as saved, loaded as `bertkit evaluate` loads it, on the
    # full splits: the same whatever wrapped it in training (DDP, FSDP shards, DeepSpeed) and with no
    # sample counted twice.
    model = models.load_model(str(work), p.task.model_class(), trust_remote_code=recipe.trust_remote_code)
    model.to(trainer.args.device)
    batch = trainer.args.per_device_eval_batch_size
    metrics: dict[str, Any] = {"before": p.before} if p.before else {}
    predictions: list[dict[str, Any]] = []
    artifacts: dict[str, Any] = {}
    fitted = _fit_on_validation(p, model, work, batch)
    for split in ("validation", "test"):
        if split not in p.features:
            continue
        # The last evaluated split (test when present) goes to predictions.jsonl. The validation
        # split was already scored with the kept weights during training, the same way: reuse that
        # (unless thresholds or a temperature were just fitted on it, which change its scores).
        kept = trainer.kept_evaluation() if split == "validation" and not fitted else None
        if kept is None:
            log(f"evaluating {split}")
            kept = evaluate_split(p, model, split, batch)
        metrics[split], predictions, artifacts = kept
        if split == "validation" and recipe.task != "mlm":  # the examples the model gets most wrong, on data it never trained on
            outputs.write_jsonl(work / "errors.jsonl", mistakes.rows_for(recipe.task, predictions, getattr(p.spec, "lang", "en")))
    for name, content in artifacts.items():
        outputs.write_json(work / name, content)
    n_train = len(p.features["train"])
    epochs = float(recipe.training_args().get("num_train_epochs", 1))
    size, makeup = effective_batch(trainer.args)
    resumed = p.resumed_from_step
    samples = n_train * epochs if resumed is None else max(trainer.state.global_step - resumed, 0) * size
    metrics["train"] = {
        "loss": interrupt.mean_train_loss(trainer.state.log_history, train_output.training_loss),
        "seconds": round(train_seconds, 1),
        "samples_per_second": round(samples / max(train_seconds, 1e-9), 2) if samples else None,
        "examples": n_train,
        "best_checkpoint_metric": trainer.state.best_metric,
    }
    metrics["train"].update(padding)
    metrics["train"].update(where, effective_batch_size=size)
    metrics["train"]["precision"], metrics["train"]["precision_reason"] = hardware.precision_choice(recipe.precision)
    metrics["data"] = {"splits": p.split_sizes(), "dropped_empty": p.dropped, "lengths": p.lengths}
    metrics["evaluated_split"] = "test" if "test" in p.features else "validation"
    outputs.write_json(work / "metrics.json", metrics)
    outputs.write_jsonl(work / "predictions.jsonl", predictions)
    outputs.write_jsonl(work / "train_log.jsonl", trainer.state.log_history)
    from bertkit import recipe as recipe_mod

    precision = hardware.resolve_precision(recipe.precision)
    recipe_mod.save(recipe, work / "recipe.yaml", notes=[
        f"ran on {distributed.describe(where)} in {precision}; effective batch size {makeup}"])
    metric_name, _ = p.task.best_metric(recipe)
    plotting.plot_training(trainer.state.log_history, metric_name, work / "training_curves.png")
    evaluated = metrics.get(metrics["evaluated_split"], {})
    if "confusion_matrix" in evaluated:
        cm = evaluated["confusion_matrix"]
        plotting.plot_confusion(cm["labels"], cm["matrix"], work / "confusion_matrix.png")
    notes = p.task.card_notes(recipe, p.spec) if p.task.card_notes is not None else []
    card = outputs.model_card(recipe=recipe, model_desc=models.describe(recipe.model),
                              task_desc=p.task.PIPELINE_TAG or recipe.task,
                              labels=getattr(p.spec, "labels", None), split_sizes=p.split_sizes(),
                              metrics={**{f"{k} before training": v for k, v in p.before.items()},
                                       **{k: metrics[k] for k in ("validation", "test") if k in metrics}},
                              lengths=p.lengths.get("train", {}), notes=notes,
                              command=command or "bertkit finetune recipe.yaml")
    (work / "README.md").write_text(card, encoding="utf-8")
    from bertkit import tracking

    tracking.finish(trainer, metrics, work)  # final metrics, recipe and card to training.report_to's trackers
    return metrics
