"""Load generator: N keep-alive connections sending requests back to back for a fixed time.

One process is one selector loop over raw non-blocking sockets, so that it stays far cheaper
than any gateway it measures; the orchestrator runs several and merges their histograms. Latency
of each text chunk is read from the ``~T<microseconds>~`` markers the fake upstream writes into
the text, whatever wire format carries it (Anthropic events, OpenAI chunks, Gemini parts).

Output: one JSON object on stdout (see ``Stats``). Every loop is bounded: no request starts
after ``start_at + duration`` and everything still open at ``start_at + duration + grace`` is
cut and counted as a timeout.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import heapq
import itertools
import math
import selectors
import socket
import sys
import time
from typing import Any

import msgspec

from .http1 import ChunkedDecoder, parse_head

# Histograms: 16 buckets per doubling of microseconds (about 4.4 % wide), mergeable by addition.
_BUCKETS_PER_DOUBLING = 16


def bucket(us: float) -> int:
    return int(math.log2(us if us > 1.0 else 1.0) * _BUCKETS_PER_DOUBLING)


def bucket_value(b: int) -> float:
    """Microseconds at the middle of bucket ``b``."""
    return float(2 ** ((b + 0.5) / _BUCKETS_PER_DOUBLING))


def percentile(hist: dict[int, int], q: float) -> float | None:
    """The ``q`` quantile (0..1) of a histogram, in microseconds."""
    total = sum(hist.values())
    if not total:
        return None
    rank = q * total
    seen = 0
    for b in sorted(hist):
        seen += hist[b]
        if seen >= rank:
            return bucket_value(b)
    return bucket_value(max(hist))


def merge(into: dict[int, int], other: dict[int, int]) -> None:
    for b, n in other.items():
        into[b] = into.get(b, 0) + n


class Stats(msgspec.Struct):
    requests: int = 0
    ok: int = 0
    errors: dict[str, int] = msgspec.field(default_factory=dict)
    error_samples: list[str] = msgspec.field(default_factory=list)
    text_chunks: int = 0
    reasoning_chunks: int = 0
    ttfb: dict[int, int] = msgspec.field(default_factory=dict)
    ttft: dict[int, int] = msgspec.field(default_factory=dict)
    latency: dict[int, int] = msgspec.field(default_factory=dict)
    chunk_gap: dict[int, int] = msgspec.field(default_factory=dict)
    request_time: dict[int, int] = msgspec.field(default_factory=dict)
    elapsed: float = 0.0

    def error(self, kind: str, detail: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1
        if len(self.error_samples) < 5:
            self.error_samples.append(f"{kind}: {detail[:300]}")

    def add(self, other: Stats) -> None:
        self.requests += other.requests
        self.ok += other.ok
        for kind, n in other.errors.items():
            self.errors[kind] = self.errors.get(kind, 0) + n
        self.error_samples.extend(other.error_samples[: max(0, 10 - len(self.error_samples))])
        self.text_chunks += other.text_chunks
        self.reasoning_chunks += other.reasoning_chunks
        for mine, theirs in (
            (self.ttfb, other.ttfb),
            (self.ttft, other.ttft),
            (self.latency, other.latency),
            (self.chunk_gap, other.chunk_gap),
            (self.request_time, other.request_time),
        ):
            merge(mine, theirs)
        self.elapsed = max(self.elapsed, other.elapsed)


class Target(msgspec.Struct, frozen=True):
    """What to send: the request bytes and how to know a stream ended well."""

    request: bytes
    end_token: bytes  # must appear near the end of a complete body
    stream: bool
    expect_chunks: int  # markers a complete answer carries; 0: don't check


ANTHROPIC_MODEL = "claude-sonnet-4-5"


def build_target(
    protocol: str,
    host: str,
    port: int,
    stream: bool,
    path: str | None,
    expect: int,
    model: str,
    key: str = "bench",
) -> Target:
    """The request a client of each protocol sends, presenting ``key``; kept small so per-chunk
    cost dominates."""
    secret = key.encode()
    if protocol == "anthropic":
        # https://docs.anthropic.com/en/api/messages
        body: dict[str, Any] = {
            "model": model or ANTHROPIC_MODEL,
            "max_tokens": 1024,
            "stream": stream,
            "system": "You are a load test. Answer briefly.",
            "messages": [{"role": "user", "content": "Write a short poem about latency."}],
        }
        headers = b"x-api-key: %b\r\nanthropic-version: 2023-06-01\r\n" % secret
        path = path or "/v1/messages"
        end = b"message_stop" if stream else b'"stop_reason"'
    elif protocol == "gemini":
        body = {
            "contents": [{"role": "user", "parts": [{"text": "Write a short poem about latency."}]}]
        }
        headers = b"x-goog-api-key: %b\r\n" % secret
        verb = "streamGenerateContent?alt=sse" if stream else "generateContent"
        path = path or f"/v1beta/models/{model or 'gemini-bench'}:{verb}"
        end = b"finishReason"
    else:
        body = {
            "model": model or "m",
            "stream": stream,
            "messages": [
                {"role": "system", "content": "You are a load test. Answer briefly."},
                {"role": "user", "content": "Write a short poem about latency."},
            ],
        }
        if stream:
            body["stream_options"] = {"include_usage": True}
        headers = b"authorization: Bearer %b\r\n" % secret
        path = path or "/v1/chat/completions"
        end = b"[DONE]" if stream else b'"finish_reason"'
    payload = msgspec.json.encode(body)
    request = (
        b"POST %b HTTP/1.1\r\nhost: %b:%d\r\ncontent-type: application/json\r\n%b"
        b"content-length: %d\r\n\r\n%b"
        % (path.encode(), host.encode(), port, headers, len(payload), payload)
    )
    return Target(request, end, stream, expect)


_IDLE, _CONNECTING, _SENDING, _HEAD, _BODY = range(5)


class _Conn:
    __slots__ = (
        "body_len",
        "carry",
        "chunked",
        "close",
        "decoder",
        "first_byte",
        "first_text",
        "head_buf",
        "last_chunk",
        "length",
        "markers",
        "out",
        "sent_at",
        "sock",
        "state",
        "status",
        "tail",
    )

    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.state = _IDLE
        self.out = b""
        self.reset()

    def reset(self) -> None:
        self.head_buf = b""
        self.status = 0
        self.length: int | None = None
        self.chunked = False
        self.close = False
        self.decoder: ChunkedDecoder | None = None
        self.body_len = 0
        self.carry = b""
        self.tail = b""
        self.markers = 0
        self.first_byte = 0.0
        self.first_text = 0.0
        self.last_chunk = 0.0
        self.sent_at = 0.0


class LoadGen:
    def __init__(
        self,
        host: str,
        port: int,
        target: Target,
        conns: int,
        start_at: float,
        duration: float,
        ramp: float,
        grace: float,
    ) -> None:
        self.addr = (host, port)
        self.target = target
        self.sel = selectors.DefaultSelector()
        self.stats = Stats()
        self.start_at = start_at
        self.stop_at = start_at + duration
        self.hard_stop = self.stop_at + grace
        self.conns = [_Conn() for _ in range(conns)]
        step = ramp / conns if conns else 0.0
        self.seq = itertools.count()
        # (wall time, seq, conn): requests waiting to start; the first ones spread over the ramp.
        self.pending: list[tuple[float, int, _Conn]] = [
            (start_at + i * step, next(self.seq), c) for i, c in enumerate(self.conns)
        ]
        self.active = 0

    # --- the loop -------------------------------------------------------------------------

    def run(self) -> Stats:
        delay = self.start_at - time.time()
        if delay > 0:
            time.sleep(delay)
        began = time.time()
        pending = self.pending
        while True:
            now = time.time()
            while pending and pending[0][0] <= now:
                conn = heapq.heappop(pending)[2]
                self._start(conn, now)
            if now >= self.hard_stop:
                break
            if not pending and not self.active:
                break
            timeout = min(0.05, max(0.0, pending[0][0] - now)) if pending else 0.05
            for key, mask in self.sel.select(timeout):
                conn = key.data
                if mask & selectors.EVENT_WRITE:
                    self._writable(conn)
                elif mask & selectors.EVENT_READ:
                    self._readable(conn)
        for conn in self.conns:
            if conn.state != _IDLE:
                self._fail(conn, "timeout", "still open at the hard stop", retry=False)
        self.stats.elapsed = time.time() - began
        return self.stats

    def _start(self, conn: _Conn, now: float) -> None:
        if now >= self.stop_at:
            if conn.sock is not None:
                self._drop(conn)
            return
        conn.reset()
        self.stats.requests += 1
        self.active += 1
        if conn.sock is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.sock = sock
            conn.state = _CONNECTING
            err = sock.connect_ex(self.addr)
            if err not in (0, errno.EINPROGRESS):
                self._fail(conn, "connect", errno.errorcode.get(err, str(err)))
                return
            self.sel.register(sock, selectors.EVENT_WRITE, conn)
            return
        self._send(conn)

    def _send(self, conn: _Conn) -> None:
        assert conn.sock is not None
        conn.out = self.target.request
        conn.sent_at = time.perf_counter()
        conn.state = _SENDING
        self._writable(conn)

    def _writable(self, conn: _Conn) -> None:
        sock = conn.sock
        assert sock is not None
        if conn.state == _CONNECTING:
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._fail(conn, "connect", errno.errorcode.get(err, str(err)))
                return
            self._send(conn)
            return
        try:
            n = sock.send(conn.out)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError as exc:
            self._fail(conn, "send", str(exc))
            return
        conn.out = conn.out[n:]
        if conn.out:
            self.sel.modify(sock, selectors.EVENT_WRITE, conn)
            return
        conn.state = _HEAD
        self.sel.modify(sock, selectors.EVENT_READ, conn)

    def _readable(self, conn: _Conn) -> None:
        sock = conn.sock
        assert sock is not None
        try:
            data = sock.recv(262144)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fail(conn, "recv", str(exc))
            return
        if conn.state == _IDLE:
            if not data:
                self._drop(conn)  # the server closed a kept-alive connection: reconnect later
            return  # else stray bytes after a response (e.g. the CRLF after a last chunk)
        now = time.perf_counter()
        if not data:
            if conn.state == _BODY and conn.length is None and not conn.chunked:
                self._complete(conn, now)  # body delimited by the close
            else:
                self._fail(conn, "closed", f"connection closed while in state {conn.state}")
            return
        if not conn.first_byte:
            conn.first_byte = now
        if conn.state == _HEAD:
            buf = (conn.head_buf + data).lstrip(b"\r\n")
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                conn.head_buf = buf
                return
            head = parse_head(buf[:end])
            conn.status = int(head.start[1]) if len(head.start) > 1 else 0
            conn.length = head.content_length
            conn.chunked = head.chunked
            conn.close = head.close
            if conn.chunked:
                conn.decoder = ChunkedDecoder()
            conn.state = _BODY
            data = buf[end + 4 :]
        decoder = conn.decoder
        if decoder is not None:
            data = decoder.feed(data)
        if data:
            self._body(conn, data, now)
        if decoder is not None:
            if decoder.done:
                self._complete(conn, now)
        elif conn.length is not None and conn.body_len >= conn.length:
            self._complete(conn, now)

    def _body(self, conn: _Conn, data: bytes, now: float) -> None:
        conn.body_len += len(data)
        if conn.status != 200 or not self.target.stream:
            if len(conn.tail) < 1_000_000:
                conn.tail += data
            return
        buf = conn.carry + data if conn.carry else data
        conn.carry = b""
        wall_us = None
        stats = self.stats
        pos = 0
        end = len(buf)
        while True:
            j = buf.find(b"~", pos)
            if j < 0:
                break
            if end - j < 19:
                conn.carry = buf[j:]
                break
            kind = buf[j + 1]
            if (kind == 84 or kind == 82) and buf[j + 18] == 126 and buf[j + 2 : j + 18].isdigit():
                if wall_us is None:
                    wall_us = time.time() * 1e6
                b = bucket(wall_us - int(buf[j + 2 : j + 18]))
                stats.latency[b] = stats.latency.get(b, 0) + 1
                if kind == 84:
                    stats.text_chunks += 1
                    if not conn.first_text:
                        conn.first_text = now
                else:
                    stats.reasoning_chunks += 1
                if conn.last_chunk:
                    g = bucket((now - conn.last_chunk) * 1e6)
                    stats.chunk_gap[g] = stats.chunk_gap.get(g, 0) + 1
                conn.last_chunk = now
                conn.markers += 1
                pos = j + 19
            else:
                pos = j + 1
        conn.tail = (conn.tail + data)[-600:]

    def _complete(self, conn: _Conn, now: float) -> None:
        stats = self.stats
        target = self.target
        if conn.status != 200:
            self._fail(
                conn,
                f"http_{conn.status}",
                conn.tail.decode("utf-8", "replace"),
                keep=not conn.close,
            )
            return
        if b"event: error" in conn.tail or b'"type":"error"' in conn.tail:
            self._fail(
                conn, "stream_error", conn.tail.decode("utf-8", "replace"), keep=not conn.close
            )
            return
        if target.end_token not in conn.tail or (not target.stream and b"~T" not in conn.tail):
            self._fail(
                conn, "incomplete", conn.tail[-600:].decode("utf-8", "replace"), keep=not conn.close
            )
            return
        if target.stream and target.expect_chunks and conn.markers != target.expect_chunks:
            self._fail(
                conn,
                "missing_chunks",
                f"{conn.markers} of {target.expect_chunks}",
                keep=not conn.close,
            )
            return
        stats.ok += 1
        b = bucket((conn.first_byte - conn.sent_at) * 1e6)
        stats.ttfb[b] = stats.ttfb.get(b, 0) + 1
        if conn.first_text:
            b = bucket((conn.first_text - conn.sent_at) * 1e6)
            stats.ttft[b] = stats.ttft.get(b, 0) + 1
        b = bucket((now - conn.sent_at) * 1e6)
        stats.request_time[b] = stats.request_time.get(b, 0) + 1
        self._next(conn, keep=not conn.close)

    def _fail(
        self, conn: _Conn, kind: str, detail: str, *, keep: bool = False, retry: bool = True
    ) -> None:
        self.stats.error(kind, detail)
        if retry:
            self._next(conn, keep=keep, backoff=0.05)
        else:
            self.active -= 1
            self._drop(conn)

    def _next(self, conn: _Conn, *, keep: bool, backoff: float = 0.0) -> None:
        """Start the connection's next request, after ``backoff`` so failures can't spin."""
        self.active -= 1
        if not keep:
            self._drop(conn)
        conn.state = _IDLE
        now = time.time()
        if now + backoff >= self.stop_at:
            self._drop(conn)
            return
        if conn.sock is not None:
            self.sel.modify(conn.sock, selectors.EVENT_READ, conn)
        if backoff:
            heapq.heappush(self.pending, (now + backoff, next(self.seq), conn))
        else:
            self._start(conn, now)

    def _drop(self, conn: _Conn) -> None:
        if conn.sock is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(conn.sock)
            conn.sock.close()
            conn.sock = None
        conn.state = _IDLE


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--protocol", choices=("anthropic", "openai", "deepseek", "gemini"), default="anthropic"
    )
    parser.add_argument("--path", default=None, help="request path (default: the protocol's)")
    parser.add_argument("--model", default="")
    parser.add_argument("--no-stream", action="store_true")
    parser.add_argument("--conns", type=int, default=1)
    parser.add_argument("--duration", type=float, default=5.0, help="no request starts after this")
    parser.add_argument(
        "--ramp", type=float, default=0.0, help="spread the first requests over this"
    )
    parser.add_argument("--grace", type=float, default=30.0, help="then cut whatever is still open")
    parser.add_argument(
        "--start-at", type=float, default=0.0, help="wall-clock start (default: now)"
    )
    parser.add_argument("--expect-chunks", type=int, default=0, help="markers in a complete stream")
    parser.add_argument("--key", default="bench", help="the API key the requests present")
    args = parser.parse_args(argv)
    protocol = "openai" if args.protocol == "deepseek" else args.protocol
    path = args.path or ("/deepseek/v1/chat/completions" if args.protocol == "deepseek" else None)
    target = build_target(
        protocol,
        args.host,
        args.port,
        not args.no_stream,
        path,
        args.expect_chunks,
        args.model,
        args.key,
    )
    start_at = args.start_at or time.time()
    gen = LoadGen(
        args.host,
        args.port,
        target,
        max(1, args.conns),
        start_at,
        max(0.0, args.duration),
        max(0.0, args.ramp),
        max(0.0, args.grace),
    )
    sys.stdout.buffer.write(msgspec.json.encode(gen.run()) + b"\n")


if __name__ == "__main__":
    main()
