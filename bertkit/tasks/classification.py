"""Sequence classification: single-label, multi-label and regression, on one text or a text pair.

Labels are discovered from the training data in a stable order (sorted strings, or sorted integers)
and saved as ``id2label``/``label2id`` in the model config, so evaluation and prediction on any
later data map labels the same way; an evaluation label the model does not know is an error.
Inputs longer than ``max_length`` are cut by the recipe's ``classification.truncation`` rule
(head, tail or head+tail) and always counted and reported, never cut silently.

``truncation: windows`` reads the whole text instead: a text longer than ``max_length`` becomes several
overlapping windows (``text_windows.spans``), each a feature row with a ``doc`` column naming its text.
Training sees every window with its text's label; ``infer`` returns one row of logits per text, the
windows' logits combined (``windows.aggregate``: mean or max, per label), as ``DocumentLogits`` that
also carry each text's window count. Everything after ``infer`` (metrics, thresholds, prediction rows)
therefore sees one row per text, as without windows.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from bertkit import encoding
from bertkit.errors import BertkitError
from bertkit.recipe import Recipe, register_task_options
from bertkit.tasks import text_windows
from bertkit.tasks.text_windows import DocumentLogits, Windows, combine_windows, document_labels, window_counts


@dataclass(frozen=True)
class Options:
    problem_type: Literal["single_label", "multi_label", "regression"] = "single_label"
    label_names: list[str] | None = None  # display names for integer labels 0..n-1, in order
    # Decision threshold: multi-label, on each label's sigmoid score; binary single-label, on the second
    # label's probability (0.5 = argmax). auto: the threshold(s) with the best F1 on validation, saved.
    threshold: float | Literal["auto"] = 0.5
    # Fit a softmax (sigmoid) temperature on validation so probabilities match frequencies (Guo et al.
    # 2017); saved with the model, applied by evaluate and predict. Decisions by argmax do not change.
    calibrate: bool = False
    class_weights: bool = False  # weight the loss by inverse class frequency (single-label only)
    # How to fit texts longer than max_length: keep the head, the tail, or both ends (head+tail
    # did best on long IMDb reviews in Sun et al. 2019, "How to Fine-Tune BERT for Text Classification?").
    # windows: the whole text in overlapping windows (see Windows), one prediction per text.
    truncation: Literal["head", "tail", "head_tail", "windows"] = "head"
    head_tokens: int = 128  # with truncation=head_tail: tokens kept from the start
    windows: Windows = field(default_factory=Windows)

    def check(self, recipe: Recipe) -> list[str]:
        problems = []
        if self.threshold != "auto" and not 0 < self.threshold < 1:
            problems.append(f"'classification.threshold' must be between 0 and 1 (or auto), got {self.threshold}")
        if self.problem_type == "regression" and (self.threshold == "auto" or self.calibrate):
            problems.append("'classification.threshold: auto' and 'classification.calibrate' do not apply to regression")
        if self.truncation == "head_tail" and not 0 <= self.head_tokens <= recipe.max_length - 3:
            problems.append(f"'classification.head_tokens' must be between 0 and max_length-3 ({recipe.max_length - 3})")
        if self.truncation == "windows":
            problems += self._check_windows(recipe)
        if self.class_weights and self.problem_type != "single_label":
            problems.append("'classification.class_weights' applies to problem_type single_label only")
        return problems

    def _check_windows(self, recipe: Recipe) -> list[str]:
        w, problems = self.windows, []
        if recipe.data.text_pair_column:
            problems.append("'classification.truncation: windows' reads single texts; for text pairs use head, tail "
                            "or head_tail")
        if w.stride is not None and not 0 <= w.stride <= recipe.max_length // 2:
            problems.append(f"'classification.windows.stride' must be between 0 and half of max_length "
                            f"({recipe.max_length // 2}), got {w.stride}: it is the overlap between windows, so each "
                            "window moves on by at least as many tokens as it shares")
        if w.max_windows < 1:
            problems.append(f"'classification.windows.max_windows' must be 1 or more, got {w.max_windows}")
        return problems

    def window_stride(self, max_length: int) -> int:
        return self.windows.stride if self.windows.stride is not None else max_length // 4


register_task_options("classification", Options)


@dataclass
class Spec:
    """What a classification model needs to know about its labels."""

    problem_type: str
    labels: list[str] = field(default_factory=list)  # id -> name
    values: list[Any] = field(default_factory=list)  # id -> raw value as it appears in the data
    class_counts: dict[str, int] = field(default_factory=dict)
    thresholds: list[float] | None = None  # fitted on validation: per label (multi-label), [t] (binary)
    temperature: float = 1.0  # fitted on validation (calibrate)

    @property
    def num_labels(self) -> int:
        return 1 if self.problem_type == "regression" else len(self.labels)

    def model_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"num_labels": self.num_labels}
        if self.problem_type != "regression":
            kwargs["id2label"] = dict(enumerate(self.labels))
            kwargs["label2id"] = {name: i for i, name in enumerate(self.labels)}
        kwargs["problem_type"] = {"single_label": "single_label_classification",
                                  "multi_label": "multi_label_classification",
                                  "regression": "regression"}[self.problem_type]
        return kwargs

    def label_id(self, value: Any, where: str) -> int:
        """Map a raw label (string name, integer, or the integer's string) to its id."""
        for candidate in (value, str(value)):
            if candidate in self._lookup:
                return self._lookup[candidate]
        known = ", ".join(map(str, self.labels[:20]))
        raise BertkitError(f"{where}: label {value!r} is not one the model knows ({known})",
                           "fix the label, or retrain with it in the training data")

    @property
    def _lookup(self) -> dict[Any, int]:
        table: dict[Any, int] = {}
        for i, (name, value) in enumerate(zip(self.labels, self.values)):
            table[name] = i
            table[value] = i
            table[str(value)] = i
        return table


def model_class() -> Any:
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification


def best_metric(recipe: Recipe) -> tuple[str, bool]:
    if recipe.metric_for_best_model:
        name = recipe.metric_for_best_model
        return name, not any(k in name for k in ("loss", "mse", "mae"))
    if recipe.options.problem_type == "regression":
        return "mse", False
    return ("f1_micro" if recipe.options.problem_type == "multi_label" else "f1_macro"), True


# ---------------------------------------------------------------------------------------------
# Labels


def _columns(recipe: Recipe) -> dict[str, str | None]:
    d = recipe.data
    return {"text_column": d.text_column, "text_pair_column": d.text_pair_column, "label_column": d.label_column}


def clean_split(dataset: Any, recipe: Recipe, split: str, need_labels: bool = True) -> tuple[Any, int]:
    """Check columns, then drop (or refuse) rows whose text is empty; return (dataset, n_dropped)."""
    from bertkit.data import require_columns

    columns = _columns(recipe)
    if not need_labels:
        columns.pop("label_column")
    require_columns(dataset, columns, split)
    text_cols = [c for c in (recipe.data.text_column, recipe.data.text_pair_column) if c]

    def empty(row: dict[str, Any]) -> bool:
        return any(row[c] is None or not str(row[c]).strip() for c in text_cols)

    bad = [i for i, row in enumerate(dataset.select_columns(text_cols)) if empty(row)]
    if need_labels:
        bad_labels = [i for i, v in enumerate(dataset[recipe.data.label_column]) if v is None or v == ""]
        if bad_labels:
            raise BertkitError(f"the {split} data has {len(bad_labels)} rows without a label (first: row {bad_labels[0] + 1})",
                               f"fill in '{recipe.data.label_column}' or remove those rows")
    if bad and recipe.data.empty_text == "error":
        raise BertkitError(f"the {split} data has {len(bad)} rows with empty text (first: row {bad[0] + 1})",
                           "remove them, or set data.empty_text=drop")
    if bad:
        keep = sorted(set(range(len(dataset))) - set(bad))
        dataset = dataset.select(keep)
        if len(dataset) == 0:
            raise BertkitError(f"every row of the {split} data has empty text", f"check data.text_column ({recipe.data.text_column})")
    return dataset, len(bad)


def unlabeled_text(dataset: Any, recipe: Recipe) -> list[str]:
    """Each row's text (and its pair text, as a second document) for task-adaptive pretraining."""
    texts = [str(t) for t in dataset[recipe.data.text_column]]
    if recipe.data.text_pair_column:
        texts += [str(t) for t in dataset[recipe.data.text_pair_column]]
    return texts


def prepare(raw: Any, recipe: Recipe) -> Spec:
    """Discover labels from the training split (stable order) and check the other splits use them."""
    opts = recipe.options
    values = raw["train"][recipe.data.label_column]
    if opts.problem_type == "regression":
        try:
            [float(v) for v in values]
        except (TypeError, ValueError):
            raise BertkitError("problem_type regression needs numeric labels, but the training data has "
                               f"{next(v for v in values if not _is_number(v))!r}",
                               "set classification.problem_type=single_label for categories") from None
        return Spec(problem_type="regression")
    flat = [v for vs in values for v in _as_list(vs)] if opts.problem_type == "multi_label" else list(values)
    kinds = {type(v) for v in flat}
    if kinds - {int, str}:
        raise BertkitError(f"labels must be strings or integers, found {', '.join(sorted(k.__name__ for k in kinds))}",
                           "for numbers to predict, set classification.problem_type=regression")
    if kinds == {int, str}:
        flat = [str(v) for v in flat]
    distinct = sorted(set(flat))
    if len(distinct) < 2 and opts.problem_type == "single_label":
        raise BertkitError(f"the training data has a single label ({distinct[0]!r}); a classifier needs two or more",
                           f"check data.label_column ({recipe.data.label_column})")
    names = [str(v) for v in distinct]
    if opts.label_names:
        if not all(isinstance(v, int) and v >= 0 for v in distinct):
            raise BertkitError("classification.label_names names integer labels 0..n-1, but the data has other labels",
                               "remove label_names; string labels name themselves")
        if len(opts.label_names) <= max(distinct):
            raise BertkitError(f"classification.label_names has {len(opts.label_names)} names, but the data has label {max(distinct)}",
                               "give one name per label id, in id order")
        distinct = list(range(len(opts.label_names)))
        names = list(opts.label_names)
    spec = Spec(problem_type=opts.problem_type, labels=names, values=distinct,
                class_counts={names[distinct.index(v)]: c for v, c in Counter(flat).items() if v in distinct})
    for split in raw:
        if split != "train":
            source = None if recipe.data.dataset else getattr(recipe.data, split, None)
            where = f"{split} data" + (f" {source}" if source else "")
            for i, v in enumerate(raw[split][recipe.data.label_column]):
                for item in _as_list(v) if opts.problem_type == "multi_label" else [v]:
                    spec.label_id(item, f"{where}, row {i + 1}")
    return spec


def spec_from_model(config: Any, recipe: Recipe) -> Spec:
    problem = {"multi_label_classification": "multi_label", "regression": "regression"}.get(
        getattr(config, "problem_type", None) or "", "single_label")
    if problem == "regression":
        return Spec(problem_type=problem)
    labels = [config.id2label[i] for i in range(config.num_labels)]
    numeric = all(str(n).lstrip("-").isdigit() for n in labels)
    # Integer labels were kept as their own names ("0", "5"); named labels (label_names, or string
    # labels) accept their id as the raw value too, so 0/1 data evaluates against negative/positive.
    values: list[Any] = [int(n) for n in labels] if numeric else list(range(len(labels)))
    return Spec(problem_type=problem, labels=labels, values=values, thresholds=getattr(config, "bertkit_thresholds", None),
                temperature=float(getattr(config, "bertkit_temperature", None) or 1.0))


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _is_number(v: Any) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


def class_weights(spec: Spec) -> list[float]:
    """Inverse-frequency weights, normalised to mean 1 (sklearn's 'balanced' rule)."""
    total = sum(spec.class_counts.values())
    k = len(spec.labels)
    return [total / (k * max(spec.class_counts.get(name, 0), 1)) for name in spec.labels]


# ---------------------------------------------------------------------------------------------
# Features


def encode_label(spec: Spec, value: Any, where: str) -> Any:
    if spec.problem_type == "regression":
        return float(value)
    if spec.problem_type == "multi_label":
        vec = [0.0] * len(spec.labels)
        for item in _as_list(value):
            vec[spec.label_id(item, where)] = 1.0
        return vec
    return spec.label_id(value, where)


def encode_texts(tokenizer: Any, recipe: Recipe, texts: list[str], pairs: list[str] | None
                 ) -> tuple[list[dict[str, Any]], list[int]]:
    """Model inputs for texts (and optional pairs) plus each text's untruncated length. With
    ``truncation: windows`` a text gives one row per window, each with the text's index as ``doc``."""
    opts = recipe.options
    first = encoding.token_ids(tokenizer, [str(t) for t in texts])
    second = encoding.token_ids(tokenizer, [str(t) for t in pairs]) if pairs is not None else None
    template = encoding.template(tokenizer)
    specials = template.n_specials(second is not None)
    budget = recipe.max_length - specials
    windows = opts.truncation == "windows"
    stride = opts.window_stride(recipe.max_length) if windows else 0
    rows, full_lengths = [], []

    def add(ids: list[int], types: list[int], doc: int) -> None:
        row = {"input_ids": ids, "token_type_ids": types, "attention_mask": [1] * len(ids), "length": len(ids)}
        if windows:
            row["doc"] = doc
        rows.append(row)

    for i, a in enumerate(first):
        if second is not None:
            b = second[i]
            full_lengths.append(len(a) + len(b) + specials)
            add(*template.wrap(*encoding.fit_pair(a, b, budget)), i)
            continue
        full_lengths.append(len(a) + specials)
        if windows:
            for start, end in text_windows.spans(len(a), budget, stride, opts.windows.max_windows):
                add(*template.wrap(a[start:end]), i)
        else:
            add(*template.wrap(encoding.fit_single(a, budget, opts.truncation, opts.head_tokens)), i)
    return rows, full_lengths


def features(dataset: Any, tokenizer: Any, recipe: Recipe, spec: Spec, split: str = "train",
             with_labels: bool = True) -> tuple[Any, dict[str, Any]]:
    """Tokenise a split; return the feature Dataset and a report of lengths and truncation."""
    import datasets

    d = recipe.data
    pairs = dataset[d.text_pair_column] if d.text_pair_column else None
    rows, full_lengths = encode_texts(tokenizer, recipe, dataset[d.text_column], pairs)
    if with_labels:
        encoded = [encode_label(spec, value, f"{split} data, row {i + 1}")
                   for i, value in enumerate(dataset[d.label_column])]
        for i, row in enumerate(rows):
            row["labels"] = encoded[row.get("doc", i)]
    if recipe.options.truncation != "windows":
        return datasets.Dataset.from_list(rows), length_report(full_lengths, recipe.max_length)
    return (datasets.Dataset.from_list(rows), length_report(full_lengths, recipe.max_length,
                                                            windows_needed(tokenizer, recipe, full_lengths),
                                                            recipe.options.windows.max_windows))


def windows_needed(tokenizer: Any, recipe: Recipe, full_lengths: list[int]) -> list[int]:
    """How many windows each text (of ``full_lengths`` tokens, specials included) needs to be read whole."""
    specials = encoding.template(tokenizer).n_specials(False)
    stride = recipe.options.window_stride(recipe.max_length)
    return [text_windows.needed(n - specials, recipe.max_length - specials, stride) for n in full_lengths]


def length_report(full_lengths: list[int], max_length: int, windows_needed: list[int] | None = None,
                  max_windows: int = 0) -> dict[str, Any]:
    """Token-length percentiles and what was cut; with windows, how many texts needed several windows and
    how many needed more than ``max_windows`` (``text_windows.report``)."""
    stats, truncated, pct = encoding.length_stats(full_lengths, max_length)
    if windows_needed is None:
        return {**stats, "truncated": truncated, "truncated_pct": pct}
    return {**stats, **text_windows.report(windows_needed, max_length, max_windows)}


def collator(tokenizer: Any, spec: Any = None) -> Any:
    from transformers import DataCollatorWithPadding

    return DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8)


