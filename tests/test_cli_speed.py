"""A fast, consistent `pstream`: every --help answers under half a second (measured in a
subprocess, walking the whole argparse tree), flags are kebab-case, and `listen web-socket
--count N` exits at the Nth event."""
from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time

import pytest

from cli.main import COMMANDS, build_parser
from controlplane.project import Project
from gateway_helpers import GatewayProcess, make_project, repo_env

HELP_BOUND_SECONDS = 0.5
LOADED_FACTOR = 5
KEBAB = re.compile(r"^(--[a-z0-9]+(-[a-z0-9]+)*|-[a-zA-Z])$")
HIDDEN_ALIASES = {"--project_dir"}   # the README's spelling before the kebab-case flags
# google and google.cloud themselves are namespace packages that .pth files create at start-up
HEAVY = ["jsonschema", "apache_beam", "aiohttp", "websockets", "uvicorn", "uvloop", "httpx", "faker", "google.api_core",
         "google.auth", "google.cloud.storage", "google.cloud.kms", "google.cloud.pubsub", "boto3", "azure.storage"]


def parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(argv path, parser) of every command and sub-command, each once (aliases skipped)."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            seen = set()
            for name, sub in action.choices.items():
                if id(sub) not in seen:
                    seen.add(id(sub))
                    yield from parsers(sub, (*path, name))


def help_seconds(path: tuple[str, ...]) -> float:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "cli", *path, "--help"], env=repo_env(), capture_output=True,
                            timeout=60)
    elapsed = time.perf_counter() - started
    assert result.returncode == 0 and b"usage: pstream" in result.stdout, result.stderr.decode()[-2000:]
    return elapsed


def interpreter_seconds() -> float:
    """The median of 3 starts of a bare interpreter that imports argparse: this machine's floor now."""
    def once() -> float:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import argparse"], env=repo_env(), check=True, timeout=60)
        return time.perf_counter() - started
    return statistics.median(once() for _ in range(3))


def test_every_help_answers_under_half_a_second():
    """One run per --help; one over the bound is measured twice more and its median counts. The
    bound is 0.5 s, or, on a machine so loaded that a bare interpreter start (about 0.04 s when
    idle) takes more than 0.1 s, five such starts: a shared machine slows both alike. Importing
    Beam (2-5 s idle) or a web stack for a help fails either way."""
    paths = [path for path, _ in parsers(build_parser())]
    assert len(paths) > 30 and ("subjects", "forget") in paths and ("local",) in paths
    floor = interpreter_seconds()
    bound = max(HELP_BOUND_SECONDS, LOADED_FACTOR * floor)
    slow, times = {}, []
    for path in paths:
        seconds = help_seconds(path)
        if seconds >= bound:
            seconds = statistics.median([seconds, help_seconds(path), help_seconds(path)])
            if seconds >= bound:
                slow[" ".join(path)] = round(seconds, 2)
        times.append(seconds)
    print(f"{len(paths)} --help: median {statistics.median(times):.2f} s, slowest {max(times):.2f} s; "
          f"bare interpreter {floor:.2f} s; bound {bound:.2f} s")
    assert not slow, f"--help slower than {bound:.2f} s (bare interpreter {floor:.2f} s): {slow}"


@pytest.mark.parametrize("argv, heavy", [
    ([], [*HEAVY, "yaml", "cryptography"]),
    (["subjects", "forget"], HEAVY),
    (["local"], HEAVY),
    (["listen", "web-socket"], HEAVY),
    (["keys", "purge"], HEAVY),
    (["create", "data-connector", "s3"], HEAVY),
    (["keys", "export"], HEAVY),
    (["ddl"], HEAVY),
])
def test_help_imports_no_heavy_package(argv, heavy):
    code = ("import sys; from cli.main import main\ntry:\n    main(sys.argv[1:] + ['--help'])\nexcept SystemExit:\n"
            "    pass\nprint(' '.join(sorted(sys.modules)), file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", code, *argv], env=repo_env(), capture_output=True, text=True,
                            timeout=60)
    loaded = set(result.stderr.split())
    assert not [m for m in loaded for h in heavy if m == h or m.startswith(h + ".")], argv


def test_flags_are_kebab_case():
    for path, parser in parsers(build_parser()):
        for action in parser._actions:
            for flag in action.option_strings:
                if action.help == argparse.SUPPRESS:
                    assert flag in HIDDEN_ALIASES, (path, flag)
                else:
                    assert KEBAB.match(flag), (path, flag)


def test_the_command_table_names_every_command_with_its_help():
    full = build_parser()
    (sub,) = [a for a in full._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(sub.choices) == set(COMMANDS)
    shown = {choice.dest: choice.help for choice in sub._choices_actions}
    assert shown == {name: help_text for name, (_, help_text) in COMMANDS.items()}
    for name in COMMANDS:   # parsing one command imports and registers only its module
        assert build_parser(name)._subparsers._group_actions[0].choices[name].add_help


def test_the_old_project_dir_spelling_still_works(tmp_path):
    from cli.main import main
    assert main(["create", "stream", "demo", "--project_dir", str(tmp_path)]) == 0
    assert "demo" in Project.open(tmp_path).pipelines


def test_listen_exits_at_the_nth_event(tmp_path):
    make_project(tmp_path, "demo")
    encrypted = Project.open(tmp_path).output_dir("demo") / "encrypted"
    encrypted.mkdir(parents=True)
    with GatewayProcess(tmp_path) as gw:
        listener = subprocess.Popen([sys.executable, "-m", "cli", "listen", "web-socket", "demo", "--count", "2",
                                     "--project-dir", str(tmp_path)], env=repo_env(PSTREAM_GATEWAY_URL=gw.url),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert listener.stderr.readline().startswith(b"listening to demo")
            temp = encrypted / ".temp-1.jsonl.tmp"
            temp.write_text("".join(f'{{"n": {i}}}\n' for i in range(3)))
            temp.rename(encrypted / "2024-01-01T00:00:00-stream-x---0.jsonl")   # as the pipeline publishes a file
            written = time.monotonic()
            out, _ = listener.communicate(timeout=30)
            exited = time.monotonic() - written
        finally:
            listener.kill()
    assert listener.returncode == 0
    assert out.decode().splitlines() == ['{"n": 0}', '{"n": 1}']
    assert exited < 3, f"listen took {exited:.1f} s to exit after its 2nd event"
