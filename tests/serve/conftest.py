import pytest

from prelu_deploy.export.model_dir import export_model_dir


@pytest.fixture(scope="session")
def repo(tmp_path_factory, shipped):
    """A model repository holding the bundled digits model (leaky lowering) as `digits`; read-only for
    the tests that share it (a module that needs another defines its own `repo`)."""
    root = tmp_path_factory.mktemp("repo")
    export_model_dir(shipped, "digits", root, mode="leaky")
    return root
