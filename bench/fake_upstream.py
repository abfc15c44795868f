"""A fast fake LLM upstream: OpenAI-compatible, DeepSeek and Gemini formats, streaming or not.

Every text piece starts with a marker ``~T<16 digits>~`` (``~R`` in reasoning) holding the
wall-clock microsecond it was written to the socket, so a client behind any gateway can measure
per-chunk latency from the text alone. Streams are driven by one timer heap per process instead
of a task per stream, so that a thousand streams cost one wake-up per due chunk and one
``send`` each: the fake must never be what limits a benchmark. Several processes can share the
port (SO_REUSEPORT).

Run: ``python -m bench.fake_upstream --port 9000 [--chunks 200 --interval-ms 20 ...]``.
Paths: ``*/chat/completions`` (OpenAI-compatible; under ``/deepseek/`` the stream starts with
``reasoning_content``), ``*:streamGenerateContent`` and ``*:generateContent`` (Gemini); any other
POST gets a 404 JSON error and ``GET`` anything gets ``ok``. With ``--fail-rate 0.2`` a fifth
of the POSTs, at random (seeded per process), get a 503 in OpenAI's error format instead: the
bench's fault phase.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import itertools
import os
import random
import selectors
import signal
import socket
import time
from typing import NamedTuple

import msgspec

from .http1 import LAST_CHUNK, ChunkedDecoder, chunk, parse_head

MARKER_LEN = 19  # "~T" + 16 digits + "~"
_FILLER = b" lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor"


class Settings(NamedTuple):
    chunks: int = 200
    interval: float = 0.020
    chunk_chars: int = 24
    first_delay: float = 0.0
    reasoning_share: float = 0.25
    fail_rate: float = 0.0


def _filler(chunk_chars: int) -> bytes:
    size = max(0, chunk_chars - MARKER_LEN)
    repeated = _FILLER * (size // len(_FILLER) + 1)
    return repeated[:size]


def marker(kind: bytes, now_us: int) -> bytes:
    return b"~%b%016d~" % (kind, now_us)


class _Body(msgspec.Struct):
    model: str = "m"
    stream: bool = False


_body_decoder = msgspec.json.Decoder(_Body)


class Script:
    """The events of one answer in one wire format; ``content(i, now_us)`` is chunk ``i``."""

    __slots__ = (
        "_filler",
        "_pre",
        "_pre_r",
        "_suf",
        "_suf_last",
        "_suf_r",
        "count",
        "head",
        "reasoning",
        "tail",
    )

    def __init__(self, fmt: str, model: str, prompt_tokens: int, settings: Settings) -> None:
        self.count = settings.chunks
        self._filler = _filler(settings.chunk_chars)
        m = model.encode()
        completion = settings.chunks * max(1, settings.chunk_chars // 4)
        self.reasoning = int(settings.chunks * settings.reasoning_share) if fmt == "deepseek" else 0
        if fmt == "gemini":
            # https://ai.google.dev/api/generate-content#v1beta.GenerateContentResponse; alt=sse
            # frames end in CRLF CRLF as in recorded Gemini streams.
            usage = (
                b'"usageMetadata":{"promptTokenCount":%d,"candidatesTokenCount":%d,"totalTokenCount":%d}'
                % (
                    prompt_tokens,
                    completion,
                    prompt_tokens + completion,
                )
            )
            self.head: list[bytes] = []
            self._pre = b'data: {"candidates":[{"content":{"parts":[{"text":"'
            self._pre_r = self._pre
            self._suf_r = b""
            self._suf = (
                b'"}],"role":"model"},"index":0}],%b,"modelVersion":"%b","responseId":"bench"}\r\n\r\n'
                % (
                    usage,
                    m,
                )
            )
            self._suf_last = (
                b'"}],"role":"model"},"finishReason":"STOP","index":0}],%b,"modelVersion":"%b",'
                b'"responseId":"bench"}\r\n\r\n' % (usage, m)
            )
            self.tail: list[bytes] = []
            return
        # https://platform.openai.com/docs/api-reference/chat-streaming/streaming
        common = (
            b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1732500000,'
            b'"model":"%b","system_fingerprint":"fp_bench","choices":[{"index":0,"delta":' % m
        )
        self.head = [
            common
            + b'{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}\n\n'
        ]
        if fmt == "deepseek":
            # https://api-docs.deepseek.com/guides/reasoning_model: reasoning_content comes first.
            self._pre_r = common + b'{"content":null,"reasoning_content":"'
            self._suf_r = b'"},"logprobs":null,"finish_reason":null}]}\n\n'
            self._pre = common + b'{"content":"'
            self._suf = b'","reasoning_content":null},"logprobs":null,"finish_reason":null}]}\n\n'
        else:
            self._pre_r = self._pre = common + b'{"content":"'
            self._suf_r = b""
            self._suf = b'"},"logprobs":null,"finish_reason":null}]}\n\n'
        self._suf_last = self._suf
        self.tail = [
            common + b'{},"logprobs":null,"finish_reason":"stop"}]}\n\n',
            # stream_options.include_usage: a last chunk with empty choices and the usage.
            b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1732500000,'
            b'"model":"%b","choices":[],"usage":{"prompt_tokens":%d,"completion_tokens":%d,'
            b'"total_tokens":%d}}\n\n' % (m, prompt_tokens, completion, prompt_tokens + completion),
            b"data: [DONE]\n\n",
        ]

    def content(self, i: int, now_us: int) -> bytes:
        if i < self.reasoning:
            return self._pre_r + marker(b"R", now_us) + self._filler + self._suf_r
        suffix = self._suf_last if i == self.count - 1 else self._suf
        return self._pre + marker(b"T", now_us) + self._filler + suffix


def full_text(settings: Settings, now_us: int) -> bytes:
    filler = _filler(settings.chunk_chars)
    return b"".join(marker(b"T", now_us) + filler for _ in range(settings.chunks))


def non_stream_body(fmt: str, model: str, prompt_tokens: int, settings: Settings) -> bytes:
    text = full_text(settings, time.time_ns() // 1000)
    completion = settings.chunks * max(1, settings.chunk_chars // 4)
    m = model.encode()
    if fmt == "gemini":
        return (
            b'{"candidates":[{"content":{"parts":[{"text":"%b"}],"role":"model"},"finishReason":"STOP","index":0}],'
            b'"usageMetadata":{"promptTokenCount":%d,"candidatesTokenCount":%d,"totalTokenCount":%d},'
            b'"modelVersion":"%b","responseId":"bench"}'
            % (text, prompt_tokens, completion, prompt_tokens + completion, m)
        )
    reasoning = b',"reasoning_content":"~R0000000000000000~ thinking"' if fmt == "deepseek" else b""
    # https://platform.openai.com/docs/api-reference/chat/object
    return (
        b'{"id":"chatcmpl-bench","object":"chat.completion","created":1732500000,"model":"%b",'
        b'"choices":[{"index":0,"message":{"role":"assistant","content":"%b"%b},"logprobs":null,'
        b'"finish_reason":"stop"}],"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}}'
        % (m, text, reasoning, prompt_tokens, completion, prompt_tokens + completion)
    )


_STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\nconnection: keep-alive\r\n\r\n"
)


class _Conn:
    __slots__ = ("close_after", "closed", "inbuf", "out", "script", "sent", "sock", "want_write")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.inbuf = b""
        self.out = bytearray()
        self.want_write = False
        self.closed = False
        self.close_after = False
        self.script: Script | None = None
        self.sent = 0


class Server:
    """One process of the fake: a selector loop plus a heap of due chunks."""

    def __init__(self, listener: socket.socket, settings: Settings) -> None:
        self.listener = listener
        self.settings = settings
        self.sel = selectors.DefaultSelector()
        self.sel.register(listener, selectors.EVENT_READ, None)
        self.heap: list[tuple[float, int, _Conn]] = []
        self.seq = itertools.count()
        self.running = True
        self.dice = random.Random(os.getpid())

    def serve(self) -> None:
        heap = self.heap
        sel = self.sel
        while self.running:
            timeout = max(0.0, heap[0][0] - time.monotonic()) if heap else 0.5
            for key, mask in sel.select(timeout):
                conn = key.data
                if conn is None:
                    self._accept()
                    continue
                if mask & selectors.EVENT_WRITE:
                    self._flush(conn)
                if mask & selectors.EVENT_READ and not conn.closed:
                    self._read(conn)
            now = time.monotonic()
            while heap and heap[0][0] <= now:
                due, _, conn = heapq.heappop(heap)
                if not conn.closed:
                    self._tick(conn, due)

    def _accept(self) -> None:
        for _ in range(64):
            try:
                sock, _ = self.listener.accept()
            except BlockingIOError:
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sel.register(sock, selectors.EVENT_READ, _Conn(sock))

    def _close(self, conn: _Conn) -> None:
        if not conn.closed:
            conn.closed = True
            self.sel.unregister(conn.sock)
            conn.sock.close()

    def _read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(262144)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(conn)
            return
        if conn.script is not None:
            return  # a client talking during a stream: ignore until it is done
        conn.inbuf += data
        self._handle(conn)

    def _handle(self, conn: _Conn) -> None:
        buf = conn.inbuf.lstrip(b"\r\n")
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            conn.inbuf = buf
            return
        head = parse_head(buf[:end])
        body_start = end + 4
        if head.chunked:
            decoder = ChunkedDecoder()
            body = decoder.feed(buf[body_start:])
            if not decoder.done:
                conn.inbuf = buf
                return
            conn.inbuf = b""
        else:
            length = head.content_length or 0
            if len(buf) - body_start < length:
                conn.inbuf = buf
                return
            body = buf[body_start : body_start + length]
            conn.inbuf = buf[body_start + length :]
        conn.close_after = head.close
        self._respond(conn, head.start[0], head.start[1] if len(head.start) > 1 else b"/", body)

    def _respond(self, conn: _Conn, method: bytes, target: bytes, body: bytes) -> None:
        path = target.split(b"?", 1)[0]
        if method != b"POST":
            self._send_whole(conn, 200, b"text/plain", b"ok")
            return
        if self.settings.fail_rate and self.dice.random() < self.settings.fail_rate:
            # https://platform.openai.com/docs/guides/error-codes: 503, "Slow Down".
            err = b'{"error":{"message":"the fake is failing on purpose","type":"server_error"}}'
            self._send_whole(conn, 503, b"application/json", err)
            return
        prompt_tokens = max(1, len(body) // 4)
        if path.endswith(b":streamGenerateContent") or path.endswith(b":generateContent"):
            model = path.rsplit(b"/", 1)[-1].split(b":", 1)[0].decode()
            if path.endswith(b":generateContent"):
                payload = non_stream_body("gemini", model, prompt_tokens, self.settings)
                self._send_whole(conn, 200, b"application/json", payload)
            else:
                self._start_stream(conn, Script("gemini", model, prompt_tokens, self.settings))
            return
        if not path.endswith(b"/chat/completions"):
            err = b'{"error":{"message":"no such path on the fake upstream","type":"not_found"}}'
            self._send_whole(conn, 404, b"application/json", err)
            return
        fmt = "deepseek" if b"/deepseek/" in path else "openai"
        try:
            req = _body_decoder.decode(body)
        except msgspec.DecodeError:
            err = b'{"error":{"message":"body is not JSON","type":"invalid_request_error"}}'
            self._send_whole(conn, 400, b"application/json", err)
            return
        if req.stream:
            self._start_stream(conn, Script(fmt, req.model, prompt_tokens, self.settings))
        else:
            payload = non_stream_body(fmt, req.model, prompt_tokens, self.settings)
            self._send_whole(conn, 200, b"application/json", payload)

    def _send_whole(self, conn: _Conn, status: int, ctype: bytes, payload: bytes) -> None:
        reason = b"OK" if status == 200 else b"Error"
        connection = b"close" if conn.close_after else b"keep-alive"
        head = (
            b"HTTP/1.1 %d %b\r\ncontent-type: %b\r\ncontent-length: %d\r\nconnection: %b\r\n\r\n"
            % (
                status,
                reason,
                ctype,
                len(payload),
                connection,
            )
        )
        self._write(conn, head + payload)
        self._finish(conn)

    def _finish(self, conn: _Conn) -> None:
        conn.script = None
        if conn.close_after and not conn.out:
            self._close(conn)
        elif conn.inbuf:
            self._handle(conn)

    def _start_stream(self, conn: _Conn, script: Script) -> None:
        conn.script = script
        conn.sent = 0
        self._write(conn, _STREAM_HEAD + b"".join(chunk(event) for event in script.head))
        heapq.heappush(
            self.heap, (time.monotonic() + self.settings.first_delay, next(self.seq), conn)
        )

    def _tick(self, conn: _Conn, due: float) -> None:
        script = conn.script
        if script is None:
            return
        i = conn.sent
        data = chunk(script.content(i, time.time_ns() // 1000))
        conn.sent = i + 1
        if conn.sent < script.count:
            self._write(conn, data)
            heapq.heappush(self.heap, (due + self.settings.interval, next(self.seq), conn))
            return
        self._write(conn, data + b"".join(chunk(event) for event in script.tail) + LAST_CHUNK)
        self._finish(conn)

    def _write(self, conn: _Conn, data: bytes) -> None:
        if conn.closed:
            return
        if not conn.out:
            try:
                sent = conn.sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self._close(conn)
                return
            if sent == len(data):
                return
            data = data[sent:]
        conn.out += data
        if not conn.want_write:
            conn.want_write = True
            self.sel.modify(conn.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, conn)

    def _flush(self, conn: _Conn) -> None:
        try:
            sent = conn.sock.send(conn.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        del conn.out[:sent]
        if not conn.out:
            conn.want_write = False
            self.sel.modify(conn.sock, selectors.EVENT_READ, conn)
            if conn.close_after and conn.script is None:
                self._close(conn)


def listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(4096)
    sock.setblocking(False)
    return sock


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fake_upstream", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    defaults = Settings()
    parser.add_argument(
        "--chunks", type=int, default=defaults.chunks, help="content chunks per stream"
    )
    parser.add_argument("--interval-ms", type=float, default=defaults.interval * 1000)
    parser.add_argument(
        "--chunk-chars", type=int, default=defaults.chunk_chars, help="text per chunk"
    )
    parser.add_argument("--first-delay-ms", type=float, default=0.0, help="before the first chunk")
    parser.add_argument("--max-seconds", type=float, default=3600.0, help="exit after this long")
    parser.add_argument("--fail-rate", type=float, default=0.0, help="share of POSTs given a 503")
    args = parser.parse_args(argv)
    settings = Settings(
        chunks=max(1, args.chunks),
        interval=args.interval_ms / 1000,
        chunk_chars=args.chunk_chars,
        first_delay=args.first_delay_ms / 1000,
        fail_rate=args.fail_rate,
    )
    server = Server(listen(args.host, args.port), settings)

    def stop(signum: int, frame: object) -> None:
        server.running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGALRM, stop)
    signal.alarm(max(1, int(args.max_seconds)))
    print(f"fake upstream {os.getpid()} on {args.host}:{args.port}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve()


if __name__ == "__main__":
    main()
