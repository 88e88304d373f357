"""The channel-shared PReLU custom op: its ONNX function definition and a NumPy reference (the
TensorRT plugin and its GPU kernel join it with the TensorRT issue)."""
