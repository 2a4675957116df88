"""Fixtures for the sluice_feed tests: a real packed run directory.

``SLUICE_TEST_RUN`` names one (the Rust test ``python_package_tests_pass`` creates it with
``sluice run configs/quickstart_packed.yaml``); otherwise the same run is made here with
``target/debug/sluice`` when it is built.
"""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "python"))  # the package in this tree, not an older install


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory):
    d = os.environ.get("SLUICE_TEST_RUN")
    if d:
        return d
    exe = os.path.join(ROOT, "target", "debug", "sluice")
    if not os.path.exists(exe):
        pytest.skip("set SLUICE_TEST_RUN to a packed run, or build target/debug/sluice")
    out = str(tmp_path_factory.mktemp("packed"))
    subprocess.run([exe, "run", "configs/quickstart_packed.yaml", "--out", out, "--no-progress", "-q"],
                   cwd=ROOT, check=True)
    return out


def need(module: str, component: str):
    """Import ``module``, or skip; with ``SLUICE_REQUIRE=all`` (CI) or naming ``component``,
    fail instead, so a CI run cannot go green by skipping (as ``tests/common.rs::skip``)."""
    req = [r.strip() for r in os.environ.get("SLUICE_REQUIRE", "").split(",")]
    if "all" in req or component in req:
        import importlib

        return importlib.import_module(module)
    return pytest.importorskip(module)
