"""What the machine can do: the device to run on, and the precision to run in, chosen by measuring.

``precision: auto`` is decided by a short probe, not by CPU flags: a CPU that reports AVX-512 BF16
can still run bf16 matrix multiplies at half its fp32 speed, and a GPU's fp16 and bf16 speeds differ
by generation. The probe times the matmul a transformer layer spends most of its time in,
``(2048 tokens, hidden) x (hidden, 4 * hidden)``, under ``torch.autocast`` as training runs it, for
each precision the device can run (CPU: fp32 and bf16; CUDA: fp32, which may use tf32, bf16 where
``torch.cuda.is_bf16_supported()``, and fp16), with a warm-up call and the best of several timings,
in a few hundred milliseconds. A low precision is chosen only if it beats fp32 (and fp16 only if it
beats bf16) by ``MARGIN``, since it costs some accuracy.

The speeds are cached per host in ``precision.json`` in the user's cache directory
(``$BERTKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/bertkit``, else ``~/.cache/bertkit``), keyed by device
kind, CPU model or GPU name, torch version and hidden size, and in the process; an unwritable cache
directory only means no cache. ``BERTKIT_PRECISION_PROBE='{"fp32": 100, "bf16": 50}'`` replaces the
measurement (and is never cached), for tests and for users who know better.

Explicit choices pass through, except what cannot run: bf16 where a tiny bf16 autocast matmul fails
(CPU) or ``torch.cuda.is_bf16_supported()`` says no (CUDA), and fp16 on a CPU. Not done: MPS is not
probed (``auto`` stays fp32 there), and the probe says nothing about whole-model speed, memory or
batch size; the several processes of a distributed run each resolve on their own.
"""

from __future__ import annotations

import json
import os
import platform
import time
from functools import lru_cache
from pathlib import Path

from bertkit.errors import BertkitError

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
MARGIN = 1.15  # how much faster a low precision must be to be worth its accuracy cost
HIDDEN = 768  # BERT-base; callers that know the model pass its hidden size
TOKENS = 2048  # a batch of 16 x 128 tokens
BUDGET_S = 0.1  # timing per precision, after one warm-up call
SAMPLE_S = 0.01  # a timed sample repeats the matmul until it lasts this long (a GPU does one in microseconds)
PROBE_ENV = "BERTKIT_PRECISION_PROBE"
CACHE_ENV = "BERTKIT_CACHE_DIR"
CACHE_FILE = "precision.json"


def device() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def resolve_precision(precision: str, on: str | None = None, hidden: int | None = None) -> str:
    """'auto' -> the fastest precision measured here; explicit choices pass through (or are refused)."""
    return precision_choice(precision, on, hidden)[0]


