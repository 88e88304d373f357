"""Runners: one small object per backend (ONNX Runtime, TensorRT, torch, torch.compile) behind one
protocol and one factory, and parity, which compares any of them with PyTorch. Parity, the server
and the benchmarks all run models through here and never know which backend they hold."""
