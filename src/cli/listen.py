"""``pstream listen web-socket STREAM``: print a pipeline's encrypted events, or a privacy
stream's events, one JSON line each, as the pipeline produces them.

    pstream listen web-socket demo | jq
    pstream listen web-socket demo-1 --from-start --count 10

Connects to the gateway's web socket ``/ws/<stream>`` with a token of the stream's pipeline
(credentials from the project). Events appear once ``pstream local`` (or another run of the
pipeline over the spool) has written them.
"""
from __future__ import annotations

import asyncio
import sys

import aiohttp
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from cli.project_args import ProjectError, add_project_arg, fail, project_of
from driver.client.auth import TokenProvider
from driver.client.errors import SendError
from driver.config import ClientConfig


def register(subparsers) -> None:
    listen = subparsers.add_parser("listen", help="print events of a stream as they are produced")
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
    try:
        project = project_of(args)
        pipeline = project.pipelines[project.source_of(args.stream)]
    except ProjectError as exc:
        return fail("listen web-socket", exc)
    url = args.gateway or project.gateway_url()
    try:
        return asyncio.run(asyncio.wait_for(_listen(pipeline, url, args), args.timeout) if args.timeout else
                           _listen(pipeline, url, args))
    except asyncio.TimeoutError:
        return 0
    except KeyboardInterrupt:
        return 130
    except (SendError, OSError, InvalidStatus) as exc:
        return fail("listen web-socket", exc)


async def _listen(pipeline, url: str, args) -> int:
    config = ClientConfig(gateway_url=url)
    async with aiohttp.ClientSession() as session:
        token = await TokenProvider(session, config, pipeline.client_id, pipeline.client_secret).token()
    ws_url = url.replace("http://", "ws://", 1).replace("https://", "wss://", 1).rstrip("/") + f"/ws/{args.stream}"
    if args.from_start:
        ws_url += "?from=start"
    seen = 0
    async with connect(ws_url, additional_headers={"Authorization": f"Bearer {token}"},
                                  max_size=None) as socket:
        print(f"listening to {args.stream} at {ws_url.split('?')[0]}", file=sys.stderr, flush=True)
        async for message in socket:
            sys.stdout.write(message if isinstance(message, str) else message.decode())
            sys.stdout.write("\n")
            sys.stdout.flush()
            seen += 1
            if args.count is not None and seen >= args.count:
                break
    return 0
