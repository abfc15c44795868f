"""Bad input and resource limits (issue 15, items 11, 12, 13, 15 and 17), through the real server.

Deep nesting, tool schemas Gemini cannot take, out-of-range parameters, stalled and over-budget
bodies, and connections that must close: each gets its 4xx/503 answer, never a 500, a traceback
or a hang. Protocol cases use raw sockets, so that what the router does on the wire is what is
asserted.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Mapping
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import RunningRouter, StartFake, StartRouter, provider_config
from tests.fake_gemini import FakeGemini
from tests.fakeserver import FakeServer, Reply, Request
from trio_router.providers.schema import function_parameters, to_gemini_schema

JSON = dict[str, Any]
ROUTER_KEY = "router-key-limits-0a1b2c3d"
GEMINI_KEY = "AIzaSy-limits-fake-gemini-key-0123456789"
NESTED = "invalid request: nested too deeply"
COMPLETION: JSON = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "m",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "hi"},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}
# One provider per format; each fake answers 418, so a 418 means "translated and sent upstream".
FORMAT_PATHS = {
    "openrouter": "/v1/chat/completions",
    "deepseek": "/v1/chat/completions",
    "gemini": "/v1beta/models/",
    "anthropic": "/v1/messages",
}


def teapot(request: Request) -> Reply:
    return Reply.json({"error": {"message": "upstream says no", "code": 418}}, 418)


async def every_format(start_router: StartRouter, start_fake: StartFake) -> RunningRouter:
    fake = await start_fake(teapot)
    providers = [
        provider_config(fake, name=name, path=path, models=["m"], transformer={"use": [name]})
        for name, path in FORMAT_PATHS.items()
    ]
    # A hook makes the anthropic format translate instead of forwarding the raw body.
    providers.append(
        provider_config(
            fake,
            name="anthropic-hooked",
            path="/v1/messages",
            models=["m"],
            transformer={"use": ["anthropic", "cleancache"]},
        )
    )
    return await start_router({"Providers": providers, "Router": {"default": "openrouter,m"}})


# --- raw HTTP/1.1 ---------------------------------------------------------------------------


def address(router: RunningRouter) -> tuple[str, int]:
    host, port = router.url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def head(method: str, path: str, *lines: str, version: str = "1.1") -> bytes:
    return (
        f"{method} {path} HTTP/{version}\r\nhost: test\r\n" + "".join(f"{x}\r\n" for x in lines)
    ).encode() + b"\r\n"


class Wire:
    """What one raw connection read: the bytes, and how it ended."""

    def __init__(self, data: bytes, ended: str) -> None:
        self.data = data
        self.ended = ended  # "eof", "reset" or "open"

    @property
    def statuses(self) -> list[int]:
        return [int(s) for s in re.findall(rb"HTTP/1\.[01] (\d{3}) ", self.data)]

    @property
    def closed(self) -> bool:
        return self.ended in ("eof", "reset")

    def header(self, name: str) -> list[str]:
        found = re.findall(rb"(?im)^" + name.encode() + rb": *([^\r\n]*)\r$", self.data)
        return [f.decode() for f in found]

    def json(self) -> Any:
        return json.loads(self.data.split(b"\r\n\r\n", 1)[1])


async def exchange(
    router: RunningRouter, data: bytes, *, stall: bool = False, wait: float = 8.0
) -> Wire:
    """Send ``data`` (as far as the router reads it) and read until the router closes.

    With ``stall`` the socket stays open after ``data``, like a client whose body stops coming.
    A connection still open after ``wait`` seconds ends as "open".
    """
    stream = await trio.open_tcp_stream(*address(router))
    received = bytearray()
    ended = "open"

    async def write() -> None:
        # The router may answer and close before it has read it all.
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await stream.send_all(data)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(write)
        with trio.move_on_after(wait):
            while True:
                try:
                    chunk = await stream.receive_some(65536)
                except trio.BrokenResourceError:
                    ended = "reset"
                    break
                if not chunk:
                    ended = "eof"
                    break
                received += chunk
        nursery.cancel_scope.cancel()
    await stream.aclose()
    assert stall or ended != "open" or received, "no answer at all"
    return Wire(bytes(received), ended)


def messages_body(**fields: Any) -> JSON:
    return {
        "model": "m",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "hi"}],
        **fields,
    }


# --- 11: deep nesting -----------------------------------------------------------------------


def deep_list(depth: int) -> str:
    return "[" * depth + "]" * depth


def deep_object(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def nested_body(where: str, depth: int, model: str, stream: bool) -> bytes:
    """A request whose field ``where`` holds JSON nested ``depth`` levels deep."""
    deep, deep_obj = deep_list(depth), deep_object(depth)
    messages = '[{"role":"user","content":"hi"}]'
    extra = ""
    if where == "tool_use.input":
        messages = (
            '[{"role":"user","content":"hi"},{"role":"assistant","content":[{"type":"tool_use",'
            f'"id":"t1","name":"f","input":{{"x":{deep}}}}}]}},{{"role":"user","content":'
            '[{"type":"tool_result","tool_use_id":"t1","content":"ok"}]}]'
        )
        extra = ',"tools":[{"name":"f","input_schema":{"type":"object","properties":{"x":{}}}}]'
    elif where == "input_schema":
        extra = (
            ',"tools":[{"name":"f","input_schema":{"type":"object","properties":{"x":'
            f"{deep_obj}}}}}}}]"
        )
    elif where == "metadata":
        extra = f',"metadata":{{"user_id":"u","extra":{deep}}}'
    elif where == "unknown field":
        extra = f',"context_management":{deep}'
    elif where == "cache_control":
        messages = (
            '[{"role":"user","content":[{"type":"text","text":"hi",'
            f'"cache_control":{{"x":{deep}}}}}]}}]'
        )
    elif where == "web_search_tool_result":
        messages = (
            '[{"role":"user","content":"hi"},{"role":"assistant","content":['
            f'{{"type":"web_search_tool_result","tool_use_id":"s","content":{deep}}}]}}]'
        )
    elif where == "output_config.format":
        extra = (
            ',"output_config":{"format":{"type":"json_schema","schema":{"type":"object",'
            f'"properties":{{"x":{deep_obj}}}}}}}}}'
        )
    body = (
        f'{{"model":"{model}","max_tokens":10,"stream":{"true" if stream else "false"},'
        f'"messages":{messages}{extra}}}'
    )
    return body.encode()


PLACES = [
    "tool_use.input",
    "input_schema",
    "metadata",
    "unknown field",
    "cache_control",
    "web_search_tool_result",
    "output_config.format",
]
MODELS = [f"{name},m" for name in [*FORMAT_PATHS, "anthropic-hooked"]]


def assert_no_traceback(router: RunningRouter, capfd: pytest.CaptureFixture[str]) -> None:
    err = capfd.readouterr().err
    log = router.log_file.read_text() if router.log_file.exists() else ""
    for text in (err, log):
        assert "Traceback" not in text
        assert "RecursionError" not in text


@pytest.mark.parametrize("model", MODELS)
async def test_deep_nesting_is_a_400_on_every_format(
    start_router: StartRouter,
    start_fake: StartFake,
    capfd: pytest.CaptureFixture[str],
    model: str,
) -> None:
    router = await every_format(start_router, start_fake)
    async with router.client() as client:
        for where in PLACES:
            for stream in (False, True):
                for depth in (1000, 100_000):
                    response = await client.post(
                        "/v1/messages", content=nested_body(where, depth, model, stream)
                    )
                    case = (where, stream, depth, response.text[:200])
                    assert response.status_code == 400, case
                    assert response.json()["error"] == {
                        "type": "invalid_request_error",
                        "message": NESTED,
                    }, case
    assert_no_traceback(router, capfd)


@pytest.mark.parametrize("model", MODELS)
async def test_nesting_near_the_limit_is_never_a_500(
    start_router: StartRouter,
    start_fake: StartFake,
    capfd: pytest.CaptureFixture[str],
    model: str,
) -> None:
    """Around the depth where decoding starts to fail, a request that decodes must also
    translate: each answer is the upstream's 418 or the 400."""
    router = await every_format(start_router, start_fake)
    seen: set[int] = set()
    async with router.client() as client:
        for where in ("tool_use.input", "input_schema", "output_config.format"):
            for depth in range(880, 1001, 3):
                response = await client.post(
                    "/v1/messages", content=nested_body(where, depth, model, False)
                )
                seen.add(response.status_code)
                assert response.status_code in (400, 418), (where, depth, response.text[:200])
                if response.status_code == 400:
                    assert response.json()["error"]["message"] == NESTED
    assert 418 in seen  # deep, but not too deep to be sent on
    assert_no_traceback(router, capfd)


