"""The gateway server's settings, start-up and what it keeps at rest (issue 11 points 1, 5 and 8, server side)."""
from __future__ import annotations

import argparse
import dataclasses
import socket
import stat
import subprocess
import sys

import httpx
import pytest

from gateway.settings import GatewaySettings
from controlplane.project import Project
from gateway_helpers import GatewayProcess, make_project, read_spool, repo_env, simulator_event


def settings_flags() -> set[str]:
    return {GatewaySettings.flag(item.name) for item in dataclasses.fields(GatewaySettings) if item.metadata}


def option_strings(parser: argparse.ArgumentParser) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings}


def subcommand(name: str) -> argparse.ArgumentParser:
    from cli.main import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return commands.choices[name]


# ------------------------------------------------------------------------------------ settings
def test_every_setting_is_one_kebab_case_flag_with_help():
    parser = argparse.ArgumentParser()
    GatewaySettings.add_arguments(parser)
    flags = settings_flags()
    assert len(flags) >= 20
    for action in parser._actions:
        if action.dest == "help" or action.help == argparse.SUPPRESS:   # help, and hidden older spellings
            continue
        primary = action.option_strings[0]
        assert primary in flags and "_" not in primary and primary == primary.lower(), primary
        assert action.help and len(action.help) > 15, primary
    assert {"--header-timeout", "--body-timeout", "--keep-alive-timeout", "--keep-alive-requests",
            "--max-connections", "--max-header-bytes", "--max-event-bytes", "--max-contract-bytes",
            "--contract-cache-seconds", "--contract-cache-size", "--metrics-token-file"} <= flags


def test_python_m_gateway_pstream_gateway_and_pstream_local_take_the_same_flags():
    from gateway.server import main  # noqa: F401  (the module python -m gateway runs)

    for command in ("gateway", "local"):
        assert settings_flags() <= option_strings(subcommand(command)), command
    local = subcommand("local").parse_args([])
    gateway = subcommand("gateway").parse_args([])
    assert local.segment_seconds == 1.0 and gateway.segment_seconds == GatewaySettings.segment_seconds
    help_text = subprocess.run([sys.executable, "-m", "gateway", "--help"], env=repo_env(), capture_output=True,
                               text=True, timeout=60).stdout
    assert all(flag in help_text for flag in settings_flags())


def test_settings_survive_the_trip_through_flags(tmp_path):
    settings = GatewaySettings(project_dir=tmp_path, port=0, header_timeout=3.5, max_connections=77,
                               metrics_token_file="/x/token", segment_seconds=1.0).resolved()
    parser = argparse.ArgumentParser()
    GatewaySettings.add_arguments(parser)
    again = GatewaySettings.from_args(parser.parse_args(settings.to_argv()))
    assert again == settings


@pytest.mark.parametrize("argv, flag", [(["--header-timeout", "0"], "--header-timeout"),
                                        (["--max-connections", "-1"], "--max-connections"),
                                        (["--port", "70000"], "--port")])
def test_impossible_settings_are_one_line_naming_the_flag(tmp_path, argv, flag):
    proc = subprocess.run([sys.executable, "-m", "gateway", "--project-dir", str(tmp_path), *argv],
                          env=repo_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and flag in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


# ----------------------------------------------------------------------------------- busy port
def test_a_busy_port_is_one_line_naming_it_before_anything_starts(tmp_path):
    project = make_project(tmp_path, "demo")
    exports = tmp_path / "exports"
    project.create_data_connector({"name": "dir", "kind": "local", "path": str(exports)})
    project.create_batch_exporter("demo", "dir", interval=60)
    project.save()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        for command in (["gateway"], ["cli", "gateway"], ["cli", "local"]):
            proc = subprocess.run([sys.executable, "-m", *command, "--project-dir", str(tmp_path), "--port", port],
                                  env=repo_env(), capture_output=True, text=True, timeout=60)
            lines = proc.stderr.strip().splitlines()
            assert proc.returncode == 2 and len(lines) == 1, (command, proc.stderr)
            assert f"port {port}" in lines[0] and "--port" in lines[0] and "in use" in lines[0], lines
    assert not exports.exists()                          # no exporter was probed
    assert not (tmp_path / "spool").exists()             # no gateway started


# -------------------------------------------------------------------------------------- metrics
def _outside_address() -> str | None:
    """An address of this machine that is not loopback, if it has one."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))   # no packet is sent: this only picks the outgoing interface
            address = probe.getsockname()[0]
    except OSError:
        return None
    return None if address.startswith("127.") else address


def test_metrics_answer_loopback_clients_only_by_default(tmp_path):
    make_project(tmp_path, "demo")
    address = _outside_address()
    if address is None:
        pytest.skip("this machine has no address besides loopback")
    with GatewayProcess(tmp_path, extra=("--host", "0.0.0.0")) as gw:
        assert gw.client.get("/metrics").status_code == 200
        outside = httpx.get(f"http://{address}:{gw.port}/metrics", timeout=10)
        assert outside.status_code == 403 and "--metrics-token-file" in outside.text
        assert httpx.get(f"http://{address}:{gw.port}/health", timeout=10).status_code == 200


def test_metrics_with_a_token_file_need_that_token(tmp_path):
    make_project(tmp_path, "demo")
    token_file = tmp_path / "metrics.token"
    token_file.write_text("s3cret-metrics-token\n")
    with GatewayProcess(tmp_path, extra=("--metrics-token-file", str(token_file))) as gw:
        assert gw.client.get("/metrics").status_code == 401
        assert gw.client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        good = gw.client.get("/metrics", headers={"Authorization": "Bearer s3cret-metrics-token"})
        assert good.status_code == 200 and "gateway_requests_total" in good.text


# ---------------------------------------------------------------------------------- at rest
def test_spool_segments_are_owner_only_whatever_the_umask(tmp_path):
    make_project(tmp_path, "demo")
    with GatewayProcess(tmp_path, umask=0) as gw:
        assert gw.post_event(gw.token("demo"), simulator_event(1)).status_code == 204
        spool = Project.open(tmp_path).spool_dir("demo")   # spool/<pipeline id>/
        open_segment = next(spool.iterdir())
        assert stat.S_IMODE(open_segment.stat().st_mode) == 0o600
    segments = list(spool.iterdir())
    assert segments and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in segments)
    assert stat.S_IMODE(spool.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "spool").stat().st_mode) == 0o700


def test_unknown_strm_meta_keys_from_clients_are_400(tmp_path):
    make_project(tmp_path, "demo")
    with GatewayProcess(tmp_path) as gw:
        event = simulator_event(1)
        event["strmMeta"]["smuggled"] = "not a strmMeta key"
        response = gw.post_event(gw.token("demo"), event)
        assert response.status_code == 400 and "1 key that is not in strmMeta" in response.text
        assert "smuggled" not in response.text  # a client's key is not echoed
        assert read_spool(tmp_path, "demo") == []
