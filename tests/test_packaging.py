"""Packaging: extras split by role, and what each install really provides.

Two real environments are built here, without a network and without Docker: a fresh virtual
environment gets this package through pip (``pip --python VENV install --no-deps .``, a real
build and install, package data and the ``pstream`` script included) and exactly the
distributions that pip would resolve for a requirement, found from the installed metadata
(``Requires-Dist``, markers and extras evaluated) and linked from this interpreter's
site-packages. So an import that the install would not provide fails here as it would in the
image:

- **workers** (``pip install .``: install_requires, what Dataflow and Flink workers get through
  ``--setup_file``): ``python -m pipelines.run`` runs a batch job; the gateway's server, faker and
  the driver's stack are absent;
- **the image** (the Dockerfile's own ``pip install`` line): ``pstream`` and every command's
  module, ``python -m pipelines.run`` and ``python -m gateway`` start, and every third-party
  package that any module imports (at the top or inside a function) can be imported.
"""
from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from importlib.metadata import distribution
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from conftest import REPO, setup_kwargs
from pipelines.example_data import write_webshop_csv

OUR_PACKAGES = {"cli", "contracts", "controlplane", "driver", "gateway", "pipelines", "privacy", "schemas", "transforms"}
WORKER_PACKAGES = ("contracts", "privacy", "transforms", "pipelines", "schemas")
OTHER_EXTRAS = {"privacy/onthefly_duckdb.py": "analytics", "gateway/publish_kafka.py": "kafka"}
NOT_ON_WORKERS = ["uvicorn", "uvloop", "httptools", "faker"]   # aiohttp, websockets, httpx come with apache-beam[gcp]
ROLE_PACKAGES = {"uvicorn", "uvloop", "httptools", "websockets", "aiohttp", "httpx", "requests", "faker",
                 "pytest", "hypothesis"}


def dockerfile_extras() -> list[str]:
    match = re.search(r"pip install --no-cache-dir '\.\[([a-z,]+)\]'", (REPO / "Dockerfile").read_text())
    assert match, "the Dockerfile installs the package with an extra: pip install --no-cache-dir '.[...]'"
    return match.group(1).split(",")


def requirements(extras: list[str]) -> list[str]:
    kwargs = setup_kwargs()
    return [*kwargs["install_requires"], *(r for e in extras for r in kwargs["extras_require"][e])]


def closure(reqs: list[str]) -> dict:
    """Every distribution pip would install for ``reqs`` (as installed here), by canonical name."""
    found, todo, done = {}, [(Requirement(r), "") for r in reqs], set()
    while todo:
        req, extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        key = (canonicalize_name(req.name), frozenset(req.extras))
        if key in done:
            continue
        done.add(key)
        dist = found.setdefault(key[0], distribution(req.name))
        for text in dist.requires or []:
            todo += [(Requirement(text), e) for e in ["", *req.extras]]
    return found


def third_party_imports(package_dirs: list[Path], skip: set[str] = frozenset()) -> set[str]:
    """Top-level names of every absolute import in these packages (inside functions too)."""
    names = set()
    for directory in package_dirs:
        for path in directory.rglob("*.py"):
            if str(path.relative_to(REPO / "src")) in skip:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in OUR_PACKAGES and n != "__future__"}


