"""``bertkit embed``: sentence vectors, a cosine-similarity matrix, or a small semantic search.

The path: lines of INPUT, streamed in chunks of ``chunk`` inputs -> bertkit's own tokenisation
(``bertkit.encoding``, with the Japanese fast path), cut to ``max_length`` and counted when cut ->
length-sorted batches through the encoder (``bertkit.inference.forward``) -> pooling -> optional L2
normalisation -> written as they come (``.npy`` rows or JSONL lines, in input order).

Pooling turns one input's token vectors (the last hidden states) into one vector:

- ``mean``: the average over its real tokens, [CLS] and [SEP] included, padding excluded; what
  sentence-transformers models such as all-MiniLM-L6-v2 are trained with;
- ``max``: the element-wise maximum over its real tokens;
- ``cls``: the vector of [CLS];
- ``pooler``: the model's pooler output, tanh(W · [CLS] + b), for checkpoints that saved a trained pooler.

``max_length`` defaults to the model's sentence-transformers ``max_seq_length`` when it ships a
``sentence_bert_config.json`` (256 for MiniLM), so ``--pooling mean --normalize`` gives that
library's ``encode`` vectors; otherwise to the tokenizer's and the position table's limit.

Not handled: text pairs, instruction prefixes, and sentence-transformers modules after pooling
other than Normalize (a ``Dense`` projection, for instance, is not applied).
"""

from __future__ import annotations

import heapq
import itertools
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bertkit import data as data_mod
from bertkit.errors import BertkitError

POOLINGS = ("mean", "max", "cls", "pooler")
MAX_SIMILARITY_INPUTS = 5000  # the matrix is n x n floats, and a heatmap of more says nothing
VECTOR_SUFFIXES = (".npy", ".jsonl")


def check_pooling(pooling: str) -> None:
    if pooling not in POOLINGS:
        raise BertkitError(f"unknown pooling '{pooling}'", f"use one of: {', '.join(POOLINGS)}")


def check_options(pooling: str, output: str | None, similarity: bool, query: str | None, top_k: int | None) -> None:
    """Refuse contradictory or incomplete options before anything is loaded."""
    check_pooling(pooling)
    if top_k is not None and query is None:
        raise BertkitError("--top-k ranks inputs against a query, but no --query was given",
                           "add --query TEXT, or drop --top-k")
    if top_k is not None and top_k < 1:
        raise BertkitError(f"--top-k must be at least 1, got {top_k}", "e.g. --top-k 5")
    if query is not None and similarity:
        raise BertkitError("--query and --similarity ask for two different outputs", "run them one at a time")
    if output is None and query is None:
        raise BertkitError("no --output file given for the vectors", "add --output vectors.npy (or .jsonl)")
    suffixes = (".jsonl",) if query is not None else VECTOR_SUFFIXES
    if output is not None and Path(output).suffix.lower() not in suffixes:
        raise BertkitError(f"cannot tell the format of {output} from its suffix",
                           f"name it *{' or *'.join(suffixes)}")


def pool(hidden: Any, attention_mask: Any, pooling: str, pooler_output: Any = None) -> Any:
    """hidden (batch, seq, dim) and attention_mask (batch, seq; 1 = token) -> (batch, dim)."""
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "pooler":
        return pooler_output
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (batch, seq, 1)
    if pooling == "mean":
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
    return hidden.masked_fill(mask == 0, float("-inf")).max(dim=1).values


def feature_rows(tokenizer: Any, model: Any, texts: list[str], max_length: int) -> tuple[list[dict[str, Any]], int]:
    """``[CLS] text [SEP]`` model inputs cut to ``max_length`` tokens, and how many texts were cut.

    Shared by ``embed`` and ``inspect attention``. token_type_ids go in whenever the model takes them
    (some tokenizers, BertJapaneseTokenizer among them, leave them out of ``model_input_names``).
    """
    import inspect

    from bertkit import encoding

    budget = max_length - encoding.n_specials(tokenizer, False)
    with_types = "token_type_ids" in inspect.signature(model.forward).parameters
    rows, cut = [], 0
    for ids in encoding.token_ids(tokenizer, texts):
        cut += len(ids) > budget
        ids, types = encoding.with_specials(tokenizer, encoding.fit_single(ids, budget))
        row = {"input_ids": ids, "attention_mask": [1] * len(ids)}
        if with_types:
            row["token_type_ids"] = types
        rows.append(row)
    return rows, cut


