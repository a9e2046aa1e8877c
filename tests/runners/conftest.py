"""Fixtures for the slurm tests: the test bed's settings and a folder on its shared filesystem."""

import pytest

from .slurm_helpers import _shared_fixture, _testbed_fixture

testbed = pytest.fixture(_testbed_fixture)
shared = pytest.fixture(_shared_fixture)
