"""Where and how models run: device, compute dtype and attention implementation, chosen once."""

from __future__ import annotations

import contextlib
import functools
import time
from dataclasses import dataclass

import torch

from harness.configs import Compute
from harness.errors import UserError

DTYPES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16,
          "float16": torch.float16, "fp32": torch.float32, "float32": torch.float32}
ATTENTION = ("auto", "sdpa", "eager", "flash_attention_2")
DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def pick_device(device: str | None) -> torch.device:
    if device in ("auto", None):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device} was asked for but no CUDA GPU is visible; use --device cpu")
    try:
        return torch.device(device)
    except RuntimeError:
        raise UserError(f"unknown --device '{device}'; use auto, cpu, cuda or cuda:N") from None


def pick_dtype(dtype: str | None, device: torch.device) -> torch.dtype:
    if dtype in ("auto", None):
        if device.type == "cuda":
            # a plan made where the GPU is absent (a dry run on a laptop) assumes a bf16 one
            bf16 = not torch.cuda.is_available() or torch.cuda.is_bf16_supported()
            return torch.bfloat16 if bf16 else torch.float16
        return torch.float32
    if dtype not in DTYPES:
        raise UserError(f"unknown --dtype '{dtype}'; use auto, bf16, fp16 or fp32")
    return DTYPES[dtype]


def pick_attention(attn: str | None, device: torch.device, dtype: torch.dtype) -> str:
    if attn not in ("auto", None):
        if attn not in ATTENTION:
            raise UserError(f"unknown --attn '{attn}'; use {', '.join(ATTENTION)}")
        return attn
    if device.type == "cuda" and dtype in (torch.bfloat16, torch.float16):
        try:
            import flash_attn  # noqa: F401

            return "flash_attention_2"
        except ImportError:
            pass
    return "sdpa"


FP16_TRAINING = ("fine-tuning in fp16 (--dtype fp16, or --dtype auto on a GPU without bf16) is refused: it "
                 "would train without loss scaling; use --dtype fp32, or --dtype bf16 on a GPU that has it")


def planned_compute(device: str | None, dtype: str | None, attention: str | None) -> Compute:
    """The dtype and attention a run with these flags resolves to, known before any model loads
    (a plan's cells are keyed by it). A device that is not visible here (a dry run of a GPU job on
    a laptop) is planned as a bf16 GPU."""
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        dev = torch.device("cuda")
    else:
        dev = pick_device(device)
    dt = pick_dtype(dtype, dev)
    return Compute(DTYPE_NAMES[dt], pick_attention(attention, dev, dt))


@dataclass(frozen=True)
class Hardware:
    device: torch.device
    dtype: torch.dtype
    attention: str

    @classmethod
    def choose(cls, device: str | None = "auto", dtype: str | None = "auto", attention: str | None = "auto"):
        dev = pick_device(device)
        dt = pick_dtype(dtype, dev)
        return cls(dev, dt, pick_attention(attention, dev, dt))

    @property
    def compute(self) -> Compute:
        """The dtype and attention as a cell's key holds them."""
        return Compute(DTYPE_NAMES[self.dtype], self.attention)

    def refuse_fp16_training(self) -> None:
        """fp16 fine-tuning without loss scaling underflows its gradients: stop before any work."""
        if self.dtype == torch.float16:
            raise UserError(FP16_TRAINING)

    def describe(self) -> str:
        name = str(self.device)
        if self.device.type == "cuda":
            name += f" ({torch.cuda.get_device_name(self.device)})"
        return f"{name}, {str(self.dtype).replace('torch.', '')}, attention {self.attention}"

    def autocast(self):
        """Mixed precision for training: fp32 master weights, matmuls in the compute dtype."""
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def peak_flops(self) -> float:
        """The FLOP/s a large matmul reaches on this device in the compute dtype (measured once)."""
        return measured_peak_flops(str(self.device), self.dtype)

    def empty_cache(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


@functools.lru_cache(maxsize=None)
def measured_peak_flops(device: str, dtype: torch.dtype, size: int | None = None, repeats: int = 5) -> float:
    """Best FLOP/s of ``repeats`` square matmuls (2 n^3 FLOPs each): the distance to the limit that
    the records' ``peak_fraction`` is measured against."""
    dev = torch.device(device)
    n = size or (8192 if dev.type == "cuda" else 1024)
    a = torch.randn(n, n, device=dev, dtype=dtype)
    b = torch.randn(n, n, device=dev, dtype=dtype)
    best = float("inf")
    for _ in range(repeats + 1):  # the first call warms up
        if dev.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if dev.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return round(2 * n**3 / best, -6)