class _Pooled:
    """The encoder seen by ``inference.forward``: called on a batch, returns ``{"embedding": (batch, dim)}``."""

    def __init__(self, model: Any, pooling: str, normalize: bool):
        self.model, self.pooling, self.normalize = model, pooling, normalize

    def parameters(self) -> Iterator[Any]:
        return self.model.parameters()

    def eval(self) -> _Pooled:
        self.model.eval()
        return self

    def __call__(self, **batch: Any) -> dict[str, Any]:
        import torch

        out = self.model(**batch)
        vectors = pool(out.last_hidden_state, batch["attention_mask"], self.pooling, getattr(out, "pooler_output", None))
        if self.normalize:
            vectors = torch.nn.functional.normalize(vectors, p=2, dim=1)
        return {"embedding": vectors}


class Embedder:
    """A model, its tokenizer and a pooling: ``encode(texts)`` -> float32 array (len(texts), dim)."""

    def __init__(self, model_ref: str, pooling: str = "mean", normalize: bool = False, max_length: int | None = None,
                 batch_size: int = 32):
        from transformers import AutoModel

        from bertkit import hardware, models

        check_pooling(pooling)
        self.tokenizer = models.load_tokenizer(model_ref)
        model, info = models.load_model(model_ref, AutoModel, output_loading_info=True)
        if pooling == "pooler" and (getattr(model, "pooler", None) is None
                                    or any(k.startswith("pooler.") for k in info["missing_keys"])):
            raise BertkitError(f"model {model_ref} has no trained pooler (its checkpoint holds no pooler weights)",
                               "use --pooling mean or --pooling cls")
        self.model = model.to(hardware.device()).eval()
        self.pooled = _Pooled(self.model, pooling, normalize)
        self.max_length = self._max_length(models.resolve(model_ref)[0], max_length)
        self.batch_size = batch_size
        self.truncated = 0

    def _max_length(self, location: str, requested: int | None) -> int:
        limit = getattr(self.model.config, "max_position_embeddings", None) or 512
        if requested is not None:
            if not 2 < requested <= limit:
                raise BertkitError(f"--max-length {requested} is outside what this model takes (3 to {limit} tokens)",
                                   f"use --max-length {limit} or less")
            return requested
        st_config = Path(location) / "sentence_bert_config.json"
        if st_config.exists():
            value = json.loads(st_config.read_text(encoding="utf-8")).get("max_seq_length")
            if value:
                return min(int(value), limit)
        tokenizer_limit = self.tokenizer.model_max_length
        return min(limit, tokenizer_limit) if tokenizer_limit and tokenizer_limit < 100_000 else limit

    def encode(self, texts: list[str]) -> np.ndarray:
        from bertkit import inference

        rows, cut = feature_rows(self.tokenizer, self.model, texts, self.max_length)
        self.truncated += cut
        result = inference.forward(self.pooled, rows, pad_id=self.tokenizer.pad_token_id or 0,
                                   batch_size=self.batch_size, outputs=("embedding",), progress=False)
        return np.stack(result["embedding"]).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Input: rows of text, streamed


def read_texts(source: str, text_column: str = "text") -> Iterator[tuple[dict[str, Any], str]]:
    """(row, text) for every input; the first row is read at once, so a bad INPUT fails before any model loads."""
    rows = data_mod.iter_input_lines(source, text_column)
    first = next(rows, None)
    if first is None:
        raise BertkitError(f"{source} holds no text lines", "give one text per line, or JSONL with a 'text' field")

    def texts() -> Iterator[tuple[dict[str, Any], str]]:
        for number, row in enumerate(itertools.chain([first], rows), start=1):
            if text_column not in row:
                raise BertkitError(f"{source}: input {number} has no '{text_column}' field",
                                   f"its fields are {', '.join(map(str, row))}; pass --text-column NAME")
            yield row, str(row[text_column] if row[text_column] is not None else "")

    return texts()


def embedded(embedder: Embedder, texts: Iterable[tuple[dict[str, Any], str]], chunk: int,
             bar: Any = None) -> Iterator[tuple[list[dict[str, Any]], list[str], np.ndarray]]:
    """(rows, texts, vectors) for each chunk of at most ``chunk`` inputs, in input order."""
    iterator = iter(texts)
    while block := list(itertools.islice(iterator, chunk)):
        rows, strings = [r for r, _ in block], [t for _, t in block]
        yield rows, strings, embedder.encode(strings)
        if bar is not None:
            bar.update(len(block))


