"""The README runs: its runnable shell blocks are executed in order, and what it shows is checked.

What is run, and how it is marked in README.md:

- ````<!-- readme-test -->```` before a fenced ``bash`` block: each command of the block runs, in
  order, with ``bash -c`` in one temporary directory (a fresh project: ``PSTREAM_PROJECT_DIR`` and
  ``HOME`` point into it), ``pstream`` and ``python`` being this checkout's. Each must exit 0.
  ``<!-- readme-test skip="REGEX" -->`` leaves out the commands the regex finds (long-running
  ones: ``pstream local &``, ``listen``, ``simulate``; those needing a cloud account or a file the
  README does not make); the test prints what it skipped.
- Install lines ``pip install -e '.[extra]' && CMD`` run only ``CMD`` (the install is .ci/run's
  own first step), and ``python -m pytest`` is not run (it is this test suite).
- A double-quoted text in a command's trailing comment (``# ...: "deleted 20 keys"``) must be in
  that command's output (stdout and stderr).
- ````<!-- readme-output -->```` before a fenced block right after a runnable block: each of its
  lines must appear, in that order, in the block's output (runs of spaces compared as one).

So a changed count, message or flag fails this test. Covered (see ``RUNNABLE`` in the output
of ``pytest -s``): the first run and its summary, the run report, keys export and decrypt, the
data-subject commands (list, access request, forget with its count, purge, a retention policy),
a contract's lifecycle (wizard, create, a DRAFT run with the flag, submit, approve by another
user, activate, a run, deprecate, archive, list, show, the audit log and its verification),
the real-time flow's set-up commands (streams, credentials, data connector, batch exporter, DDL,
schema code). Not run: the cloud, database, Dataflow and Flink examples, ``pstream local`` and
the commands that follow events live, the other ``contracts`` examples (their files are the
reader's own).
The notebook's generator cell (tests/notebook_generator_cell.py) runs in its own test.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pipeline_runs import REPO, repo_env

README = REPO / "README.md"
BLOCK = re.compile(r"<!-- readme-(?P<kind>test|output)(?P<opts>[^>]*)-->[ \t]*\n```[\w-]*\n(?P<body>.*?)\n```",
                   re.S)
SKIP = re.compile(r'skip="(?P<regex>[^"]*)"')


@dataclass
class Command:
    text: str
    expected: list[str] = field(default_factory=list)
    skipped: str | None = None
    output: str = ""
    status: int | None = None
    seconds: float = 0.0


@dataclass
class Block:
    line: int
    commands: list[Command]
    shown: list[str] = field(default_factory=list)   # the readme-output block after it


def _split_comment(line: str) -> tuple[str, str]:
    """A shell line's command and its trailing comment (a # outside quotes, after a space)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1:]
    return line.rstrip(), ""


def parse(text: str) -> list[Block]:
    blocks: list[Block] = []
    for match in BLOCK.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        if match["kind"] == "output":
            assert blocks, f"README.md:{line}: a readme-output block without a runnable block before it"
            blocks[-1].shown = [ln for ln in match["body"].splitlines() if ln.strip()]
            continue
        skip = SKIP.search(match["opts"])
        commands, pending = [], ""
        for raw in match["body"].splitlines():
            command, comment = _split_comment(raw)
            if command.endswith("\\"):
                pending += command[:-1] + " "
                continue
            command, pending = (pending + command).strip(), ""
            if not command:
                continue
            cmd = Command(command, re.findall(r'"([^"]+)"', comment))
            install = re.match(r"pip3? install [^&]*&&\s*(.*)$", command)
            if install:
                cmd.text = install.group(1)
            if re.match(r"python -m pytest\b", cmd.text):
                cmd.skipped = "the test suite itself (.ci/run runs it)"
            elif skip and re.search(skip["regex"], command):
                cmd.skipped = f'skip="{skip["regex"]}"'
            commands.append(cmd)
        blocks.append(Block(line, commands))
    return blocks


def _normal(text: str) -> str:
    return re.sub(r"[ \t]+", " ", text)


