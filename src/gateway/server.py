"""Serve the gateway with uvicorn (uvloop + httptools): ``python -m gateway [options]``.

    python -m gateway --project_dir /tmp/demo --host 127.0.0.1 --port 8080
    python -m gateway --port 0 --ready_file /tmp/port    # a free port, written to the file once listening
    python -m gateway --publish pubsub://projects/my-project/topics/events    # Pub/Sub instead of the spool

uvicorn was chosen by measurement (benchmarks/gateway.py): with a bare ASGI endpoint it served
about 45k requests/s on one core here, granian's ASGI mode about 25k.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys

import uvicorn
import uvloop

from gateway.app import DEFAULT_MAX_EVENT_BYTES, GatewayApp, GatewaySettings
from gateway.auth import DEFAULT_TTL_SECONDS
from controlplane.project import default_project_dir
from gateway.publish import PublishError, publisher_for
from gateway.spool import DEFAULT_MAX_AGE_SECONDS, DEFAULT_MAX_BYTES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--project_dir", "--project-dir", default=None,
                        help="project directory (default: $PSTREAM_PROJECT_DIR or ~/.config/pstream)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    parser.add_argument("--port", type=int, default=8080, help="port; 0 picks a free one (default %(default)s)")
    parser.add_argument("--token_ttl", type=int, default=DEFAULT_TTL_SECONDS,
                        help="seconds an access token is valid (default %(default)s)")
    parser.add_argument("--max_event_bytes", type=int, default=DEFAULT_MAX_EVENT_BYTES,
                        help="larger events get 413 (default %(default)s)")
    parser.add_argument("--segment_max_bytes", type=int, default=DEFAULT_MAX_BYTES,
                        help="roll a spool segment at this size (default %(default)s)")
    parser.add_argument("--segment_max_age", type=float, default=DEFAULT_MAX_AGE_SECONDS,
                        help="roll a spool segment after this many seconds (default %(default)s)")
    parser.add_argument("--publish", default=None,
                        help="publish accepted events instead of spooling them: "
                             "pubsub://projects/PROJECT/topics/TOPIC or kafka://HOST:PORT/TOPIC; a topic may "
                             "hold {pipeline}; ?timeout=SECONDS bounds each publish (default 10); see "
                             "gateway/publish.py (default: the local spool)")
    parser.add_argument("--ready_file", default=None,
                        help="write the bound port to this file once listening (for scripts and tests)")
    parser.add_argument("--log_level", default="warning", help="uvicorn log level (default %(default)s)")


def settings_from(args) -> GatewaySettings:
    return GatewaySettings(
        project_dir=args.project_dir or default_project_dir(),
        token_ttl_seconds=args.token_ttl,
        max_event_bytes=args.max_event_bytes,
        segment_max_bytes=args.segment_max_bytes,
        segment_max_age_seconds=args.segment_max_age,
    )


def serve(app, host: str, port: int, ready_file: str | None = None, log_level: str = "warning") -> None:
    """Bind first (so port 0 resolves), then hand the socket to uvicorn."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level=log_level, access_log=False, loop="uvloop", http="httptools",
                            ws="websockets-sansio", lifespan="on", backlog=4096,
                            proxy_headers=False, server_header=False, date_header=False)
    server = uvicorn.Server(config)

    async def main():
        startup = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
        while not server.started and not startup.done():
            await asyncio.sleep(0.01)
        if ready_file and server.started:
            temp = f"{ready_file}.tmp"
            with open(temp, "w") as handle:
                handle.write(str(bound))
            os.replace(temp, ready_file)
        print(f"gateway listening on http://{host}:{bound}", file=sys.stderr, flush=True)
        await startup

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway", description="Run the event gateway.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        publisher = publisher_for(args.publish)
    except ValueError as exc:
        parser.error(str(exc))
    except PublishError as exc:  # the broker or topic cannot be used: do not listen at all
        parser.exit(1, f"{parser.prog}: error: {exc}\n")
    serve(GatewayApp(settings_from(args), publisher=publisher), args.host, args.port, args.ready_file,
          args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
