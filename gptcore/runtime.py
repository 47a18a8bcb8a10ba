"""Where and how a model runs: the device, mixed precision, the ``torchrun`` process group, and peak FLOPs.

Shared by pretraining (``gptcore.train``), fine-tuning (``gptcore.finetune``), the model loader
(``gptcore.checkpoint.load_model``) and evaluation, so every entry point reads ``device="auto"``,
``precision="auto"`` and ``precision="bf16"`` the same way.
"""
from __future__ import annotations

import ctypes
import gc
import os
from contextlib import nullcontext
from pathlib import Path
from typing import ContextManager

import torch
import torch.distributed as dist

PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # "auto": bf16 where the device computes it natively, else fp32
# CPU feature flags (as /proc/cpuinfo spells them) of native bf16 arithmetic: AVX512_BF16 dot products, AMX tiles.
# Without them bf16 is emulated and autocast is slower than fp32.
NATIVE_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
CPUINFO = Path("/proc/cpuinfo")
# Dense bf16 tensor-core peaks (vendor datasheets), the usual denominator of model FLOPs utilisation.
PEAK_BF16_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12}


def init_distributed(device: str) -> bool:
    """Join the process group ``torchrun`` set up (``WORLD_SIZE`` > 1); True when this call created it."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return False
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return True


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` = CUDA when available, else CPU; a bare ``"cuda"`` is the local rank's GPU under ``torchrun``."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    resolved = torch.device(device)
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available: use device='cpu'")
        if resolved.index is None:
            resolved = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return resolved


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether the CPU has a ``NATIVE_BF16_CPU_FLAGS`` flag, read from ``cpuinfo`` (default: /proc/cpuinfo;
    where there is none, e.g. macOS, False)."""
    if cpuinfo is None:
        cpuinfo = CPUINFO.read_text() if CPUINFO.is_file() else ""
    flags = {flag for line in cpuinfo.splitlines() if line.startswith("flags") for flag in line.split(":", 1)[-1].split()}
    return any(flag in flags for flag in NATIVE_BF16_CPU_FLAGS)


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"auto"`` becomes ``"bf16"`` where ``device`` computes bf16 natively (a CPU with ``cpu_has_native_bf16``, a
    CUDA GPU with bf16 support) and ``"fp32"`` elsewhere; any other precision is returned as it is."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        native = torch.cuda.is_bf16_supported(including_emulation=False)
    else:
        native = device.type == "cpu" and cpu_has_native_bf16()
    return "bf16" if native else "fp32"


def autocast_context(precision: str, device: torch.device) -> ContextManager:
    """The context a forward pass runs in for ``precision`` (one of ``PRECISIONS``) on ``device``."""
    precision = resolve_precision(precision, device)
    if precision == "fp32":
        return nullcontext()
    if precision == "fp16":
        if device.type != "cuda":
            raise ValueError("precision 'fp16' needs a CUDA device (loss scaling); use 'bf16' on CPU")
        return torch.autocast("cuda", dtype=torch.float16)
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"{torch.cuda.get_device_name(device)} has no bf16 support: use precision='fp16'")
    return torch.autocast(device.type, dtype=torch.bfloat16)


def peak_flops(device: torch.device) -> float | None:
    """The device's dense bf16 peak (``PEAK_BF16_FLOPS``), or None for a CPU or an unlisted GPU."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((flops for key, flops in PEAK_BF16_FLOPS.items() if key in name), None)


def release_freed_memory() -> None:
    """Hand the memory a finished training freed back to the OS, so that what the process runs next (a flow's gate,
    its manifest) does not stack on top of training's peak RSS: glibc keeps freed heap pages mapped otherwise."""
    gc.collect()
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (macOS, musl): their allocators return memory differently
        return
    libc.malloc_trim(0)
