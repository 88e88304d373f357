"""Small versions of every zoo entry, for tests that build them all."""

SMALL = {
    "model_a": {"width": 0.05, "input_size": 64},
    "model_b": {"width": 0.05, "input_size": 64},
    "model_c": {"width": 0.05, "input_size": 64},
    "alexnet_prelu": {"width": 0.1, "input_size": 96},
    "cifar_prelu": {"width": 0.25},
    "digits_prelu": {},
}
