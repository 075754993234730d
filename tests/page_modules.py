"""Run the pages' ES modules (signaling/static/js) in Node, as they are, and read back what a script prints.

The modules are copied beside a ``package.json`` of ``"type": "module"`` so that Node loads them as the
browser does (their relative imports included); nothing is bundled or rewritten.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

PAGES_JS = Path(__file__).resolve().parents[1] / "signaling" / "static" / "js"


def node() -> str:
    """Node's path; the test is skipped (with the reason) where Node is missing (scripts/test.sh installs it)."""
    found = shutil.which("node")
    if found is None:
        pytest.skip("node is not installed (scripts/test.sh installs Debian's npm, which brings it)")
    return found


def run_module_script(workdir: Path, script: str, stdin: str = "") -> Any:
    """Run ``script`` (an ES module that may ``import ... from "./js/<page module>.js"``) and return the JSON
    it wrote to stdout."""
    pages = workdir / "js"
    shutil.copytree(PAGES_JS, pages, dirs_exist_ok=True)
    (workdir / "package.json").write_text('{"type": "module"}\n')
    runner = workdir / "run.mjs"
    runner.write_text(script)
    done = subprocess.run([node(), str(runner)], input=stdin, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
