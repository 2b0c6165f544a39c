import pytest


@pytest.fixture(autouse=True)
def _no_leftovers(harness_no_leftovers: None) -> None:
    """Every test here must leave no harness process, port or temp dir behind."""
