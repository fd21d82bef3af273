"""precision: auto chosen by measuring (hardware.precision_choice): the choice and its reason, the
per-host cache, the refusals of what cannot run. Measurements are forced through
BERTKIT_PRECISION_PROBE or a stand-in for the timing, except in the one real probe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bertkit import hardware
from bertkit.errors import BertkitError


@pytest.fixture(autouse=True)
def fresh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty cache directory, no forced speeds, no in-process cache; bf16 runs unless a test says not."""
    cache = tmp_path / "cache"
    monkeypatch.setenv(hardware.CACHE_ENV, str(cache))
    monkeypatch.delenv(hardware.PROBE_ENV, raising=False)
    monkeypatch.setattr(hardware, "bf16_supported", lambda on: True)
    hardware._probe.cache_clear()
    yield cache
    hardware._probe.cache_clear()


def force(monkeypatch: pytest.MonkeyPatch, speeds: dict[str, float]) -> None:
    monkeypatch.setenv(hardware.PROBE_ENV, json.dumps(speeds))


def test_bf16_slower_than_fp32_keeps_fp32(monkeypatch: pytest.MonkeyPatch, fresh: Path) -> None:
    force(monkeypatch, {"fp32": 100, "bf16": 50})
    assert hardware.precision_choice("auto", "cpu") == (
        "fp32", "auto -> fp32 (bf16 matmul 0.50x fp32 on this CPU, from BERTKIT_PRECISION_PROBE)")
    assert hardware.resolve_precision("auto", "cpu") == "fp32"
    assert not fresh.exists()  # forced speeds are never cached


def test_bf16_much_faster_chooses_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    force(monkeypatch, {"fp32": 100, "bf16": 1180})
    assert hardware.precision_choice("auto", "cpu") == (
        "bf16", "auto -> bf16 (bf16 matmul 11.8x fp32 on this CPU, from BERTKIT_PRECISION_PROBE)")


def test_a_small_gain_is_not_worth_the_accuracy(monkeypatch: pytest.MonkeyPatch) -> None:
    force(monkeypatch, {"fp32": 100, "bf16": 110})
    assert hardware.precision_choice("auto", "cpu") == (
        "fp32", "auto -> fp32 (bf16 matmul 1.10x fp32 on this CPU, under the 1.15x margin, from BERTKIT_PRECISION_PROBE)")


def test_on_a_gpu_fp16_must_beat_bf16_too(monkeypatch: pytest.MonkeyPatch) -> None:
    force(monkeypatch, {"fp32": 100, "bf16": 600, "fp16": 620})
    assert hardware.precision_choice("auto", "cuda")[0] == "bf16"
    force(monkeypatch, {"fp32": 100, "bf16": 100, "fp16": 400})
    assert hardware.precision_choice("auto", "cuda") == (
        "fp16", "auto -> fp16 (fp16 matmul 4.00x fp32 on this GPU, from BERTKIT_PRECISION_PROBE)")
    force(monkeypatch, {"fp32": 100, "fp16": 400})
    assert hardware.resolve_precision("auto", "cpu") == "fp32"  # fp16 never runs on a CPU


def test_the_measurement_is_cached_per_host_and_reused(monkeypatch: pytest.MonkeyPatch, fresh: Path) -> None:
    timed: list[tuple[str, str, int]] = []

    def fake_gflops(precision: str, on: str, hidden: int) -> float:
        timed.append((precision, on, hidden))
        return {"fp32": 100.0, "bf16": 1180.0}[precision]

    monkeypatch.setattr(hardware, "_gflops", fake_gflops)
    assert hardware.precision_choice("auto", "cpu") == ("bf16", "auto -> bf16 (bf16 matmul 11.8x fp32 on this CPU)")
    assert timed == [("fp32", "cpu", 768), ("bf16", "cpu", 768)]

    entries = json.loads((fresh / "precision.json").read_text(encoding="utf-8"))
    [(key, entry)] = entries.items()
    assert key.startswith(f"cpu | {hardware._machine('cpu')} | torch ") and key.endswith(" | hidden 768")
    assert entry["gflops"] == {"fp32": 100.0, "bf16": 1180.0}
    assert entry["ratio"] == {"bf16": 11.8}
    assert entry["choice"] == "bf16"

    hardware._probe.cache_clear()  # a new process: the file answers, nothing is timed again
    assert hardware.resolve_precision("auto", "cpu") == "bf16"
    assert len(timed) == 2
    hardware.resolve_precision("auto", "cpu", hidden=1024)  # another hidden size is measured on its own
    assert timed[2:] == [("fp32", "cpu", 1024), ("bf16", "cpu", 1024)]
    assert len(json.loads((fresh / "precision.json").read_text(encoding="utf-8"))) == 2