async def test_deep_nesting_in_count_tokens_is_a_400(
    start_router: StartRouter, start_fake: StartFake, capfd: pytest.CaptureFixture[str]
) -> None:
    router = await every_format(start_router, start_fake)
    async with router.client() as client:
        for where in PLACES:
            for depth in (1000, 100_000):
                response = await client.post(
                    "/v1/messages/count_tokens",
                    content=nested_body(where, depth, "openrouter,m", False),
                )
                assert response.status_code == 400, (where, depth, response.text[:200])
                assert response.json()["error"]["message"] == NESTED
            # Just below the limit it is counted.
            shallow = nested_body(where, 900, "openrouter,m", False)
            response = await client.post("/v1/messages/count_tokens", content=shallow)
            assert response.status_code == 200, (where, response.text[:200])
    assert_no_traceback(router, capfd)


async def test_deep_session_json_in_user_id_is_not_a_500(
    start_router: StartRouter, start_fake: StartFake, capfd: pytest.CaptureFixture[str]
) -> None:
    """``metadata.user_id`` is a JSON string the router parses for Claude Code's session id."""
    router = await every_format(start_router, start_fake)
    user_id = '{"session_id":' + deep_object(100_000) + "}"
    async with router.client() as client:
        response = await client.post(
            "/v1/messages", json=messages_body(metadata={"user_id": user_id})
        )
    assert response.status_code == 418, response.text[:200]  # sent on, session "default"
    assert_no_traceback(router, capfd)


