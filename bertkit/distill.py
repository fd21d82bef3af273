"""``bertkit distill``: a fine-tuned teacher into a smaller, faster student that keeps its accuracy.

The student is trained on the teacher's own data (its saved ``recipe.yaml`` gives task, data, labels
and training settings; overrides change any of them) with the teacher's soft targets beside the
labels, and optionally on unlabelled rows with the soft targets alone, which is where distillation
gains most. Per row, with ``T = distill.temperature`` and ``a = distill.alpha``::

    labelled:    a * T^2 * KL(teacher/T || student/T) + (1 - a) * task loss
    unlabelled:  T^2 * KL(teacher/T || student/T)

KL is over the labels (classification), per word token (NER; padding and special tokens masked,
mean over the row's tokens) or over the window's positions for the answer start and the answer end
separately (QA, the mean of the two). Multi-label classification uses the per-label binary KL,
regression the squared difference to the teacher's value. The loss of a batch is the mean over its
rows. ``distill.hidden_weight`` adds the mean squared difference between each student layer's output
and the teacher layer it was copied from (the teacher then runs on every batch instead of once).

The student: ``distill.student_layers: K`` copies the teacher keeping K evenly spaced layers, the
last one always among them (6 -> 3 keeps 1, 3, 5; 12 -> 6 keeps 1, 3, ..., 11), with embeddings and
task head copied, as DistilBERT initialises from its teacher; or ``distill.student: MODEL`` starts
from another encoder (any tokenizer for classification; NER and QA targets are per token, so they
need the teacher's tokenizer). The teacher's outputs on the training rows are computed once, batched,
and cached in ``hardware.cache_dir() / distill`` (key: the teacher's files, the rows' token ids, the
precision), so a second student (other seed, other settings) reuses them.

The student trains with the teacher's recipe, for twice its epochs unless ``distill.epochs`` or
``training.num_train_epochs`` says otherwise (a student learns the teacher's answers more slowly than
its labels: on IMDb a 3-layer student kept 98.3 % of the teacher after one epoch, 99.7 % after two).

The output is an ordinary model directory; ``metrics.json["distill"]``, ``distill.json`` and the card
hold teacher vs student metric, texts/s of both on the scored split, parameter counts and, with
``distill.compare_labels_only``, the same student trained on the labels alone.

Why our own code: TextBrewer and Intel Neural Compressor are Python APIs around their own training
loops; here the student must go through bertkit's own ``train.run`` (recipes, length-grouped batches,
evaluation, outputs), so only the loss and the student's initialisation are new.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bertkit import console, hardware, outputs, tasks
from bertkit.student import layer_count, make_student, same_tokenizer
from bertkit import recipe as recipe_mod
from bertkit.errors import BertkitError

CACHE_VERSION = 1
SPEED_ROWS = 2000  # rows the teacher's and the student's speed is measured on


@dataclass(frozen=True)
class Options:
    student_layers: int | None = None  # keep K of the teacher's layers; default half (when no student)
    student: str | None = None  # or start from this encoder
    temperature: float = 2.0
    alpha: float = 0.5  # weight of the soft targets on labelled rows (unlabelled rows: soft targets only)
    hidden_weight: float = 0.0  # weight of the layer-output matching (0: off)
    unlabeled: str | None = None  # file or folder of inputs without labels, in the format predict reads
    max_unlabeled: int | None = None  # read at most this many unlabelled rows
    compare_labels_only: bool = False  # also train the same student on the labels alone, and report both
    # The student's training epochs; default twice the teacher's (a training.num_train_epochs override
    # also sets them). IMDb, 3-layer MiniLM student: 98.3 % of the teacher after 1 epoch, 99.7 % after 2.
    epochs: float | None = None


def split_overrides(overrides: list[str]) -> tuple[Options, list[str]]:
    """(distill options, the other overrides) from ``key=value`` arguments."""
    mine, rest, errors = {}, [], []
    names = {f.name: f for f in dataclasses.fields(Options)}
    for text in overrides:
        keys, value = recipe_mod.parse_override(text)
        if keys[0] != "distill":
            rest.append(text)
            continue
        if len(keys) != 2 or keys[1] not in names:
            errors.append(f"unknown distill key {'.'.join(keys)!r} (known: {', '.join(names)})")
            continue
        mine[keys[1]] = value
    options = recipe_mod.build_section(Options, mine, "distill.", errors)
    if errors:
        raise BertkitError(errors[0], "fix the distill.* override it names")
    if options.temperature <= 0 or not 0 <= options.alpha <= 1 or options.hidden_weight < 0:
        raise BertkitError("distill.temperature must be > 0, distill.alpha in [0, 1], distill.hidden_weight >= 0",
                           "fix the distill.* override")
    return options, rest


# ---------------------------------------------------------------------------------------------
# The loss


def soft_kl(student: Any, teacher: Any, temperature: float, dim: int = -1) -> Any:
    """T^2 * KL(softmax(teacher/T) || softmax(student/T)), summed over ``dim``."""
    import torch.nn.functional as F

    t = F.log_softmax(teacher / temperature, dim=dim)
    s = F.log_softmax(student / temperature, dim=dim)
    return (t.exp() * (t - s)).sum(dim=dim) * temperature ** 2


def binary_kl(student: Any, teacher: Any, temperature: float) -> Any:
    """T^2 * KL between independent Bernoullis (multi-label), mean over the labels."""
    import torch.nn.functional as F

    p = (teacher / temperature).sigmoid()
    return (F.binary_cross_entropy_with_logits(student / temperature, p, reduction="none")
            - F.binary_cross_entropy_with_logits(teacher / temperature, p, reduction="none")).mean(-1) * temperature ** 2


class DistillLoss:
    """``train.run``'s loss: adds the teacher's targets to the training rows, then scores batches."""

    whole_model = True  # calls the model as a whole, so it also runs on a wrapped (DDP) model

    def __init__(self, teacher_dir: str, options: Options, task: str, unlabeled: list[dict[str, Any]],
                 kept: list[int] | None) -> None:
        self.teacher_dir, self.options, self.task, self.unlabeled_rows = teacher_dir, options, task, unlabeled
        self.kept = kept
        self.targets: list[np.ndarray] = []
        self.labelled: np.ndarray = np.zeros(0, dtype=bool)
        self.problem = "single_label_classification"
        self.teacher = None
        self.cache_hit = False
        self.n_unlabeled = 0

    # --- before training

    def attach(self, p: Any, args: Any) -> Any:
        import datasets

        from bertkit import models

        task = p.task
        teacher = models.load_model(self.teacher_dir, task.model_class())
        teacher_labels = [teacher.config.id2label[i] for i in range(teacher.config.num_labels)] \
            if self.task != "qa" else None
        labels = getattr(p.spec, "labels", None)
        if teacher_labels is not None and labels is not None and list(labels) != teacher_labels:
            raise BertkitError(f"the training data's labels ({', '.join(labels[:8])}) are not the teacher's "
                               f"({', '.join(teacher_labels[:8])}) in the same order",
                               "distill on the data the teacher was trained on")
        # the spec says single_label / multi_label / regression; the loss uses transformers' names
        kind = getattr(p.spec, "problem_type", None) or "single_label"
        self.problem = {"single_label": "single_label_classification",
                        "multi_label": "multi_label_classification"}.get(kind, kind)
        train = p.features["train"]
        n_labelled = len(train)
        if self.unlabeled_rows:
            extra = self._unlabeled_features(p)
            self.n_unlabeled = len(extra)
            train = datasets.concatenate_datasets([train, extra.cast(train.features)])
        teacher_tok = models.load_tokenizer(self.teacher_dir)
        rows = self._teacher_rows(p, train, teacher_tok)
        self.targets = self._teacher_outputs(teacher, rows, teacher_tok.pad_token_id)
        self.labelled = np.arange(len(train)) < n_labelled
        train = train.add_column("teacher_row", list(range(len(train))))
        p.features["train"] = train
        if self.options.hidden_weight > 0:
            self.teacher = teacher.eval()
        label_names = ["start_positions", "end_positions"] if self.task == "qa" else ["labels"]
        args.label_names = [*label_names, "teacher_row"]
        return args

    def _unlabeled_features(self, p: Any) -> Any:
        import datasets

        recipe, task = p.recipe, p.task
        raw = datasets.Dataset.from_list(self.unlabeled_rows)
        if task.clean_split is not None:
            raw, _ = task.clean_split(raw, recipe, "unlabeled", need_labels=False)
        feats, _ = task.features(raw, p.tokenizer, recipe, p.spec, "unlabeled", with_labels=False)
        n = len(feats)
        if self.task == "qa":
            feats = feats.add_column("start_positions", [0] * n).add_column("end_positions", [0] * n)
        elif self.task == "ner":
            feats = feats.add_column("labels", [[-100] * len(ids) for ids in feats["input_ids"]])
        elif self.problem == "multi_label_classification":
            feats = feats.add_column("labels", [[0.0] * len(p.spec.labels)] * n)
        elif self.problem == "regression":
            feats = feats.add_column("labels", [0.0] * n)
        else:
            feats = feats.add_column("labels", [-100] * n)
        keep = [c for c in p.features["train"].column_names if c in feats.column_names]
        return feats.select_columns(keep)

    def _teacher_rows(self, p: Any, train: Any, teacher_tok: Any) -> list[dict[str, Any]]:
        """The teacher's inputs, one per training row: the student's own rows when both share a
        tokenizer; else (classification only) the same examples tokenised the teacher's way."""
        columns = [c for c in ("input_ids", "token_type_ids", "attention_mask") if c in train.column_names]
        if same_tokenizer(teacher_tok, p.tokenizer):
            return list(train.select_columns(columns))
        if self.task != "classification":
            raise BertkitError(f"the student's tokenizer differs from the teacher's, and {self.task} targets are "
                               "per token", "use distill.student_layers, or a student with the teacher's tokenizer")
        import datasets

        raw = p.raw["train"]
        texts = [{k: v for k, v in row.items()} for row in raw] + list(self.unlabeled_rows)
        ds = datasets.Dataset.from_list(texts)
        if p.task.clean_split is not None:
            ds, _ = p.task.clean_split(ds, p.recipe, "teacher", need_labels=False)
        feats, _ = p.task.features(ds, teacher_tok, p.recipe, p.spec, "teacher", with_labels=False)
        if len(feats) != len(train):
            raise BertkitError("the teacher's and the student's tokenizers split the training rows differently",
                               "use a student with the teacher's tokenizer")
        return list(feats.select_columns([c for c in columns if c in feats.column_names]))

    def _teacher_outputs(self, teacher: Any, rows: list[dict[str, Any]], pad_id: int) -> list[np.ndarray]:
        from bertkit import inference

        precision = hardware.resolve_precision("auto")
        key = self._cache_key(rows, precision)
        path = hardware.cache_dir() / "distill" / f"{key}.npz"
        if path.is_file():
            with np.load(path) as saved:
                flat, ends = saved["values"], saved["ends"]
                shapes = saved["shapes"]
            self.cache_hit = True
            console.log(f"teacher outputs on {len(rows)} training rows: reused from {path}")
            return [flat[s:e].reshape(tuple(d for d in shape if d >= 0))
                    for s, e, shape in zip(np.r_[0, ends[:-1]], ends, shapes)]
        started = time.perf_counter()
        names = ("start_logits", "end_logits") if self.task == "qa" else ("logits",)
        out = inference.forward(teacher, rows, pad_id=pad_id, precision=precision, outputs=names,
                                per_token=self.task != "classification", desc="teacher outputs")
        values = [np.stack([out[n][i] for n in names], axis=-1) if self.task == "qa" else out["logits"][i]
                  for i in range(len(rows))]
        console.log(f"teacher outputs on {len(rows)} training rows: {time.perf_counter() - started:.1f} s")
        path.parent.mkdir(parents=True, exist_ok=True)
        flat = np.concatenate([v.reshape(-1) for v in values]).astype(np.float32)
        ends = np.cumsum([v.size for v in values])
        shapes = np.array([v.shape if v.ndim == 2 else (v.shape[0], -1) for v in values], dtype=np.int64)
        tmp = path.with_name(f"{path.stem}.{time.time_ns()}.tmp.npz")
        np.savez(tmp, values=flat, ends=ends, shapes=shapes)
        tmp.replace(path)
        return values

    def _cache_key(self, rows: list[dict[str, Any]], precision: str) -> str:
        import torch
        import transformers

        from bertkit import models

        h = hashlib.sha256(json.dumps([CACHE_VERSION, self.task, models.fingerprint(self.teacher_dir), precision,
                                       torch.__version__, transformers.__version__]).encode())
        for row in rows:
            h.update(np.asarray(row["input_ids"], dtype=np.int64).tobytes())
            h.update(b"|")
        return h.hexdigest()[:32]

    # --- while training

    @staticmethod
    def collator(inner: Any) -> Any:
        """The task's collator, with each row's ``teacher_row`` carried into the batch beside it."""
        import torch

        def collate(rows: list[dict[str, Any]]) -> dict[str, Any]:
            index = [r["teacher_row"] for r in rows]
            batch = inner([{k: v for k, v in r.items() if k != "teacher_row"} for r in rows])
            batch["teacher_row"] = torch.tensor(index, dtype=torch.long)
            return batch

        return collate

    def _padded(self, rows: Any, length: int, device: Any) -> Any:
        import torch

        targets = [self.targets[int(i)] for i in rows]
        if self.task == "classification":
            return torch.as_tensor(np.stack(targets), device=device).float()
        width = targets[0].shape[-1]
        out = np.zeros((len(targets), length, width), dtype=np.float32)
        for j, t in enumerate(targets):
            out[j, :min(len(t), length)] = t[:length]
        return torch.as_tensor(out, device=device)

    def __call__(self, model: Any, inputs: dict[str, Any]) -> tuple[Any, Any]:
        inputs = dict(inputs)
        rows = inputs.pop("teacher_row")
        labelled = self.labelled[rows.cpu().numpy()]
        gold = {k: inputs.pop(k) for k in ("labels", "start_positions", "end_positions") if k in inputs}
        want_hidden = self.teacher is not None
        outputs = model(**inputs, output_hidden_states=want_hidden)
        length = inputs["input_ids"].shape[1]
        teacher = self._padded(rows.cpu().numpy(), length, inputs["input_ids"].device)
        kd, task = self.row_losses(outputs, teacher, gold, inputs)
        import torch

        mask = torch.as_tensor(labelled, device=kd.device)
        a = self.options.alpha
        per_row = torch.where(mask, a * kd + (1 - a) * task, kd)
        loss = per_row.mean()
        if want_hidden:
            loss = loss + self.options.hidden_weight * self._hidden_loss(outputs, inputs)
        return loss, outputs

    def row_losses(self, outputs: Any, teacher: Any, gold: dict[str, Any], inputs: dict[str, Any]) -> tuple[Any, Any]:
        """(soft-target loss, task loss) per row; the task loss is 0 where a row has no label."""
        import torch
        import torch.nn.functional as F

        T = self.options.temperature
        if self.task == "classification":
            s = outputs.logits.float()
            y = gold["labels"]
            if self.problem == "regression":
                return (s.squeeze(-1) - teacher.squeeze(-1)) ** 2, (s.squeeze(-1) - y.float()) ** 2
            if self.problem == "multi_label_classification":
                task = F.binary_cross_entropy_with_logits(s, y.float(), reduction="none").mean(-1)
                return binary_kl(s, teacher, T), task
            task = F.cross_entropy(s, y.clamp(min=0), reduction="none") * (y >= 0)
            return soft_kl(s, teacher, T), task
        mask = inputs["attention_mask"].bool()
        if self.task == "ner":
            special = torch.zeros_like(mask)
            special[:, 0] = True
            lengths = mask.sum(dim=1)
            special[torch.arange(len(mask)), lengths - 1] = True  # [CLS] ... [SEP]
            tokens = (mask & ~special).float()
            s = outputs.logits.float()
            kd = (soft_kl(s, teacher, T) * tokens).sum(1) / tokens.sum(1).clamp(min=1)
            y = gold["labels"]
            ce = F.cross_entropy(s.transpose(1, 2), y.clamp(min=0), reduction="none") * (y >= 0)
            task = ce.sum(1) / (y >= 0).sum(1).clamp(min=1)
            return kd, task
        # qa: over the window's positions, start and end separately
        neg = torch.finfo(torch.float32).min
        kd, task = 0.0, 0.0
        for k, (name, gold_name) in enumerate((("start_logits", "start_positions"), ("end_logits", "end_positions"))):
            s = getattr(outputs, name).float().masked_fill(~mask, neg)
            t = teacher[..., k].masked_fill(~mask, neg)
            kd = kd + soft_kl(s, t, T) / 2
            task = task + F.cross_entropy(s, gold[gold_name], reduction="none") / 2
        return kd, task

    def _hidden_loss(self, outputs: Any, inputs: dict[str, Any]) -> Any:
        import torch

        with torch.no_grad():
            reference = self.teacher(**inputs, output_hidden_states=True).hidden_states
        mask = inputs["attention_mask"].unsqueeze(-1).float()
        layers = self.kept or list(range(len(outputs.hidden_states) - 1))
        total = 0.0
        for j, i in enumerate(layers):
            diff = (outputs.hidden_states[j + 1].float() - reference[i + 1].float()) ** 2 * mask
            total = total + diff.sum() / (mask.sum() * diff.shape[-1])
        return total / len(layers)


