"""config.pbtxt for Triton Inference Server (model_config.proto, text format)."""

PLATFORMS = {"onnx": "onnxruntime_onnx", "plan": "tensorrt_plan"}


def config_pbtxt(name: str, platform: str, max_batch: int, inputs: list[tuple[str, list[int]]],
                 outputs: list[tuple[str, list[int]]], max_queue_delay_us: int = 100) -> str:
    """Inputs and outputs as (name, dims without the batch dimension), all FP32."""

    def tensors(specs):
        return ",\n".join(f'  {{ name: "{n}" data_type: TYPE_FP32 dims: [ {", ".join(map(str, d))} ] }}' for n, d in specs)

    return (f'name: "{name}"\nplatform: "{PLATFORMS[platform]}"\nmax_batch_size: {max_batch}\n'
            f"input [\n{tensors(inputs)}\n]\noutput [\n{tensors(outputs)}\n]\n"
            f"dynamic_batching {{ max_queue_delay_microseconds: {max_queue_delay_us} }}\n"
            "instance_group [ { count: 1 kind: KIND_AUTO } ]\n")
