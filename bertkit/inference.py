"""Batched, length-sorted inference shared by ``evaluate``, ``predict`` and ``embed``.

Examples are sorted by length before batching so each batch pads only to its own longest member
(far less wasted compute than padding every input to ``max_length``), run without autograd in the
chosen precision, and returned in the original order.

bf16 on a CPU runs the model on bf16 copies of its weights (``torch.func.functional_call``; the
model itself is left in fp32, so a model that is saved afterwards is not rounded) instead of under
autocast: autocast keeps layer norms and residual additions in fp32 and casts activations back and
forth around every matrix multiply, and those copies were a fifth of the CPU time.

Inside ``across_processes()`` (the inference commands launched with ``--num-processes``), each process
runs every N-th of the same batches and the outputs are gathered back on every process, so the result
is what one process computes, batch for batch, in the same order. Outside it, forward never talks to
other processes (a training run's final evaluation runs on the main process alone).

What this does not do: tokenise (the task modules do) or interpret the outputs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np


CPU_MAX_TOKENS = 4096  # tokens per batch on a CPU (measured: bench/RESULTS.md, inference)
# ONNX Runtime on a CPU ran fastest on batches of about one long review (measured on 400 IMDb reviews,
# int8 MiniLM: 48.8 texts/s at 512 tokens a batch, 45.9 at 1,024, 41.0 at 2,048, 39.4 at 4,096).
ONNX_CPU_MAX_TOKENS = 512
_ACROSS_PROCESSES = False  # set by across_processes()


@contextlib.contextmanager
def across_processes() -> Iterator[bool]:
    """Share ``forward``'s batches among the processes of a launched inference command; yields whether
    there are several (a process group is up)."""
    from bertkit import distributed

    global _ACROSS_PROCESSES
    several = distributed.join_group()
    _ACROSS_PROCESSES = several
    try:
        yield several
    finally:
        _ACROSS_PROCESSES = False
        if several:  # leave the group together: left to interpreter exit, gloo's threads can abort the process
            distributed.shutdown()


def pad_arrays(rows: list[dict[str, Any]], pad_id: int) -> dict[str, np.ndarray]:
    """The rows' model inputs padded to one width (a multiple of 8, which suits vectorised kernels)."""
    width = max(len(r["input_ids"]) for r in rows)
    width = (width + 7) // 8 * 8
    batch = {}
    for key, fill in (("input_ids", pad_id), ("token_type_ids", 0), ("attention_mask", 0)):
        if key in rows[0]:
            array = np.full((len(rows), width), fill, dtype=np.int64)
            for j, r in enumerate(rows):
                array[j, : len(r[key])] = r[key]
            batch[key] = array
    return batch


def pad_batch(rows: list[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    import torch

    return {key: torch.from_numpy(array) for key, array in pad_arrays(rows, pad_id).items()}


def length_sorted_batches(lengths: list[int], batch_size: int, max_tokens: int | None = None) -> Iterator[list[int]]:
    """Indices grouped into batches of similar length, longest first (memory peaks early, then falls).

    With ``max_tokens``, a batch also stops growing once batch x longest would exceed it, so short
    inputs get big batches and long inputs small ones.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batch: list[int] = []
    for i in order:
        if batch and (len(batch) >= batch_size or (max_tokens and (len(batch) + 1) * lengths[batch[0]] > max_tokens)):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


def forward(model: Any, rows: list[dict[str, Any]], *, pad_id: int, batch_size: int = 64, precision: str = "fp32",
            outputs: tuple[str, ...] = ("logits",), per_token: bool = False, desc: str | None = None,
            progress: bool = True, max_tokens: int | None = None) -> dict[str, list[np.ndarray]]:
    """Run ``model`` (PyTorch, or an ``onnx_model.OnnxModel``) over feature rows; return each requested
    output per example.

    With ``per_token`` the outputs are (batch, seq, ...) and each is cut back to its example's own
    length, so the caller never sees padding positions. ``max_tokens`` caps batch x longest (default:
    4,096 on a CPU, where batches that fit the caches ran 15-30 % faster than 16,384; 512 for ONNX Runtime
    on a CPU; 16,384 elsewhere).
    """
    from bertkit import console

    if getattr(model, "onnx", False):
        default = ONNX_CPU_MAX_TOKENS if model.on_cpu else 16384
        context: Any = contextlib.nullcontext()

        def run(batch_rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
            return model.run(pad_arrays(batch_rows, pad_id))
    else:
        default, context, run = _torch_runner(model, pad_id, precision, outputs)
    from bertkit import distributed

    lengths = [len(r["input_ids"]) for r in rows]
    results: dict[str, list[Any]] = {name: [None] * len(rows) for name in outputs}
    batches = list(length_sorted_batches(lengths, batch_size, max_tokens or default))
    if _ACROSS_PROCESSES:  # every N-th batch: longest first, so each process gets a like share of the work
        batches = batches[distributed.rank()::distributed.world_size()]
    bar = console.progress(sum(map(len, batches)), desc if progress else None)
    with context:
        for idx in batches:
            out = run([rows[i] for i in idx])
            for name in outputs:
                value = out[name].astype(np.float32, copy=False)
                for j, i in enumerate(idx):
                    results[name][i] = value[j][: lengths[i]] if per_token else value[j]
            bar.update(len(idx))
    bar.close()
    if _ACROSS_PROCESSES:
        mine = {i: tuple(results[name][i] for name in outputs) for idx in batches for i in idx}
        for i, values in distributed.gather_indexed(mine).items():
            for name, value in zip(outputs, values):
                results[name][i] = value
    return results


def _torch_runner(model: Any, pad_id: int, precision: str, outputs: tuple[str, ...]) -> tuple[int, Any, Any]:
    """(default max_tokens, the context to run in, batch rows -> named numpy outputs) for a PyTorch model."""
    import torch

    from bertkit.hardware import autocast

    on = next(model.parameters()).device.type
    model.eval()
    weights = bf16_weights(model) if precision == "bf16" and on == "cpu" else None
    if weights is not None:
        precision = "fp32"  # no autocast on top of bf16 weights
    takes = accepted_inputs(model)

    @contextlib.contextmanager
    def context() -> Iterator[None]:
        with torch.inference_mode(), autocast(precision, on):
            yield

    def run(batch_rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
        batch = {k: v.to(on) for k, v in pad_batch(batch_rows, pad_id).items() if k in takes}
        out = model(**batch) if weights is None else torch.func.functional_call(model, weights, (), batch)
        return {name: out[name].float().cpu().numpy() for name in outputs}

    return (CPU_MAX_TOKENS if on == "cpu" else 16384), context(), run


def accepted_inputs(model: Any) -> set[str]:
    """The input names ``model.forward`` takes (DistilBERT and ModernBERT take no ``token_type_ids``);
    a wrapper without ``forward`` (``embed``'s pooling) is given what its inner ``model`` takes."""
    import inspect

    if getattr(model, "onnx", False):
        return set(model.input_names)
    inner = model if hasattr(model, "forward") else model.model
    return set(inspect.signature(inner.forward).parameters)


def bf16_weights(model: Any) -> dict[str, Any]:
    """bf16 copies of the model's floating-point parameters and buffers (the others as they are)."""
    import torch

    state = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    return {name: t.detach().to(torch.bfloat16) if t.is_floating_point() else t for name, t in state.items()}
