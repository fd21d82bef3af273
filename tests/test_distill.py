"""bertkit distill: the student copy, the loss against an independent computation, each task end to end,
the teacher-output cache, and bad input."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bertkit import distill, student
from bertkit.cli import app

runner = CliRunner()


def invoke(*args) -> object:
    return runner.invoke(app, [str(a) for a in args])


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


@pytest.fixture()
def teacher(tiny_recipe: Path, tmp_path: Path) -> Path:
    """A classification teacher trained by bertkit finetune on the tiny sentiment files."""
    result = invoke("finetune", tiny_recipe, "training.num_train_epochs=3", "--quiet")
    assert result.exit_code == 0, result.output
    return tmp_path / "out"


# ---------------------------------------------------------------------------------------------
# The student copy


def test_kept_layers_are_evenly_spaced_and_end_with_the_last() -> None:
    assert student.kept_layers(6, 3) == [1, 3, 5]
    assert student.kept_layers(12, 6) == [1, 3, 5, 7, 9, 11]
    assert student.kept_layers(4, 1) == [3]
    assert student.kept_layers(6, 5) == [0, 1, 3, 4, 5]


def test_the_student_copies_the_chosen_layers_exactly(tiny_en_model: Path, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer, BertConfig

    config = BertConfig.from_pretrained(tiny_en_model)
    config.num_hidden_layers, config.num_labels = 4, 3
    torch.manual_seed(3)
    teacher = AutoModelForTokenClassification.from_config(config)
    teacher.save_pretrained(tmp_path / "teacher")
    AutoTokenizer.from_pretrained(tiny_en_model).save_pretrained(tmp_path / "teacher")
    made = student.make_student(str(tmp_path / "teacher"), AutoModelForTokenClassification, 2, tmp_path / "student")
    assert made["kept"] == [1, 3]
    copy = AutoModelForTokenClassification.from_pretrained(tmp_path / "student")
    assert copy.config.num_hidden_layers == 2
    t, s = teacher.state_dict(), copy.state_dict()
    for name, value in s.items():
        origin = name.replace("layer.0.", "layer.1.") if "layer.0." in name else name.replace("layer.1.", "layer.3.")
        assert torch.equal(value, t[origin]), name
    assert torch.equal(s["classifier.weight"], t["classifier.weight"])
    assert torch.equal(s["bert.embeddings.word_embeddings.weight"], t["bert.embeddings.word_embeddings.weight"])
    assert (tmp_path / "student" / "tokenizer.json").is_file()


# ---------------------------------------------------------------------------------------------
# The loss on fixed logits, against numpy


def _np_kl(student: np.ndarray, teacher: np.ndarray, t: float) -> np.ndarray:
    def log_softmax(x):
        x = x / t
        x = x - x.max(-1, keepdims=True)
        return x - np.log(np.exp(x).sum(-1, keepdims=True))

    lt, ls = log_softmax(teacher), log_softmax(student)
    return (np.exp(lt) * (lt - ls)).sum(-1) * t * t


def _loss(task: str, t: float = 2.0, alpha: float = 0.3, labelled=(True, False)) -> distill.DistillLoss:
    loss = distill.DistillLoss("unused", distill.Options(temperature=t, alpha=alpha), task, [], None)
    loss.labelled = np.array(labelled)
    return loss


def test_classification_loss_equals_an_independent_computation() -> None:
    import torch
    from types import SimpleNamespace

    rng = np.random.default_rng(0)
    s, te = rng.normal(size=(2, 3)).astype(np.float32), rng.normal(size=(2, 3)).astype(np.float32)
    loss = _loss("classification")
    loss.targets = [te[0], te[1]]
    kd, task = loss.row_losses(SimpleNamespace(logits=torch.tensor(s)), torch.tensor(te),
                               {"labels": torch.tensor([2, -100])}, {})
    expected_kd = _np_kl(s, te, 2.0)
    ce0 = -(s[0] - np.log(np.exp(s[0]).sum()))[2]
    assert kd.numpy() == pytest.approx(expected_kd, rel=1e-5)
    assert task.numpy() == pytest.approx([ce0, 0.0], rel=1e-5)
    # the batch loss: labelled row alpha-weighted, unlabelled row soft targets only
    model = lambda **_: SimpleNamespace(logits=torch.tensor(s))  # noqa: E731
    total, _ = loss(model, {"input_ids": torch.zeros((2, 4), dtype=torch.long), "teacher_row": torch.tensor([0, 1]),
                            "labels": torch.tensor([2, -100])})
    assert float(total) == pytest.approx((0.3 * expected_kd[0] + 0.7 * ce0 + expected_kd[1]) / 2, rel=1e-5)


def test_multi_label_and_regression_losses_equal_an_independent_computation() -> None:
    import torch
    from types import SimpleNamespace

    rng = np.random.default_rng(3)
    s, te = rng.normal(size=(2, 4)).astype(np.float32), rng.normal(size=(2, 4)).astype(np.float32)
    y = np.array([[1, 0, 1, 0], [0, 0, 0, 0]], dtype=np.float32)
    loss = _loss("classification")
    loss.problem = "multi_label_classification"
    kd, task = loss.row_losses(SimpleNamespace(logits=torch.tensor(s)), torch.tensor(te), {"labels": torch.tensor(y)}, {})
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    p, q = sig(te / 2.0), sig(s / 2.0)
    expected = (p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))).mean(-1) * 4.0
    bce = -(y * np.log(sig(s)) + (1 - y) * np.log(1 - sig(s))).mean(-1)
    assert kd.numpy() == pytest.approx(expected, rel=1e-4)
    assert task.numpy() == pytest.approx(bce, rel=1e-4)
    loss.problem = "regression"
    kd, task = loss.row_losses(SimpleNamespace(logits=torch.tensor(s[:, :1])), torch.tensor(te[:, :1]),
                               {"labels": torch.tensor([0.5, 1.0])}, {})
    assert kd.numpy() == pytest.approx((s[:, 0] - te[:, 0]) ** 2, rel=1e-5)
    assert task.numpy() == pytest.approx((s[:, 0] - np.array([0.5, 1.0])) ** 2, rel=1e-5)


def test_ner_loss_masks_padding_and_special_tokens() -> None:
    import torch
    from types import SimpleNamespace

    rng = np.random.default_rng(1)
    s, te = rng.normal(size=(1, 6, 3)).astype(np.float32), rng.normal(size=(1, 6, 3)).astype(np.float32)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0]])  # [CLS] w w [SEP] pad pad
    labels = torch.tensor([[-100, 1, 2, -100, -100, -100]])
    kd, task = _loss("ner").row_losses(SimpleNamespace(logits=torch.tensor(s)), torch.tensor(te), {"labels": labels},
                                       {"attention_mask": mask})
    kl = _np_kl(s[0], te[0], 2.0)
    assert float(kd[0]) == pytest.approx(kl[1:3].mean(), rel=1e-5)
    log_p = s[0] - np.log(np.exp(s[0]).sum(-1, keepdims=True))
    assert float(task[0]) == pytest.approx(-(log_p[1, 1] + log_p[2, 2]) / 2, rel=1e-5)


def test_qa_loss_scores_start_and_end_over_the_window() -> None:
    import torch
    from types import SimpleNamespace

    rng = np.random.default_rng(2)
    start, end = rng.normal(size=(1, 5)).astype(np.float32), rng.normal(size=(1, 5)).astype(np.float32)
    te = rng.normal(size=(1, 5, 2)).astype(np.float32)
    mask = torch.tensor([[1, 1, 1, 1, 0]])
    outputs = SimpleNamespace(start_logits=torch.tensor(start), end_logits=torch.tensor(end))
    kd, task = _loss("qa").row_losses(outputs, torch.tensor(te), {"start_positions": torch.tensor([1]),
                                                                  "end_positions": torch.tensor([3])},
                                      {"attention_mask": mask})
    expected = (_np_kl(start[0, :4], te[0, :4, 0], 2.0) + _np_kl(end[0, :4], te[0, :4, 1], 2.0)) / 2
    assert float(kd[0]) == pytest.approx(expected, rel=1e-5)
    ce = lambda x, i: -(x[i] - np.log(np.exp(x[:4]).sum()))  # noqa: E731
    assert float(task[0]) == pytest.approx((ce(start[0], 1) + ce(end[0], 3)) / 2, rel=1e-5)


# ---------------------------------------------------------------------------------------------
# End to end


def test_classification_distill_with_unlabelled_rows_cache_and_labels_only(teacher: Path, tmp_path: Path) -> None:
    from conftest import _review, write_jsonl

    rng = random.Random(9)
    unlabeled = write_jsonl(tmp_path / "unlabeled.jsonl", [{"text": _review(rng, i % 2 == 0)} for i in range(30)])
    student = tmp_path / "student"
    result = invoke("distill", teacher, "distill.student_layers=1", f"distill.unlabeled={unlabeled}",
                    "distill.compare_labels_only=true", "distill.epochs=2", "--output", student)
    assert result.exit_code == 0, result.output
    assert "teacher outputs on 94 training rows" in result.output  # 64 labelled + 30 unlabelled
    report = json.loads((student / "distill.json").read_text())
    metrics = json.loads((student / "metrics.json").read_text())
    assert metrics["distill"] == report
    assert report["kept_layers"] == [1] and report["unlabeled_rows"] == 30
    assert report["teacher_score"] == json.loads((teacher / "metrics.json").read_text())["test"][report["metric"]]
    assert report["student_score"] == metrics["test"][report["metric"]]
    assert report["labels_only_score"] is not None
    assert report["student_parameters"] < report["teacher_parameters"]
    assert json.loads((student / "config.json").read_text())["num_hidden_layers"] == 1
    assert "num_train_epochs: 2" in (student / "recipe.yaml").read_text()  # distill.epochs, not the teacher's 3
    assert "## Distillation" in (student / "README.md").read_text()
    assert not list(tmp_path.glob(".distill-*"))  # the scratch directory is gone
    # an ordinary model directory: predict takes it
    result = invoke("predict", student, "--text", "a great and lovely film")
    assert result.exit_code == 0, result.output
    # a second student reuses the teacher's outputs
    result = invoke("distill", teacher, "distill.student_layers=1", f"distill.unlabeled={unlabeled}", "seed=8",
                    "--output", tmp_path / "student-2")
    assert result.exit_code == 0, result.output
    assert "reused from" in result.output
    assert json.loads((tmp_path / "student-2" / "distill.json").read_text())["teacher_outputs_cached"] is True


def test_ner_distill_end_to_end(tiny_en_model: Path, tmp_path: Path) -> None:
    from test_ner import conll_files

    files = conll_files(tmp_path)
    recipe = Path(__file__).resolve().parent.parent / "recipes" / "ncbi-disease-ner.yaml"
    result = invoke("finetune", recipe, f"model={tiny_en_model}", f"output_dir={tmp_path / 'teacher'}", "max_length=16",
                    "precision=fp32", "ner.stride=4", f"data.train={files['train']}",
                    f"data.validation={files['validation']}", f"data.test={files['test']}",
                    "training.num_train_epochs=2", "training.learning_rate=0.01", "--quiet")
    assert result.exit_code == 0, result.output
    result = invoke("distill", tmp_path / "teacher", "distill.student_layers=1", "--output", tmp_path / "student")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "student" / "distill.json").read_text())
    assert report["metric"] == "f1" and "student_score" in report
    assert "num_train_epochs: 4" in (tmp_path / "student" / "recipe.yaml").read_text()  # twice the teacher's 2
    result = invoke("evaluate", tmp_path / "student", files["test"], "--output-dir", tmp_path / "ev")
    assert result.exit_code == 0, result.output


def test_qa_distill_end_to_end(tiny_en_model: Path, tmp_path: Path) -> None:
    from test_qa import en_example, squad_json, write_recipe

    rng = random.Random(5)
    train = tmp_path / "train.json"
    train.write_text(json.dumps(squad_json([en_example(rng, i) for i in range(24)])), encoding="utf-8")
    result = invoke("finetune", write_recipe(tmp_path, tiny_en_model, train), "training.num_train_epochs=1", "--quiet")
    assert result.exit_code == 0, result.output
    result = invoke("distill", tmp_path / "out", "distill.student_layers=1", "--output", tmp_path / "student")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "student" / "distill.json").read_text())
    assert report["metric"] == "f1" and report["split"] == "validation"


def _classification_teacher(tmp_path: Path, model: Path, rows: list[dict], extra: str, name: str) -> Path:
    from conftest import write_jsonl

    train = write_jsonl(tmp_path / f"{name}-train.jsonl", rows[:48])
    test = write_jsonl(tmp_path / f"{name}-test.jsonl", rows[48:])
    recipe = tmp_path / f"{name}.yaml"
    recipe.write_text(f"""task: classification