# ---------------------------------------------------------------------------------------------
# The command


def _teacher_recipe(teacher_dir: str, overrides: list[str], output: str) -> recipe_mod.Recipe:
    path = Path(teacher_dir) / "recipe.yaml"
    if not (Path(teacher_dir) / "config.json").is_file() or not path.is_file():
        raise BertkitError(f"{teacher_dir} is not a model bertkit trained (no config.json and recipe.yaml there)",
                           "give the output directory of a bertkit finetune run")
    recipe_mod._load_task_modules()
    tree = recipe_mod.read_yaml(path)
    if tree.get("task") == "mlm":
        raise BertkitError(f"{teacher_dir} is a masked-LM (adapt-domain) model; distill needs a fine-tuned task model",
                           "fine-tune it first (bertkit finetune), then distill that model")
    tree["output_dir"] = output
    tree.pop("tune", None)
    tree = recipe_mod.apply_overrides(tree, overrides)
    return recipe_mod.from_dict(tree, source=str(path))


def _read_unlabeled(options: Options, recipe: recipe_mod.Recipe) -> list[dict[str, Any]]:
    if not options.unlabeled:
        return []
    from bertkit import data as data_mod

    source = Path(options.unlabeled)
    files = sorted(f for f in source.iterdir() if f.is_file()) if source.is_dir() else [source]
    if not files or not all(f.exists() for f in files):
        raise BertkitError(f"distill.unlabeled: {source} does not exist or holds no files", "give a file or folder")
    column, rows = recipe.data.text_column, []
    limit = options.max_unlabeled or float("inf")
    for f in files:
        for row in data_mod.iter_input_lines(str(f), column):
            if column not in row and "text" in row:
                row = {**row, column: row["text"]}
            rows.append({k: v for k, v in row.items() if k != recipe.data.label_column})
            if len(rows) >= limit:
                break
        if len(rows) >= limit:
            break
    if not rows:
        raise BertkitError(f"distill.unlabeled: {source} holds no rows", "give a file with one input per line")
    return rows


