"""Issue 9 through the CLI: every bad input gets one sentence naming the file, row or key, exit code
1 and nothing half-written; Ctrl-C / SIGTERM checkpoints and a resumed run ends with the same
model, metrics and predictions as an uninterrupted one; two runs with one seed are identical; and
untrusted models, pickles, YAML tags and hostile names are refused or contained.

Interruptions are made deterministic with the documented hook ``BERTKIT_TEST_INTERRUPT_AT_STEP``
(bertkit sends itself the signal at the end of that optimizer step), so nothing depends on timing.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bertkit.cli import app

runner = CliRunner()


def cli(*args: object, env: dict[str, str] | None = None):
    return runner.invoke(app, [str(a) for a in args], env=env)


def fails(*args: object, message: str, code: int = 1) -> str:
    """Run the CLI, expect exit ``code`` and ``message`` in the output, and no traceback."""
    result = cli(*args)
    assert result.exit_code == code, result.output
    assert message in result.output, result.output
    assert "Traceback" not in result.output
    return result.output


def nothing_written(out: Path) -> None:
    assert not out.exists(), sorted(p.name for p in out.iterdir())
    assert not out.with_name(out.name + ".partial").exists()


# ---------------------------------------------------------------------------------------------
# Bad input: recipes


@pytest.mark.parametrize("text, message", [
    ("task: classification\nmodel: [unclosed\n", "is not valid YAML at line 3, column 1: expected ',' or ']'"),
    ("task: classification\nmodel: a\nmodel: b\n", "is not valid YAML at line 3, column 1: the key 'model' is given twice"),
    ("task: classification\nmodel: !!python/object/apply:os.system ['touch {marker}']\n",
     "could not determine a constructor for the tag 'tag:yaml.org,2002:python/object/apply:os.system'"),
    ("- a list\n", "must be a YAML mapping of keys to values, not a list"),
])
def test_malformed_yaml(tmp_path: Path, text: str, message: str) -> None:
    marker = tmp_path / "code-ran"
    path = tmp_path / "r.yaml"
    path.write_text(text.format(marker=marker), encoding="utf-8")
    fails("finetune", path, message=message)
    assert not marker.exists()  # safe loading: a YAML tag never runs code


def test_unknown_and_mistyped_keys_all_at_once(tiny_recipe: Path) -> None:
    out = fails("finetune", tiny_recipe, "learnin_rate=3e-5", "data.txt_column=a", "training.num_train_epoch=2",
                "text_column=review", message="has 4 problems")
    assert "unknown key 'learnin_rate'; did you mean 'training.learning_rate'?" in out
    assert "unknown key 'data.txt_column'; did you mean 'text_column'?" in out
    assert "unknown key 'training.num_train_epoch' (not a TrainingArguments field); did you mean 'num_train_epochs'?" in out
    assert "unknown key 'text_column'; did you mean 'data.text_column'?" in out
    nothing_written(tiny_recipe.parent / "out")


@pytest.mark.parametrize("override, message", [
    ("max_length=long", "'max_length' must be int, got 'long' (override with max_length=...)"),
    ("seed=1.5", "'seed' must be int, got 1.5"),
    ("training.learning_rate=-1e-5", "'training.learning_rate' must be positive, got -1e-05"),
    ("training.num_train_epochs=yes", "'training.num_train_epochs' must be a number, got True"),
    ("data.validation_size=2", "'data.validation_size' must be between 0 and 1, got 2.0"),
    ("max_length=4096", "max_length=4096 is more than the model takes (128 tokens)"),
])
def test_wrong_value_type_or_range(tiny_recipe: Path, override: str, message: str) -> None:
    fails("finetune", tiny_recipe, override, message=message)
    nothing_written(tiny_recipe.parent / "out")


# ---------------------------------------------------------------------------------------------
# Bad input: data files


def _shift_jis(path: Path) -> None:
    path.write_bytes('{"text": "東京は良い", "label": "pos"}\n'.encode("cp932"))


BAD_DATA = {
    "missing": (None, "does not exist"),
    "empty.jsonl": (b"", "is empty"),
    "blank.jsonl": (b"  \n\n", "is empty"),
    "binary.jsonl": (b"\x00\x01\x02\x03binary", "looks binary (it contains NUL bytes), not text"),
    "sjis.jsonl": (_shift_jis, "is not UTF-8: it looks Shift_JIS (cp932)-encoded (first bad byte on line 1)"),
    "latin1.jsonl": ('{"text": "café", "label": "pos"}\n'.encode("latin-1"), "is not UTF-8 text (first bad byte on line 1)"),
    "badline.jsonl": (b'{"text": "good", "label": "pos"}\n{"text": "bad", "label": "neg"}\n{"text": oops}\n',
                      "badline.jsonl, line 3: not valid JSON (Expecting value at column 10)"),
    "ragged.csv": (b"text,label\ngood film,pos\nbad,film,neg\n", "ragged.csv, line 3: 3 fields where the header has 2"),
    "badquote.csv": (b'text,label\nfine,pos\n"good film,pos\nbad,neg\n',
                     "badquote.csv, line 3: a quoted field opens there and runs on to line 4"),
}


@pytest.mark.parametrize("name", list(BAD_DATA))
def test_bad_data_files(tiny_recipe: Path, tmp_path: Path, name: str) -> None:
    content, message = BAD_DATA[name]
    path = tmp_path / (name if content is not None else "nope.jsonl")
    if callable(content):
        content(path)
    elif content is not None:
        path.write_bytes(content)
    out = fails("finetune", tiny_recipe, f"data.train={path}", message=message)
    assert path.name in out  # the sentence names the file
    nothing_written(tmp_path / "out")


def test_unreadable_data_file(tiny_recipe: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "secret.jsonl"
    shutil.copy(tiny_recipe.parent / "train.jsonl", path)
    path.chmod(0)
    if os.geteuid() == 0:  # root reads anything: make this one file fail to open as it would for a user
        import builtins

        real_open = builtins.open

        def guarded(file, *args, **kwargs):
            if str(file) == str(path):
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", guarded)
    fails("finetune", tiny_recipe, f"data.train={path}",
          message=f"data file {path} cannot be read: Permission denied")
    nothing_written(tmp_path / "out")


def test_missing_column_names_the_split_and_the_key(tiny_recipe: Path, tmp_path: Path) -> None:
    out = fails("finetune", tiny_recipe, "data.text_column=txt", message="the train data has no column 'txt'; did you mean 'text'?")
    assert "(set data.text_column=text)" in out
    nolabel = tmp_path / "nolabel.jsonl"
    nolabel.write_text('{"text": "good"}\n{"text": "bad"}\n', encoding="utf-8")
    out = fails("finetune", tiny_recipe, f"data.test={nolabel}",
                message="the test data has no column 'label' (set data.label_column=...)")
    assert "hint: its columns are: text" in out
    nothing_written(tmp_path / "out")


def test_empty_and_whitespace_texts_are_dropped_and_counted_or_refused(tiny_recipe: Path, tmp_path: Path) -> None:
    rows = ['{"text": "good", "label": "pos"}', '{"text": "   ", "label": "neg"}', '{"text": "", "label": "neg"}',
            '{"text": "\\t\\u3000", "label": "pos"}', '{"text": "bad", "label": "neg"}',
            '{"text": "fine", "label": "pos"}', '{"text": "weak", "label": "neg"}']
    path = tmp_path / "blanks.jsonl"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    result = cli("validate", tiny_recipe, f"data.train={path}")
    assert result.exit_code == 0, result.output
    assert "dropped 3 train rows with empty text" in result.output
    fails("finetune", tiny_recipe, f"data.train={path}", "data.empty_text=error",
          message="the train data has 3 rows with empty text (first: row 2)")
    nothing_written(tmp_path / "out")
    every = tmp_path / "all-blank.jsonl"
    every.write_text('{"text": " ", "label": "pos"}\n{"text": "", "label": "neg"}\n', encoding="utf-8")
    fails("finetune", tiny_recipe, f"data.train={every}", message="every row of the train data has empty text")


def test_labels_unseen_in_training(tiny_recipe: Path, tmp_path: Path) -> None:
    path = tmp_path / "unseen.jsonl"
    path.write_text('{"text": "good", "label": "pos"}\n{"text": "meh", "label": "maybe"}\n', encoding="utf-8")
    fails("finetune", tiny_recipe, f"data.test={path}",
          message=f"test data {path}, row 2: label 'maybe' is not one the model knows (neg, pos)")
    nothing_written(tmp_path / "out")


def _task_recipe(tmp_path: Path, model: Path, task: str, train: Path, extra: str = "") -> Path:
    path = tmp_path / f"{task}.yaml"
    path.write_text(f"task: {task}\nmodel: {model}\noutput_dir: {tmp_path / 'out'}\nmax_length: 32\nprecision: fp32\n"
                    f"data: {{train: {train}, validation_size: 0.4}}\n{extra}", encoding="utf-8")
    return path


def test_ner_tags_that_break_the_scheme(tiny_en_model: Path, tmp_path: Path) -> None:
    conll = tmp_path / "bad.conll"
    conll.write_text("paris\tB-LOC\nis\tO\n\nanna\tB-PER\nwas\tO\n\nrome\tB-LOC\nbob\tE-PER\n\n", encoding="utf-8")
    recipe = _task_recipe(tmp_path, tiny_en_model, "ner", conll, "ner: {tag_scheme: IOB2}\n")
    out = fails("finetune", recipe, message="the train data, row 3, token 1: tag 'E-PER' is not used in the IOB2 scheme")
    assert "hint: IOB2 uses B-, I- and O" in out
    nothing_written(tmp_path / "out")
    junk = tmp_path / "junk.conll"
    junk.write_text("paris\tLOC\nis\tO\n\n", encoding="utf-8")
    fails("finetune", _task_recipe(tmp_path, tiny_en_model, "ner", junk), message="'LOC' is neither 'O' nor PREFIX-TYPE")
    nothing_written(tmp_path / "out")


def test_qa_answers_not_in_the_context_are_reported(tiny_en_model: Path, tmp_path: Path) -> None:
    rows = [("where", "the cat is in paris", "paris", 14), ("who", "anna was there", "bob", 0),
            ("what", "the dog and the cat", "cat", 0), ("where", "rome is good", "rome", 0),
            ("where", "tokyo is good", "tokyo", 0)]
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps({"id": str(i), "question": q, "context": c,
                                        "answers": {"text": [a], "answer_start": [s]}}) + "\n"
                            for i, (q, c, a, s) in enumerate(rows)), encoding="utf-8")
    recipe = _task_recipe(tmp_path, tiny_en_model, "qa", path)
    # By default a few bad answers are repaired or dropped, and counted aloud (not hidden) ...
    result = cli("validate", recipe)
    assert result.exit_code == 0, result.output
    assert ("warning: the train data has 2 gold answers whose answer_start does not point at their text, "
            "e.g. row 2: 'bob' at 0 (the context there reads 'ann')") in result.output
    assert "1 moved to the nearest occurrence of their text, 1 dropped" in result.output
    # ... and qa.bad_answers=error refuses them.
    out = fails("finetune", recipe, "qa.bad_answers=error", message="the train data has 2 gold answers whose answer_start")
    assert "hint: fix answer_start, or set qa.bad_answers=fix" in out
    nothing_written(tmp_path / "out")


# ---------------------------------------------------------------------------------------------
# Bad input: models


def _copy_model(src: Path, dst: Path, *names: str) -> Path:
    dst.mkdir()
    for name in names:
        shutil.copy(src / name, dst / name)
    return dst


def test_model_directory_without_weights_or_tokenizer(tiny_recipe: Path, tiny_en_model: Path, tmp_path: Path) -> None:
    tokenizer_files = [p.name for p in tiny_en_model.iterdir() if p.name.startswith("tokenizer")]
    no_weights = _copy_model(tiny_en_model, tmp_path / "no-weights", "config.json", *tokenizer_files)
    fails("finetune", tiny_recipe, f"model={no_weights}", message=f"model directory {no_weights} has no weights")
    nothing_written(tmp_path / "out")
    # transformers would quietly build a tokenizer that knows only [PAD] [UNK] [CLS] [SEP] [MASK]
    no_tok = _copy_model(tiny_en_model, tmp_path / "no-tok", "config.json", "model.safetensors")
    fails("finetune", tiny_recipe, f"model={no_tok}", message=f"{no_tok} has no tokenizer files")
    nothing_written(tmp_path / "out")
    no_config = _copy_model(tiny_en_model, tmp_path / "no-config", "model.safetensors")
    fails("finetune", tiny_recipe, f"model={no_config}", message="has no config.json, so it is not a saved model")


def test_hub_id_offline_fails_within_seconds(tiny_recipe: Path, tmp_path: Path) -> None:
    started = time.perf_counter()
    out = fails("finetune", tiny_recipe, "model=someone/not-cached-model",
                message="model 'someone/not-cached-model' is not a local path and the Hugging Face Hub cannot be reached")
    assert time.perf_counter() - started < 15
    assert "model=minilm-l6" in out
    nothing_written(tmp_path / "out")
    fails("validate", tiny_recipe, "data.dataset=someone/not-cached-data", "data.train=null", "data.validation=null",
          "data.test=null", message="dataset 'someone/not-cached-data' is not a local path")


# ---------------------------------------------------------------------------------------------
# Bad input: the output directory


def test_output_directory_exists_or_is_a_file(tiny_recipe: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    fails("finetune", tiny_recipe, message=f"output directory {out} already exists and is not empty")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    a_file = tmp_path / "a-file"
    a_file.write_text("mine")
    fails("finetune", tiny_recipe, f"output_dir={a_file}", message=f"output_dir {a_file} is a file")
    assert a_file.read_text() == "mine" and not (tmp_path / "a-file.partial").exists()


@pytest.fixture()
def read_only_dir(tmp_path: Path):
    """A directory nobody can write into: chmod for users, the immutable attribute for root."""
    locked = tmp_path / "locked"
    locked.mkdir()
    if os.geteuid() != 0:
        locked.chmod(0o555)
        yield locked
        locked.chmod(0o755)
        return
    if not shutil.which("chattr") or subprocess.run(["chattr", "+i", str(locked)], capture_output=True).returncode:
        pytest.skip("running as root without chattr: every directory is writable")
    try:
        yield locked
    finally:
        subprocess.run(["chattr", "-i", str(locked)], check=True)


def test_output_directory_not_writable(tiny_recipe: Path, read_only_dir: Path) -> None:
    target = read_only_dir / "out"
    fails("finetune", tiny_recipe, f"output_dir={target}",
          message=f"cannot write output_dir {target}: the directory {read_only_dir} is not writable")
    assert list(read_only_dir.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# Interruption, resumption, determinism
#
# One small classification run (32 examples, batch 16: 2 steps an epoch, 2 epochs, a log every 2
# steps, evaluation and a checkpoint every epoch, the best one loaded at the end) is trained
# uninterrupted once; every other run is compared with it.

FAST = ["training.logging_steps=2"]
TIMING = ("seconds", "samples_per_second")


@pytest.fixture(scope="module")
def run_recipe(tmp_path_factory: pytest.TempPathFactory, tiny_en_model: Path) -> Path:
    import random

    from conftest import _review, write_jsonl

    directory = tmp_path_factory.mktemp("runs")
    rng = random.Random(0)
    for split, n in (("train", 32), ("validation", 16), ("test", 16)):
        write_jsonl(directory / f"{split}.jsonl", [{"text": _review(rng, i % 2 == 0), "label": ["neg", "pos"][i % 2]}
                                                  for i in range(n)])
    recipe = directory / "recipe.yaml"
    recipe.write_text(f"""task: classification