def unit(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (a zero row stays zero), so dot products are cosine similarities."""
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


# ---------------------------------------------------------------------------------------------
# Outputs


def write_npy(path: str | Path, blocks: Iterable[np.ndarray]) -> tuple[int, int]:
    """Stream float32 row blocks into a ``.npy`` whose row count is only known at the end.

    The rows go to a raw side file first; then the header (which states the shape) and the rows are
    copied into the staged ``.npy``, which replaces ``path`` when complete. Memory stays one block.
    """
    import shutil

    from bertkit.outputs import staged_file

    with staged_file(path) as partial:
        raw = partial.with_name(partial.name + ".rows")
        count, dim = 0, 0
        try:
            with open(raw, "wb") as fh:
                for block in blocks:
                    fh.write(np.ascontiguousarray(block, dtype="<f4").tobytes())
                    count, dim = count + len(block), block.shape[1]
            with open(partial, "wb") as out, open(raw, "rb") as rows:
                header = {"descr": "<f4", "fortran_order": False, "shape": (count, dim)}
                np.lib.format.write_array_header_1_0(out, header)
                shutil.copyfileobj(rows, out, 1 << 20)
        finally:
            raw.unlink(missing_ok=True)
    return count, dim


def write_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> int:
    from bertkit.outputs import staged_file

    count = 0
    with staged_file(path) as partial, open(partial, "w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count


def _vector_records(chunks: Iterable[tuple[list[dict[str, Any]], list[str], np.ndarray]], key: str) -> Iterator[dict[str, Any]]:
    for rows, strings, vectors in chunks:
        for row, text, vector in zip(rows, strings, vectors):
            record = {"id": row["id"]} if "id" in row else {}
            record.update({"text": text, key: np.round(vector.astype(np.float64), 7).tolist()})
            yield record


def write_vectors(embedder: Embedder, texts: Iterable[tuple[dict[str, Any], str]], output: str, *,
                  chunk: int = 1024, bar: Any = None) -> tuple[int, int]:
    """One vector per input into ``output`` (.npy rows or JSONL lines). Returns (count, dimension)."""
    chunks = embedded(embedder, texts, chunk, bar)
    if Path(output).suffix.lower() == ".npy":
        return write_npy(output, (vectors for _, _, vectors in chunks))
    dim = embedder.model.config.hidden_size
    return write_jsonl(output, _vector_records(chunks, "embedding")), dim


def similarity_matrix(vectors: np.ndarray) -> np.ndarray:
    """(n, dim) -> (n, n) cosine similarities."""
    normed = unit(vectors)
    return normed @ normed.T


def write_similarity(embedder: Embedder, texts: Iterable[tuple[dict[str, Any], str]], output: str, *,
                     chunk: int = 1024, bar: Any = None) -> tuple[int, Path]:
    """The inputs' cosine-similarity matrix into ``output`` and a heatmap beside it (.png). Returns (n, png)."""
    rows: list[dict[str, Any]] = []
    strings: list[str] = []
    blocks = []
    for chunk_rows, chunk_texts, vectors in embedded(embedder, _at_most(texts, MAX_SIMILARITY_INPUTS), chunk, bar):
        rows += chunk_rows
        strings += chunk_texts
        blocks.append(vectors)
    matrix = similarity_matrix(np.concatenate(blocks)).astype(np.float32)
    png = Path(output).with_suffix(".png")
    plot_similarity(strings, matrix, png)
    if Path(output).suffix.lower() == ".npy":
        write_npy(output, [matrix])
    else:
        write_jsonl(output, _vector_records([(rows, strings, matrix)], "similarity"))
    return len(strings), png


def _at_most(texts: Iterable[Any], limit: int) -> Iterator[Any]:
    for number, item in enumerate(texts, start=1):
        if number > limit:
            raise BertkitError(f"--similarity is limited to {limit} inputs (an n x n matrix), and INPUT has more",
                               "write the vectors with --output vectors.npy and compare them in chunks, or use --query")
        yield item


def plot_similarity(texts: list[str], matrix: np.ndarray, path: Path) -> None:
    """Heatmap of the matrix with the (shortened) inputs as labels; values written in for small n."""
    from bertkit import plotting

    plt = plotting.pyplot()
    labels = [plotting.shorten(t) for t in texts]
    plotting.use_cjk_font(plt, labels)
    n = len(texts)
    size = min(4.0 + 0.4 * n, 24.0)
    fig, ax = plt.subplots(figsize=(size + 2.5, size))
    shown = labels if n <= 60 else None
    low = float(matrix.min())
    image = plotting.heatmap(ax, matrix, shown, shown, cmap="viridis", vmin=low, vmax=1.0, aspect="equal")
    if n <= 16:
        for i in range(n):
            for j in range(n):  # dark text on the bright upper half of the colour scale, light text below
                ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="black" if matrix[i, j] > (low + 1.0) / 2 else "white")
    fig.colorbar(image, ax=ax, label="cosine similarity")
    ax.set_title(f"cosine similarity of {n} inputs")
    fig.tight_layout()
    plotting.save(fig, path)


