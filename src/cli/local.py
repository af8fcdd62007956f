"""``pstream local``: the workshop's real-time flow on one laptop: gateway + pipeline + exporters.

    pstream local                       # gateway on 127.0.0.1:8080, pipeline micro-batches every 2 s
    pstream local --port 0 --ready-file /tmp/port --project_dir /tmp/demo

Then, in other shells: ``pstream simulate random-events demo``, ``pstream listen web-socket demo``,
the Python driver, batch exporters. The gateway runs as a child process (``python -m gateway``)
and rolls its spool segments every ``--segment-seconds``; this process runs the Beam pipeline
over each new closed segment (``controlplane.realtime.LocalLoop``) and the batch exporters. Ctrl-C
stops both; nothing accepted is lost (the spool keeps every event, and unprocessed segments are
picked up on the next start).
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cli.main import summary
from cli.project_args import add_project_arg
from controlplane.project import default_project_dir


def register(subparsers) -> None:
    local = subparsers.add_parser("local", help=summary("local"),
                                  description=__doc__.split("\n\n")[0])
    add_project_arg(local)
    local.add_argument("--host", default="127.0.0.1", help="gateway address (default %(default)s)")
    local.add_argument("--port", type=int, default=8080, help="gateway port; 0 picks a free one (default %(default)s)")
    local.add_argument("--batch-seconds", dest="batch_seconds", type=float, default=2.0,
                       help="seconds between pipeline passes (default %(default)s)")
    local.add_argument("--segment-seconds", dest="segment_seconds", type=float, default=1.0,
                       help="the gateway closes spool segments this often (default %(default)s)")
    local.add_argument("--token-ttl", dest="token_ttl", type=int, default=3600, help="token lifetime in seconds")
    local.add_argument("--ready-file", dest="ready_file", default=None, help="write the gateway port here when up")
    local.add_argument("--duration", type=float, default=None, help="stop after this many seconds (for scripts)")
    local.add_argument("--spool-retention", dest="spool_retention", type=float, default=0.0, metavar="SECONDS",
                       help="keep spool segments this long after their events were committed, for a replay "
                            "(default 0: deleted at once; the spool holds the events in plaintext)")
    local.set_defaults(func=_run)

    gateway = subparsers.add_parser("gateway", help=summary("gateway"))
    add_project_arg(gateway)
    gateway.add_argument("--host", default="127.0.0.1", help="address (default %(default)s)")
    gateway.add_argument("--port", type=int, default=8080, help="port; 0 picks a free one (default %(default)s)")
    gateway.add_argument("--segment-seconds", dest="segment_seconds", type=float, default=60.0,
                         help="roll spool segments this often (default %(default)s)")
    gateway.add_argument("--token-ttl", dest="token_ttl", type=int, default=3600, help="token lifetime in seconds")
    gateway.add_argument("--ready-file", dest="ready_file", default=None, help="write the port here when up")
    gateway.add_argument("--publish", default=None,
                         help="pubsub://projects/PROJECT/topics/TOPIC or kafka://HOST:PORT/TOPIC instead of the "
                              "local spool (see python -m gateway --help)")
    gateway.set_defaults(func=_gateway)


def _gateway(args) -> int:
    from gateway.server import main

    argv = ["--host", args.host, "--port", str(args.port), "--segment_max_age", str(args.segment_seconds),
            "--token_ttl", str(args.token_ttl)]
    if args.project_dir:
        argv += ["--project_dir", args.project_dir]
    if args.ready_file:
        argv += ["--ready_file", args.ready_file]
    if args.publish:
        argv += ["--publish", args.publish]
    return main(argv)


def _run(args) -> int:
    from controlplane.realtime import LocalLoop   # Beam and the spool: not imported for --help

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    project_dir = Path(args.project_dir or default_project_dir())
    project_dir.mkdir(parents=True, exist_ok=True)
    ready = args.ready_file or str(project_dir / ".gateway-port")
    if os.path.exists(ready):
        os.unlink(ready)
    command = [sys.executable, "-m", "gateway", "--project_dir", str(project_dir), "--host", args.host,
               "--port", str(args.port), "--segment_max_age", str(args.segment_seconds),
               "--token_ttl", str(args.token_ttl), "--ready_file", ready]
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
            if gateway.poll() is not None:
                print("pstream local: the gateway did not start", file=sys.stderr)
                return 1
            time.sleep(0.05)
        port = Path(ready).read_text().strip()
        print(f"pstream local: gateway on http://{args.host}:{port}, project {project_dir}; Ctrl-C stops",
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
    finally:
        if gateway.poll() is None:
            gateway.terminate()
            try:
                gateway.wait(10)
            except subprocess.TimeoutExpired:
                gateway.kill()
        try:
            loop.step()  # what the gateway closed on shutdown
        except Exception as exc:
            print(f"pstream local: final pipeline pass failed: {exc}", file=sys.stderr)
    return 0
