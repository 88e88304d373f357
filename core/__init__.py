"""prelu-deploy: PReLU classifiers from a PyTorch checkpoint to ONNX, TensorRT and HTTP.

This folder (core/) is the root of the `prelu_deploy` namespace: the console entry point (`main.py`) and the
one error type every part raises (`errors.py`). The work itself lives in models/, export/, plugins/
and serve/.
"""

__version__ = "0.1.0"
