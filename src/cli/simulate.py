"""``pstream simulate random-events PIPELINE``: the reference CLI's simulator, through the gateway.

    pstream simulate random-events demo                 # one event a second, until Ctrl-C
    pstream simulate random-events demo --interval 200 --count 50

Events on ``strmprivacy/example/1.5.0``: ``uniqueIdentifier`` unique-N, ``consistentValue``
session-N (N below 1000), ``someSensitiveValue`` and ``notSensitiveValue``; the consent levels
cycle through none, [0], [0,1], [0,1,2], [0,1,2,3]. They are sent with a token of the pipeline
signed with the project's key (``cli.project_args.ProjectTokens``: the project keeps only the
hash of the client secret) to the gateway of that project (``--gateway``,
``$PSTREAM_GATEWAY_URL`` or the project's ``settings.gateway_url``); anything but 204 is
reported on stderr.
"""
from __future__ import annotations

import random
import sys
import time

from cli.main import summary
from cli.project_args import ProjectError, ProjectTokens, add_project_arg, fail, project_of

SIMULATOR_CONTRACT = "strmprivacy/example/1.5.0"
CONSENT_CYCLE = ([], [0], [0, 1], [0, 1, 2], [0, 1, 2, 3])
SESSIONS = 1000


def random_event(index: int, rng: random.Random) -> dict:
    """The index-th simulated event (consent from the cycle, random ids)."""
    return {
        "strmMeta": {"eventContractRef": SIMULATOR_CONTRACT, "consentLevels": list(CONSENT_CYCLE[index % len(CONSENT_CYCLE)])},
        "uniqueIdentifier": f"unique-{rng.randrange(SESSIONS)}",
        "consistentValue": f"session-{rng.randrange(SESSIONS)}",
        "someSensitiveValue": f"sensitive-{rng.randrange(SESSIONS)}",
        "notSensitiveValue": f"not-sensitive-{rng.randrange(SESSIONS)}",
    }


def register(subparsers) -> None:
    simulate = subparsers.add_parser("simulate", help=summary("simulate"))
    kinds = simulate.add_subparsers(dest="kind", metavar="KIND")
    kinds.required = True
    events = kinds.add_parser("random-events", help=f"random {SIMULATOR_CONTRACT} events to a pipeline",
                              description=__doc__.split("\n\n")[2])
    events.add_argument("pipeline", help="pipeline (stream) name")
    events.add_argument("--interval", type=int, default=1000, help="milliseconds between events (default 1000)")
    events.add_argument("--count", type=int, default=None, help="stop after this many events (default: run until Ctrl-C)")
    events.add_argument("--gateway", default=None, help="gateway URL (default: $PSTREAM_GATEWAY_URL or the project's)")
    events.add_argument("--seed", type=int, default=None, help="random seed")
    events.add_argument("--quiet", action="store_true", help="no progress lines")
    add_project_arg(events)
    events.set_defaults(func=_random_events)


def _random_events(args) -> int:
    try:
        project = project_of(args)
        pipeline = project.pipelines.get(args.pipeline)
        if pipeline is None:
            raise ProjectError(f"no pipeline named '{args.pipeline}' (see `pstream list streams`)")
    except ProjectError as exc:
        return fail("simulate random-events", exc)
    url = args.gateway or project.gateway_url()
    if not args.quiet:
        print(f"Starting to simulate random {SIMULATOR_CONTRACT} events to stream {pipeline.name} at {url}. "
              f"Sending one event every {args.interval} ms.", file=sys.stderr)
    import asyncio

    try:
        return asyncio.run(_send(project, pipeline, url, args))
    except KeyboardInterrupt:
        return 130


async def _send(project, pipeline, url: str, args) -> int:
    import asyncio

    from driver.client.asyncsender import AsyncSender   # aiohttp: only when sending
    from driver.serializer import SerializationType

    rng = random.Random(args.seed)
    sent = failed = 0
    config = {"gateway_url": url, "max_attempts": 3}
    tokens = ProjectTokens(project, pipeline.name)
    async with AsyncSender(pipeline.client_id, None, config, tokens=tokens) as sender:
        start = time.monotonic()
        index = 0
        while args.count is None or index < args.count:
            error = await sender.send_event(random_event(index, rng), SerializationType.JSON)
            index += 1
            if error is not None and sent == 0 and (error.status is None or error.status == 401):
                reason = f"cannot reach {url}" if error.status is None else f"{url} refused the token"
                print(f"pstream simulate random-events: {reason}: {error} (is it the gateway of project "
                      f"{project.directory}?)", file=sys.stderr)
                return 1
            if error is None:
                sent += 1
                if not args.quiet and sent % 10 == 0:
                    print(f"{sent} events sent", file=sys.stderr)
            else:
                failed += 1
                print(f"event {index} not accepted: {error}", file=sys.stderr)
            delay = start + index * args.interval / 1000 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
    if not args.quiet:
        print(f"{sent} events sent, {failed} not accepted", file=sys.stderr)
    return 0 if failed == 0 else 1
