"""Installing the peers the router is compared with, into ``bench/.cache`` (never system-wide).

claude-code-router comes from the npm registry at 2.0.0 (3.x cannot install here), LiteLLM's
proxy from PyPI into its own virtualenv, both at pinned versions so runs compare like with like.
Every failure comes back as a message for the results, never as an exception.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

CACHE = Path(__file__).resolve().parent / ".cache"
CCR_PACKAGE = "@musistudio/claude-code-router"
CCR_VERSION = "2.0.0"
LITELLM_VERSION = "1.108.7"


class Installed(NamedTuple):
    ok: bool
    version: str
    detail: str  # where it is, or why it is not


def _run(argv: list[str], timeout: float) -> tuple[int, str]:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return -1, str(exc)
    return proc.returncode, (proc.stdout + proc.stderr)[-2000:]


def ccr_cli() -> Path:
    return CACHE / "ccr" / "node_modules" / CCR_PACKAGE / "dist" / "cli.js"


def install_ccr(allow_install: bool = True) -> Installed:
    package_json = CACHE / "ccr" / "node_modules" / CCR_PACKAGE / "package.json"
    node = shutil.which("node")
    if node is None:
        return Installed(False, "", "node is not installed")
    if (
        not package_json.exists()
        or json.loads(package_json.read_text()).get("version") != CCR_VERSION
    ):
        npm = shutil.which("npm")
        if not allow_install or npm is None:
            return Installed(False, "", "not installed (npm missing or installs disabled)")
        (CACHE / "ccr").mkdir(parents=True, exist_ok=True)
        code, out = _run(
            [
                npm,
                "install",
                "--prefix",
                str(CACHE / "ccr"),
                "--no-audit",
                "--no-fund",
                f"{CCR_PACKAGE}@{CCR_VERSION}",
            ],
            timeout=900,
        )
        if code != 0 or not ccr_cli().exists():
            return Installed(False, "", f"npm install failed ({code}): {out}")
    _, node_version = _run([node, "--version"], timeout=30)
    return Installed(True, f"{CCR_VERSION} (node {node_version.strip()})", str(ccr_cli()))


def litellm_bin() -> Path:
    return CACHE / "litellm-venv" / "bin" / "litellm"


def install_litellm(allow_install: bool = True) -> Installed:
    venv = CACHE / "litellm-venv"
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"]
    code, version = _run(probe, timeout=60) if python.exists() else (1, "")
    if code != 0 or version.strip() != LITELLM_VERSION:
        if not allow_install:
            return Installed(False, "", "not installed (installs disabled)")
        if not python.exists():
            code, out = _run([sys.executable, "-m", "venv", str(venv)], timeout=300)
            if code != 0:
                return Installed(False, "", f"venv failed: {out}")
        code, out = _run(
            [str(python), "-m", "pip", "install", "-q", f"litellm[proxy]=={LITELLM_VERSION}"],
            timeout=1800,
        )
        if code != 0:
            return Installed(False, "", f"pip install failed ({code}): {out}")
        code, version = _run(probe, timeout=60)
        if code != 0:
            return Installed(False, "", f"installed but not importable: {version}")
    return Installed(True, version.strip(), str(litellm_bin()))
