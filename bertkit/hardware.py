"""What the machine can do: the device to run on and whether bf16 autocast pays off there.

bf16 is chosen automatically (``precision: auto``) on GPUs that support it and on CPUs with AVX-512
BF16 or AMX, where bf16 matrix multiplies run several times faster than fp32. On other CPUs bf16
is emulated and slower, so ``auto`` stays in fp32 there.
"""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    import torch

    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def device() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def resolve_precision(precision: str, on: str | None = None) -> str:
    """'auto' -> 'bf16' where it is fast, else 'fp32'; explicit choices pass through."""
    if precision != "auto":
        return precision
    import torch

    on = on or device()
    if on == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if on == "cpu":
        return "bf16" if cpu_has_fast_bf16() else "fp32"
    return "fp32"


def autocast(precision: str, on: str):
    """A context manager that runs the forward pass in the chosen precision."""
    import contextlib

    import torch

    if precision == "bf16":
        return torch.autocast(device_type=on, dtype=torch.bfloat16)
    if precision == "fp16" and on == "cuda":
        return torch.autocast(device_type=on, dtype=torch.float16)
    return contextlib.nullcontext()
