import pytest

from megabio.kernels import _extension


@pytest.fixture
def compiled():
    """Skip (with the reason) when the C++ extension is not built; the references are tested regardless."""
    if _extension.compiled_ops() is None:
        pytest.skip(_extension.status()["cpu_kernels"])
