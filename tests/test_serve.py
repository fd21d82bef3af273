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


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc: no psutil needed)."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(pid):
            found.append(int(status.parent.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="counts worker processes through /proc")
def test_two_workers_answer_what_one_answers(trained: Path, tmp_path: Path) -> None:
    texts = ["a really great movie", "the plot was boring", "excellent acting", "dull and poor", "fun", "weak"]
    answers, metadata = {}, {}
    for workers in (1, 2):
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "bertkit", "serve", str(trained), "--port", str(port),
                                   "--workers", str(workers)],
                                  env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until_up(server, base)
            if workers == 2:  # uvicorn's supervisor holds the socket; the workers are its children
                deadline = time.monotonic() + 60
                while len(_children(server.pid)) < 2 and time.monotonic() < deadline:
                    time.sleep(0.5)
                assert len(_children(server.pid)) >= 2
            bodies = [json.dumps({"inputs": [t]}).encode() for t in texts * 4]
            with ThreadPoolExecutor(6) as pool:  # spread over the workers
                answers[workers] = [call(base + "/predict", b) for b in bodies[:1]] + list(
                    pool.map(lambda b: call(base + "/predict", b), bodies[1:]))
            metadata[workers] = call(base + "/metadata")
            assert call(base + "/health") == (200, {"status": "ok"})
        finally:
            server.terminate()
            server.wait(timeout=60)
    assert [a[0] for a in answers[2]] == [200] * len(texts) * 4
    for one, two in zip(answers[1], answers[2]):
        assert one[1]["outputs"][0]["label"] == two[1]["outputs"][0]["label"]
        assert one[1]["outputs"][0]["probabilities"] == pytest.approx(two[1]["outputs"][0]["probabilities"], abs=1e-5)
    assert metadata[1] == metadata[2]


def test_serve_refuses_zero_workers(trained: Path) -> None:
    result = CliRunner().invoke(app, ["serve", str(trained), "--workers", "0"])
    assert result.exit_code == 1
    assert "--workers must be 1 or more" in result.output and "Traceback" not in result.output