# ---------------------------------------------------------------------------------------------
# Metrics and predictions


def infer(model: Any, feats: Any, tokenizer: Any, precision: str, batch_size: int, desc: str | None = None,
          recipe: Recipe | None = None) -> np.ndarray:
    """Logits (texts, labels) for tokenised features, via the shared length-sorted inference; windows
    (a ``doc`` column) are combined per text by the recipe's ``windows.aggregate`` (mean without a recipe)."""
    docs = feats["doc"] if "doc" in feats.column_names else None
    how = recipe.options.windows.aggregate if recipe is not None else "mean"
    return _logits(model, list(feats), docs, how, tokenizer, precision, batch_size, desc)


def _logits(model: Any, rows: list[dict[str, Any]], docs: list[int] | None, how: str, tokenizer: Any,
            precision: str, batch_size: int, desc: str | None = None) -> np.ndarray:
    from bertkit import inference

    out = inference.forward(model, rows, pad_id=tokenizer.pad_token_id, batch_size=batch_size,
                            precision=precision, desc=desc)
    logits = np.stack(out["logits"])
    return logits if docs is None else combine_windows(logits, window_counts(docs), how)


def probabilities(spec: Spec, logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits, dtype=np.float64)
    if spec.problem_type != "regression":
        logits = logits / spec.temperature
    if spec.problem_type == "multi_label":
        return 1.0 / (1.0 + np.exp(-logits))
    if spec.problem_type == "regression":
        return logits.reshape(-1)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def decide(spec: Spec, threshold: float | str, probs: np.ndarray) -> np.ndarray:
    """Decisions from probabilities (examples, labels): multi-label 0/1 per label, single-label ids.

    Fitted thresholds (``spec.thresholds``) win; then the recipe's number; ``auto`` before fitting is 0.5.
    """
    if spec.problem_type == "multi_label":
        cut = np.asarray(spec.thresholds) if spec.thresholds else (0.5 if threshold == "auto" else float(threshold))
        return (probs >= cut).astype(int)
    cut = spec.thresholds[0] if spec.thresholds else (None if threshold in ("auto", 0.5) else float(threshold))
    if cut is not None and probs.shape[1] == 2:
        return (probs[:, 1] >= cut).astype(int)
    return probs.argmax(-1)


