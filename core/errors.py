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


class ExportError(PreluDeployError):
    """A model that cannot be exported, or a destination that cannot take it."""

    exit_code = 5


class ModelDirError(PreluDeployError):
    """A model directory that is missing, malformed or whose artifacts do not match its manifest."""

    exit_code = 6


class ParityError(PreluDeployError):
    """A runner whose outputs disagree with PyTorch beyond the stated tolerance."""

    exit_code = 7


class BenchError(PreluDeployError):
    """A benchmark target that cannot be reached or that failed every request."""

    exit_code = 8


class ListenError(PreluDeployError):
    """The server cannot listen where it was asked to: the port is taken, or the address is not ours."""

    exit_code = 9