def problems(blocks: list[Block]) -> list[str]:
    """Every way the outputs differ from what the README shows."""
    found = []
    for block in blocks:
        for cmd in block.commands:
            if cmd.skipped:
                continue
            if cmd.status != 0:
                found.append(f"README.md:{block.line}: `{cmd.text}` exited {cmd.status}:\n{cmd.output[-1500:]}")
            for text in cmd.expected:
                if _normal(text) not in _normal(cmd.output):
                    found.append(f"README.md:{block.line}: `{cmd.text}` does not print \"{text}\":\n"
                                 f"{cmd.output[-800:]}")
        if block.shown:
            output, at = _normal("\n".join(c.output for c in block.commands)), 0
            for shown in block.shown:
                where = output.find(_normal(shown).strip(), at)
                if where < 0:
                    found.append(f"README.md:{block.line}: the output does not show (in order) {shown!r}")
                else:
                    at = where + len(_normal(shown).strip())
    return found


def _shims(bin_dir: Path) -> None:
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    (bin_dir / "python3").symlink_to(sys.executable)
    pstream = bin_dir / "pstream"
    pstream.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m cli "$@"\n')
    pstream.chmod(0o755)


@pytest.fixture(scope="module")
def readme_run(tmp_path_factory):
    """Every runnable block, run in order in one fresh directory: (blocks, seconds)."""
    root = tmp_path_factory.mktemp("readme")
    work, home = root / "work", root / "home"
    work.mkdir()
    home.mkdir()
    _shims(root / "bin")
    env = {**repo_env(), "PATH": f"{root / 'bin'}{os.pathsep}{os.environ['PATH']}", "HOME": str(home),
           "PSTREAM_PROJECT_DIR": str(root / "project")}
    blocks = parse(README.read_text())
    started = time.monotonic()
    for block in blocks:
        for cmd in block.commands:
            if cmd.skipped:
                continue
            begun = time.monotonic()
            proc = subprocess.run(["bash", "-c", cmd.text], cwd=work, env=env, capture_output=True, text=True,
                                  timeout=300)
            cmd.status, cmd.output, cmd.seconds = proc.returncode, proc.stdout + proc.stderr, time.monotonic() - begun
    return blocks, time.monotonic() - started


def test_readme_commands_print_what_the_readme_shows(readme_run):
    blocks, seconds = readme_run
    ran = [c for b in blocks for c in b.commands if not c.skipped]
    print(f"\nREADME test: {len(ran)} commands in {len(blocks)} blocks ran in {seconds:.1f} s")
    for block in blocks:
        for cmd in block.commands:
            print(f"  RUNNABLE README.md:{block.line} {'skipped (' + cmd.skipped + ')' if cmd.skipped else f'{cmd.seconds:5.1f} s'}"
                  f"  {cmd.text[:100]}")
    assert len(ran) >= 15
    found = problems(blocks)
    assert not found, "\n\n".join(found)


def test_a_changed_output_fails_the_check(readme_run):
    """The check can fail: the same outputs against a README whose shown count differs."""
    blocks, _ = readme_run
    text = README.read_text()
    assert '"deleted 20 keys"' in text and "rows read                   10,000" in text
    changed = parse(text.replace('"deleted 20 keys"', '"deleted 21 keys"').replace(
        "rows read                   10,000", "rows read                   10,001"))
    for old, new in zip(blocks, changed):
        for old_cmd, new_cmd in zip(old.commands, new.commands):
            new_cmd.status, new_cmd.output = old_cmd.status, old_cmd.output
    found = problems(changed)
    assert any("deleted 21 keys" in f for f in found) and any("10,001" in f for f in found)


def test_the_notebook_generator_cell_runs_unchanged(tmp_path):
    """`pip install -e '.[notebook]'` provides what the notebook's generator cells import, and the pipeline
    accepts the 10,000 rows it writes."""
    proc = subprocess.run([sys.executable, str(REPO / "tests" / "notebook_generator_cell.py")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    from pipelines.run import run

    lines: list[str] = []
    assert run(["--input", str(tmp_path / "example_input.csv"), "--output", str(tmp_path / "out"), "--quiet"],
               echo=lines.append) == 0
    shown = "\n".join(lines)
    assert re.search(r"^rows read\s+10,000$", shown, re.M) and re.search(r"^valid\s+10,000$", shown, re.M)


def test_notebook_extra_is_what_the_cells_import():
    import ast

    from conftest import setup_kwargs

    tree = ast.parse((REPO / "tests" / "notebook_generator_cell.py").read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    third_party = {name.lower() for name in imported - set(sys.stdlib_module_names)}
    extra = {re.split(r"[<>=\[;]", r)[0].lower() for r in setup_kwargs()["extras_require"]["notebook"]}
    assert third_party == {"pandas", "arrow", "faker"} and third_party <= extra
