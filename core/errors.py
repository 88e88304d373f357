"""The one exception type of prelu-deploy: its message says what is wrong and how to fix it."""


class PreluDeployError(Exception):
    """A failure the user can act on. `exit_code` is what the CLI exits with (README: exit codes)."""

    exit_code = 1


class UsageError(PreluDeployError):
    """A bad argument: unknown architecture, wrong option value."""

    exit_code = 2


class CheckpointError(PreluDeployError):
    """A file that is not a usable checkpoint."""

    exit_code = 3


class DatasetError(PreluDeployError):
    """A dataset that cannot be read or does not fit the model."""

    exit_code = 4
