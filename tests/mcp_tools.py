"""The tool lists of real MCP servers, read over stdio as an MCP client reads them.

JSON-RPC 2.0, one message per line (https://modelcontextprotocol.io/specification/2025-06-18/
basic/transports#stdio): ``initialize``, the ``notifications/initialized`` notification, then
``tools/list`` (.../server/tools#listing-tools), following ``nextCursor`` until there is none.
The servers are npm packages pinned in tests/claude_code/package.json (``npm ci --prefix
tests/claude_code``).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

BIN = Path(__file__).parent / "claude_code" / "node_modules" / ".bin"
# Each server's command, the arguments it needs to start.
SERVERS: dict[str, list[str]] = {
    "filesystem": ["mcp-server-filesystem", "."],
    "memory": ["mcp-server-memory"],
    "everything": ["mcp-server-everything"],
    "sequential-thinking": ["mcp-server-sequential-thinking"],
}
PROTOCOL = "2025-06-18"


def _exchange(process: subprocess.Popen[str], message: dict[str, Any]) -> dict[str, Any]:
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(json.dumps(message) + "\n")
    process.stdin.flush()
    if "id" not in message:
        return {}
    while True:  # skip the server's own notifications and logs
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"MCP server closed its output before answering {message['method']}")
        answer = json.loads(line)
        if answer.get("id") == message["id"]:
            if "error" in answer:
                raise RuntimeError(f"MCP server answered {answer['error']}")
            result: dict[str, Any] = answer["result"]
            return result


def list_tools(server: str, cwd: Path, timeout: float = 60) -> list[dict[str, Any]]:
    """The ``tools`` of one server in :data:`SERVERS`, as its ``tools/list`` gives them."""
    command, *args = SERVERS[server]
    process = subprocess.Popen(
        [str(BIN / command), *args],
        cwd=cwd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        _exchange(
            process,
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": PROTOCOL,
                    "capabilities": {},
                    "clientInfo": {"name": "trio-router-tests", "version": "1"},
                },
            },
        )
        _exchange(process, {"jsonrpc": "2.0", "method": "notifications/initialized"})
        tools: list[dict[str, Any]] = []
        cursor: str | None = None
        for request_id in range(2, 50):
            params = {"cursor": cursor} if cursor else {}
            page = _exchange(
                process,
                {"jsonrpc": "2.0", "id": request_id, "method": "tools/list", "params": params},
            )
            tools += page.get("tools", [])
            cursor = page.get("nextCursor")
            if not cursor:
                break
        return tools
    finally:
        process.kill()
        process.wait(timeout)


def as_anthropic_tools(tools: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    """MCP tools as Claude Code declares them to the Messages API (``mcp__server__tool``)."""
    return [
        {
            "name": f"mcp__{prefix}__{tool['name']}"[:64],
            "description": tool.get("description", ""),
            "input_schema": tool["inputSchema"],
        }
        for tool in tools
    ]