def build_env(root: Path, extras: list[str]) -> Path:
    """A venv with this package installed by pip and the distributions of its requirements linked in."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    python = root / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    source = root.parent / f"{root.name}-source"   # a copy: pip builds in the tree it is given
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(REPO / "setup.py", source / "setup.py")
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
                              "--no-deps", str(source)], capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-2000:]
    ours = canonicalize_name(setup_kwargs()["name"])
    for name, dist in closure(requirements(extras)).items():
        if name == ours:
            continue
        for file in dist.files or []:
            relative = str(file)
            if relative.startswith("..") or os.path.isabs(relative):
                continue   # console scripts and data outside site-packages
            target = site / relative
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(dist.locate_file(file))
    return python


def run_in(python: Path, *args, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["NO_GCE_CHECK"] = "true"
    return subprocess.run([str(python), *args], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)


@pytest.fixture(scope="module")
def worker_env(tmp_path_factory):
    return build_env(tmp_path_factory.mktemp("worker-venv"), [])


@pytest.fixture(scope="module")
def image_env(tmp_path_factory):
    return build_env(tmp_path_factory.mktemp("image-venv"), dockerfile_extras())


def test_extras_are_split_by_role():
    kwargs = setup_kwargs()
    extras = kwargs["extras_require"]
    assert {"gateway", "workshop", "test", "kafka", "analytics"} <= set(extras)
    direct = {canonicalize_name(Requirement(r).name) for r in kwargs["install_requires"]}
    assert not direct & ROLE_PACKAGES, direct & ROLE_PACKAGES
    # what install_requires adds beyond Beam's own dependencies holds no gateway, HTTP or faker package
    beam = [r for r in kwargs["install_requires"] if Requirement(r).name == "apache-beam"]
    added = set(closure(kwargs["install_requires"])) - set(closure(beam))
    assert not added & ROLE_PACKAGES, added & ROLE_PACKAGES
    names = lambda extra: {canonicalize_name(Requirement(r).name) for r in extras[extra]}   # noqa: E731
    assert {"uvicorn", "websockets"} <= names("gateway") <= names("workshop") <= names("test")
    assert {"aiohttp", "faker"} <= names("workshop")
    assert "workshop" in dockerfile_extras()
    readme = (REPO / "README.md").read_text()
    first = re.search(r"```bash\n(.+)\n", readme).group(1)
    assert first.startswith("pip install -e '.[workshop]' && python -m pipelines.run"), first


def test_the_graph_runs_with_the_workers_install_only(worker_env, tmp_path):
    python = worker_env
    for name in NOT_ON_WORKERS:
        assert run_in(python, "-c", f"import {name}").returncode != 0, f"{name} is installed on workers"
    graph_imports = third_party_imports([REPO / "src" / p for p in WORKER_PACKAGES], skip=set(OTHER_EXTRAS))
    assert "faker" in graph_imports   # imported only when example data is made, and then with a clear message
    checked = sorted(graph_imports - {"faker"})
    result = run_in(python, "-c", "; ".join(f"import {name}" for name in checked))
    assert result.returncode == 0, result.stderr[-2000:]
    modules = [".".join(p.relative_to(REPO / "src").with_suffix("").parts)
               for package in WORKER_PACKAGES for p in (REPO / "src" / package).rglob("*.py")
               if str(p.relative_to(REPO / "src")) not in OTHER_EXTRAS and p.name != "__main__.py"]
    result = run_in(python, "-c", "import importlib\nfor m in %r: importlib.import_module(m)" % modules)
    assert result.returncode == 0, result.stderr[-2000:]
    write_webshop_csv(tmp_path / "in.csv", records=40, customers=5, products=3, seed=2)
    result = run_in(python, "-m", "pipelines.run", "--input", "in.csv", "--output", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert re.search(r"rows read\s+40", result.stdout) and list((tmp_path / "out" / "encrypted").glob("*.jsonl"))
    result = run_in(python, "-m", "pipelines.run", "--output", "out2", cwd=tmp_path)   # the example needs faker
    assert result.returncode == 2 and "pip install 'beam-privacy-streams[workshop]'" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_the_image_install_runs_pstream_and_the_pipeline(image_env):
    python = image_env
    pstream = python.parent / "pstream"
    result = subprocess.run([str(pstream), "--help"], capture_output=True, text=True, timeout=120,
                            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert result.returncode == 0 and "rotate-credentials" in result.stdout, result.stderr[-2000:]
    result = run_in(python, "-c", "from cli.main import build_parser; build_parser()")   # every command module
    assert result.returncode == 0, result.stderr[-2000:]
    every = third_party_imports([REPO / "src" / p for p in sorted(OUR_PACKAGES)], skip=set(OTHER_EXTRAS))
    result = run_in(python, "-c", "; ".join(f"import {name}" for name in sorted(every)))
    assert result.returncode == 0, result.stderr[-2000:]
    for module in ("pipelines.run", "gateway"):
        result = run_in(python, "-m", module, "--help")
        assert result.returncode == 0 and "usage:" in result.stdout, (module, result.stderr[-2000:])
    result = run_in(python, "-c", "import importlib.resources as r; print(len(list(r.files('schemas').glob('*.schema.json'))))")
    assert result.returncode == 0 and int(result.stdout) >= 1     # package data is installed
