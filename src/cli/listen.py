"""``pstream listen web-socket STREAM``: print a pipeline's encrypted events, or a privacy
stream's events, one JSON line each, as the pipeline produces them.

    pstream listen web-socket demo | jq
    pstream listen web-socket demo-1 --from-start --count 10

Connects to the gateway's web socket ``/ws/<stream>`` with a token of the stream's pipeline
signed with the project's key (``cli.project_args.ProjectTokens``). Events appear once
``pstream local`` (or another run of the pipeline over the spool) has written them. With
``--count N`` it exits as soon as the Nth event is printed.
"""
from __future__ import annotations

import sys

from cli.main import summary
from cli.project_args import ProjectError, ProjectTokens, add_project_arg, fail, project_of


def register(subparsers) -> None:
    listen = subparsers.add_parser("listen", help=summary("listen"))
    kinds = listen.add_subparsers(dest="kind", metavar="KIND")
    kinds.required = True
    socket = kinds.add_parser("web-socket", help="one JSON line per event of a pipeline or privacy stream",
                              description=__doc__.split("\n\n")[0])
    socket.add_argument("stream", help="pipeline (encrypted events) or privacy stream name")
    socket.add_argument("--from-start", dest="from_start", action="store_true",
                        help="first print what the stream already holds")
    socket.add_argument("--count", type=int, default=None, help="exit after this many events")
    socket.add_argument("--timeout", type=float, default=None, help="exit after this many seconds")
    socket.add_argument("--gateway", default=None, help="gateway URL (default: $PSTREAM_GATEWAY_URL or the project's)")
    add_project_arg(socket)
    socket.set_defaults(func=_web_socket)


def _web_socket(args) -> int:
    import asyncio

    from websockets.exceptions import InvalidStatus   # websockets: only when listening

    try:
        if args.count is not None and args.count < 1:
            raise ProjectError("--count must be at least 1")
        project = project_of(args)
        pipeline = project.pipelines[project.source_of(args.stream)]
    except ProjectError as exc:
        return fail("listen web-socket", exc)
    url = args.gateway or project.gateway_url()
    try:
        listen = _listen(project, pipeline, url, args)
        return asyncio.run(asyncio.wait_for(listen, args.timeout) if args.timeout else listen)
    except asyncio.TimeoutError:
        return 0
    except KeyboardInterrupt:
        return 130
    except (OSError, InvalidStatus) as exc:
        return fail("listen web-socket", exc)


async def _listen(project, pipeline, url: str, args) -> int:
    from websockets.asyncio.client import connect

    token = await ProjectTokens(project, pipeline.name).token()
    ws_url = url.replace("http://", "ws://", 1).replace("https://", "wss://", 1).rstrip("/") + f"/ws/{args.stream}"
    if args.from_start:
        ws_url += "?from=start"
    seen = 0
    socket = await connect(ws_url, additional_headers={"Authorization": f"Bearer {token}"}, max_size=None)
    try:
        print(f"listening to {args.stream} at {ws_url.split('?')[0]}", file=sys.stderr, flush=True)
        async for message in socket:
            sys.stdout.write(message if isinstance(message, str) else message.decode())
            sys.stdout.write("\n")
            sys.stdout.flush()
            seen += 1
            if args.count is not None and seen >= args.count:
                break
    finally:
        # done: no closing handshake to wait for (the server may take its poll interval to answer)
        socket.transport.abort()
    return 0
