"""Shared fixtures: contracts, generated web shop data, and a finished run of the default job."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from contracts import load_contract

REPO = Path(__file__).resolve().parent.parent
WEBSHOP = "strmprivacy/PrivacyEngineeringWorkshop/1.0.0"
SIMULATOR = "strmprivacy/example/1.5.0"


def repo_env() -> dict:
    """Environment for subprocesses that must import this checkout's packages."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


@pytest.fixture(scope="session")
def webshop_contract():
    return load_contract(WEBSHOP)


@pytest.fixture(scope="session")
def simulator_contract():
    return load_contract(SIMULATOR)


@pytest.fixture(scope="session")
def default_run(tmp_path_factory):
    """`python -m pipelines.run` with no arguments, in a fresh directory: (cwd, stdout)."""
    cwd = tmp_path_factory.mktemp("default_run")
    proc = subprocess.run([sys.executable, "-m", "pipelines.run"], cwd=cwd, env=repo_env(),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return cwd, proc.stdout