model: {model}
output_dir: {tmp_path / name}
seed: 3
max_length: 32
precision: fp32
data:
  train: {train}
  test: {test}
{extra}training:
  num_train_epochs: 2
  learning_rate: 5.0e-3
  per_device_train_batch_size: 8
""", encoding="utf-8")
    result = invoke("finetune", recipe, "--quiet")
    assert result.exit_code == 0, result.output
    return tmp_path / name


def test_pair_student_with_layer_matching_and_a_multi_label_student(tiny_en_model: Path, tmp_path: Path) -> None:
    from conftest import NEGATIVE, NEUTRAL, POSITIVE

    rng = random.Random(4)
    pairs = [{"premise": " ".join(rng.sample(NEUTRAL, 3)), "hypothesis": rng.choice(POSITIVE if i % 2 else NEGATIVE),
              "label": "yes" if i % 2 else "no"} for i in range(64)]
    teacher = _classification_teacher(tmp_path, tiny_en_model, pairs,
                                      "  text_column: premise\n  text_pair_column: hypothesis\n", "pairs")
    result = invoke("distill", teacher, "distill.student_layers=1", "distill.hidden_weight=1.0", "--output",
                    tmp_path / "pair-student")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "pair-student" / "distill.json").read_text())
    assert report["kept_layers"] == [1] and "student_score" in report
    result = invoke("predict", tmp_path / "pair-student", tmp_path / "pairs-test.jsonl", "-o", tmp_path / "p.jsonl")
    assert result.exit_code == 0, result.output
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 16

    tags = [{"text": " ".join([rng.choice(POSITIVE)] * (i % 2) + [rng.choice(NEGATIVE)] * (i // 2 % 2)
                              + rng.sample(NEUTRAL, 2)), "label": ["pos"] * (i % 2) + ["neg"] * (i // 2 % 2)}
            for i in range(64)]
    teacher = _classification_teacher(tmp_path, tiny_en_model, tags, "classification:\n  problem_type: multi_label\n",
                                      "tags")
    result = invoke("distill", teacher, "distill.student_layers=1", "--output", tmp_path / "tags-student")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "tags-student" / "distill.json").read_text())
    assert report["metric"] in json.loads((tmp_path / "tags-student" / "metrics.json").read_text())["test"]


def test_a_classification_student_may_have_another_tokenizer(teacher: Path, tiny_en_model: Path,
                                                             tmp_path: Path) -> None:
    """distill.student=MODEL with a vocabulary of its own: the teacher scores the texts its own way."""
    from transformers import AutoTokenizer, BertTokenizer

    own = AutoTokenizer.from_pretrained(tiny_en_model)
    vocab = sorted(own.get_vocab(), key=own.get_vocab().get)
    shuffled = vocab[:5] + sorted(vocab[5:])  # the same pieces, other ids
    other = tmp_path / "other-vocab"
    other.mkdir()
    (other / "vocab.txt").write_text("\n".join(shuffled) + "\n", encoding="utf-8")
    BertTokenizer(vocab=str(other / "vocab.txt"), model_max_length=128).save_pretrained(other)
    (other / "vocab.txt").unlink(missing_ok=True)
    from conftest import _save_tiny_model

    _save_tiny_model(other, len(shuffled))
    result = invoke("distill", teacher, f"distill.student={other}", "distill.epochs=1", "--output", tmp_path / "s")
    assert result.exit_code == 0, result.output
    saved = AutoTokenizer.from_pretrained(tmp_path / "s")
    assert saved.get_vocab() == AutoTokenizer.from_pretrained(other).get_vocab() != own.get_vocab()
    assert "student_score" in json.loads((tmp_path / "s" / "distill.json").read_text())


# ---------------------------------------------------------------------------------------------
# Bad input: one line, exit 1, nothing written


def test_bad_input_is_one_line_and_writes_nothing(teacher: Path, tiny_en_model: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    cases = [
        ([tiny_en_model], "is not a model bertkit trained"),
        ([teacher, "distill.student_layers=2"], "the teacher has 2 layers"),
        ([teacher, f"distill.unlabeled={empty}"], "empty"),
        ([teacher, "distill.nonsense=1"], "unknown distill key"),
        ([teacher, "distill.student_layers=1", f"distill.student={tiny_en_model}"], "not both"),
    ]
    for args, expected in cases:
        out = tmp_path / "refused"
        result = invoke("distill", *args, "--output", out)
        assert result.exit_code == 1, (args, result.output)
        lines = error_lines(result.output)
        assert len(lines) == 1 and expected in lines[0], (args, result.output)
        assert "Traceback" not in result.output
        assert not out.exists() and not list(tmp_path.glob(".distill-*"))


def test_an_mlm_teacher_and_a_student_with_another_tokenizer_are_refused(tiny_en_model: Path, tiny_ja_model: Path,
                                                                           tmp_path: Path) -> None:
    from test_ner import conll_files

    mlm = tmp_path / "mlm"
    mlm.mkdir()
    (mlm / "config.json").write_text("{}", encoding="utf-8")
    (mlm / "recipe.yaml").write_text(f"task: mlm\nmodel: {tiny_en_model}\noutput_dir: {mlm}\ndata:\n  train: x.txt\n",
                                     encoding="utf-8")
    result = invoke("distill", mlm, "--output", tmp_path / "s1")
    assert result.exit_code == 1 and "masked-LM" in error_lines(result.output)[0]
    files = conll_files(tmp_path)
    recipe = Path(__file__).resolve().parent.parent / "recipes" / "ncbi-disease-ner.yaml"
    result = invoke("finetune", recipe, f"model={tiny_en_model}", f"output_dir={tmp_path / 'ner'}", "max_length=16",
                    "precision=fp32", f"data.train={files['train']}", f"data.validation={files['validation']}",
                    "data.test=null", "training.num_train_epochs=1", "--quiet")
    assert result.exit_code == 0, result.output
    result = invoke("distill", tmp_path / "ner", f"distill.student={tiny_ja_model}", "--output", tmp_path / "s2")
    assert result.exit_code == 1
    assert "another tokenizer" in error_lines(result.output)[0]
    assert not (tmp_path / "s2").exists()
