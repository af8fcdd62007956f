"""Serve the gateway with uvicorn (uvloop + httptools): ``python -m gateway [options]``.

    python -m gateway --project-dir /tmp/demo --host 127.0.0.1 --port 8080
    python -m gateway --port 0 --ready-file /tmp/port    # a free port, written to the file once listening
    python -m gateway --publish pubsub://projects/my-project/topics/events    # Pub/Sub instead of the spool
    python -m gateway --help                             # every setting: gateway.settings

    from gateway.server import bind, run
    run(GatewaySettings(project_dir="/tmp/demo", port=0))          # what main() does after parsing

The port is bound before anything else starts (the project, the spool, a broker connection): a
busy port is one line naming it and ``--port`` (``PortError``), not a traceback. Connections are
served by ``gateway.connections``' protocol (header and body timeouts, header size, connection
cap, requests per keep-alive connection) with uvicorn's keep-alive timeout; the soft limit on
open files is raised to the hard limit, and the connection cap kept below it.

uvicorn was chosen by measurement (benchmarks/gateway.py): with a bare ASGI endpoint it served
about 45k requests/s on one core here, granian's ASGI mode about 25k.
"""
from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import resource
import socket
import sys

from gateway.settings import GatewaySettings

log = logging.getLogger("gateway.server")
RESERVED_FILES = 256   # descriptors kept for spool segments, contract files, threads, logs


class PortError(OSError):
    """The address cannot be listened on; the message names it and the flag to change."""


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready socket on host:port, or PortError with a one-line reason."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortError(f"port {port} on {host} is already in use: stop what listens there or pick "
                            "another with --port (0 picks a free one)") from None
        if exc.errno == errno.EACCES:
            raise PortError(f"port {port} on {host} needs privileges: pick one above 1023 with --port") from None
        raise PortError(f"cannot listen on {host}:{port} ({exc.strerror}): check --host and --port") from None
    return sock


def open_file_limit() -> int:
    """Raise the soft limit on open files to the hard one (as servers do); returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def serve(app, sock: socket.socket, settings: GatewaySettings, problems=None) -> None:
    """Serve an ASGI app on a bound socket with the settings' connection limits, until stopped."""
    import uvicorn
    import uvloop

    from gateway.connections import ConnectionLimits, QuietWebSocketProtocol, bounded_protocol
    from gateway.problems import ProblemLog

    max_connections = min(settings.max_connections, max(64, open_file_limit() - RESERVED_FILES))
    if max_connections < settings.max_connections:
        log.warning("--max-connections %d lowered to %d: the open file limit is %d", settings.max_connections,
                    max_connections, open_file_limit())
    limits = ConnectionLimits(
        max_connections=max_connections, header_timeout=settings.header_timeout,
        body_timeout=settings.body_timeout, max_header_bytes=settings.max_header_bytes,
        keep_alive_requests=settings.keep_alive_requests,
        problems=problems or ProblemLog(logging.getLogger("gateway"), settings.log_window_seconds))
    config = uvicorn.Config(app, log_level=settings.log_level, access_log=False, loop="uvloop",
                            http=bounded_protocol(limits), ws=QuietWebSocketProtocol, ws_max_size=64 * 1024,
                            lifespan="on", backlog=4096,
                            timeout_keep_alive=settings.keep_alive_timeout, limit_concurrency=None,
                            proxy_headers=False, server_header=False, date_header=False)
    server = uvicorn.Server(config)
    bound = sock.getsockname()[1]

    async def main():
        startup = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
        while not server.started and not startup.done():
            await asyncio.sleep(0.01)
        if settings.ready_file and server.started:
            temp = f"{settings.ready_file}.tmp"
            with open(temp, "w") as handle:
                handle.write(str(bound))
            os.replace(temp, settings.ready_file)
        if server.started:
            print(f"gateway listening on http://{settings.host}:{bound}", file=sys.stderr, flush=True)
        await startup

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())


def run(settings: GatewaySettings, prog: str = "python -m gateway") -> int:
    """Check the settings, bind, open the publisher and the project, serve. Exit code."""
    try:
        settings.check()
        sock = bind(settings.host, settings.port)
    except (ValueError, PortError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    from gateway.app import GatewayApp
    from gateway.publish import PublishError, publisher_for

    try:
        publisher = publisher_for(settings.publish)
    except ValueError as exc:
        sock.close()
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except PublishError as exc:  # the broker or topic cannot be used: do not listen at all
        sock.close()
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    try:
        app = GatewayApp(settings, publisher=publisher)
    except (OSError, ValueError) as exc:   # an unreadable project or metrics token file
        sock.close()
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    serve(app, sock, app.settings, app.problems)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway", description="Run the event gateway.")
    GatewaySettings.add_arguments(parser)
    args = parser.parse_args(argv)
    settings = GatewaySettings.from_args(args)
    logging.basicConfig(level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    return run(settings)


if __name__ == "__main__":
    sys.exit(main())
