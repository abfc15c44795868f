"""Install, locate and run the pinned Claude Code CLI for end-to-end tests.

The npm package ``@anthropic-ai/claude-code`` is a thin wrapper: the real CLI is a native
executable shipped in a per-platform optional dependency, which the wrapper's postinstall copies
(or hard-links) over ``bin/claude.exe``. We run the platform binary directly, so a registry or npm
that skips install scripts still gives a working CLI, and Node's version does not matter.

Environment variables below were read from the 2.1.331 binary and checked against a capture
server (see tests/claude_code/README.md).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
_DEPENDENCIES: dict[str, str] = json.loads((PACKAGE_DIR / "package.json").read_text())[
    "dependencies"
]
PINNED_VERSION: str = _DEPENDENCIES["@anthropic-ai/claude-code"]
# Older CLIs the end-to-end tests also run, each installed as an npm alias
# ("claude-code-2.1.197": "npm:@anthropic-ai/claude-code@2.1.197"): users do not all run the newest.
_ALIAS_PREFIX = "npm:@anthropic-ai/claude-code@"
OLDER_VERSIONS: tuple[str, ...] = tuple(
    spec.removeprefix(_ALIAS_PREFIX)
    for name, spec in _DEPENDENCIES.items()
    if name.startswith("claude-code-") and spec.startswith(_ALIAS_PREFIX)
)
VERSIONS: tuple[str, ...] = (PINNED_VERSION, *OLDER_VERSIONS)

# Keeps every run on the loopback server: with it the CLI makes no DNS lookup and no connection
# other than POST /v1/messages (checked with strace); the others are its documented sub-switches.
QUIET_ENV: Mapping[str, str] = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "TERM": "dumb",
    "NO_COLOR": "1",
}

# Makes failures fast in CI. Without CLAUDE_CODE_MAX_RETRIES=0 a broken stream is retried ten
# times with backoff capped near 40 s (about three minutes) before the non-streaming fallback;
# API_TIMEOUT_MS also lowers the X-Stainless-Timeout header from 600 (seconds) to 60.
FAST_ENV: Mapping[str, str] = {
    "CLAUDE_CODE_MAX_RETRIES": "0",
    "API_TIMEOUT_MS": "60000",
}


def _platform_package() -> str:
    """The optional dependency that carries this machine's binary (mirrors install.cjs)."""
    system = {"linux": "linux", "darwin": "darwin", "win32": "win32"}[sys.platform]
    machine = platform.machine().lower()
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}[machine]
    musl = system == "linux" and platform.libc_ver()[0] != "glibc"
    return f"@anthropic-ai/claude-code-{system}-{arch}{'-musl' if musl else ''}"


INSTALL_COMMAND = "npm ci --prefix tests/claude_code"


class ClaudeNotInstalled(RuntimeError):
    """The pinned CLI is missing or is another version: CI forgot (or broke) the install step."""


def find_claude(package_dir: Path = PACKAGE_DIR, version: str = PINNED_VERSION) -> Path | None:
    """The installed native CLI, or None when ``npm ci`` has not run in ``package_dir``."""
    exe = "claude.exe" if sys.platform == "win32" else "claude"
    modules = package_dir / "node_modules"
    if version != PINNED_VERSION:  # an alias keeps its own platform package beneath it
        modules = modules / f"claude-code-{version}" / "node_modules"
    binary = modules / _platform_package() / exe
    return binary if os.access(binary, os.X_OK) else None


def version_of(binary: Path) -> str:
    """The version of an installed CLI, from its platform package's package.json."""
    version: str = json.loads((binary.parent / "package.json").read_text())["version"]
    return version


def install() -> None:
    """Install exactly what package-lock.json pins, from the npm registry."""
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not on PATH; install Node.js and npm first")
    subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=PACKAGE_DIR, check=True
    )


def _check_version(binary: Path, version: str = PINNED_VERSION) -> None:
    out = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    if not out.startswith(version + " "):
        raise ClaudeNotInstalled(
            f"expected Claude Code {version} at {binary}, got {out.strip()!r}: "
            f"run `{INSTALL_COMMAND}` to install the pinned version"
        )


def ensure_claude() -> Path:
    """Return the pinned CLI, installing it first if needed, and check its version."""
    binary = find_claude()
    if binary is None:
        install()
        binary = find_claude()
    if binary is None:
        raise RuntimeError(f"{_platform_package()} did not install under {PACKAGE_DIR}")
    _check_version(binary)
    return binary


def require_claude(package_dir: Path = PACKAGE_DIR, version: str = PINNED_VERSION) -> Path:
    """A pinned CLI, never installing it: the test suite runs what CI installed.

    Installing from inside a test would hide a broken install step and make a test's duration
    depend on the registry.
    """
    binary = find_claude(package_dir, version)
    if binary is None:
        raise ClaudeNotInstalled(
            f"Claude Code {version} ({_platform_package()}) is not installed under "
            f"{package_dir / 'node_modules'}: run `{INSTALL_COMMAND}` first "
            "(it is part of the README's test command)"
        )
    _check_version(binary, version)
    return binary


def claude_env(
    base_url: str, home: Path, *, fast: bool = True, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """A from-scratch environment, so nothing of the caller's (keys, proxies) leaks in.

    ``home`` also holds TMPDIR: the CLI writes ``$TMPDIR/claude-<uid>/`` on every run.
    """
    tmp = home / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "TMPDIR": str(tmp),
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": "test-key",
        **QUIET_ENV,
    }
    if fast:
        env.update(FAST_ENV)
    if extra:
        env.update(extra)
    return env


def run_claude(
    prompt: str,
    *,
    base_url: str,
    home: Path,
    cwd: Path,
    args: Sequence[str] = (),
    fast: bool = True,
    extra_env: Mapping[str, str] | None = None,
    timeout: float = 120,
    binary: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run one ``claude -p`` turn with ``--output-format json``.

    Root may not use --dangerously-skip-permissions, so Bash is pre-approved with
    --allowedTools. stdin is /dev/null: with an open pipe the CLI waits 3 s for piped input.
    ``binary`` skips the install check (see :func:`require_claude`).
    """
    command = [
        str(binary or ensure_claude()),
        "-p",
        prompt,
        "--allowedTools",
        "Bash",
        "--output-format",
        "json",
        *args,
    ]
    return subprocess.run(
        command,
        cwd=cwd,
        env=claude_env(base_url, home, fast=fast, extra=extra_env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