model: {tiny_en_model}
output_dir: {directory / 'out'}
seed: 7
max_length: 32
precision: fp32
data: {{train: {directory / 'train.jsonl'}, validation: {directory / 'validation.jsonl'}, test: {directory / 'test.jsonl'}}}
training: {{num_train_epochs: 2, learning_rate: 5.0e-3, per_device_train_batch_size: 16}}
""", encoding="utf-8")
    return recipe


def comparable(out: Path) -> tuple[dict, float]:
    """metrics.json without timings, and the mean training loss apart: a stop between two logging
    steps logs the interval in two parts, so the loss then agrees to float32 rounding only."""
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    for key in TIMING:
        metrics["train"].pop(key)
    return metrics, metrics["train"].pop("loss")


def weights(out: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(out / "model.safetensors"))


def trace(out: Path) -> dict[tuple[int, str], float]:
    """What the Trainer logged at each step that does not depend on how steps were grouped for logging."""
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text(encoding="utf-8").splitlines()]
    return {(r["step"], k): r[k] for r in rows for k in ("grad_norm", "learning_rate", "eval_loss", "eval_f1_macro")
            if k in r}


def assert_same_run(a: Path, b: Path, exact_loss: bool = True) -> None:
    """Same metrics, predictions, final weights, and gradient norm at every logged step (so a
    difference in training is caught even where the best checkpoint hides it from the weights)."""
    (ma, loss_a), (mb, loss_b) = comparable(a), comparable(b)
    assert ma == mb
    ta, tb = trace(a), trace(b)
    assert ta and {k: tb.get(k) for k in ta} == ta
    assert loss_a == loss_b if exact_loss else loss_a == pytest.approx(loss_b, rel=1e-6)
    assert (a / "predictions.jsonl").read_bytes() == (b / "predictions.jsonl").read_bytes()
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    assert all(bool((wa[k] == wb[k]).all()) for k in wa), "weights differ"


@pytest.fixture(scope="module")
def reference(run_recipe: Path) -> Path:
    """The uninterrupted run. Every socket connection is refused and recorded while it trains,
    evaluates and writes: nothing may go over the network (report_to is none, the model is local)."""
    import socket

    attempts: list[object] = []

    def refuse(self, address, *args):
        attempts.append(address)
        raise OSError(errno.ENETUNREACH, "network disabled by the test")

    out = run_recipe.parent / "reference"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", refuse)
        patch.setattr(socket.socket, "connect_ex", refuse)
        result = cli("finetune", run_recipe, f"output_dir={out}", *FAST)
    assert result.exit_code == 0, result.output
    assert attempts == []
    return out


def test_two_runs_with_one_seed_are_identical(reference: Path, run_recipe: Path) -> None:
    again = run_recipe.parent / "again"
    result = cli("finetune", run_recipe, f"output_dir={again}", *FAST)
    assert result.exit_code == 0, result.output
    assert_same_run(reference, again)
    assert comparable(reference)[1] == comparable(again)[1]  # the loss too, to the last bit


def test_ctrl_c_checkpoints_and_resume_ends_where_an_uninterrupted_run_does(
        reference: Path, run_recipe: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = run_recipe.parent / "resumed"
    args = ["finetune", str(run_recipe), f"output_dir={out}", *FAST]
    monkeypatch.setattr(sys, "argv", ["bertkit", *args])  # what the resume command is built from
    handler_before = signal.getsignal(signal.SIGINT)  # SIG_IGN when pytest itself runs in the background
    result = cli(*args, env={"BERTKIT_TEST_INTERRUPT_AT_STEP": "1"})  # mid-way through epoch 1
    assert result.exit_code == 130, result.output
    assert "SIGINT received: stopping after this step and writing a checkpoint" in result.output
    assert f"interrupted: SIGINT received: training stopped; its last checkpoint is {out}.partial/checkpoint-1" in result.output
    command = f"bertkit finetune {run_recipe} output_dir={out} {' '.join(FAST)} --resume"
    assert f"hint: resume with: {command}" in result.output
    assert not out.exists()  # nothing that looks like a finished model
    assert sorted(p.name for p in Path(f"{out}.partial").iterdir()) == ["checkpoint-1"]
    assert signal.getsignal(signal.SIGINT) is handler_before  # handlers are given back

    result = cli(*command.split()[1:])
    assert result.exit_code == 0, result.output
    assert not Path(f"{out}.partial").exists()
    assert_same_run(reference, out, exact_loss=False)


def test_sigterm_in_a_real_process_then_resume_true(reference: Path, run_recipe: Path) -> None:
    out = run_recipe.parent / "terminated"
    env = {**os.environ, "BERTKIT_TEST_INTERRUPT_AT_STEP": "3", "BERTKIT_TEST_INTERRUPT_SIGNAL": "TERM"}
    proc = subprocess.run([sys.executable, "-m", "bertkit", "finetune", str(run_recipe), f"output_dir={out}", *FAST],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 143, proc.stderr[-3000:]
    assert f"interrupted: SIGTERM received: training stopped; its last checkpoint is {out}.partial/checkpoint-3" in proc.stderr
    assert "--resume" in proc.stderr
    assert not out.exists()
    # checkpoint-2 is epoch 1's, checkpoint-3 the interruption's, mid-way through epoch 2
    assert sorted(p.name for p in Path(f"{out}.partial").iterdir()) == ["checkpoint-2", "checkpoint-3"]
    result = cli("finetune", run_recipe, f"output_dir={out}", *FAST, "resume=true")
    assert result.exit_code == 0, result.output
    assert_same_run(reference, out, exact_loss=False)
    assert "resume" not in (out / "recipe.yaml").read_text()  # how it started is not a setting


def test_an_unfinished_checkpoint_is_skipped(reference: Path, run_recipe: Path) -> None:
    """A crash in the middle of writing a checkpoint leaves it without trainer_state.json (written
    last): --resume goes back to the one before."""
    out = run_recipe.parent / "crashed"
    result = cli("finetune", run_recipe, f"output_dir={out}", *FAST, env={"BERTKIT_TEST_INTERRUPT_AT_STEP": "3"})
    assert result.exit_code == 130, result.output
    (Path(f"{out}.partial") / "checkpoint-3" / "trainer_state.json").unlink()  # back to checkpoint-2
    result = cli("finetune", run_recipe, f"output_dir={out}", *FAST, "--resume")
    assert result.exit_code == 0, result.output
    assert_same_run(reference, out)


def test_resume_without_a_checkpoint(tiny_recipe: Path, tmp_path: Path) -> None:
    fails("finetune", tiny_recipe, "--resume", message=f"nothing to resume: {tmp_path / 'out.partial'} does not exist")
    Path(f"{tmp_path / 'out'}.partial").mkdir()
    fails("finetune", tiny_recipe, "--resume", message="no checkpoint to resume from")


def test_disk_full_while_saving_publishes_nothing_then_resume_saves(
        reference: Path, run_recipe: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    out = run_recipe.parent / "full"
    real_open = builtins.open

    def full(file, *args, **kwargs):
        if Path(str(file)).name == "predictions.jsonl":
            raise OSError(errno.ENOSPC, "No space left on device", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", full)
    monkeypatch.setattr(sys, "argv", ["bertkit", "finetune", str(run_recipe), f"output_dir={out}", *FAST])
    result = cli("finetune", run_recipe, f"output_dir={out}", *FAST)
    assert result.exit_code == 1, result.output
    assert "error: the disk is full" in result.output
    assert f"writing {out}.partial/predictions.jsonl failed, so nothing was published at {out}" in result.output
    assert "--resume` continues from the last complete checkpoint" in result.output
    assert "Traceback" not in result.output
    assert not out.exists()
    monkeypatch.setattr(builtins, "open", real_open)  # space freed
    result = cli("finetune", run_recipe, f"output_dir={out}", *FAST, "--resume")
    assert result.exit_code == 0, result.output
    assert_same_run(reference, out)


def test_disk_full_while_saving_the_model_before_any_checkpoint(tiny_recipe: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.save reports a short write as a RuntimeError; it is still a full disk, said so."""
    from transformers import Trainer

    def short_write(self, *args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 74432 vs 74320")

    monkeypatch.setattr(Trainer, "_save_checkpoint", short_write)
    monkeypatch.setattr("shutil.disk_usage", lambda path: shutil._ntuple_diskusage(10 << 20, 10 << 20, 0))
    fails("finetune", tiny_recipe, *FAST, "training.max_steps=1", message="the disk is full (0 KiB free)")
    nothing_written(tmp_path / "out")


# ---------------------------------------------------------------------------------------------
# Untrusted models and hostile names


def _model_with_code(src: Path, dst: Path, marker: Path, model_type: str) -> Path:
    shutil.copytree(src, dst)
    (dst / "modeling_custom.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n", encoding="utf-8")
    config = json.loads((dst / "config.json").read_text())
    config.update(model_type=model_type, auto_map={"AutoModelForSequenceClassification": "modeling_custom.Custom"})
    (dst / "config.json").write_text(json.dumps(config))
    return dst


def test_remote_code_is_off_unless_asked_for(tiny_recipe: Path, tiny_en_model: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    marker = tmp_path / "code-ran"
    custom = _model_with_code(tiny_en_model, tmp_path / "custom", marker, "custombert")
    out = fails("finetune", tiny_recipe, f"model={custom}",
                message=f"{custom} needs its own Python code to load (modeling_custom.py, modeling_custom.Custom), "
                        "and trust_remote_code is off")
    assert "set trust_remote_code=true" in out
    assert not marker.exists()
    nothing_written(tmp_path / "out")
    # Turned on, a warning names the code before anything runs (here the tokenizer needs none of it).
    from bertkit import models

    standard = _model_with_code(tiny_en_model, tmp_path / "standard", marker, "bert")
    models.load_tokenizer(str(standard), trust_remote_code=True)
    assert ("warning: trust_remote_code is on: loading "
            f"'{standard}' runs the Python code it ships: modeling_custom.py, modeling_custom.Custom") in capsys.readouterr().err
    assert not marker.exists()


def test_pickle_weights_are_refused_unless_allowed(tiny_recipe: Path, tiny_en_model: Path, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_en_model, pickled)
    torch.save(load_file(str(pickled / "model.safetensors")), pickled / "pytorch_model.bin")
    (pickled / "model.safetensors").unlink()
    fails("finetune", tiny_recipe, f"model={pickled}",
          message=f"model directory {pickled} holds only pickle weights (pytorch_model.bin), which can run code when loaded")
    nothing_written(tmp_path / "out")
    from transformers import AutoModelForSequenceClassification

    from bertkit import models

    model = models.load_model(str(pickled), AutoModelForSequenceClassification, allow_pickle=True, num_labels=2)
    assert model.config.num_labels == 2


def test_names_from_data_and_splits_stay_inside_the_output_directory(reference: Path, run_recipe: Path) -> None:
    from bertkit.evaluation import _slug

    for data, split in [("x.jsonl", "../../escape"), ("..", None), ("/", None), ("a/../../b", "..")]:
        slug = _slug(data, split)
        assert "/" not in slug and slug not in ("", ".", "..") and not slug.startswith("."), slug
    test_file = run_recipe.parent / "test.jsonl"
    result = cli("evaluate", reference, test_file, "--split", "../../../escaped")
    assert result.exit_code == 0, result.output
    (made,) = (reference / "evaluations").iterdir()
    assert made.name == "test-.._.._.._escaped" and (made / "metrics.json").exists()
    assert not (reference.parent.parent / "escaped").exists()
