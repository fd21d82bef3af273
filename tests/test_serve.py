"""bertkit serve: a real server process over HTTP gives the labels predict gives, answers /health and
/metadata, and turns bad requests into 4xx with a reason."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bertkit.cli import app

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url: str, body: bytes | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"} if body is not None else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def wait_until_up(server: subprocess.Popen, base: str, seconds: float = 180.0) -> None:
    """Until the server answers /health (it imports torch and loads a model first: slow on a busy CPU)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if call(base + "/health")[0] == 200:
                return
        except OSError:
            pass
        if server.poll() is not None:
            pytest.fail(server.stderr.read().decode())
        time.sleep(0.2)
    pytest.fail(f"the server did not answer /health within {seconds:.0f} s")


@pytest.fixture()
def trained(tiny_recipe: Path, tmp_path: Path) -> Path:
    result = CliRunner().invoke(app, ["finetune", str(tiny_recipe), "training.num_train_epochs=1"])
    assert result.exit_code == 0, result.output
    return tmp_path / "out"


def test_serve_answers_as_predict_does_and_rejects_bad_requests(trained: Path, tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    server = subprocess.Popen([sys.executable, "-m", "bertkit", "serve", str(trained), "--port", str(port)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(server, base)
        texts = ["a really great movie", "the plot was boring", "excellent acting", "dull and poor"]
        source = tmp_path / "in.txt"
        source.write_text("\n".join(texts) + "\n")
        assert CliRunner().invoke(app, ["predict", str(trained), str(source), "--output", str(tmp_path / "p.jsonl")]).exit_code == 0
        expected = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
        status, answer = call(base + "/predict", json.dumps({"inputs": texts}).encode())
        assert status == 200, answer
        assert [o["label"] for o in answer["outputs"]] == [e["label"] for e in expected]
        for got, want in zip(answer["outputs"], expected):
            assert got["probabilities"] == pytest.approx(want["probabilities"], abs=1e-5)
        # concurrent requests are batched together and each gets its own answers back
        bodies = [json.dumps({"inputs": [{"text": t}]}).encode() for t in texts * 3]
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda b: call(base + "/predict", b), bodies))
        assert [a[1]["outputs"][0]["label"] for a in answers] == [e["label"] for e in expected] * 3
        status, meta = call(base + "/metadata")
        assert status == 200 and meta["task"] == "classification" and meta["labels"] == ["neg", "pos"]
        for body, code, reason in [(b"{not json", 400, "not JSON"), (b'{"inputs": []}', 422, "non-empty list"),
                                   (b'{"text": "x"}', 422, '{"inputs": [...]}'), (b'{"inputs": [3]}', 422, "input 0"),
                                   (json.dumps({"inputs": ["x" * 2_000_000]}).encode(), 413, "at most")]:
            status, answer = call(base + "/predict", body)
            assert status == code and reason in answer["error"], (body[:30], status, answer)
        assert call(base + "/health")[0] == 200  # still up after every bad request
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_serve_refuses_a_directory_that_is_not_a_model(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["serve", str(tmp_path)])
    assert result.exit_code == 1 and "not a trained model directory" in result.output