def test_a_cache_written_by_a_slow_bf16_host_is_read_back(fresh: Path) -> None:
    key = f"cpu | {hardware._machine('cpu')} | torch {hardware._torch_version()} | hidden 768"
    fresh.mkdir()
    (fresh / "precision.json").write_text(json.dumps({key: {"gflops": {"fp32": 150.0, "bf16": 75.0}}}), encoding="utf-8")
    assert hardware.precision_choice("auto", "cpu") == ("fp32", "auto -> fp32 (bf16 matmul 0.50x fp32 on this CPU)")


def test_an_unwritable_cache_directory_only_means_no_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory", encoding="utf-8")
    monkeypatch.setenv(hardware.CACHE_ENV, str(blocker / "bertkit"))
    monkeypatch.setattr(hardware, "_gflops", lambda precision, on, hidden: {"fp32": 100.0, "bf16": 300.0}[precision])
    assert hardware.resolve_precision("auto", "cpu") == "bf16"
    assert blocker.read_text(encoding="utf-8") == "not a directory"


def test_the_cache_directory_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert hardware.cache_dir() == tmp_path / "cache"
    monkeypatch.delenv(hardware.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hardware.cache_dir() == tmp_path / "xdg" / "bertkit"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert hardware.cache_dir() == tmp_path / "home" / ".cache" / "bertkit"


def test_explicit_choices_pass_through() -> None:
    assert hardware.precision_choice("fp32", "cpu") == ("fp32", "fp32 (set in the recipe)")
    assert hardware.precision_choice("bf16", "cpu") == ("bf16", "bf16 (set in the recipe)")
    assert hardware.precision_choice("fp16", "cuda") == ("fp16", "fp16 (set in the recipe)")
    assert hardware.resolve_precision("bf16", "cuda") == "bf16"


def test_bf16_where_it_cannot_run_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardware, "bf16_supported", lambda on: False)
    monkeypatch.setattr(hardware, "_machine", lambda on: "Old GPU")
    with pytest.raises(BertkitError, match="this CPU cannot run bf16 autocast") as info:
        hardware.resolve_precision("bf16", "cpu")
    assert "precision=fp32" in info.value.hint
    with pytest.raises(BertkitError, match=r"this GPU \(Old GPU\) does not support bf16") as info:
        hardware.resolve_precision("bf16", "cuda")
    assert "precision=fp16" in info.value.hint
    # auto does not probe what cannot run
    assert hardware.precision_choice("auto", "cpu") == ("fp32", "auto -> fp32 (this CPU cannot run bf16 autocast)")


def test_fp16_on_a_cpu_is_refused() -> None:
    with pytest.raises(BertkitError, match="fp16 was asked for, but this run is on a CPU") as info:
        hardware.precision_choice("fp16", "cpu")
    assert info.value.hint == "fp16 autocast is a GPU feature; use precision=bf16 or fp32 on a CPU"


def test_bad_forced_speeds_and_unknown_precisions_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(hardware.PROBE_ENV, "fast")
    with pytest.raises(BertkitError, match="BERTKIT_PRECISION_PROBE must be a JSON object"):
        hardware.precision_choice("auto", "cpu")
    force(monkeypatch, {"bf16": 50})
    with pytest.raises(BertkitError, match="needs a positive 'fp32' speed"):
        hardware.precision_choice("auto", "cpu")
    with pytest.raises(BertkitError, match="unknown precision 'fp8'"):
        hardware.precision_choice("fp8", "cpu")


