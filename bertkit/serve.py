"""``bertkit serve MODEL_DIR``: a trained model behind HTTP (FastAPI, run by uvicorn).

- ``POST /predict`` with ``{"inputs": [...]}``: each input a string, ``{"text", "text_pair"}`` or
  ``{"question", "context"}``; the answer is ``{"outputs": [...]}``, one object per input, the same objects
  ``bertkit predict`` writes (``task.predict_batch``, the same tokenisation and decoding).
- ``GET /health`` and ``GET /metadata`` (task, labels, model directory, max_length, limits).

Requests that arrive together are answered together: a worker thread takes every waiting request (up
to ``max_batch`` inputs, waiting at most ``wait_ms`` for more after the first) and runs them as one
batch, so concurrent clients share the model's batched, length-sorted inference. Bad input gets a
4xx with the reason (400 malformed JSON, 413 too large, 422 wrong shape), never a 500.

``--workers N`` runs N worker processes behind the same port (uvicorn's own multi-process mode: the
parent holds the socket, each worker accepts connections from it). uvicorn starts a worker as a fresh
interpreter and hands it an import string, not an object, so the settings travel in an environment
variable (``SETTINGS_ENV``) and each worker builds its app with ``app_from_environment``: it loads the
model once, and uses ``cores // N`` CPU threads, so N workers share the cores instead of each taking all.

What this does not do: authentication or TLS (put it behind a proxy for that).
"""

from __future__ import annotations

import json
import os
import queue
import threading
from concurrent.futures import Future
from typing import Any

from bertkit.errors import BertkitError

MAX_BYTES = 1_000_000  # request body
MAX_INPUTS = 256  # inputs per request
SETTINGS_ENV = "BERTKIT_SERVE_SETTINGS"  # create_app's arguments, as JSON, for each worker process


class _Batcher:
    """Collects concurrent requests into batches for one worker thread (the model is not re-entrant)."""

    def __init__(self, run: Any, max_batch: int = 64, wait_ms: float = 5.0):
        self.run, self.max_batch, self.wait = run, max_batch, wait_ms / 1000
        self.requests: queue.Queue[tuple[list[dict[str, Any]], Future]] = queue.Queue()
        threading.Thread(target=self._loop, daemon=True, name="bertkit-serve-batcher").start()

    def submit(self, rows: list[dict[str, Any]]) -> Future:
        future: Future = Future()
        self.requests.put((rows, future))
        return future

    def _loop(self) -> None:
        while True:
            batch = [self.requests.get()]
            size = len(batch[0][0])
            while size < self.max_batch:
                try:
                    item = self.requests.get(timeout=self.wait)
                except queue.Empty:
                    break
                batch.append(item)
                size += len(item[0])
            rows = [row for request, _ in batch for row in request]
            try:
                results = self.run(rows)
            except Exception as exc:  # each request gets the error; the worker lives on
                for _, future in batch:
                    future.set_exception(exc)
                continue
            start = 0
            for request, future in batch:
                future.set_result(results[start:start + len(request)])
                start += len(request)


def rows_of(inputs: Any, recipe: Any) -> list[dict[str, Any]]:
    """The request's inputs as rows in the model's own column names; ValueError with the reason."""
    if not isinstance(inputs, list) or not inputs:
        raise ValueError('"inputs" must be a non-empty list')
    if len(inputs) > MAX_INPUTS:
        raise ValueError(f"{len(inputs)} inputs in one request; at most {MAX_INPUTS}")
    d, rows = recipe.data, []
    for i, item in enumerate(inputs):
        if isinstance(item, str):
            item = {"text": item}
        if not isinstance(item, dict):
            raise ValueError(f"input {i}: a string or an object, not {type(item).__name__}")
        if recipe.task == "qa":
            opts = recipe.options
            question, context = item.get("question"), item.get("context")
            if not isinstance(question, str) or not isinstance(context, str) or not question.strip() or not context.strip():
                raise ValueError(f'input {i}: a question-answering model needs "question" and "context" strings')
            rows.append({opts.question_column: question, opts.context_column: context})
            continue
        text = item.get("text", item.get(d.text_column))
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f'input {i}: "text" must be a non-empty string')
        row = {d.text_column: text}
        if d.text_pair_column:
            pair = item.get("text_pair", item.get(d.text_pair_column))
            if not isinstance(pair, str):
                raise ValueError(f'input {i}: this model reads text pairs: give "text_pair" too')
            row[d.text_pair_column] = pair
        rows.append(row)
    return rows