def search(embedder: Embedder, texts: Iterable[tuple[dict[str, Any], str]], query: str, top_k: int, *,
           chunk: int = 1024, bar: Any = None) -> list[dict[str, Any]]:
    """The ``top_k`` inputs most cosine-similar to ``query``, best first; memory holds one chunk and k hits."""
    target = unit(embedder.encode([query]))[0]
    best: list[tuple[float, int, str, dict[str, Any]]] = []  # a min-heap: the weakest kept hit on top
    index = 0
    for rows, strings, vectors in embedded(embedder, texts, chunk, bar):
        for row, text, score in zip(rows, strings, unit(vectors) @ target):
            entry = (float(score), -index, text, row)  # -index: on equal scores the earlier input wins
            if len(best) < top_k:
                heapq.heappush(best, entry)
            elif entry[:2] > best[0][:2]:  # (score, -index) is unique, so rows are never compared
                heapq.heapreplace(best, entry)
            index += 1
    hits = sorted(best, key=lambda e: (-e[0], -e[1]))
    return [{"rank": rank, "score": round(score, 6), "index": -neg, "text": text,
             **({"id": row["id"]} if "id" in row else {})}
            for rank, (score, neg, text, row) in enumerate(hits, start=1)]


# ---------------------------------------------------------------------------------------------
# The command


def run(model_ref: str, source: str, *, pooling: str = "mean", normalize: bool = False, output: str | None = None,
        similarity: bool = False, query: str | None = None, top_k: int | None = None, text_column: str = "text",
        max_length: int | None = None, batch_size: int = 32, chunk: int = 1024) -> dict[str, Any]:
    """Check the options, open INPUT, load the model, then write vectors, a similarity matrix or search hits.

    On several processes (``--num-processes``) each process embeds every N-th batch and gets all the
    vectors back (``inference.across_processes``); the main process writes ``output``, the others write
    into a scratch folder that is removed, so every process runs the same code to the end."""
    import tempfile

    from bertkit import distributed, inference

    check_options(pooling, output, similarity, query, top_k)
    with inference.across_processes() as several, tempfile.TemporaryDirectory(prefix="bertkit-embed-") as scratch:
        if several and source == "-":
            raise BertkitError("embed on several processes reads a file, not standard input",
                               "give the input as a file, or drop --num-processes")
        if output and not distributed.is_main_process():
            output = str(Path(scratch) / Path(output).name)
        return _run(model_ref, source, pooling=pooling, normalize=normalize, output=output, similarity=similarity,
                    query=query, top_k=top_k, text_column=text_column, max_length=max_length, batch_size=batch_size,
                    chunk=chunk)


def _run(model_ref: str, source: str, *, pooling: str, normalize: bool, output: str | None, similarity: bool,
         query: str | None, top_k: int | None, text_column: str, max_length: int | None, batch_size: int,
         chunk: int) -> dict[str, Any]:
    from bertkit import console

    texts = read_texts(source, text_column)
    embedder = Embedder(model_ref, pooling, normalize, max_length, batch_size)
    result: dict[str, Any] = {"output": output, "max_length": embedder.max_length}
    with console.progress(None, "embedding") as bar:
        if query is not None:
            hits = search(embedder, texts, query, top_k or 10, chunk=chunk, bar=bar)
            if output:
                write_jsonl(output, hits)
            result.update(hits=hits, count=bar.n)
        elif similarity:
            result["count"], result["plot"] = write_similarity(embedder, texts, output, chunk=chunk, bar=bar)
        else:
            result["count"], result["dim"] = write_vectors(embedder, texts, output, chunk=chunk, bar=bar)
    result["truncated"] = embedder.truncated
    return result