def fit_on_validation(spec: Spec, recipe: Recipe, logits: np.ndarray, feats: Any) -> dict[str, Any]:
    """The temperature (``calibrate``) and threshold(s) (``threshold: auto``) that suit the validation
    split; set on ``spec`` and returned as the config.json keys that keep them with the model."""
    from scipy.optimize import minimize_scalar

    opts = recipe.options
    if spec.problem_type == "regression" or not (opts.calibrate or opts.threshold == "auto"):
        return {}
    logits = np.asarray(logits, dtype=np.float64)
    gold = document_labels(feats)
    fitted: dict[str, Any] = {}
    if opts.calibrate:
        def nll(log_t: float) -> float:
            z = logits / np.exp(log_t)
            if spec.problem_type == "multi_label":
                p = np.clip(1 / (1 + np.exp(-z)), 1e-12, 1 - 1e-12)
                return float(-(gold * np.log(p) + (1 - gold) * np.log(1 - p)).mean())
            z = z - z.max(axis=1, keepdims=True)
            return float(-(z[np.arange(len(z)), gold.astype(int)] - np.log(np.exp(z).sum(axis=1))).mean())

        spec.temperature = float(np.exp(minimize_scalar(nll, bounds=(-3.0, 3.0), method="bounded").x))
        fitted["bertkit_temperature"] = spec.temperature
    if opts.threshold == "auto" and (spec.problem_type == "multi_label" or len(spec.labels) == 2):
        from sklearn.metrics import f1_score

        probs = probabilities(spec, logits)
        grid = np.round(np.arange(0.05, 0.96, 0.01), 2)
        if spec.problem_type == "multi_label":
            spec.thresholds = [float(max(grid, key=lambda t: (f1_score(gold[:, k], probs[:, k] >= t, zero_division=0), -abs(t - 0.5))))
                               for k in range(probs.shape[1])]
        else:
            spec.thresholds = [float(max(grid, key=lambda t: (f1_score(gold, probs[:, 1] >= t, average="macro"), -abs(t - 0.5))))]
        fitted["bertkit_thresholds"] = spec.thresholds
    return fitted


