"""An exported model (``bertkit export``) run by ONNX Runtime, shaped like the PyTorch model where the
task code meets it: a ``config`` (labels, thresholds, temperature, as saved by ``finetune``) and the
input names its graph takes. ``inference.forward`` runs it on the same length-sorted, padded batches
as a PyTorch model and gets the same named outputs back, so ``predict``, ``evaluate`` and ``serve``
take an export directory through the very code that serves a model directory.

What it does not do: export or quantise (``export.py``), or tokenise (the task modules do).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bertkit.errors import BertkitError

ONNX_FILE = "model.onnx"
REPORT_FILE = "export_report.json"
INSTALL_HINT = "pip install 'bertkit[export]' (onnx and onnxruntime)"


def is_export(path: str | Path) -> bool:
    """A directory ``bertkit export`` wrote (its graph is ``model.onnx``)."""
    return (Path(path) / ONNX_FILE).is_file()


def session(path: str | Path, threads: int | None = None) -> Any:
    """An ONNX Runtime session for ``path`` with every graph optimisation on, on the best provider here."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise BertkitError("running an ONNX export needs ONNX Runtime, which is not installed", INSTALL_HINT) from exc
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    preferred = ("CUDAExecutionProvider", "CPUExecutionProvider")
    providers = [p for p in preferred if p in ort.get_available_providers()]
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types for a bad file
        raise BertkitError(f"ONNX Runtime cannot load {path}: {str(exc).splitlines()[0]}",
                           "export the model again with bertkit export") from exc


class OnnxModel:
    """A ``model.onnx`` and the ``config.json`` beside it; ``run`` maps input arrays to named outputs."""

    onnx = True  # inference.forward takes the ONNX Runtime path for objects with this flag

    def __init__(self, directory: str | Path, threads: int | None = None, *, graph: str | Path | None = None,
                 config: Any = None) -> None:
        """``graph`` and ``config`` default to the directory's ``model.onnx`` and ``config.json`` (``export``
        passes a graph it is still checking and the PyTorch model's config)."""
        from transformers import AutoConfig

        self.directory = Path(directory)
        self.config = config if config is not None else AutoConfig.from_pretrained(self.directory)
        self.session = session(graph or self.directory / ONNX_FILE, threads)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    @property
    def on_cpu(self) -> bool:
        return self.session.get_providers()[0] == "CPUExecutionProvider"

    def run(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = {name: batch[name].astype(np.int64, copy=False) for name in self.input_names}
        return dict(zip(self.output_names, self.session.run(self.output_names, feed)))

    def to(self, device: str) -> OnnxModel:  # the provider was chosen when the session was made
        return self
