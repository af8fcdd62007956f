"""Shared fixtures: contracts, generated web shop data, and a finished run of the default job."""
from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from contracts import load_contract

# Never probe the GCE metadata address when a test resolves Google credentials (google-auth reads
# this when it is imported, which happens later, in the tests).
os.environ.setdefault("NO_GCE_CHECK", "true")

# No test writes into the user's real default project (~/.config/pstream): commands that fall
# back to the default project directory (its audit log, for one) get a private temporary one.
_DEFAULT_PROJECT = tempfile.mkdtemp(prefix="pstream-test-project-")
atexit.register(shutil.rmtree, _DEFAULT_PROJECT, True)
os.environ["PSTREAM_PROJECT_DIR"] = _DEFAULT_PROJECT

REPO = Path(__file__).resolve().parent.parent
WEBSHOP = "strmprivacy/PrivacyEngineeringWorkshop/1.0.0"
SIMULATOR = "strmprivacy/example/1.5.0"


def setup_kwargs() -> dict:
    """The keyword arguments setup.py passes to setuptools.setup (install_requires, extras_require, ...)."""
    import setuptools
    captured = {}
    original, setuptools.setup = setuptools.setup, lambda **kwargs: captured.update(kwargs)
    try:
        exec(compile((REPO / "setup.py").read_text(), "setup.py", "exec"), {"__name__": "setup"})
    finally:
        setuptools.setup = original
    return captured


def repo_env() -> dict:
    """Environment for subprocesses that must import this checkout's packages."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
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


@pytest.fixture(scope="session")
def subjects_run(tmp_path_factory):
    """One real web shop run (1,500 rows, 80 customers) for the data-subject tests; copy it before changing it
    (pipeline_runs.copy_run)."""
    from pipeline_runs import webshop_run

    return webshop_run(tmp_path_factory.mktemp("subjects_run"))


# -- local cloud storage servers (tests/cloud_servers.py), one of each per test worker ----------
def _start_server(server_class):
    from cloud_servers import ServerUnavailable
    server = server_class()
    try:
        server.start()
    except ServerUnavailable as exc:
        if os.environ.get("CLOUD_SERVERS_REQUIRED") == "1":
            pytest.fail(f"CLOUD_SERVERS_REQUIRED=1 but {exc}", pytrace=False)
        pytest.skip(str(exc))
    return server


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server, authentication on: use s3_server.beam_flags() in Beam options."""
    from cloud_servers import MotoS3Server
    server = _start_server(MotoS3Server)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def gcs_server():
    """gcp-storage-emulator: give Beam gcs_server.beam_env(dir) as environment."""
    from cloud_servers import GcsEmulator
    server = _start_server(GcsEmulator)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def azurite_server():
    """Azurite's blob service: use --azure_connection_string=azurite_server.connection_string()."""
    from cloud_servers import AzuriteServer
    server = _start_server(AzuriteServer)
    yield server
    server.stop()