def run(teacher_dir: str, overrides: list[str], output: str, *, overwrite: bool = False,
        command: str = "") -> dict[str, Any]:
    """Distill ``teacher_dir`` into a student at ``output``; return the student's metrics."""
    from bertkit import train

    options, rest = split_overrides(overrides)
    recipe = _teacher_recipe(teacher_dir, rest, output)
    as_trained = _teacher_recipe(teacher_dir, [], output)  # the teacher's recipe without this command's overrides
    given = any(recipe_mod.parse_override(o)[0] == ["training", "num_train_epochs"] for o in rest)
    if options.epochs is not None or not given:
        teacher_epochs = as_trained.training_args()["num_train_epochs"]
        recipe = dataclasses.replace(recipe, training={**recipe.training,
                                                       "num_train_epochs": options.epochs or 2 * teacher_epochs})
    outputs.check_writable(output, overwrite=overwrite)
    if getattr(recipe.options, "class_weights", False) or recipe.training.get("label_smoothing_factor"):
        raise BertkitError("distill replaces the training loss, so class weights and label smoothing do not apply",
                           "set classification.class_weights=false / training.label_smoothing_factor=0")
    if options.student and options.student_layers:
        raise BertkitError("give distill.student or distill.student_layers, not both", "drop one of them")
    if options.student and options.hidden_weight:
        raise BertkitError("distill.hidden_weight matches layers of a student copied from the teacher",
                           "use distill.student_layers, or set distill.hidden_weight=0")
    task = tasks.get(recipe.task)
    unlabeled = _read_unlabeled(options, recipe)
    scratch = Path(tempfile.mkdtemp(prefix=".distill-", dir=Path(output).resolve().parent))
    try:
        kept = None
        if options.student:
            student_dir = options.student
            if recipe.task != "classification":
                from bertkit import models

                if not same_tokenizer(models.load_tokenizer(options.student), models.load_tokenizer(teacher_dir)):
                    raise BertkitError(f"distill.student={options.student} has another tokenizer than the teacher, and "
                                       f"{recipe.task} targets are per token",
                                       "use distill.student_layers, or a student with the teacher's tokenizer")
        else:
            from transformers import AutoConfig

            depth = layer_count(AutoConfig.from_pretrained(teacher_dir))[1]
            student_dir = str(scratch / "student")
            layers = options.student_layers or max(1, depth // 2)
            kept = make_student(teacher_dir, task.model_class(), layers, Path(student_dir))["kept"]
        student_recipe = dataclasses.replace(recipe, model=student_dir)
        loss = DistillLoss(teacher_dir, options, recipe.task, unlabeled, kept)
        metrics = train.run(student_recipe, overwrite=overwrite, command=command, loss=loss)
        labels_only = None
        if options.compare_labels_only:
            console.log("the same student on the labels alone (distill.compare_labels_only)")
            other = dataclasses.replace(student_recipe, output_dir=str(scratch / "labels-only"))
            labels_only = train.run(other, command=command)
        report = _report(teacher_dir, recipe, recipe.data == as_trained.data, output, metrics, labels_only, loss,
                         options, kept)
        _write(Path(output), metrics, report)
        return metrics
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _scored(metrics: dict[str, Any], metric: str) -> tuple[str, float] | None:
    for split in ("test", "validation"):
        if split in metrics and metric in metrics[split]:
            return split, float(metrics[split][metric])
    return None


def _speed(model_dir: str, recipe: recipe_mod.Recipe, split: str) -> tuple[float, int]:
    """Texts/s of a model on a split's features (the batched inference predict runs; up to SPEED_ROWS
    rows, of train when the split was carved out of it), and its parameter count."""
    from bertkit import data as data_mod
    from bertkit import evaluation, models

    task = tasks.get(recipe.task)
    tok = models.load_tokenizer(model_dir)
    model = evaluation._load_model(model_dir, task, recipe)
    loaded = data_mod.load(recipe.data, recipe.task)
    raw = loaded[split] if split in loaded else loaded["train"]  # a validation split carved out of train
    raw = raw.select(range(min(len(raw), SPEED_ROWS)))
    if task.clean_split is not None:
        raw, _ = task.clean_split(raw, recipe, split)
    spec = task.spec_from_model(model.config, recipe)
    feats, _ = task.features(raw, tok, recipe, spec, split, with_labels=False)
    precision = hardware.resolve_precision(recipe.precision)
    task.infer(model, feats.select(range(min(32, len(feats)))), tok, precision, 64, recipe=recipe)  # warm-up
    started = time.perf_counter()
    task.infer(model, feats, tok, precision, 64, recipe=recipe)
    return len(raw) / (time.perf_counter() - started), sum(p.numel() for p in model.parameters())


def _report(teacher_dir: str, recipe: recipe_mod.Recipe, same_data: bool, output: str, metrics: dict[str, Any],
            labels_only: dict[str, Any] | None, loss: DistillLoss, options: Options,
            kept: list[int] | None) -> dict[str, Any]:
    task = tasks.get(recipe.task)
    metric = task.best_metric(recipe)[0]
    teacher_metrics = json.loads((Path(teacher_dir) / "metrics.json").read_text(encoding="utf-8"))
    student = _scored(metrics, metric)
    teacher = _scored(teacher_metrics, metric) if same_data else None
    split_file = getattr(recipe.data, student[0]) if student else None
    if student and (teacher is None or teacher[0] != student[0]) and isinstance(split_file, str):
        from bertkit import evaluation

        scored, _ = evaluation.evaluate(teacher_dir, split_file, output_dir=str(Path(output) / ".teacher-eval"))
        shutil.rmtree(Path(output) / ".teacher-eval", ignore_errors=True)
        teacher = (student[0], float(scored[metric]))
    elif teacher is not None and student and teacher[0] != student[0]:
        teacher = None  # scored on another split: not comparable
    report: dict[str, Any] = {"teacher": str(teacher_dir), "metric": metric,
                              "options": dataclasses.asdict(options), "kept_layers": kept,
                              "unlabeled_rows": loss.n_unlabeled, "teacher_outputs_cached": loss.cache_hit}
    if student:
        report["split"] = student[0]
    if student and teacher:
        report.update(teacher_score=teacher[1], student_score=student[1],
                      kept_fraction=student[1] / teacher[1] if teacher[1] else None)
    if labels_only is not None:
        other = _scored(labels_only, metric)
        report["labels_only_score"] = other[1] if other else None
    if student:
        split = student[0]
        t_speed, t_params = _speed(teacher_dir, recipe, split)
        s_speed, s_params = _speed(str(Path(output)), dataclasses.replace(recipe, model=output), split)
        report.update(teacher_texts_per_s=round(t_speed, 2), student_texts_per_s=round(s_speed, 2),
                      speedup=round(s_speed / t_speed, 2), teacher_parameters=t_params, student_parameters=s_params)
    return report


def summary_lines(report: dict[str, Any]) -> list[str]:
    lines = []
    if "student_score" in report:
        kept = f" ({report['kept_fraction']:.1%} of the teacher)" if report["kept_fraction"] is not None else ""
        lines.append(f"{report['split']} {report['metric']}: teacher {report['teacher_score']:.4f}, student "
                     f"{report['student_score']:.4f}{kept}")
    if report.get("labels_only_score") is not None:
        lines.append(f"the same student on the labels alone: {report['labels_only_score']:.4f}")
    if "speedup" in report:
        lines.append(f"speed ({report['split']}, batched): teacher {report['teacher_texts_per_s']:.1f} texts/s, "
                     f"student {report['student_texts_per_s']:.1f} texts/s ({report['speedup']:.2f}x); parameters "
                     f"{report['teacher_parameters'] / 1e6:.1f} M -> {report['student_parameters'] / 1e6:.1f} M")
    return lines


def _write(out: Path, metrics: dict[str, Any], report: dict[str, Any]) -> None:
    metrics["distill"] = report
    outputs.write_json(out / "metrics.json", metrics)
    outputs.write_json(out / "distill.json", report)
    card = out / "README.md"
    if card.is_file():
        o = report["options"]
        student = (f"{len(report['kept_layers'])} of the teacher's layers ({', '.join(map(str, report['kept_layers']))})"
                   if report["kept_layers"] else o["student"])
        lines = "\n".join(f"- {line}" for line in summary_lines(report))
        card.write_text(card.read_text(encoding="utf-8").rstrip() + f"""

## Distillation

Distilled from `{report['teacher']}` into {student}: temperature {o['temperature']}, alpha {o['alpha']},
{report['unlabeled_rows']} unlabelled rows with the teacher's soft targets alone
(`bertkit distill`, `bertkit.distill`).

{lines}
""", encoding="utf-8")
