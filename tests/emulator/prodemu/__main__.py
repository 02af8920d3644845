"""``python -m prodemu --host 127.0.0.1 --port PORT``: moto server with prodemu's extensions."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any


def build_app() -> Any:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    from . import patches
    from .control import ControlMiddleware

    patches.apply()
    app = DomainDispatcherApplication(create_backend_app)
    app.debug = True  # type: ignore[attr-defined]
    return ControlMiddleware(app)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="prodemu")
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=int(os.environ.get("MOTO_PORT", 5000)))
    parser.add_argument("--enforce", action="store_true", help="start with IAM enforcement on")
    args = parser.parse_args(argv)
    os.environ.setdefault("MOTO_PORT", str(args.port))

    from werkzeug.serving import run_simple

    from moto.moto_server.werkzeug_app import MotoRequestHandler

    app = build_app()
    if args.enforce:
        from .enforcement import set_enforcement

        set_enforcement(True)

    def _stop(signum: int, frame: Any) -> None:
        sys.exit(0)

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    run_simple(args.host, args.port, app, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