# --- 12: tool schemas for Gemini ------------------------------------------------------------

_TYPES = frozenset({"STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT"})
_COUNTS = ("minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties")


def check_gemini_schema(node: Any, where: str = "$") -> None:
    """What Gemini's Schema object accepts (https://ai.google.dev/api/caching#Schema), as far
    as the converter promises it: known fields with values of the right JSON type."""
    assert isinstance(node, dict), where
    for key, value in node.items():
        at = f"{where}.{key}"
        if key == "type":
            assert value in _TYPES, at
        elif key in ("format", "title", "description"):
            assert isinstance(value, str), at
        elif key == "nullable":
            assert value is True, at
        elif key == "enum":
            assert value and all(isinstance(v, str) for v in value), at
        elif key in _COUNTS:
            assert isinstance(value, int) and not isinstance(value, bool), at
            assert 0 <= value < 2**63, at
        elif key in ("minimum", "maximum"):
            assert isinstance(value, int | float) and not isinstance(value, bool), at
        elif key == "properties":
            assert isinstance(value, dict) and value, at
            for name, child in value.items():
                assert isinstance(name, str), at
                check_gemini_schema(child, f"{at}.{name}")
        elif key == "required":
            assert isinstance(value, list) and value, at
            assert all(isinstance(n, str) for n in value), at
            assert len(set(value)) == len(value), at
            assert set(value) <= set(node.get("properties", {})), at
        elif key == "items":
            check_gemini_schema(value, at)
        elif key == "anyOf":
            assert isinstance(value, list) and value, at
            for i, branch in enumerate(value):
                check_gemini_schema(branch, f"{at}[{i}]")
        else:
            raise AssertionError(f"{at}: not a Gemini Schema field")


_KEYWORDS = [
    "type",
    "properties",
    "required",
    "items",
    "prefixItems",
    "anyOf",
    "oneOf",
    "allOf",
    "enum",
    "const",
    "format",
    "nullable",
    "description",
    "title",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minItems",
    "maxLength",
    "$ref",
    "$defs",
    "definitions",
    "additionalProperties",
    "default",
]
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([10**400, -(10**400), 2**63, 2**64])
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(
        ["string", "number", "integer", "boolean", "array", "object", "null", "a", "#/$defs/a"]
    )
    | st.text(max_size=5)
)
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=4)
    ),
    max_leaves=20,
)


def _schemas() -> st.SearchStrategy[Any]:
    keyword_values = st.recursive(
        st.dictionaries(st.sampled_from(_KEYWORDS), _json, max_size=5),
        lambda inner: st.dictionaries(
            st.sampled_from(_KEYWORDS),
            inner
            | _json
            | st.lists(inner | _json, max_size=3)
            | st.dictionaries(st.sampled_from(["a", "b", "c"]), inner, max_size=3),
            max_size=6,
        ),
        max_leaves=30,
    )
    return keyword_values


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=_schemas())
def test_any_schema_converts_to_a_valid_gemini_schema(schema: JSON) -> None:
    for converted in (to_gemini_schema(schema), function_parameters(schema)):
        if converted is not None:
            check_gemini_schema(converted)


