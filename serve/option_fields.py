"""`serve`'s options and the Settings fields they set (FIELDS): the one table for an option's field and
units, read by the command line, by the environment defaults below and by tests/serve/test_settings.py.
Apart from the command itself so that its long list of options stays a page of its own."""

import os
from collections.abc import Mapping

from prelu_deploy.errors import UsageError

MB, KB = 1 << 20, 1 << 10
_SAME = (lambda v: v, lambda v: v)
# option → (the Settings field it sets, option → field units, field → option units): Settings holds the
# defaults; tests/serve/test_settings.py holds each option's declared default equal to its field's.
FIELDS = {
    **{
        name: (name, *_SAME)
        for name in (
            "repo",
            "host",
            "auth",
            "model_control",
            "backend",
            "device",
            "max_batch_size",
            "max_queue_delay_ms",
            "max_queue",
            "instances",
            "threads",
            "workers",
            "grpc_port",
            "max_images",
            "max_pixels",
            "max_request_pixels",
            "max_decodes",
            "limit_concurrency",
        )
    },
    "max_body_mb": ("max_body_bytes", lambda v: int(v * MB), lambda v: v / MB),
    "max_header_kb": ("max_header_bytes", lambda v: int(v * KB), lambda v: v / KB),
    "max_header_line_kb": ("max_header_line_bytes", lambda v: int(v * KB), lambda v: v / KB),
    "header_timeout": ("header_timeout_s", *_SAME),
    "body_timeout": ("body_timeout_s", *_SAME),
    "shutdown_timeout": ("shutdown_timeout_s", *_SAME),
    "poll_interval": ("poll_interval_s", *_SAME),
}


def field_value(option: str, value):
    """An option's value in the units of the Settings field it sets (FIELDS)."""
    return FIELDS[option][1](value)


class EnvironmentDefaults(Mapping):
    """click's default_map for `serve`: an option left out takes PRELU_DEPLOY_<FIELD> when that is set, read
    and checked by Settings (pydantic-settings) — imported only then, so `--help` stays torch- and pydantic-free."""

    def _variable(self, option: str) -> str | None:
        from_env = option in FIELDS and f"PRELU_DEPLOY_{FIELDS[option][0].upper()}"
        return from_env if from_env and from_env in os.environ else None

    def __contains__(self, option) -> bool:
        return self._variable(option) is not None

    def __getitem__(self, option: str):
        if (variable := self._variable(option)) is None:
            raise KeyError(option)
        from pydantic import ValidationError

        from prelu_deploy.serve.settings import Settings

        field, _, to_option = FIELDS[option]
        try:
            return to_option(getattr(Settings(), field))
        except ValidationError as err:
            why = next((e["msg"] for e in err.errors() if e["loc"] == (field,)), None)
            if why is None:  # another variable is the bad one: say which
                bad = err.errors()[0]
                variable, why = f"PRELU_DEPLOY_{str(bad['loc'][0]).upper()}", bad["msg"]
            raise UsageError(f"{variable}={os.environ.get(variable, '')!r}: {why}") from None

    def __iter__(self):
        return iter(option for option in FIELDS if option in self)

    def __len__(self) -> int:
        return sum(1 for _ in self)
