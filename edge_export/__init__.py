"""Edge export: turn a champion checkpoint into artifacts that run on the line without torch.

One small module per target, each with the same interface (export -> verify -> benchmark):
:mod:`edge_export.onnx` (FP32 ONNX + parity gate), :mod:`edge_export.int8` (ONNX Runtime QDQ
INT8 + accuracy gate), :mod:`edge_export.openvino` (IR and NNCF INT8),
:mod:`edge_export.tensorrt` (engines, where TensorRT and an NVIDIA GPU exist),
:mod:`edge_export.latency` (p50/p95 and throughput); :mod:`edge_export.runtime` runs any of
them with numpy + onnxruntime/openvino only.

This package imports nothing at the top: import the submodule you need (torch is imported
inside the functions that need it, never by :mod:`edge_export.runtime`).
"""