def _scores(spec: Spec, threshold: float | str, logits: np.ndarray, labels: np.ndarray, detailed: bool) -> dict[str, Any]:
    from sklearn import metrics as skm

    if spec.problem_type == "regression":
        pred = np.asarray(logits, dtype=np.float64).reshape(-1)
        gold = np.asarray(labels, dtype=np.float64).reshape(-1)
        from scipy.stats import pearsonr, spearmanr

        out = {"mse": float(np.mean((pred - gold) ** 2)), "mae": float(np.mean(np.abs(pred - gold)))}
        if len(gold) > 1 and np.std(gold) > 0 and np.std(pred) > 0:
            out["pearson"] = float(pearsonr(pred, gold)[0])
            out["spearman"] = float(spearmanr(pred, gold)[0])
        return out
    if spec.problem_type == "multi_label":
        pred = decide(spec, threshold, probabilities(spec, logits))
        gold = np.asarray(labels).astype(int)
        out = {"subset_accuracy": float(skm.accuracy_score(gold, pred))}
        for avg in ("micro", "macro"):
            p, r, f, _ = skm.precision_recall_fscore_support(gold, pred, average=avg, zero_division=0)
            out.update({f"precision_{avg}": float(p), f"recall_{avg}": float(r), f"f1_{avg}": float(f)})
        if detailed:
            out["per_class"] = _per_class(skm, gold, pred, spec.labels, multi=True)
        return out
    pred = decide(spec, threshold, probabilities(spec, logits))
    gold = np.asarray(labels).astype(int)
    ids = list(range(len(spec.labels)))
    out = {"accuracy": float(skm.accuracy_score(gold, pred))}
    if detailed:
        out.update(calibration(probabilities(spec, logits), gold))
    for avg in ("macro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(gold, pred, labels=ids, average=avg, zero_division=0)
        out.update({f"precision_{avg}": float(p), f"recall_{avg}": float(r), f"f1_{avg}": float(f)})
    if detailed:
        out["per_class"] = _per_class(skm, gold, pred, spec.labels, multi=False)
        out["confusion_matrix"] = {"labels": spec.labels,
                                   "matrix": skm.confusion_matrix(gold, pred, labels=ids).tolist()}
    return out


def calibration(probs: np.ndarray, gold: np.ndarray, bins: int = 10) -> dict[str, float]:
    """How far the probabilities are from the frequencies they claim. ``ece``: expected calibration
    error, the examples split into ``bins`` equal-width bins by their top probability, the mean of
    |accuracy - mean top probability| weighted by bin size (Guo et al. 2017, "On Calibration of Modern
    Neural Networks"); ``brier``: the mean squared distance of the probability vector from the one-hot
    gold (Brier 1950), 0 best, 2 worst."""
    probs = np.asarray(probs, dtype=np.float64)
    top, pred = probs.max(axis=1), probs.argmax(axis=1)
    correct = (pred == gold).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(top, edges[1:-1], right=True), 0, bins - 1)
    ece = sum(abs(correct[which == b].mean() - top[which == b].mean()) * (which == b).mean()
              for b in range(bins) if (which == b).any())
    onehot = np.eye(probs.shape[1])[gold]
    return {"ece": float(ece), "brier": float(((probs - onehot) ** 2).sum(axis=1).mean())}


