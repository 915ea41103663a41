"""Helpers shared by benchmark scripts: machine description and BENCHMARKS.md output."""

from __future__ import annotations

import os
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

BENCHMARKS_MD = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} logical cores, Python {platform.python_version()}, "
            f"torch {torch.__version__}")


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def append_section(title: str, body: str) -> None:
    command = " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv])
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    text = (f"\n## {title}\n\n- date: {stamp}\n- machine: {machine()}\n"
            f"- command: `{command}`\n\n{body}\n")
    if not BENCHMARKS_MD.exists():
        BENCHMARKS_MD.write_text("# Benchmarks\n\nAppended by the scripts in `benchmarks/`.\n")
    with BENCHMARKS_MD.open("a") as fh:
        fh.write(text)


def publish(title: str, table: str, note: str, append: bool = True) -> None:
    """Print a result table with its note and, unless told not to, append both to
    BENCHMARKS.md with the machine, date and command."""
    print(table)
    print(note)
    if append:
        append_section(title, f"{table}\n\n{note}")


# --- model measurement helpers (params, MACs, latency, peak memory) -----------------------


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _cpu_sdpa_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query, key, value)


def count_macs(model: torch.nn.Module, *inputs: torch.Tensor) -> int:
    """Multiply-accumulates of one eval forward, from torch's FLOP counter (MACs = FLOPs / 2).

    Convolutions (depth-wise included), matmuls and attention are counted; element-wise
    work (BN, activations, gating products) is not, as is usual for MAC tables. The CPU
    kernel behind ``F.scaled_dot_product_attention`` has no formula of its own in torch,
    so the generic attention one is mapped onto it.
    """
    from torch.utils.flop_counter import FlopCounterMode

    mapping = {}
    cpu_sdpa = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if cpu_sdpa is not None:
        mapping[cpu_sdpa] = _cpu_sdpa_flops
    with torch.inference_mode(), FlopCounterMode(display=False, custom_mapping=mapping) as fc:
        model(*inputs)
    return fc.get_total_flops() // 2


def median_latency_ms(fn, repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    import statistics

    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


class PeakRSS:
    """Peak resident memory added by a call, in MiB.

    On Linux the kernel's high-water mark (VmHWM) is reset through /proc/self/clear_refs
    before the call and read after it; large allocations are routed to mmap so that
    freed tensors really leave the resident set between measurements (glibc otherwise
    keeps them in its heap, and a later call reusing that memory would look free).
    Elsewhere it falls back to the growth of ``ru_maxrss``, which only sees new
    process-wide peaks. :attr:`method` says which one was used.
    """

    def __init__(self, mmap_threshold: int = 64 * 1024) -> None:
        self._status = Path("/proc/self/status")
        self._clear = Path("/proc/self/clear_refs")
        self.exact = self._status.exists() and os.access(self._clear, os.W_OK)
        if self.exact:
            try:
                import ctypes

                libc = ctypes.CDLL("libc.so.6")
                libc.malloc_trim(0)
                libc.mallopt(-3, mmap_threshold)  # M_MMAP_THRESHOLD
            except (OSError, AttributeError):
                pass
        self.method = ("VmHWM − VmRSS before the call, high-water mark reset via "
                       "/proc/self/clear_refs" if self.exact
                       else "growth of resource.getrusage().ru_maxrss (new peaks only)")

    def _status_kib(self, key: str) -> int:
        for line in self._status.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        raise KeyError(key)

    def measure(self, fn) -> float:
        import gc
        import resource

        gc.collect()
        if self.exact:
            self._clear.write_text("5")
            before = self._status_kib("VmRSS")
            fn()
            return (self._status_kib("VmHWM") - before) / 1024
        unit = 1024 * 1024 if sys.platform == "darwin" else 1024  # bytes there, KiB on Linux
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        fn()
        return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / unit
