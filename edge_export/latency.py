"""Latency of every export target on the same inputs, beside torch eager and a physical floor.

- :func:`benchmark`: any ``predict_fn(x) -> logits``: batch-1 p50/p95 latency (one input per
  call, ``iters`` timed calls after ``warmup``) and batched throughput (images/s on ``xb``).
- :func:`benchmark_predictor`: the same for an exported file through
  :class:`edge_export.runtime.Predictor` (batch-1 and batched runs may use different thread
  counts: edge boxes score one frame at a time on one core, batch jobs use them all).
- :func:`torch_predict_fn` / :func:`torch_benchmark`: the torch-eager baseline
  (``torch.inference_mode``, eval mode).
- :func:`physical_reference_ms`: the model's multiply-accumulates (forward hooks over
  ``Conv2d`` / ``Linear``) divided by this CPU's float32 GEMM throughput measured in-process:
  what one frame would cost if every MAC ran at matmul speed -- a floor no runtime beats, and
  the yardstick for how much each runtime leaves on the table.
- :func:`latency_table`: a markdown table with ratios to the torch-eager batch-1 p50.

torch is imported inside the functions that need it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = [
    "LatencyReport",
    "PhysicalReference",
    "benchmark",
    "benchmark_predictor",
    "torch_benchmark",
    "torch_predict_fn",
    "count_macs",
    "gemm_gflops",
    "physical_reference_ms",
    "physical_reference",
    "latency_table",
]


@dataclass(frozen=True)
class LatencyReport:
    """Latency and throughput of one target.

    Attributes
    ----------
    target
        Name shown in tables (``torch eager``, ``onnx``, ``int8``, ``openvino`` ...).
    p50_ms, p95_ms
        Median and 95th percentile wall time of one batch-1 call, milliseconds.
    batch
        Batch size of the throughput run.
    throughput_ips
        Images per second at ``batch``.
    threads, batch_threads
        Intra-op threads of the batch-1 and batched runs (``None``: the runtime's default).
    iters
        Timed batch-1 calls.
    """

    target: str
    p50_ms: float
    p95_ms: float
    batch: int
    throughput_ips: float
    threads: int | None = None
    batch_threads: int | None = None
    iters: int = 0

    def to_metadata(self) -> dict[str, Any]:
        """JSON-ready dict (asset metadata)."""
        return asdict(self)


@dataclass(frozen=True)
class PhysicalReference:
    """The compute floor of one batch-1 forward pass.

    Attributes
    ----------
    macs
        Multiply-accumulates of one image (Conv2d and Linear layers).
    gemm_gflops
        Measured float32 matmul throughput, GFLOP/s (2 FLOPs per MAC).
    ms
        ``2 * macs / gemm_gflops`` in milliseconds.
    threads
        Threads the GEMM ran with.
    """

    macs: int
    gemm_gflops: float
    ms: float
    threads: int

    def to_metadata(self) -> dict[str, Any]:
        return asdict(self)


def _as_batch(x: np.ndarray, name: str) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 4 or len(x) == 0:
        raise ValueError(f"{name} must be a non-empty float32 (N, 3, S, S) batch, got {x.shape}")
    return x


def benchmark(
    predict_fn: Callable[[np.ndarray], Any],
    x1: np.ndarray,
    xb: np.ndarray,
    *,
    warmup: int = 10,
    iters: int = 100,
    target: str = "custom",
    batch_fn: Callable[[np.ndarray], Any] | None = None,
    batch_iters: int | None = None,
    threads: int | None = None,
    batch_threads: int | None = None,
) -> LatencyReport:
    """Time ``predict_fn`` one image at a time, then on a batch.

    Parameters
    ----------
    predict_fn
        float32 (n, 3, S, S) -> logits; called with ``x1[i : i + 1]`` for batch 1.
    x1
        float32 (M, 3, S, S): batch-1 inputs, cycled through (M >= 1).
    xb
        float32 (B, 3, S, S): the throughput batch.
    warmup
        Untimed calls before each measurement (allocations, kernel selection, caches).
    iters
        Timed batch-1 calls (p50/p95 over these).
    target
        Name of the report.
    batch_fn
        Function for the batched run (default ``predict_fn``), e.g. a session with more threads.
    batch_iters
        Timed batched calls (default ``max(3, iters // 10)``).
    threads, batch_threads
        Recorded in the report (the functions own their thread settings).
    """
    x1, xb = _as_batch(x1, "x1"), _as_batch(xb, "xb")
    if iters < 1 or warmup < 0:
        raise ValueError(f"need iters >= 1 and warmup >= 0, got {iters}, {warmup}")
    for i in range(warmup):
        predict_fn(x1[i % len(x1) : i % len(x1) + 1])
    times = np.empty(iters)
    for i in range(iters):
        one = x1[i % len(x1) : i % len(x1) + 1]
        t0 = time.perf_counter()
        predict_fn(one)
        times[i] = time.perf_counter() - t0
    fn = batch_fn or predict_fn
    n_batch = batch_iters if batch_iters is not None else max(3, iters // 10)
    for _ in range(max(1, warmup // 5)):
        fn(xb)
    t0 = time.perf_counter()
    for _ in range(n_batch):
        fn(xb)
    elapsed = time.perf_counter() - t0
    return LatencyReport(
        target=target,
        p50_ms=float(np.percentile(times, 50) * 1e3),
        p95_ms=float(np.percentile(times, 95) * 1e3),
        batch=len(xb),
        throughput_ips=float(len(xb) * n_batch / elapsed),
        threads=threads,
        batch_threads=batch_threads,
        iters=iters,
    )


def benchmark_predictor(
    path: str | os.PathLike,
    target: str,
    x1: np.ndarray,
    xb: np.ndarray,
    *,
    threads: int | None = 1,
    batch_threads: int | None = 1,
    warmup: int = 10,
    iters: int = 100,
    name: str | None = None,
) -> LatencyReport:
    """:func:`benchmark` of an exported file through :class:`edge_export.runtime.Predictor`.

    Parameters
    ----------
    path, target
        As for :class:`Predictor` (``onnx``, ``int8``, ``openvino``).
    threads
        Intra-op threads for batch 1 (default 1: lowest latency, no contention).
    batch_threads
        Intra-op threads for the batched run (default 1; ``None``: all cores). Use more only
        on an otherwise idle machine: on shared cores extra threads wait on each other.
    name
        Report name (default ``target``).
    """
    from edge_export.runtime import Predictor

    single = Predictor(path, target, threads=threads)
    batched = single if batch_threads == threads else Predictor(path, target, threads=batch_threads)
    return benchmark(
        single.logits,
        x1,
        xb,
        warmup=warmup,
        iters=iters,
        target=name or target,
        batch_fn=batched.logits,
        threads=threads,
        batch_threads=batch_threads,
    )


@contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def torch_predict_fn(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    """The torch-eager baseline as a ``predict_fn``: float32 (N, 3, S, S) -> float32 (N, K).

    A CPU copy of ``model`` in eval mode, run under ``torch.inference_mode``; the numpy ->
    tensor -> numpy conversions are part of each call, as they are for every runtime. Threads
    are torch's global setting (``torch.set_num_threads``).
    """
    import copy

    import torch

    net = copy.deepcopy(model).to("cpu").eval()

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return net(torch.from_numpy(np.ascontiguousarray(x, np.float32))).numpy()

    return run


def torch_benchmark(
    model: Any,
    x1: np.ndarray,
    xb: np.ndarray,
    *,
    threads: int | None = 1,
    batch_threads: int | None = 1,
    warmup: int = 10,
    iters: int = 100,
    name: str = "torch eager",
) -> LatencyReport:
    """The torch-eager baseline: ``model`` in eval mode on CPU under ``torch.inference_mode``.

    Thread counts are set with ``torch.set_num_threads`` for each run and restored afterwards.
    The numpy -> tensor -> numpy conversions are timed, as they are for every other runtime.
    """
    run = torch_predict_fn(model)
    x1, xb = _as_batch(x1, "x1"), _as_batch(xb, "xb")
    with _torch_threads(threads):
        single = benchmark(run, x1, x1[:1], warmup=warmup, iters=iters, batch_iters=1)
    with _torch_threads(batch_threads):
        batched = benchmark(run, x1[:1], xb, warmup=warmup, iters=1)
    return LatencyReport(
        target=name,
        p50_ms=single.p50_ms,
        p95_ms=single.p95_ms,
        batch=batched.batch,
        throughput_ips=batched.throughput_ips,
        threads=threads,
        batch_threads=batch_threads,
        iters=iters,
    )


def count_macs(model: Any, image_size: int) -> int:
    """Multiply-accumulates of one (1, 3, S, S) forward pass over ``Conv2d`` and ``Linear``.

    A convolution costs ``out_elements * (in_channels / groups) * kh * kw``; a linear layer
    ``in_features * out_features``. Elementwise ops, pooling and BatchNorm (folded on export)
    are not counted.
    """
    import copy

    import torch
    from torch import nn

    net = copy.deepcopy(model).to("cpu").eval()
    total = [0]

    def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total[0] += output.numel() * (module.in_channels // module.groups) * kh * kw
        elif isinstance(module, nn.Linear):
            total[0] += output.numel() * module.in_features

    handles = [
        m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.Conv2d | nn.Linear)
    ]
    try:
        with torch.inference_mode():
            net(torch.zeros(1, 3, image_size, image_size))
    finally:
        for h in handles:
            h.remove()
    return int(total[0])


def gemm_gflops(*, n: int = 512, threads: int = 1, seconds: float = 0.3) -> float:
    """Measured float32 matmul throughput (torch, ``n`` x ``n`` by ``n`` x ``n``), GFLOP/s.

    Repeats the product for about ``seconds`` after one warm-up and keeps the best of 3 runs
    (the machine's capability, not its noise).
    """
    import torch

    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen)
    b = torch.randn(n, n, generator=gen)
    best = 0.0
    with _torch_threads(threads), torch.inference_mode():
        torch.mm(a, b)
        for _ in range(3):
            reps, t0 = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - t0) < seconds / 3 or reps == 0:
                torch.mm(a, b)
                reps += 1
            best = max(best, 2.0 * n**3 * reps / elapsed / 1e9)
    return best


def physical_reference(
    model: Any, image_size: int, *, threads: int = 1, gflops: float | None = None
) -> PhysicalReference:
    """MACs of one image over measured GEMM throughput (see :class:`PhysicalReference`)."""
    macs = count_macs(model, image_size)
    rate = gflops if gflops is not None else gemm_gflops(threads=threads)
    return PhysicalReference(
        macs=macs, gemm_gflops=rate, ms=2.0 * macs / (rate * 1e9) * 1e3, threads=threads
    )


def physical_reference_ms(model: Any, image_size: int, *, threads: int = 1) -> float:
    """Milliseconds one (1, 3, S, S) forward pass would take at this CPU's GEMM throughput."""
    return physical_reference(model, image_size, threads=threads).ms


def latency_table(
    reports: Sequence[LatencyReport],
    *,
    baseline: str = "torch eager",
    reference: PhysicalReference | None = None,
) -> str:
    """Markdown table: p50, p95, ratio of p50 to ``baseline``'s, throughput, batch, threads."""
    base = next((r for r in reports if r.target == baseline), None)
    lines = [
        f"| target | p50 ms (batch 1) | p95 ms | p50 / {baseline} | images/s (batch) | threads |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in reports:
        ratio = f"{r.p50_ms / base.p50_ms:.2f}x" if base and base.p50_ms > 0 else "-"
        lines.append(
            f"| {r.target} | {r.p50_ms:.3f} | {r.p95_ms:.3f} | {ratio} | "
            f"{r.throughput_ips:,.0f} ({r.batch}) | {r.threads} / {r.batch_threads or 'all'} |"
        )
    if reference is not None:
        ratio = f"{reference.ms / base.p50_ms:.2f}x" if base and base.p50_ms > 0 else "-"
        lines.append(
            f"| physical reference ({reference.macs / 1e6:.2f} MMAC at "
            f"{reference.gemm_gflops:.1f} GFLOP/s) | {reference.ms:.3f} | | {ratio} | | "
            f"{reference.threads} |"
        )
    return "\n".join(lines)
