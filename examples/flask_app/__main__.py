"""``python -m examples.flask_app [--port N] [--walkthrough]``: see ``run.py``."""

import sys

from examples.flask_app.run import main

sys.exit(main())