def _per_class(skm: Any, gold: np.ndarray, pred: np.ndarray, names: list[str], multi: bool) -> dict[str, Any]:
    kwargs = {} if multi else {"labels": list(range(len(names)))}
    p, r, f, s = skm.precision_recall_fscore_support(gold, pred, average=None, zero_division=0, **kwargs)
    return {name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, name in enumerate(names)}


def compute_metrics(spec: Spec, recipe: Recipe) -> Any:
    def fn(eval_pred: Any) -> dict[str, float]:
        logits = eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
        return _scores(spec, recipe.options.threshold, logits, eval_pred.label_ids, detailed=False)

    return fn


def report(spec: Spec, recipe: Recipe, logits: np.ndarray, feats: Any) -> dict[str, Any]:
    return _scores(spec, recipe.options.threshold, logits, document_labels(feats), detailed=True)


def predict_row(spec: Spec, threshold: float | str, logits_row: np.ndarray) -> dict[str, Any]:
    """One prediction: label and score, plus every label's probability by name."""
    probs = probabilities(spec, logits_row[None, :])[0] if spec.problem_type != "regression" else None
    if spec.problem_type == "regression":
        return {"value": float(np.asarray(logits_row).reshape(-1)[0])}
    scores = {name: round(float(p), 6) for name, p in zip(spec.labels, probs)}
    decision = decide(spec, threshold, probs[None, :])[0]
    if spec.problem_type == "multi_label":
        chosen = [name for name, d in zip(spec.labels, decision) if d]
        return {"labels": chosen, "scores": scores}
    best = int(decision)
    return {"label": spec.labels[best], "score": round(float(probs[best]), 6), "probabilities": scores}


