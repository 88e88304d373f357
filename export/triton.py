"""config.pbtxt for Triton Inference Server (model_config.proto, text format), made from a model
entry and nothing else: it is what lets the same folder serve on Triton. prelu-deploy itself reads the
manifest, not this file (its batching is `serve`'s options)."""

from prelu_deploy.manifest import ModelEntry


def config_pbtxt(entry: ModelEntry, max_queue_delay_us: int = 100) -> str:
    """The entry's platform, batch limit and FP32 tensors (dims without the batch dimension)."""

    def tensors(specs):
        return ",\n".join(f'  {{ name: "{s.name}" data_type: TYPE_FP32 dims: [ {", ".join(map(str, s.dims))} ] }}' for s in specs)

    return (
        f'name: "{entry.name}"\nplatform: "{entry.platform}"\nmax_batch_size: {entry.max_batch_size}\n'
        f"input [\n{tensors([entry.input])}\n]\noutput [\n{tensors([entry.output])}\n]\n"
        f"dynamic_batching {{ max_queue_delay_microseconds: {max_queue_delay_us} }}\n"
        "instance_group [ { count: 1 kind: KIND_AUTO } ]\n"
    )
