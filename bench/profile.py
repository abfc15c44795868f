"""Where a Python gateway's time goes: py-spy samples during a streaming phase, summarised.

py-spy (PyPI, installed into ``bench/.cache``) samples the gateway's processes from outside
without pausing them (``--nonblocking``) and writes collapsed stacks (one ``frames count`` line
per distinct stack), which flame-graph tools read as they are. The summary attributes each
sample's innermost frame to a package (self time), and to the innermost library that is not
the runtime underneath everyone (trio, h11, the standard library): "hypercorn's send path",
"httpcore's receive path".
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

from .gateways import REPO
from .peers import CACHE
from .procstat import pinned_exec

PYSPY_VERSION = "0.4.3"


def pyspy(allow_install: bool) -> Path | None:
    venv = CACHE / "pyspy-venv"
    binary = venv / "bin" / "py-spy"
    if binary.exists():
        return binary
    if not allow_install:
        return None
    try:
        subprocess.run(
            ["python3", "-m", "venv", str(venv)], check=True, timeout=300, capture_output=True
        )
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", f"py-spy=={PYSPY_VERSION}"],
            check=True,
            timeout=600,
            capture_output=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return binary if binary.exists() else None


def record(
    binary: Path, pid: int, seconds: float, out: Path, cpus: set[int] | None
) -> subprocess.Popen[bytes]:
    """Start sampling ``pid`` and its children for ``seconds``; collapsed stacks go to ``out``."""
    argv = [
        str(binary), "record", "--pid", str(pid), "--subprocesses", "--nonblocking",
        "--rate", "200", "--duration", str(max(1, round(seconds))), "--format", "raw",
        "--full-filenames", "--output", str(out),
    ]  # fmt: skip
    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=pinned_exec(cpus),
    )


_FRAME = re.compile(r"^(.*) \((.*):\d+\)$")


def package(path: str) -> str:
    """The package that owns a source file (py-spy's ``--full-filenames``)."""
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    for own in ("trio_router", "bench"):
        if f"/{own}/" in path:
            return own
    if "/lib/python" in path or path.startswith("<frozen"):
        return "stdlib"
    return "other"


_PREFIX = re.compile(r"^.*?(/lib/python3\.\d+/|" + re.escape(f"{REPO}/") + ")")


def _short(path: str) -> str:
    if "site-packages/" in path:
        return path.rsplit("site-packages/", 1)[1]
    return _PREFIX.sub("", path, count=1)


# Layers every library calls through; a sample inside them is charged to the library that called.
_RUNTIME = frozenset({"trio", "stdlib", "outcome", "anyio", "sniffio", "h11", "other"})


def summarize(raw: Path, top: int = 15) -> dict[str, Any]:
    self_by_package: Counter[str] = Counter()
    by_library: Counter[str] = Counter()
    self_by_function: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        # Frames are "function (file:line)"; "process 123:..." headers (--subprocesses) are not.
        frames = [
            m for m in map(_FRAME.match, stack.split(";")) if m and not m[0].startswith("process ")
        ]
        if not frames:
            continue
        total += count
        leaf = frames[-1]
        self_by_package[package(leaf[2])] += count
        self_by_function[f"{leaf[1]} ({_short(leaf[2])})"] += count
        owner = next(
            (p for p in map(package, reversed([m[2] for m in frames])) if p not in _RUNTIME), None
        )
        by_library[owner or "trio scheduler and I/O"] += count

    def shares(counter: Counter[str]) -> list[tuple[str, float]]:
        return (
            [(k, round(100 * v / total, 1)) for k, v in counter.most_common(top)] if total else []
        )

    return {
        "samples": total,
        "self_by_package": shares(self_by_package),
        "by_library": shares(by_library),
        "top_self_functions": shares(self_by_function),
    }
