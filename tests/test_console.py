"""The console: ``--quiet`` is results only for every command that shows progress; off a terminal,
progress is plain lines, one each LINE_EVERY percent, never carriage-return frames (bertkit's bars,
the Trainer's training bar, and datasets' map/filter phases alike); the progress helper's rule
checked against percentages worked out by hand."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from bertkit import console
from bertkit.cli import app

runner = CliRunner()

# What a progress bar leaves in a log: carriage returns, rates, tqdm's bar edge and block characters.
BAR_MARKS = ("\r", "it/s", "ex/s", "%|", "\u2588", "\u258f", "\u258e", "\u258d", "\u258c", "\u258b", "\u258a", "\u2589")
# One progress line of a phase of known size: "tokenising train: 40% (24/60 ex, 0:01, ~0:02 left)".
LINE = re.compile(r"^(?P<desc>.+?): (?P<pct>\d+)% \((?P<n>\d+)/(?P<total>\d+) ")


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("BERTKIT_CACHE_DIR", str(tmp_path / "user-cache"))
    yield
    # Leave the verbosity (and the library bars it sets) as the next test expects: normal, the
    # terminal deciding.
    monkeypatch.delenv(console.PROGRESS_ENV, raising=False)
    console.set_level("normal")


def lines_mode(monkeypatch: pytest.MonkeyPatch, level: str = "normal") -> None:
    monkeypatch.setenv(console.PROGRESS_ENV, "lines")
    console.set_level(level)


def everything(capfd: pytest.CaptureFixture[str], *args: object) -> tuple[int, str]:
    """Run a command in-process; its exit code and all it wrote: stdout and stderr as the runner saw
    them, and whatever reached the process's own descriptors past it (a library's log handler)."""
    capfd.readouterr()
    result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    leaked = capfd.readouterr()
    return result.exit_code, result.output + leaked.out + leaked.err


def assert_no_progress(text: str) -> None:
    for mark in BAR_MARKS:
        assert mark not in text, f"{mark!r} in:\n{text}"
    assert not [line for line in text.splitlines() if LINE.match(line)], text
    assert "tokenising" not in text and "evaluating" not in text and "predicting" not in text, text


def phases(text: str) -> list[list[tuple[str, int, int, int]]]:
    """The progress lines of ``text`` as (desc, pct, n, total), one list per phase: a phase ends at its
    100 % line or where another description starts."""
    found: list[list[tuple[str, int, int, int]]] = []
    for line in text.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        entry = (m["desc"], int(m["pct"]), int(m["n"]), int(m["total"]))
        if not found or found[-1][-1][0] != entry[0] or found[-1][-1][1] == 100:
            found.append([])
        found[-1].append(entry)
    return found


def shown(capsys: pytest.CaptureFixture[str], total: int | None, updates: list[int]) -> list[str]:
    capsys.readouterr()
    bar = console.progress(total, "phase")
    for n in updates:
        bar.update(n)
    bar.close()
    err = capsys.readouterr().err
    assert "\r" not in err
    return err.splitlines()


# ---------------------------------------------------------------------------------------------
# The progress helper


@pytest.mark.parametrize(("total", "updates", "expected"), [
    # (percentage, count) of each line
    (100, [1] * 100, [(10, 10), (20, 20), (30, 30), (40, 40), (50, 50), (60, 60), (70, 70), (80, 80), (90, 90),
                      (100, 100)]),
    # 3/7 = 42 % passes the 30 and the 40 mark in one step: one line
    (7, [1] * 7, [(14, 1), (28, 2), (42, 3), (57, 4), (71, 5), (85, 6), (100, 7)]),
    (1000, [250] * 4, [(25, 250), (50, 500), (75, 750), (100, 1000)]),
    (10, [3, 4, 3], [(30, 3), (70, 7), (100, 10)]),  # each step passes several marks: one line each
    (100, [4, 3, 3], [(10, 10)]),  # 4 and 7 % reach no mark
    (100, [5], [(5, 5)]),  # ended short of 10 %: the line at the end says where
    (100, [35, 10], [(35, 35), (45, 45)]),  # ended short of 100 %: the last line already said where
])
def test_a_line_each_time_another_tenth_is_reached(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                                   total: int, updates: list[int], expected: list[tuple[int, int]]) -> None:
    lines_mode(monkeypatch)
    got = [LINE.match(line) for line in shown(capsys, total, updates)]
    assert all(got)
    assert [(int(m["pct"]), int(m["n"])) for m in got] == expected
    assert all(m["desc"] == "phase" and int(m["total"]) == total for m in got)


def test_a_phase_of_unknown_size_writes_a_line_as_its_count_doubles(monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    lines_mode(monkeypatch)
    lines = shown(capsys, None, [1] * 10)
    assert [int(re.match(r"^phase: (\d+) ex \(", line)[1]) for line in lines] == [1, 2, 4, 8, 10]  # 10: the end


def test_quiet_or_no_description_shows_nothing_but_still_counts(monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    lines_mode(monkeypatch, "quiet")
    bar = console.progress(10, "phase")
    bar.update(4)
    bar.update(6)
    bar.close()
    assert bar.n == 10 and capsys.readouterr().err == ""
    console.set_level("normal")
    with console.progress(None, None) as silent:
        silent.update(3)
    assert silent.n == 3 and capsys.readouterr().err == ""


def test_on_a_terminal_it_is_a_bar(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(console.PROGRESS_ENV, "bars")
    console.set_level("normal")
    bar = console.progress(4, "phase")
    bar.update(4)
    bar.close()
    err = capsys.readouterr().err
    assert "\r" in err and "4/4" in err and not LINE.match(err.strip("\r"))


def test_the_terminal_decides_unless_the_environment_says(monkeypatch: pytest.MonkeyPatch) -> None:
    class Stream:
        def __init__(self, tty: bool) -> None:
            self.tty = tty

        def isatty(self) -> bool:
            return self.tty

    monkeypatch.delenv(console.PROGRESS_ENV, raising=False)
    monkeypatch.setattr(sys, "stderr", Stream(True))
    assert console.interactive()
    monkeypatch.setenv(console.PROGRESS_ENV, "lines")
    assert not console.interactive()
    monkeypatch.setenv(console.PROGRESS_ENV, "something else")  # not a choice: the terminal decides
    assert console.interactive()
    monkeypatch.setattr(sys, "stderr", Stream(False))
    assert not console.interactive()
    monkeypatch.setenv(console.PROGRESS_ENV, "bars")
    assert console.interactive()


def test_the_level_switches_the_libraries_bars(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets
    from transformers.utils import logging as hf_logging

    monkeypatch.setenv(console.PROGRESS_ENV, "bars")
    console.set_level("normal")
    assert datasets.is_progress_bar_enabled() and not hf_logging.is_progress_bar_enabled()
    console.set_level("verbose")
    assert datasets.is_progress_bar_enabled() and hf_logging.is_progress_bar_enabled()
    console.set_level("quiet")
    assert not datasets.is_progress_bar_enabled() and not hf_logging.is_progress_bar_enabled()
    monkeypatch.setenv(console.PROGRESS_ENV, "lines")  # they cannot write lines: off
    console.set_level("verbose")
    assert not datasets.is_progress_bar_enabled() and not hf_logging.is_progress_bar_enabled()


def _shout(batch: dict) -> dict:
    return {"loud": [t.upper() for t in batch["text"]]}


def test_a_datasets_phase_is_counted_from_its_batches_and_keeps_its_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    import datasets

    lines_mode(monkeypatch)
    datasets.Dataset.from_dict({"text": [f"row {i}" for i in range(25)]}).save_to_disk(str(tmp_path / "rows"))
    rows = datasets.load_from_disk(str(tmp_path / "rows"))  # on disk: map caches its result
    pcts = []
    for _ in range(2):
        capsys.readouterr()
        with console.library_phase(len(rows), "shouting") as counted:
            loud = rows.map(counted(_shout), batched=True, batch_size=5, desc="shouting")
        err = capsys.readouterr().err
        assert loud["loud"][3] == "ROW 3"
        assert "\r" not in err and "%|" not in err  # datasets' own bar is off
        pcts.append([int(LINE.match(line)["pct"]) for line in err.splitlines()])
    # The first run: a line per batch of 5 rows in 25. The second comes from datasets' cache (the
    # count did not change the function's fingerprint), so no batch passes; the end still says 100 %.
    assert pcts == [[20, 40, 60, 80, 100], [100]]


def test_a_counted_function_pickles_as_the_function_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """What datasets hashes into its cache fingerprint, and sends to worker processes, is the bare
    function, whatever the count it carries."""
    import pickle

    from datasets.fingerprint import Hasher

    lines_mode(monkeypatch)
    with console.library_phase(10, "one") as counted:
        first = counted(_shout)
        first({"text": ["a"] * 7})
    with console.library_phase(5, "two") as counted:
        second = counted(_shout)
    assert pickle.loads(pickle.dumps(first)) is _shout
    assert Hasher.hash(first) == Hasher.hash(second)


# ---------------------------------------------------------------------------------------------
# Commands


def test_quiet_finetune_evaluate_and_predict_show_only_their_results(tiny_recipe: Path, sentiment_files: dict[str, Path],
                                                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     capfd: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(console.PROGRESS_ENV, "bars")  # even where bars could be drawn
    code, text = everything(capfd, "finetune", tiny_recipe, "--quiet")
    assert code == 0, text
    assert_no_progress(text)
    assert "validation: accuracy=" in text and "test: accuracy=" in text and "saved to" in text
    assert "validation, epoch" not in text  # the per-epoch tables are progress too
    model = tmp_path / "out"
    code, text = everything(capfd, "evaluate", model, sentiment_files["test"], "-q")
    assert code == 0, text
    assert_no_progress(text)
    assert text.startswith("metrics: accuracy=") and "wrote " in text
    code, text = everything(capfd, "predict", model, sentiment_files["test"], "-o", tmp_path / "p.jsonl", "--quiet")
    assert code == 0, text
    assert_no_progress(text)
    assert text.strip() == f"wrote 24 predictions to {tmp_path / 'p.jsonl'}"
    code, text = everything(capfd, "predict", model, sentiment_files["test"], "--quiet")
    assert code == 0, text
    assert [json.loads(line)["label"] in ("neg", "pos") for line in text.splitlines()] == [True] * 24
    code, text = everything(capfd, "embed", model, sentiment_files["test"], "--query", "a good film", "--top-k", "2", "-q")
    assert code == 0, text
    assert_no_progress(text)
    assert len(text.splitlines()) == 2 and text.lstrip().startswith("1 ")


def test_quiet_adapt_domain_into_a_log_file_holds_only_results(tiny_en_model: Path, tiny_recipe: Path,
                                                                sentiment_files: dict[str, Path], tmp_path: Path) -> None:
    """The issue's case as a user meets it: ``bertkit adapt-domain ... --quiet > log 2>&1``, the
    downstream probe included, in a process of its own whose output is no terminal."""
    probe = yaml.safe_load(tiny_recipe.read_text(encoding="utf-8"))
    probe["training"]["num_train_epochs"] = 1
    (tmp_path / "probe.yaml").write_text(yaml.safe_dump(probe), encoding="utf-8")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(json.loads(line)["text"] + "\n" for line in sentiment_files["train"].read_text().splitlines()))
    tree = {"task": "mlm", "model": str(tiny_en_model), "output_dir": str(tmp_path / "adapted"), "seed": 3,
            "max_length": 32, "precision": "fp32", "data": {"train": str(corpus), "validation_size": 0.25},
            "mlm": {"cache_dir": str(tmp_path / "cache"), "probe": {"recipe": str(tmp_path / "probe.yaml"), "seeds": 1}},
            "training": {"num_train_epochs": 1, "learning_rate": 5.0e-3, "per_device_train_batch_size": 8}}
    recipe = tmp_path / "mlm.yaml"
    recipe.write_text(yaml.safe_dump(tree), encoding="utf-8")
    log = tmp_path / "log"
    env = {k: v for k, v in os.environ.items() if k != console.PROGRESS_ENV} | {"HF_HUB_OFFLINE": "1"}
    with log.open("w", encoding="utf-8") as sink:
        done = subprocess.run([sys.executable, "-m", "bertkit", "adapt-domain", str(recipe), "--quiet"], stdout=sink,
                              stderr=subprocess.STDOUT, env=env, timeout=600)
    text = log.read_text(encoding="utf-8")
    assert done.returncode == 0, text
    assert_no_progress(text)
    assert "probe: fine-tuning" not in text and "masking" not in text and "checking" not in text
    assert "held-out validation perplexity:" in text
    assert "probe start" in text and "probe adapted" in text and f"saved to {tmp_path / 'adapted'}" in text


def test_off_a_terminal_finetune_writes_lines_a_tenth_apart(tiny_recipe: Path, sentiment_files: dict[str, Path],
                                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capfd: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(console.PROGRESS_ENV, "lines")
    code, text = everything(capfd, "finetune", tiny_recipe)
    assert code == 0, text
    for mark in BAR_MARKS:
        assert mark not in text, f"{mark!r} in:\n{text}"
    assert "validation, epoch 2.00" in text and "test: accuracy=" in text  # what normal shows, still there
    found = phases(text)
    # 64 rows / batch 8 x 2 epochs = 16 steps; validation after each epoch, test at the end
    assert [p[0][0] for p in found] == ["training", "evaluating validation", "training", "evaluating validation", "evaluating test"]
    training = [entry for p in found if p[0][0] == "training" for entry in p]
    assert len(training) <= 100 // console.LINE_EVERY + 2
    for desc, pct, n, total in training + [e for p in found for e in p if e[0] != "training"]:
        assert pct == n * 100 // total  # the percentage a line shows is its count's
    assert training[-1][1:] == (100, 16, 16)
    assert len({pct // console.LINE_EVERY for _, pct, _, _ in training}) == len(training)  # one line per tenth reached
    code, text = everything(capfd, "predict", tmp_path / "out", sentiment_files["test"], "-o", tmp_path / "p.jsonl")
    assert code == 0 and "\r" not in text
    assert re.search(r"^predicting: 24 ex \(", text, re.M), text


def test_off_a_terminal_the_datasets_phases_of_adapt_domain_are_lines(tiny_en_model: Path, sentiment_files: dict[str, Path],
                                                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                      capfd: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(console.PROGRESS_ENV, "lines")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(json.loads(line)["text"] + "\n" for line in sentiment_files["train"].read_text().splitlines()))
    tree = {"task": "mlm", "model": str(tiny_en_model), "output_dir": str(tmp_path / "adapted"), "seed": 3,
            "max_length": 32, "precision": "fp32", "data": {"train": str(corpus), "validation_size": 0.25},
            "mlm": {"cache_dir": str(tmp_path / "cache")},
            "training": {"num_train_epochs": 1, "learning_rate": 5.0e-3, "per_device_train_batch_size": 8}}
    recipe = tmp_path / "mlm.yaml"
    recipe.write_text(yaml.safe_dump(tree), encoding="utf-8")
    code, text = everything(capfd, "adapt-domain", recipe)
    assert code == 0, text
    for mark in BAR_MARKS:
        assert mark not in text, f"{mark!r} in:\n{text}"
    ends = {p[-1][0]: p[-1][1:] for p in phases(text)}
    # 64 documents read, 48 train and 16 validation after the 0.25 hold-out
    assert ends["checking train documents"] == (100, 64, 64)
    assert ends["tokenising train"] == (100, 48, 48) and ends["tokenising validation"] == (100, 16, 16)
    assert ends["masking validation (seed 3)"][0] == 100 and ends["training"][0] == 100
    assert all(len(p) <= 100 // console.LINE_EVERY + 2 for p in phases(text))
    assert "held-out validation perplexity:" in text