@settings(max_examples=200, deadline=None)
@given(required=st.lists(_json, max_size=5))
def test_required_keeps_only_defined_names(required: list[Any]) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": required}
    converted = function_parameters(schema)
    assert converted is not None
    check_gemini_schema(converted)
    assert converted.get("required", []) == (["a"] if "a" in required else [])


def test_self_multiplying_refs_stay_small() -> None:
    """Each definition refers to the previous one twice: 2^20 nodes if expanded in full."""
    defs: JSON = {"d0": {"type": "string"}}
    for i in range(1, 21):
        ref = {"$ref": f"#/$defs/d{i - 1}"}
        defs[f"d{i}"] = {"type": "object", "properties": {"a": ref, "b": ref}}
    converted = function_parameters({"$ref": "#/$defs/d20", "$defs": defs})
    assert converted is not None
    check_gemini_schema(converted)
    assert len(json.dumps(converted)) < 1_000_000


BAD_SCHEMAS: list[JSON] = [
    {"type": "object", "properties": {"a": {"type": "string"}}, "required": [["a"]]},
    {"type": "object", "properties": {"a": {"type": "string"}}, "required": [{}]},
    {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a", "a", 1]},
    {
        "type": "object",
        "properties": {"a": {"type": "string"}},
        "required": 7,
        "allOf": [{"required": ["a"], "properties": {"b": {"type": "integer"}}}],
    },
    {"type": "object", "properties": [1, 2], "allOf": [{"properties": {"a": {}}}]},
    {"type": "object", "properties": {"a": {"type": [["string"]], "maxLength": 10**30}}},
    {"type": "object", "properties": {"a": {"enum": [[1], {"x": 1}, None]}}},
    {
        "type": "object",
        "properties": {"a": {"type": "number", "minimum": 1.5, "exclusiveMinimum": 10**400}},
    },
]


@pytest.mark.parametrize("stream", [False, True])
async def test_gemini_takes_any_tool_schema(
    start_router: StartRouter, start_fake: StartFake, stream: bool
) -> None:
    gemini = FakeGemini(GEMINI_KEY, ["gemini-2.5-flash"], command="true")
    fake = await start_fake(gemini)
    provider = provider_config(
        fake,
        name="gemini",
        path="/v1beta/models/",
        models=["gemini-2.5-flash"],
        transformer={"use": ["gemini"]},
        api_key=GEMINI_KEY,
    )
    router = await start_router(
        {"Providers": [provider], "Router": {"default": "gemini,gemini-2.5-flash"}}
    )
    tools = [{"name": "Bash", "input_schema": {"type": "object", "properties": {"x": {}}}}]
    tools += [{"name": f"tool{i}", "input_schema": s} for i, s in enumerate(BAD_SCHEMAS)]
    async with router.client() as client:
        response = await client.post(
            "/v1/messages", json=messages_body(tools=tools, stream=stream, max_tokens=100)
        )
    assert response.status_code == 200, response.text[:500]
    assert not gemini.rejected, gemini.rejected
    (sent,) = fake.requests
    declarations = sent.json()["tools"][0]["functionDeclarations"]
    by_name = {d["name"]: d.get("parameters") for d in declarations}
    for schema in by_name.values():
        if schema is not None:
            check_gemini_schema(schema)
    assert by_name["tool0"] == {"type": "OBJECT", "properties": {"a": {"type": "STRING"}}}
    assert by_name["tool2"]["required"] == ["a"]
    assert by_name["tool3"]["required"] == ["a"]


# --- 13: body read timeout and the worker's body budget -------------------------------------


def limits(router: RunningRouter) -> Any:
    """The worker's :class:`trio_router.intake.BodyLimits`, which a test may tighten."""
    return router.app.state.bodies


async def test_stalled_body_is_a_408_and_closes(start_router: StartRouter) -> None:
    router = await start_router({"APIKEY": ROUTER_KEY})
    limits(router).timeout = 0.5
    auth = f"x-api-key: {ROUTER_KEY}"
    for path in ("/v1/messages", "/v1/messages/count_tokens", "/api/config"):
        request = head("POST", path, auth, "content-type: application/json", "content-length: 100")
        started = time.monotonic()
        wire = await exchange(router, request + b'{"model": ', stall=True)
        assert wire.statuses == [408], (path, wire.data)
        assert wire.json()["error"]["type"] == "invalid_request_error"
        assert "not received within 0.5 s" in wire.json()["error"]["message"]
        assert wire.header("connection") == ["close"], path
        assert wire.closed, path
        assert time.monotonic() - started < 6, path
    assert limits(router).buffered == 0


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/count_tokens"])
async def test_worker_body_budget_answers_503(
    start_router: StartRouter, start_fake: StartFake, path: str
) -> None:
    fake = await start_fake(lambda request: Reply.json(COMPLETION))
    router = await start_router(
        {"Providers": [provider_config(fake, models=["m"])], "Router": {"default": "fake,m"}}
    )
    budget = limits(router)
    budget.timeout, budget.budget = 4.0, 256 * 1024
    big = "content-length: 1000000"

    async def stalled(results: list[Wire]) -> None:
        results.append(await exchange(router, head("POST", path, big) + b" " * 200_000, stall=True))

    results: list[Wire] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stalled, results)
        with trio.fail_after(5):
            while budget.buffered < 200_000:
                await trio.sleep(0.01)
        # A second body that would take the worker past its budget.
        second = await exchange(router, head("POST", path, big) + b" " * 100_000, stall=True)
        assert second.statuses == [503], second.data
        assert second.json()["error"]["type"] == "overloaded_error"
        assert second.header("retry-after") == ["1"]
        assert second.closed
    (first,) = results
    assert first.statuses == [408] and first.closed
    assert budget.buffered == 0
    # The budget is free again.
    async with router.client() as client:
        response = await client.post(path, json=messages_body())
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/count_tokens"])
async def test_chunked_body_over_the_limit_is_a_413(start_router: StartRouter, path: str) -> None:
    router = await start_router({})
    limits(router).max_bytes = 100_000
    chunked = head("POST", path, "transfer-encoding: chunked")
    chunk = b"%x\r\n%b\r\n" % (50_000, b" " * 50_000)
    wire = await exchange(router, chunked + chunk * 3, stall=True)
    assert wire.statuses == [413], wire.data
    assert wire.json()["error"]["type"] == "request_too_large"
    assert wire.closed
    assert limits(router).buffered == 0