def precision_choice(precision: str, on: str | None = None, hidden: int | None = None) -> tuple[str, str]:
    """(resolved precision, a short reason to print), e.g. ``('fp32', 'auto -> fp32 (bf16 matmul 0.50x
    fp32 on this CPU)')`` or ``('bf16', 'bf16 (set in the recipe)')``. Raises ``BertkitError`` for a
    precision this device cannot run."""
    on = (on or device()).split(":")[0]
    if precision not in PRECISIONS:
        raise BertkitError(f"unknown precision '{precision}'.", f"use one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        _check_runs(precision, on)
        return precision, f"{precision} (set in the recipe)"
    where = {"cpu": "this CPU", "cuda": "this GPU"}.get(on)
    if where is None:
        return "fp32", f"auto -> fp32 (mixed precision is not probed on {on})"
    low = [p for p in ("bf16", "fp16") if _can_run(p, on)]
    if not low:
        return "fp32", f"auto -> fp32 ({where} cannot run bf16 autocast)"
    forced = os.environ.get(PROBE_ENV)
    speeds = _forced_speeds(forced, ["fp32", *low]) if forced else _probe(on, hidden or HIDDEN)["gflops"]
    chosen = choose(speeds)
    named = chosen if chosen != "fp32" else max((p for p in low if p in speeds), key=speeds.get, default=None)
    if named is None:  # only fp32 was forced
        return "fp32", f"auto -> fp32 (only fp32 in {PROBE_ENV})"
    ratio = speeds[named] / speeds["fp32"]
    note = f", under the {MARGIN:.2f}x margin" if chosen == "fp32" and ratio > 1 else ""
    source = f", from {PROBE_ENV}" if forced else ""
    return chosen, f"auto -> {chosen} ({named} matmul {_times(ratio)} fp32 on {where}{note}{source})"


def choose(speeds: dict[str, float]) -> str:
    """The precision to run in, given the speed of each: fp32 unless bf16 beats it by ``MARGIN``, and
    fp16 only if it also beats that choice by ``MARGIN`` (bf16 needs no loss scaling and has fp32's range)."""
    chosen = "fp32"
    for candidate in ("bf16", "fp16"):
        if candidate in speeds and speeds[candidate] >= MARGIN * speeds[chosen]:
            chosen = candidate
    return chosen


def _times(ratio: float) -> str:
    return f"{ratio:.2f}x" if ratio < 10 else f"{ratio:.1f}x"


def _can_run(precision: str, on: str) -> bool:
    if precision == "fp32":
        return True
    if precision == "fp16":
        return on == "cuda"
    return bf16_supported(on)


def _check_runs(precision: str, on: str) -> None:
    if on not in ("cpu", "cuda") or _can_run(precision, on):
        return
    if precision == "fp16":
        other = "bf16 or fp32" if bf16_supported("cpu") else "fp32"
        raise BertkitError("precision: fp16 was asked for, but this run is on a CPU.",
                           f"fp16 autocast is a GPU feature; use precision={other} on a CPU")
    if on == "cpu":
        raise BertkitError("precision: bf16 was asked for, but this CPU cannot run bf16 autocast (a test bf16 matmul failed).",
                           "use precision=fp32, or precision=auto to measure what runs fastest here")
    raise BertkitError(f"precision: bf16 was asked for, but this GPU ({_machine('cuda')}) does not support bf16.",
                       "use precision=fp16, or precision=auto to measure what runs fastest here")


@lru_cache(maxsize=None)
def bf16_supported(on: str) -> bool:
    """Whether bf16 autocast runs here at all (fast or not): CUDA asks torch; a CPU tries a tiny matmul."""
    import torch

    if on == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        with torch.no_grad(), torch.autocast(device_type=on, dtype=torch.bfloat16):
            out = torch.nn.functional.linear(torch.ones(4, 8, device=on), torch.ones(8, 8, device=on))
        return out.dtype == torch.bfloat16 and bool((out == 8).all())
    except Exception:  # any failure (no kernel, unsupported device type) means it cannot run here
        return False


def _forced_speeds(text: str, allowed: list[str]) -> dict[str, float]:
    """The speeds given in ``BERTKIT_PRECISION_PROBE``, kept to the precisions this device can run."""
    try:
        given = json.loads(text)
        speeds = {str(k): float(v) for k, v in given.items()}
    except (ValueError, TypeError, AttributeError) as exc:
        raise BertkitError(f"{PROBE_ENV} must be a JSON object of speeds, got {text!r}.",
                           f'set it like {PROBE_ENV}=\'{{"fp32": 100, "bf16": 50}}\', or unset it to measure') from exc
    unknown = sorted(set(speeds) - {"fp32", "bf16", "fp16"})
    if unknown or speeds.get("fp32", 0) <= 0:
        raise BertkitError(f"{PROBE_ENV} needs a positive 'fp32' speed and only fp32, bf16 or fp16 keys, got {text!r}.",
                           f'set it like {PROBE_ENV}=\'{{"fp32": 100, "bf16": 50}}\', or unset it to measure')
    return {p: v for p, v in speeds.items() if p in allowed}


@lru_cache(maxsize=None)
def _probe(on: str, hidden: int) -> dict:
    """This host's cache entry for (device, hidden size), measured now if the cache file lacks it."""
    key = f"{on} | {_machine(on)} | torch {_torch_version()} | hidden {hidden}"
    path = cache_dir() / CACHE_FILE
    entries = _read_cache(path)
    entry = entries.get(key)
    if isinstance(entry, dict) and isinstance(entry.get("gflops"), dict) and entry["gflops"].get("fp32"):
        return entry
    gflops = {p: round(_gflops(p, on, hidden), 1) for p in ("fp32", "bf16", "fp16") if _can_run(p, on)}
    entry = {"gflops": gflops, "ratio": {p: round(v / gflops["fp32"], 3) for p, v in gflops.items() if p != "fp32"},
             "choice": choose(gflops), "measured": time.strftime("%Y-%m-%dT%H:%M:%S")}
    _write_cache(path, {**entries, key: entry})
    return entry


def _gflops(precision: str, on: str, hidden: int) -> float:
    """GFLOP/s of a transformer layer's widest matmul in this precision, the best of several timings."""
    import torch

    x = torch.randn(TOKENS, hidden, device=on)
    w = torch.randn(4 * hidden, hidden, device=on)  # nn.Linear's (out, in) layout
    flop = 2 * TOKENS * hidden * 4 * hidden
    sync = torch.cuda.synchronize if on == "cuda" else (lambda: None)

    def seconds(calls: int) -> float:
        sync()
        start = time.perf_counter()
        for _ in range(calls):
            torch.nn.functional.linear(x, w)
        sync()
        return (time.perf_counter() - start) / calls

    with torch.no_grad(), autocast(precision, on):
        seconds(1)  # warm-up: kernel choice, weight layouts, the CUDA context
        best = seconds(1)
        calls = max(1, int(SAMPLE_S / max(best, 1e-9)))
        spent, samples = best, 1
        while samples < 3 or (spent < BUDGET_S and samples < 20):
            taken = seconds(calls)
            best, spent, samples = min(best, taken), spent + taken * calls, samples + 1
    return flop / best / 1e9


def cache_dir() -> Path:
    """Where bertkit keeps what it measured about this host."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bertkit"


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # absent, unreadable or damaged: measure again and rewrite it
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(path: Path, entries: dict) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(entries, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)  # whole or not at all, if two processes probe at once
    except OSError:  # an unwritable cache only means measuring again next time
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


def _machine(on: str) -> str:
    if on == "cuda":
        import torch

        return torch.cuda.get_device_name(torch.cuda.current_device())
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _torch_version() -> str:
    import torch

    return torch.__version__


def autocast(precision: str, on: str):
    """A context manager that runs the forward pass in the chosen precision."""
    import contextlib

    import torch

    if precision == "bf16":
        return torch.autocast(device_type=on, dtype=torch.bfloat16)
    if precision == "fp16" and on == "cuda":
        return torch.autocast(device_type=on, dtype=torch.float16)
    return contextlib.nullcontext()
