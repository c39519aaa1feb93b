"""docs/django.md: its snippets make a Django project that runs as the page says.

The page's ``<!-- test: settings -->`` block is appended to a minimal settings module (a
SQLite file, ``SECRET_KEY``, ``ROOT_URLCONF``, middleware), its ``<!-- test: file urls.py
-->`` block is the project's ``urls.py``, and its ``<!-- test: run -->`` blocks run in a
fresh interpreter (Django settings are configured once per process) after ``migrate``; the
comment lines after a ``print(`` are the exact output.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"
SRC = Path(__file__).resolve().parents[2] / "src"
_BLOCK = re.compile(r"<!-- test: ([^>]+?) -->\n```python\n(.*?)^```", re.S | re.M)

_BASE_SETTINGS = """\
from pathlib import Path

SECRET_KEY = "docs"
DEBUG = True
ALLOWED_HOSTS = ["testserver"]
ROOT_URLCONF = "docsite.urls"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(Path(__file__).resolve().parent.parent / "db.sqlite3"),
    }
}
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
"""

_RUNNER = """\
import sys

import django
from django.core.management import call_command

django.setup()
call_command("migrate", verbosity=0)
for path in sys.argv[1:]:
    with open(path, encoding="utf-8") as block:
        exec(compile(block.read(), path, "exec"), {"__name__": "docs_django"})
"""


def expected_output(code: str) -> str:
    lines: list[str] = []
    after_print = False
    for line in code.splitlines():
        stripped = line.strip()
        if after_print and stripped.startswith("#"):
            lines.append(stripped[2:] if stripped.startswith("# ") else stripped[1:])
            continue
        after_print = "print(" in line
    return "".join(f"{line}\n" for line in lines)


def _project(tmp_path: Path) -> tuple[list[Path], str]:
    """Write the page's project under ``tmp_path``; the run blocks and their output."""
    text = (DOCS / "django.md").read_text(encoding="utf-8")
    blocks = [
        (m.group(1), m.group(2), text.count("\n", 0, m.start(2))) for m in _BLOCK.finditer(text)
    ]
    kinds = [kind for kind, _, _ in blocks]
    assert kinds.count("settings") == 1 and "file urls.py" in kinds and "run" in kinds, kinds
    site = tmp_path / "docsite"
    site.mkdir()
    (site / "__init__.py").write_text("")
    runs: list[Path] = []
    expected = ""
    for kind, code, offset in blocks:
        if kind == "settings":
            (site / "settings.py").write_text(_BASE_SETTINGS + code)
        elif kind.startswith("file "):
            (site / kind.removeprefix("file ")).write_text(code)
        else:
            run = tmp_path / f"run_{len(runs)}.py"
            run.write_text("\n" * offset + code)  # tracebacks point at the page's lines
            runs.append(run)
            expected += expected_output(code)
    return runs, expected


def _python(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(SRC)]),
        "DJANGO_SETTINGS_MODULE": "docsite.settings",
        "STRIPE_API_KEY": "",
        "STRIPE_WEBHOOK_SECRET": "",
        **env,
    }
    return subprocess.run(
        [sys.executable, *args],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_django_page_runs_as_written(tmp_path: Path) -> None:
    runs, expected = _project(tmp_path)
    done = _python(tmp_path, "-c", _RUNNER, *map(str, runs))
    assert done.returncode == 0, done.stderr
    assert done.stdout == expected


def test_the_pages_project_is_checked_and_wired_to_stripe_by_its_settings(tmp_path: Path) -> None:
    _project(tmp_path)
    check = (
        "import django; django.setup()\n"
        "from django.core.management import call_command; call_command('check')"
    )
    # Without the keys, `manage.py check` says what is missing.
    refused = _python(tmp_path, "-c", check)
    assert refused.returncode != 0
    assert "billingkit.E002" in refused.stderr and "STRIPE_API_KEY" in refused.stderr
    production = textwrap.dedent(
        """\
        import django; django.setup()
        from django.core.management import call_command
        from billingkit.contrib.django import get_billing
        call_command("check")
        billing = get_billing()
        print(type(billing.gateway).__name__, billing.config.secret_values())
        """
    )
    keys = {"STRIPE_API_KEY": "sk_test_docs", "STRIPE_WEBHOOK_SECRET": "whsec_docs"}
    done = _python(tmp_path, "-c", production, **keys)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "StripeSdkGateway ['whsec_docs']"
