"""Checkpoint → ONNX (with the three PReLU lowerings) → the model directory with its manifest."""