# --- 15: connections that must close --------------------------------------------------------

MB = b"x" * (1 << 20)
NEXT = head("GET", "/")


def with_body(method: str, path: str, *lines: str, body: bytes = MB) -> bytes:
    return head(method, path, *lines, f"content-length: {len(body)}") + body


CLOSING = {
    "GET / Connection: close": (head("GET", "/", "connection: close"), 200),
    "GET / HTTP/1.0": (head("GET", "/", version="1.0"), 200),
    "GET /api/usage HTTP/1.0": (
        head("GET", "/api/usage", f"x-api-key: {ROUTER_KEY}", version="1.0"),
        200,
    ),
    "count_tokens Connection: close": (
        with_body(
            "POST",
            "/v1/messages/count_tokens",
            f"x-api-key: {ROUTER_KEY}",
            "connection: close",
            body=json.dumps(messages_body()).encode(),
        ),
        200,
    ),
    "404 with 1 MB unread": (with_body("POST", "/nope", f"x-api-key: {ROUTER_KEY}") + NEXT, 404),
    "401 with 1 MB unread": (with_body("POST", "/api/config") + NEXT, 401),
    "405 with 1 MB unread": (
        with_body("PUT", "/api/config", f"x-api-key: {ROUTER_KEY}") + NEXT,
        405,
    ),
    "413 declared too large": (
        head("POST", "/api/config", f"x-api-key: {ROUTER_KEY}", "content-length: 40000000")
        + MB
        + NEXT,
        413,
    ),
    "/v1/messages 401 with 1 MB unread": (with_body("POST", "/v1/messages") + NEXT, 401),
}


@pytest.mark.parametrize("case", list(CLOSING))
async def test_connection_closes_after_the_answer(start_router: StartRouter, case: str) -> None:
    router = await start_router({"APIKEY": ROUTER_KEY})
    data, status = CLOSING[case]
    started = time.monotonic()
    wire = await exchange(router, data)
    assert wire.statuses[:1] == [status], wire.data[:300]
    assert wire.closed, f"still open after {time.monotonic() - started:.1f} s"
    assert time.monotonic() - started < 6


