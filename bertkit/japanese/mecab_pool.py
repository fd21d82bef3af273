"""Run MeCab in helper processes for large batches, while this process assembles the tokens.

MeCab is the biggest part of the Japanese fast path's time, and fugashi holds the GIL while it
parses, so threads do not help; helper processes do. ``parse_chunks`` takes the text pieces of a
batch in chunks and yields, for every chunk in order, the tokens of its pieces as the caller's
``tokens`` object (``pieces._PieceTokens``) builds them from the parse. On a big enough
batch with helpers allowed, the helpers parse chunks k+1, k+2, ... while the caller builds tokens
from chunk k; for ids alone, the helpers build the tokens too, from a copy of the word cache made
from ``tokens.spec``, so the caller only joins them. Otherwise everything happens here. Either way
the answer is the same: helpers run the same MeCab options, the same NFKC and the same code.

A helper is a plain ``python -c`` child that imports only this module (which loads the
``bertkit.japanese`` package: the standard library alone until used), fugashi and (for ids)
``tokenizers``: no multiprocessing, whose spawn and forkserver children re-import the user's main
script (running an unguarded script a second time), and whose fork copies a process that may hold
CUDA or OpenMP state. It reads pickled requests on stdin and writes pickled answers on its own
copy of stdout (its fd 1 is pointed at stderr, so nothing printed there can corrupt the stream). It
ignores Ctrl-C (the parent decides) and exits when its stdin closes, which happens at the
parent's exit, or when the parent dies.

Configuration: ``BERTKIT_JA_WORKERS=N`` sets the number of helpers (0 turns them off). The default
is one per usable CPU up to 4, and none inside a multi-process run (``WORLD_SIZE`` > 1), where
each process already has its core. Helpers start with the first batch of ``START_CHARS`` characters
or more: starting them costs more than a smaller batch wins back. Fresh processes, random lines of
the benchmark's Japanese text, ids: 178,197 characters took 0.216-0.241 s with helpers started for
them, 0.164-0.190 s without; 299,014 characters 0.252-0.255 s vs 0.276-0.301 s; 357,581 characters
0.256-0.259 s vs 0.332-0.349 s (ids + offsets + word ids, 299,014: 0.283-0.356 s vs 0.341-0.412 s).
Once running, they take every batch of ``MIN_CHARS`` or more.

Not here: how tokens are made from a parse (``pieces``), which texts go to MeCab at all and how
pieces join back into texts (``fast``).
"""

from __future__ import annotations

import atexit
import logging
import os
import pickle
import queue
import subprocess
import sys
import threading
import unicodedata
from collections.abc import Iterator

from bertkit.japanese.pieces import _PieceTokens

log = logging.getLogger(__name__)

WORKERS_ENV = "BERTKIT_JA_WORKERS"
START_CHARS = 300_000  # the smallest batch that starts the helpers
MIN_CHARS = 50_000  # the smallest batch that running helpers take

_HELPER_SPECS = 4  # word caches (one per tokenizer) a helper keeps: the most recently sent

Parsed = list[tuple["str | None", str]]

_HELPER_CODE = "import sys; from bertkit.japanese.mecab_pool import _helper_main; _helper_main(sys.argv[1], sys.argv[2] == '1')"


def parse_here(tagger, normalize: bool, pieces: list[str]) -> Parsed:
    """The parse of ``pieces`` in this process, in the shape the helpers answer."""
    out = []
    for piece in pieces:
        norm = unicodedata.normalize("NFKC", piece) if normalize else piece
        out.append((None if norm == piece else norm, tagger.parse(norm)))
    return out


def parse_chunks(tagger, option: str, normalize: bool, chunks: list[list[str]], tokens, what: str) -> Iterator[list]:
    """``tokens.answer(what, chunk, parse)`` for every chunk, in order.

    The parse happens in the helpers when they pay, else here with ``tagger``. With helpers, the
    answer is built in them too when ``what`` is in ``tokens.BUILT_APART`` (each helper builds its
    own ``tokens`` from ``tokens.spec``), else here from their parse.
    """
    helpers = None
    chars = sum(len(p) for chunk in chunks for p in chunk)
    if chars >= START_CHARS or (chars >= MIN_CHARS and (option, normalize) in _POOLS):
        helpers = _helpers_for(option, normalize)
    done = 0
    if helpers is not None:
        try:
            apart = what in tokens.BUILT_APART
            for chunk, got in zip(chunks, helpers.map(chunks, tokens, what if apart else "parse")):
                yield tokens.unpack(got) if apart else tokens.answer(what, chunk, got)
                done += 1
            return
        except _HelperFailed as err:
            log.warning("bertkit: MeCab helper processes failed (%s); parsing in this process", err)
            _drop(option, normalize)
    for chunk in chunks[done:]:
        yield tokens.answer(what, chunk, parse_here(tagger, normalize, chunk))


def configured_workers() -> int:
    """How many helpers to use: ``BERTKIT_JA_WORKERS``, else one per usable CPU (at most 4)."""
    raw = os.environ.get(WORKERS_ENV, "").strip()
    if raw:
        try:
            return max(0, int(raw))
        except ValueError:
            log.warning("bertkit: %s=%r is not a number; using no MeCab helpers", WORKERS_ENV, raw)
            return 0
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        return 0
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return min(cpus, 4) if cpus > 1 else 0


class _HelperFailed(RuntimeError):
    pass