def prediction_rows(spec: Spec, recipe: Recipe, logits: np.ndarray, raw: Any) -> list[dict[str, Any]]:
    """predictions.jsonl rows for an evaluated split: input text, gold label and the prediction."""
    d = recipe.data
    rows = []
    for i, example in enumerate(raw):
        row: dict[str, Any] = {"text": example[d.text_column]}
        if d.text_pair_column:
            row["text_pair"] = example[d.text_pair_column]
        if d.label_column in example:
            gold = example[d.label_column]
            if spec.problem_type == "single_label":
                gold = spec.labels[spec.label_id(gold, f"row {i + 1}")]
            row["gold"] = gold
        row.update(predict_row(spec, recipe.options.threshold, logits[i]))
        if isinstance(logits, DocumentLogits):
            row["windows"] = logits.windows[i]
        rows.append(row)
    return rows



def stratify_labels(train: Any, recipe: Recipe) -> list[Any] | None:
    """Labels to stratify the held-out validation split by (single-label only)."""
    if recipe.options.problem_type != "single_label":
        return None
    return [str(v) for v in train[recipe.data.label_column]]


PIPELINE_TAG = "text-classification"


def predict_batch(spec: Spec, recipe: Recipe, tokenizer: Any, model: Any, rows: list[dict[str, Any]],
                  precision: str, batch_size: int) -> list[dict[str, Any]]:
    """Predictions for raw input rows (``predict``): label, score and every label's probability."""
    d = recipe.data
    texts = [str(r.get(d.text_column, "")) for r in rows]
    pairs = [str(r.get(d.text_pair_column, "")) for r in rows] if d.text_pair_column else None
    feats, full_lengths = encode_texts(tokenizer, recipe, texts, pairs)
    windows = recipe.options.truncation == "windows"
    docs = [r["doc"] for r in feats] if windows else None
    logits_all = _logits(model, feats, docs, recipe.options.windows.aggregate, tokenizer, precision, batch_size)
    needed = windows_needed(tokenizer, recipe, full_lengths) if windows else None
    results = []
    for i, (row, logits, n) in enumerate(zip(rows, logits_all, full_lengths)):
        result = {k: row[k] for k in ("id",) if k in row}
        result.update(predict_row(spec, recipe.options.threshold, logits))
        if needed is not None:
            result["windows"] = logits_all.windows[i]
            if needed[i] > logits_all.windows[i]:
                result["truncated"] = True  # its middle windows were left out (windows.max_windows)
        elif n > recipe.max_length:
            result["truncated"] = True
        results.append(result)
    return results

