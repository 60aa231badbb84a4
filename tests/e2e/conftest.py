import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Everything under tests/e2e runs against real control planes.
    for item in items:
        if "/e2e/" in str(item.path):
            item.add_marker(pytest.mark.cluster)
