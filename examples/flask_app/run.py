"""Start the Flask example: ``python -m examples.flask_app`` (or run ``run.py`` directly).

Without Stripe keys it runs on embedded defaults: the fake Stripe and a SQLite file in a
fresh temporary directory, served on 127.0.0.1 (port ``--port``, else ``$PORT``, else 8000;
a free port when that one is busy). ``--walkthrough`` runs the whole flow headless instead
and exits 0 when every step passed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

__all__ = ["main", "serve"]

DEFAULT_PORT = 8000


def serve(port: int, *, host: str = "127.0.0.1") -> None:
    """Serve the app until Ctrl+C, on ``port`` or a free one if it is taken."""
    from examples.flask_app.app import create_app
    from examples.flask_app.billing import fake_gateway
    from werkzeug.serving import make_server

    from billingkit.contrib.flask import BillingKit

    app = create_app()
    billing = BillingKit.billing_for(app)
    try:
        # Threaded: in fake mode the app POSTs Stripe's events to itself while serving.
        server = make_server(host, port, app, threaded=True)
    except OSError as error:
        print(f"port {port} is not available ({error.strerror}); using a free port instead")
        server = make_server(host, 0, app, threaded=True)
    mode = "the fake Stripe" if fake_gateway(billing) is not None else "Stripe test mode"
    print(f"billingkit Flask example on {mode}, database {app.config['BILLING_DATABASE_URL']}")
    print(f"Open http://{host}:{server.server_port}/  (Ctrl+C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        billing.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and serve, or run the headless walkthrough."""
    parser = argparse.ArgumentParser(
        prog="python -m examples.flask_app", description="billingkit's Flask example"
    )
    parser.add_argument(
        "--port", type=int, default=None, help=f"port (default: $PORT, else {DEFAULT_PORT})"
    )
    parser.add_argument(
        "--walkthrough",
        action="store_true",
        help="run the whole subscription flow headless, print each step, and exit",
    )
    args = parser.parse_args(argv)
    if args.walkthrough:
        from examples.flask_app.walkthrough import run

        return run()
    port = args.port if args.port is not None else int(os.environ.get("PORT") or DEFAULT_PORT)
    serve(port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
