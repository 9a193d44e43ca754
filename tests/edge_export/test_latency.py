"""edge_export.latency: timing harness, torch baseline, MAC count and the physical reference."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from edge_export.latency import (
    LatencyReport,
    benchmark,
    benchmark_predictor,
    count_macs,
    latency_table,
    physical_reference,
    physical_reference_ms,
    torch_benchmark,
    torch_predict_fn,
)


def _x(n, size=32):
    return np.random.default_rng(0).normal(size=(n, 3, size, size)).astype(np.float32)


def test_benchmark_measures_what_the_function_costs():
    def sleepy(x):  # 2 ms per call, whatever the batch
        time.sleep(0.002)
        return np.zeros((len(x), 2), np.float32)

    r = benchmark(sleepy, _x(3), _x(8), warmup=1, iters=10, target="sleepy")
    assert r.target == "sleepy" and r.batch == 8 and r.iters == 10
    assert 2.0 <= r.p50_ms <= r.p95_ms < 50
    assert 8 / 0.05 < r.throughput_ips <= 8 / 0.002
    with pytest.raises(ValueError, match="x1"):
        benchmark(sleepy, np.zeros((0, 3, 4, 4)), _x(2))


def test_count_macs_matches_a_hand_count():
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=2, padding=1),  # 16x16 out: 8*256*3*9
        torch.nn.Conv2d(8, 8, 3, padding=1, groups=8),  # depthwise: 8*256*1*9
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 4),  # 32
    )
    assert count_macs(net, 32) == 8 * 256 * 27 + 8 * 256 * 9 + 32


def test_physical_reference_and_torch_baseline_on_the_real_model(tiny_onnx):
    from training.model import build_model

    torch.manual_seed(0)
    model = build_model(2, width=4, image_size=32).eval()
    threads = torch.get_num_threads()
    ref = physical_reference(model, 32, gflops=10.0)
    assert ref.macs == count_macs(model, 32) > 0
    assert ref.ms == pytest.approx(2 * ref.macs / 10e9 * 1e3)
    assert 0 < physical_reference_ms(model, 32) < ref.ms * 10  # any CPU beats 1 GFLOP/s
    with torch.inference_mode():
        expected = model(torch.from_numpy(_x(2))).numpy()
    np.testing.assert_array_equal(torch_predict_fn(model)(_x(2)), expected)
    eager = torch_benchmark(model, _x(4), _x(16), warmup=2, iters=10)
    assert torch.get_num_threads() == threads  # restored
    assert eager.target == "torch eager" and eager.threads == 1 and eager.batch == 16
    onnx = benchmark_predictor(tiny_onnx.path, "onnx", _x(4), _x(16), warmup=2, iters=10)
    assert onnx.target == "onnx" and onnx.p50_ms > 0 and onnx.throughput_ips > 0
    table = latency_table([eager, onnx], reference=ref)
    assert "| torch eager |" in table and "1.00x" in table and "physical reference" in table


def test_latency_table_ratios():
    a = LatencyReport("torch eager", 2.0, 3.0, 32, 100.0, threads=1)
    b = LatencyReport("int8", 0.5, 0.6, 32, 900.0, threads=1)
    rows = latency_table([a, b]).splitlines()
    assert rows[2].split("|")[4].strip() == "1.00x" and rows[3].split("|")[4].strip() == "0.25x"
    assert b.to_metadata()["p50_ms"] == 0.5