def test_mps_is_not_probed() -> None:
    assert hardware.precision_choice("auto", "mps") == ("fp32", "auto -> fp32 (mixed precision is not probed on mps)")


def test_a_real_probe_runs_and_chooses_a_valid_precision(monkeypatch: pytest.MonkeyPatch, fresh: Path) -> None:
    monkeypatch.undo()  # the real bf16 check and a real measurement ...
    monkeypatch.setenv(hardware.CACHE_ENV, str(fresh))  # ... into this test's cache
    monkeypatch.delenv(hardware.PROBE_ENV, raising=False)
    chosen, reason = hardware.precision_choice("auto", "cpu", hidden=256)  # small, so it takes milliseconds
    assert chosen in ("fp32", "bf16")
    assert reason.startswith(f"auto -> {chosen} (")
    [entry] = json.loads((fresh / "precision.json").read_text(encoding="utf-8")).values()
    assert entry["gflops"]["fp32"] > 0 and entry["choice"] == chosen


def test_the_commands_follow_the_probe_and_say_why(monkeypatch: pytest.MonkeyPatch, tiny_recipe: Path,
                                                   tmp_path: Path) -> None:
    """A host where bf16 is slower trains in fp32, and validate, metrics.json and the card say why; a
    precision the host cannot run is one line, exit 1, nothing written."""
    from typer.testing import CliRunner

    from bertkit.cli import app

    monkeypatch.setenv("BERTKIT_PRECISION_PROBE", json.dumps({"fp32": 100, "bf16": 50}))
    runner = CliRunner()
    shown = runner.invoke(app, ["validate", str(tiny_recipe), "precision=auto"], catch_exceptions=False)
    assert shown.exit_code == 0, shown.output
    assert "precision: auto -> fp32 (bf16 matmul 0.50x fp32 on this CPU" in shown.output
    out = tmp_path / "auto-run"
    trained = runner.invoke(app, ["finetune", str(tiny_recipe), "precision=auto", f"output_dir={out}",
                                  "training.num_train_epochs=1"], catch_exceptions=False)
    assert trained.exit_code == 0, trained.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train"]["precision"] == "fp32" and "0.50x" in metrics["train"]["precision_reason"]
    assert json.loads((out / "training_args.json").read_text())["bf16"] is False
    assert "auto -> fp32" in (out / "README.md").read_text()
    refused = runner.invoke(app, ["finetune", str(tiny_recipe), "precision=fp16", f"output_dir={tmp_path / 'fp16'}"],
                            catch_exceptions=False)
    assert refused.exit_code == 1 and "fp16 autocast is a GPU feature" in refused.output
    assert "Traceback" not in refused.output and not (tmp_path / "fp16").exists()


def test_a_model_trained_in_fp16_still_predicts_on_a_cpu(tiny_recipe: Path, tmp_path: Path) -> None:
    """The saved recipe says fp16 (a GPU run); predict on a CPU falls back to what auto measures here."""
    import yaml
    from typer.testing import CliRunner

    from bertkit.cli import app

    runner = CliRunner()
    out = tmp_path / "model"
    trained = runner.invoke(app, ["finetune", str(tiny_recipe), f"output_dir={out}", "training.num_train_epochs=1",
                                  "precision=fp32"], catch_exceptions=False)
    assert trained.exit_code == 0, trained.output
    saved = (out / "recipe.yaml").read_text(encoding="utf-8")
    tree = yaml.safe_load(saved)
    tree["precision"] = "fp16"
    (out / "recipe.yaml").write_text(yaml.safe_dump(tree), encoding="utf-8")
    result = runner.invoke(app, ["predict", str(out), "--text", "a lovely film"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "trained with precision fp16, which this machine cannot run" in result.output
    assert '"label"' in result.output
