"""The README's usage example runs as written."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).parents[2] / "README.md"


def test_readme_python_blocks_run() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert blocks, "the README has a usage example"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for block in blocks:
            exec(compile(block, str(README), "exec"), {})
    text = out.getvalue()
    assert "welcome user-42" in text
    assert "Pro ['19.00 USD', '190.00 USD']" in text
    assert "\nactive\n" in text  # confirm_checkout reports Stripe's status
    assert "pro active True True" in text
