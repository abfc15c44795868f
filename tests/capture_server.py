"""A fake Anthropic API on 127.0.0.1 that records every request a client sends.

It exists to see exactly what a real client (the Claude Code CLI) puts on the wire, so the
fixtures in tests/fixtures/claude_code/ come from a recording, not from guesses. Stdlib only, so
it runs before (and independently of) the router's own dependencies.

Run: ``python tests/capture_server.py --mode text --log /tmp/requests.jsonl``; it prints the
port it bound on its first stdout line. Each request becomes one JSON line in the log.

Response shapes follow https://docs.anthropic.com/en/api/messages and
https://docs.anthropic.com/en/docs/build-with-claude/streaming.
"""

from __future__ import annotations

import argparse
import itertools
import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MODES = ("text", "tool_use", "break", "truncate", "overloaded")
TEXT_DELTAS = ("Hi", "! How can I help?")
TOOL_INPUT = {"command": "echo hello > marker.txt", "description": "Write marker file"}


def _usage(output_tokens: int) -> dict[str, int]:
    return {
        "input_tokens": 12,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
    }


def _wants_tool_use(body: dict[str, Any]) -> bool:
    """Answer with a Bash tool_use only on the first turn of a request that offers Bash.

    Claude Code also sends side requests (titles, quota probes) without tools; those get text.
    """
    if not any(t.get("name") == "Bash" for t in body.get("tools") or ()):
        return False
    for message in body.get("messages") or ():
        content = message.get("content")
        if isinstance(content, list) and any(
            isinstance(b, dict) and b.get("type") == "tool_result" for b in content
        ):
            return False
    return True


def _content(body: dict[str, Any], mode: str, n: int) -> list[dict[str, Any]]:
    if mode == "tool_use" and _wants_tool_use(body):
        return [
            {"type": "text", "text": "Running it."},
            {"type": "tool_use", "id": f"toolu_fake{n:04d}", "name": "Bash", "input": TOOL_INPUT},
        ]
    return [{"type": "text", "text": "".join(TEXT_DELTAS)}]


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _stream_events(model: str, content: list[dict[str, Any]], n: int) -> list[bytes]:
    """The event sequence Anthropic sends for ``content``."""
    stop = "tool_use" if any(b["type"] == "tool_use" for b in content) else "end_turn"
    message: dict[str, Any] = {
        "id": f"msg_fake{n:04d}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": _usage(1),
    }
    out = [_sse("message_start", {"type": "message_start", "message": message})]
    out.append(_sse("ping", {"type": "ping"}))
    for index, block in enumerate(content):
        if block["type"] == "text":
            start: dict[str, Any] = {"type": "text", "text": ""}
            pieces = list(TEXT_DELTAS) if block["text"] == "".join(TEXT_DELTAS) else [block["text"]]
            deltas = [{"type": "text_delta", "text": p} for p in pieces]
        else:
            start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            raw = json.dumps(block["input"])
            half = len(raw) // 2
            parts = (raw[:half], raw[half:])
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in parts]
        out.append(
            _sse(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": start},
            )
        )
        out.extend(
            _sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})
            for d in deltas
        )
        out.append(_sse("content_block_stop", {"type": "content_block_stop", "index": index}))
    out.append(
        _sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": _usage(9),
            },
        )
    )
    out.append(_sse("message_stop", {"type": "message_stop"}))
    return out


class CaptureServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, mode: str, log: Path) -> None:
        super().__init__(("127.0.0.1", 0), CaptureHandler)
        self.mode = mode
        self.log = log
        self.lock = threading.Lock()
        self.counter = itertools.count(1)

    def record(self, entry: dict[str, Any]) -> int:
        with self.lock:
            n = next(self.counter)
            with self.log.open("a", encoding="utf-8") as f:
                f.write(json.dumps({"seq": n, "time": time.time(), **entry}) + "\n")
        return n


class CaptureHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: CaptureServer

    def log_message(self, format: str, *args: Any) -> None:
        """Silence stderr; the JSONL log is the record."""

    def _record(self) -> tuple[int, Any]:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        n = self.server.record(
            {
                "method": self.command,
                "target": self.path,
                "http_version": self.request_version,
                "headers": [[k, v] for k, v in self.headers.items()],
                "body": body,
            }
        )
        return n, body

    def _json(self, status: int, payload: dict[str, Any], n: int) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("request-id", f"req_fake{n:04d}")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _not_found(self, n: int) -> None:
        error = {"type": "not_found_error", "message": f"no route for {self.path}"}
        self._json(404, {"type": "error", "error": error}, n)

    def do_HEAD(self) -> None:
        n, _ = self._record()
        if self.path == "/":
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()
        else:
            self._not_found(n)

    def do_GET(self) -> None:
        n, _ = self._record()
        self._not_found(n)

    def do_POST(self) -> None:
        n, body = self._record()
        route = self.path.split("?", 1)[0]
        if route == "/v1/messages/count_tokens":
            self._json(200, {"input_tokens": 42}, n)
        elif route == "/v1/messages" and isinstance(body, dict):
            self._messages(body, n)
        else:
            self._not_found(n)

    def _messages(self, body: dict[str, Any], n: int) -> None:
        if self.server.mode == "overloaded":
            error = {"type": "overloaded_error", "message": "Overloaded"}
            self._json(529, {"type": "error", "error": error}, n)
            return
        model = str(body.get("model", "claude-fake"))
        content = _content(body, self.server.mode, n)
        if not body.get("stream"):
            stop = "tool_use" if content[-1]["type"] == "tool_use" else "end_turn"
            message = {
                "id": f"msg_fake{n:04d}",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": content,
                "stop_reason": stop,
                "stop_sequence": None,
                "usage": _usage(9),
            }
            self._json(200, message, n)
            return
        events = _stream_events(model, content, n)
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("cache-control", "no-cache")
        self.send_header("request-id", f"req_fake{n:04d}")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        if self.server.mode == "break":
            # Abort mid-body: no terminating zero-length chunk, so the client sees a broken
            # transfer rather than a clean end of stream.
            self._chunk(events[0])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        if self.server.mode == "truncate":
            # A well-formed HTTP body that ends after message_start: no message_stop.
            events = events[:1]
        for event in events:
            self._chunk(event)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=MODES, default="text")
    parser.add_argument("--log", type=Path, required=True)
    args = parser.parse_args()
    server = CaptureServer(args.mode, args.log)
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        sys.stdout.flush()


if __name__ == "__main__":
    main()
