"""The test suite's own machinery: make test's two workers keep each xdist_group on one worker."""

import pytest

from .conftest import REPO

pytest_plugins = ["pytester"]


@pytest.mark.slow  # a whole pytest session with two worker processes
def test_an_xdist_group_runs_on_one_worker(pytester):
    pytester.makeconftest(f"import sys\nsys.path.insert(0, {str(REPO)!r})\n"
                          "from tests.conftest import pytest_collection_modifyitems  # the hook under test\n")
    pytester.makepyfile(test_grouped="""
        import os, time, pytest
        pytestmark = pytest.mark.xdist_group("g")

        @pytest.mark.parametrize("i", range(4))
        def test_grouped(i):
            time.sleep(0.2)
            print("WORKER", os.environ["PYTEST_XDIST_WORKER"])
        """, test_free="""
        import time
        def test_a(): time.sleep(0.2)
        def test_b(): time.sleep(0.2)
        """)
    result = pytester.runpytest_subprocess("-n", "2", "--dist", "loadgroup", "-p", "no:randomly", "-rA")
    result.assert_outcomes(passed=6)
    workers = {line.split()[-1] for line in result.outlines if line.startswith("WORKER ")}
    assert len(workers) == 1, result.outlines  # all four on one worker
