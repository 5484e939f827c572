"""Fixtures of the data tests: the real registry sample data (fetched once; skipped only when unreachable)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def registry_root():
    """The data root with the required registry sources fetched (a no-op after ``morse fetch-data``).

    Skips with the fetch error only when the registry cannot be reached; any other failure (checksum, archive
    layout) is a test failure.
    """
    from morse.data.fetch import FetchUnavailableError, data_root, fetch

    try:
        fetch()
    except FetchUnavailableError as exc:
        pytest.skip(f"registry sample data unavailable (network?): {exc}")
    return data_root()
