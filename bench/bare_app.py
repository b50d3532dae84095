"""The baseline for ``bench/ingest.py``: the least a webhook endpoint can do on this stack.

One route, ``POST /hooks/{source}``: read the body, parse it with orjson, answer 202 with JSON shaped
like Hookline's. Served by uvicorn exactly as ``hookline serve`` serves its app (uvloop, httptools,
log level warning, no access log), so the gap between the two is Hookline's own work.

    .venv/bin/python bench/bare_app.py --port 8799
"""

from __future__ import annotations

import argparse

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


async def hooks(request: Request) -> Response:
    payload = orjson.loads(await request.body())
    delivery = request.headers.get("x-github-delivery", "")
    return JSONResponse({"id": delivery, "duplicate": False, "keys": len(payload)}, status_code=202)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


app = Starlette(
    routes=[Route("/hooks/{source}", hooks, methods=["POST"]), Route("/healthz", healthz, methods=["GET"])]
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8799)
    args = parser.parse_args()
    # hookline serve leaves loop/http on "auto", which resolves to these two when they are installed.
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        lifespan="on",
        access_log=False,
    )


if __name__ == "__main__":
    main()