async def test_keep_alive_still_serves_the_next_request(start_router: StartRouter) -> None:
    router = await start_router({"APIKEY": ROUTER_KEY})
    auth = f"x-api-key: {ROUTER_KEY}"
    count = with_body(
        "POST", "/v1/messages/count_tokens", auth, body=json.dumps(messages_body()).encode()
    )
    stream = await trio.open_tcp_stream(*address(router))
    received = b""
    with trio.fail_after(20):
        # Pipelined, then one more once those are answered: the connection is still usable.
        for data, answers in ((NEXT + count + head("GET", "/api/usage", auth), 3), (NEXT, 4)):
            await stream.send_all(data)
            while len(Wire(received, "open").statuses) < answers:
                chunk = await stream.receive_some(65536)
                assert chunk, received
                received += chunk
    await stream.aclose()
    wire = Wire(received, "open")
    assert wire.statuses == [200, 200, 200, 200], received
    assert "close" not in wire.header("connection")


# --- 17: parameters out of Anthropic's ranges -----------------------------------------------

OUT_OF_RANGE = [
    ({"max_tokens": -1}, "`int` >= 0 - at `$.max_tokens`"),
    ({"max_tokens": 10**30}, "`int` <= 2147483647 - at `$.max_tokens`"),
    ({"max_tokens": 2**31}, "at `$.max_tokens`"),
    ({"tool_choice": {"type": "bogus"}}, "Invalid enum value 'bogus' - at `$.tool_choice.type`"),
    ({"tool_choice": {"type": "tool"}}, "needs a `name` - at `$.tool_choice`"),
    ({"temperature": 1.5}, "`float` <= 1.0 - at `$.temperature`"),
    ({"temperature": -0.1}, "at `$.temperature`"),
    ({"top_p": 2}, "at `$.top_p`"),
    ({"top_k": -1}, "`int` >= 0 - at `$.top_k`"),
    (
        {"thinking": {"type": "enabled", "budget_tokens": 0}},
        "`int` >= 1 - at `$.thinking.budget_tokens`",
    ),
    ({"thinking": {"type": "enabled", "budget_tokens": 10**30}}, "at `$.thinking.budget_tokens`"),
]
IN_RANGE = [
    {"max_tokens": 0},
    {"max_tokens": 2**31 - 1},
    {"temperature": 0, "top_p": 1, "top_k": 0},
    {"temperature": 1.0},
    {"tool_choice": {"type": "auto"}},
    {"tool_choice": {"type": "any", "disable_parallel_tool_use": True}},
    {"tool_choice": {"type": "none"}},
    {"tool_choice": {"type": "tool", "name": "f"}},
    {"thinking": {"type": "enabled", "budget_tokens": 1024}},
    {"thinking": {"type": "enabled", "budget_tokens": 100}},  # clamped by each format
]
TOOLS = [{"name": "f", "input_schema": {"type": "object", "properties": {"x": {}}}}]


async def openai_router(
    start_router: StartRouter, start_fake: StartFake
) -> tuple[RunningRouter, FakeServer]:
    fake = await start_fake(lambda request: Reply.json(COMPLETION))
    router = await start_router(
        {"Providers": [provider_config(fake, models=["m"])], "Router": {"default": "fake,m"}}
    )
    return router, fake


@pytest.mark.parametrize(("fields", "message"), OUT_OF_RANGE)
async def test_out_of_range_parameters_are_a_400(
    start_router: StartRouter, start_fake: StartFake, fields: JSON, message: str
) -> None:
    router, fake = await openai_router(start_router, start_fake)
    async with router.client() as client:
        for path in ("/v1/messages", "/v1/messages/count_tokens"):
            for stream in (False, True):
                body = messages_body(tools=TOOLS, stream=stream, **fields)
                response = await client.post(path, json=body)
                assert response.status_code == 400, response.text
                error = response.json()["error"]
                assert error["type"] == "invalid_request_error"
                assert error["message"].startswith("invalid request: ")
                assert message in error["message"]
    assert fake.requests == []


@pytest.mark.parametrize("fields", IN_RANGE)
async def test_in_range_parameters_go_upstream(
    start_router: StartRouter, start_fake: StartFake, fields: Mapping[str, Any]
) -> None:
    router, fake = await openai_router(start_router, start_fake)
    async with router.client() as client:
        response = await client.post("/v1/messages", json=messages_body(tools=TOOLS, **fields))
    assert response.status_code == 200, response.text
    assert len(fake.requests) == 1