def create_app(model_dir: str, *, max_batch: int = 64, wait_ms: float = 5.0, batch_size: int = 64,
               threads: int | None = None) -> Any:
    """The FastAPI application serving ``model_dir`` (loaded once, here); ``threads``: the CPU threads
    its inference may use (None: the libraries' defaults, every core)."""
    import asyncio

    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    from bertkit.evaluation import load_for_prediction

    if threads:
        import torch

        torch.set_num_threads(threads)
    recipe, task, tokenizer, model, spec, precision = load_for_prediction(model_dir, threads=threads)
    batcher = _Batcher(lambda rows: task.predict_batch(spec, recipe, tokenizer, model, rows, precision, batch_size),
                       max_batch=max_batch, wait_ms=wait_ms)
    app = FastAPI(title="bertkit", docs_url=None, redoc_url=None)

    def problem(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metadata")
    def metadata() -> dict[str, Any]:
        labels = getattr(spec, "labels", None)
        return {"task": recipe.task, "model": str(model_dir), "labels": labels, "max_length": recipe.max_length,
                "max_inputs": MAX_INPUTS, "max_bytes": MAX_BYTES}

    async def predict(request: Request) -> Any:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_BYTES:
            return problem(413, f"the request body is {declared} bytes; at most {MAX_BYTES}")
        body = await request.body()
        if len(body) > MAX_BYTES:
            return problem(413, f"the request body is {len(body)} bytes; at most {MAX_BYTES}")
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            return problem(400, f"the body is not JSON: {exc}")
        if not isinstance(payload, dict) or "inputs" not in payload:
            return problem(422, 'the body must be an object {"inputs": [...]}')
        try:
            rows = rows_of(payload["inputs"], recipe)
        except ValueError as exc:
            return problem(422, str(exc))
        try:
            outputs = await asyncio.wrap_future(batcher.submit(rows))
        except BertkitError as exc:  # the task's own input checks
            return problem(422, exc.message)
        return {"outputs": outputs}

    # This module's annotations are strings (``from __future__ import annotations``) and FastAPI resolves
    # them in the module's globals, where the lazily imported Request is not: give it the class itself.
    predict.__annotations__["request"] = Request
    app.post("/predict")(predict)
    return app


def app_from_environment() -> Any:
    """uvicorn's app factory in each ``--workers`` process: ``create_app`` with the settings ``run`` left
    in ``SETTINGS_ENV``."""
    return create_app(**json.loads(os.environ[SETTINGS_ENV]))


def run(model_dir: str, host: str, port: int, *, max_batch: int = 64, wait_ms: float = 5.0, workers: int = 1) -> None:
    if workers < 1:
        raise BertkitError(f"--workers must be 1 or more, got {workers}", "give --workers 1 for one process")
    try:
        import uvicorn
    except ImportError as exc:
        raise BertkitError("bertkit serve needs FastAPI and uvicorn, which are not installed",
                           "pip install 'bertkit[serve]'") from exc
    if workers == 1:
        app = create_app(model_dir, max_batch=max_batch, wait_ms=wait_ms)
        uvicorn.run(app, host=host, port=port, log_level="warning")
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    os.environ[SETTINGS_ENV] = json.dumps({"model_dir": str(model_dir), "max_batch": max_batch, "wait_ms": wait_ms,
                                           "threads": threads})
    uvicorn.run("bertkit.serve:app_from_environment", factory=True, host=host, port=port, workers=workers,
                log_level="warning")
