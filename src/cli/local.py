"""``pstream local``: the workshop's real-time flow on one laptop: gateway + pipeline + exporters.

    pstream local                       # gateway on 127.0.0.1:8080, pipeline micro-batches every 2 s
    pstream local --port 0 --ready-file /tmp/port --project-dir /tmp/demo
    pstream gateway --port 8080         # the gateway alone (python -m gateway)

Then, in other shells: ``pstream simulate random-events demo``, ``pstream listen web-socket demo``,
the Python driver, batch exporters. The gateway runs as a child process (``python -m gateway``)
and rolls its spool segments every ``--segment-seconds``; this process runs the Beam pipeline
over each new closed segment (``controlplane.realtime.LocalLoop``) and the batch exporters. Ctrl-C
stops both; nothing accepted is lost (the spool keeps every event, and unprocessed segments are
picked up on the next start).

Both commands take the gateway's flags from ``gateway.settings`` (declared once, there); a busy
port is reported in one line before anything else starts (no exporter is probed, no pipeline run).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from cli.main import summary
from gateway.settings import GatewaySettings


def register(subparsers) -> None:
    local = subparsers.add_parser("local", help=summary("local"),
                                  description=__doc__.split("\n\n")[0])
    GatewaySettings.add_arguments(local, "gateway")
    local.set_defaults(segment_seconds=1.0)   # micro-batches: segments close every second
    local.add_argument("--batch-seconds", type=float, default=2.0,
                       help="seconds between pipeline passes (default %(default)s)")
    local.add_argument("--duration", type=float, default=None, help="stop after this many seconds (for scripts)")
    local.add_argument("--spool-retention", dest="spool_retention", type=float, default=0.0, metavar="SECONDS",
                       help="keep spool segments this long after their events were committed, for a replay "
                            "(default 0: deleted at once; the spool holds the events in plaintext)")
    local.set_defaults(func=_run)

    gateway = subparsers.add_parser("gateway", help=summary("gateway"),
                                    description="Run the event gateway (the same as python -m gateway).")
    GatewaySettings.add_arguments(gateway)
    gateway.set_defaults(func=_gateway)


def _gateway(args: argparse.Namespace) -> int:
    import logging

    from gateway.server import run

    settings = GatewaySettings.from_args(args)
    logging.basicConfig(level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    return run(settings, prog="pstream gateway")


def _port_is_free(settings: GatewaySettings) -> str | None:
    """None, or the one-line reason the gateway could not listen (checked before anything starts)."""
    from gateway.server import PortError, bind

    if settings.port == 0:
        return None
    try:
        bind(settings.host, settings.port).close()
    except PortError as exc:
        return str(exc)
    return None


def _run(args: argparse.Namespace) -> int:
    import logging
    import signal

    settings = GatewaySettings.from_args(args)
    try:
        settings.check()
    except ValueError as exc:
        print(f"pstream local: error: {exc}", file=sys.stderr)
        return 2
    busy = _port_is_free(settings)
    if busy:
        print(f"pstream local: error: {busy}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from controlplane.realtime import LocalLoop

    project_dir = Path(settings.project_dir)
    project_dir.mkdir(parents=True, exist_ok=True)
    ready = settings.ready_file or str(project_dir / ".gateway-port")
    if os.path.exists(ready):
        os.unlink(ready)
    command = [sys.executable, "-m", "gateway", *settings.to_argv(ready_file=ready, project_dir=str(project_dir))]
    gateway = subprocess.Popen(command)
    stop = {"now": False}

    def on_signal(signum, frame):
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    loop = LocalLoop(project_dir, echo=lambda text: print(text, file=sys.stderr, flush=True),
                     spool_retention=args.spool_retention)
    started = time.monotonic()
    try:
        while not os.path.exists(ready):
            if gateway.poll() is not None:   # it said why on stderr; nothing else was started
                print("pstream local: the gateway did not start", file=sys.stderr)
                return 1
            time.sleep(0.05)
        port = Path(ready).read_text().strip()
        print(f"pstream local: gateway on http://{settings.host}:{port}, project {project_dir}; Ctrl-C stops",
              file=sys.stderr, flush=True)
        while not stop["now"]:
            if args.duration is not None and time.monotonic() - started >= args.duration:
                break
            if gateway.poll() is not None:
                print("pstream local: the gateway stopped", file=sys.stderr)
                return 1
            try:
                loop.step()
            except Exception as exc:  # keep serving; the segments stay unprocessed and are retried
                print(f"pstream local: pipeline pass failed: {exc}", file=sys.stderr, flush=True)
            time.sleep(args.batch_seconds)
        _stop(gateway)
        try:
            loop.step()  # what the gateway closed on shutdown
        except Exception as exc:
            print(f"pstream local: final pipeline pass failed: {exc}", file=sys.stderr)
    finally:
        _stop(gateway)
    return 0


def _stop(gateway: subprocess.Popen) -> None:
    if gateway.poll() is None:
        gateway.terminate()
        try:
            gateway.wait(10)
        except subprocess.TimeoutExpired:
            gateway.kill()