class _Helpers:
    """A few helper processes, each fed by its own writer thread (so no pipe can fill up and stall)."""

    def __init__(self, option: str, normalize: bool, n: int):
        self.owner = os.getpid()  # a forked child inherits this object but must never touch these helpers
        self.specs: list[int] = []  # the word-cache specs every helper holds, oldest first
        env = dict(os.environ)
        # Import bertkit from where this process did, installed or not (the folder above bertkit/japanese/).
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-c", _HELPER_CODE, option, "1" if normalize else "0"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
            )
            for _ in range(n)
        ]
        self.inboxes: list[queue.Queue] = [queue.Queue() for _ in self.procs]
        self.writers = [
            threading.Thread(target=self._write, args=(p, q), daemon=True, name="bertkit-mecab-writer")
            for p, q in zip(self.procs, self.inboxes)
        ]
        for w in self.writers:
            w.start()

    @staticmethod
    def _write(proc: subprocess.Popen, inbox: queue.Queue) -> None:
        while (chunk := inbox.get()) is not None:
            try:
                pickle.dump(chunk, proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
                proc.stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                return  # the reader sees the helper gone
        try:
            proc.stdin.close()
        except OSError:
            pass

    def map(self, chunks: list[list[str]], tokens, what: str) -> Iterator[list]:
        """Send all chunks round-robin, then read the answers back in order (see ``parse_chunks``).

        A helper gets ``tokens.spec`` once, before the first chunk it is to answer with it.

        Every answer must be read before the helpers can serve another batch; a caller that stops
        early (an exception while it uses an answer) leaves them out of step, so they are closed.
        """
        n = len(self.procs)
        if what != "parse" and tokens.key not in self.specs:
            for inbox in self.inboxes:
                inbox.put(("spec", tokens.key, tokens.spec))
            self.specs.append(tokens.key)
            del self.specs[:-_HELPER_SPECS]  # what each helper forgets too
        for i, chunk in enumerate(chunks):
            self.inboxes[i % n].put((what, tokens.key, chunk))
        read = 0
        try:
            for i, chunk in enumerate(chunks):
                try:
                    got = pickle.load(self.procs[i % n].stdout)
                except (EOFError, OSError, pickle.UnpicklingError) as err:
                    raise _HelperFailed(f"helper {i % n} stopped answering: {err!r}") from err
                pieces = len(got if what == "parse" else got[0])  # a packed answer starts with a size per piece
                if pieces != len(chunk):
                    raise _HelperFailed(f"helper {i % n} answered {pieces} pieces for {len(chunk)}")
                read += 1
                yield got
        finally:
            if read != len(chunks):
                self.close()

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs) and all(w.is_alive() for w in self.writers)

    def close(self) -> None:
        if self.owner != os.getpid():  # inherited through fork: the parent's to close
            return
        for inbox in self.inboxes:
            inbox.put(None)
        for proc in self.procs:
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout:
                proc.stdout.close()


_POOLS: dict[tuple[str, bool], _Helpers | None] = {}
_LOCK = threading.Lock()


def _helpers_for(option: str, normalize: bool) -> _Helpers | None:
    """The running helpers for these options, started on first use; None when there are to be none."""
    n = configured_workers()
    if n == 0:
        return None
    key = (option, normalize)
    with _LOCK:
        helpers = _POOLS.get(key)
        if helpers is not None and helpers.owner != os.getpid():
            helpers = None  # inherited through fork: this process starts its own (close() leaves the parent's be)
        if helpers is not None and (len(helpers.procs) != n or not helpers.alive()):
            helpers.close()
            helpers = None
        if helpers is None:
            try:
                helpers = _Helpers(option, normalize, n)
            except OSError as err:
                log.warning("bertkit: could not start MeCab helper processes (%s); parsing in this process", err)
                return None
            _POOLS[key] = helpers
        return helpers


def _drop(option: str, normalize: bool) -> None:
    with _LOCK:
        helpers = _POOLS.pop((option, normalize), None)
    if helpers is not None:
        helpers.close()


@atexit.register
def shutdown() -> None:
    """Close every helper (each exits when its stdin closes)."""
    with _LOCK:
        pools = [h for h in _POOLS.values() if h is not None]
        _POOLS.clear()
    for helpers in pools:
        helpers.close()


def _helper_main(option: str, normalize: bool) -> None:
    """The helper's loop until stdin closes: ``("parse", key, pieces)`` in, their ``parse_here``
    out; ``("spec", key, spec)`` in builds a ``pieces._PieceTokens`` (no answer); another
    ``(what, key, pieces)`` in, the packed ``answer`` of the tokens of spec ``key`` out."""
    import gc
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Nothing a helper makes is ever in a cycle (strings, lists of ints, the word cache), so the
    # collector's passes would free nothing: off for good.
    gc.disable()
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed from here on goes to stderr, not into the answers
    import fugashi

    tagger = fugashi.GenericTagger(option)
    tokens: dict = {}
    stdin = sys.stdin.buffer
    while True:
        try:
            what, key, payload = pickle.load(stdin)
        except EOFError:
            return
        if what == "spec":
            tokens[key] = _PieceTokens(payload)
            for old in list(tokens)[:-_HELPER_SPECS]:
                del tokens[old]
            continue
        parsed = parse_here(tagger, normalize, payload)
        answer = parsed if what == "parse" else tokens[key].pack(tokens[key].answer(what, payload, parsed))
        pickle.dump(answer, out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()
