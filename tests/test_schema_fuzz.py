"""Every tool schema a client can send reaches every provider format without a 400 or a 500.

Schemas come from tests/schema_strategies.py (draft 2020-12, records, unions, ``$ref``, wrong
JSON types), from the captured Claude Code requests (tests/fixtures/claude_code, several CLI
versions) and from popular MCP servers' ``tools/list`` (tests/mcp_tools.py). They go as tools
and as ``output_config.format`` through the real router to each format's fake: OpenAI-compatible,
DeepSeek, Gemini (both schema fields: JSON Schema for 2.5/3, the cleaned Schema for option
``schema_format: "openapi"``) and the Anthropic passthrough.

The Gemini fake is wrapped in :class:`StrictSchemas`, the OpenAPI-subset rules as Gemini reports
them, the strictest reading where reports disagree, until tests/fake_gemini.py enforces them.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fake_deepseek import FakeDeepSeek
from tests.fake_gemini import FakeGemini, Rejection, error_reply
from tests.fake_openai import FakeChatProvider
from tests.fakeserver import FakeServer, Handler, Reply, Request
from tests.mcp_tools import SERVERS, as_anthropic_tools, list_tools
from tests.schema_strategies import tool_input_schemas
from tests.test_fuzz import FakeAnthropic
from trio_router.app import create_app
from trio_router.config import load
from trio_router.providers.schema import JSONObject

KEY = "schema-fuzz-key"
FIXTURES = Path(__file__).parent / "fixtures" / "claude_code"
# "provider,model" -> the fake behind it.
ROUTES = [
    "openrouter,openai/gpt-5",
    "deepseek,deepseek-chat",
    "gemini,gemini-2.5-flash",
    "gemini,gemini-3-pro-preview",
    "gemini-openapi,gemini-2.5-flash",
    "anthropic,claude-relay",
]
_TYPES = {"STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT"}


def check_openapi_schema(node: Any, where: str) -> None:
    """Gemini's Schema rules, as its 400s state them: a known ``type`` wherever there is no
    ``anyOf`` ("type: must be specified when not using one_of, any_of or all_of fields"),
    non-empty ``properties`` on every OBJECT ("should be non-empty for OBJECT type"),
    ``properties`` only on OBJECT, ``items`` on every ARRAY, ``required`` names defined."""
    if not isinstance(node, dict):
        raise Rejection(400, f"* GenerateContentRequest.{where}: not a Schema")
    kind = node.get("type")
    if kind is None and "anyOf" not in node:
        raise Rejection(
            400,
            f"* GenerateContentRequest.{where}.type: must be specified when not using one_of, "
            "any_of or all_of fields",
        )
    if kind is not None and kind not in _TYPES:
        raise Rejection(400, f"Invalid value at '{where}.type' (Type), {json.dumps(kind)}")
    properties = node.get("properties")
    if kind == "OBJECT" and not properties:
        raise Rejection(
            400, f"* GenerateContentRequest.{where}.properties: should be non-empty for OBJECT type"
        )
    if properties is not None and kind != "OBJECT":
        raise Rejection(400, f"* GenerateContentRequest.{where}.properties: only for OBJECT type")
    if kind == "ARRAY" and "items" not in node:
        raise Rejection(400, f"* GenerateContentRequest.{where}.items: missing field.")
    for i, name in enumerate(node.get("required") or ()):
        if name not in (properties or {}):
            raise Rejection(
                400, f"* GenerateContentRequest.{where}.required[{i}]: property is not defined"
            )
    for name, child in (properties or {}).items():
        check_openapi_schema(child, f"{where}.properties[{name}]")
    if "items" in node:
        check_openapi_schema(node["items"], f"{where}.items")
    for i, branch in enumerate(node.get("anyOf") or ()):
        check_openapi_schema(branch, f"{where}.any_of[{i}]")


class StrictSchemas:
    """The Gemini fake, behind the schema rules above; both fields at once is a 400 too."""

    def __init__(self, inner: FakeGemini) -> None:
        self.inner = inner

    def __call__(self, request: Request) -> Reply:
        try:
            body = request.json()
            for t, tool in enumerate(body.get("tools") or ()):
                for d, declaration in enumerate(tool.get("functionDeclarations") or ()):
                    where = f"tools[{t}].function_declarations[{d}]"
                    if "parameters" in declaration and "parametersJsonSchema" in declaration:
                        raise Rejection(400, f"{where}: parameters and parametersJsonSchema")
                    if "parameters" in declaration:
                        check_openapi_schema(declaration["parameters"], f"{where}.parameters")
            config = body.get("generationConfig") or {}
            if "responseSchema" in config and "responseJsonSchema" in config:
                raise Rejection(400, "responseSchema and responseJsonSchema")
            if "responseJsonSchema" in config and config.get("responseMimeType") != (
                "application/json"
            ):
                raise Rejection(400, "responseJsonSchema needs responseMimeType application/json")
            if "responseSchema" in config:
                check_openapi_schema(config["responseSchema"], "generation_config.response_schema")
        except Rejection as rejection:
            return error_reply(rejection)
        return self.inner(request)


class Gateway:
    """The router and its fakes in one ``trio.run`` in a background thread (a server per
    example would cost more than the example), as tests/test_fuzz.py runs them."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.url = ""
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._cancel: trio.CancelScope | None = None
        self._thread = threading.Thread(target=lambda: trio.run(self._main), daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the schema fuzz gateway did not start")

    def stop(self) -> None:
        assert self._token is not None and self._cancel is not None
        trio.from_thread.run_sync(self._cancel.cancel, trio_token=self._token)
        self._thread.join(10)

    async def _main(self) -> None:
        async with trio.open_nursery() as nursery:
            self._token = trio.lowlevel.current_trio_token()
            self._cancel = nursery.cancel_scope
            providers = []
            for name, fmt, options, models, make in self._fakes():
                fake = await FakeServer(make[0]).start(nursery)
                use: list[Any] = [[fmt, options]] if options else [fmt]
                providers.append(
                    {
                        "name": name,
                        "api_base_url": fake.url + make[1],
                        "api_key": f"sk-{name}-0123456789",
                        "models": models,
                        "transformer": {"use": use},
                    }
                )
            config = {"APIKEY": KEY, "Providers": providers, "Router": {"default": ROUTES[0]}}
            path = self.directory / "config.json"
            path.write_text(json.dumps(config))
            hc = HypercornConfig()
            hc.bind = ["127.0.0.1:0"]
            hc.accesslog = None
            hc.graceful_timeout = 0.1
            app = create_app(load(path))
            binds = await nursery.start(partial(serve, app, hc))  # type: ignore[arg-type]
            self.url = binds[0]
            self._ready.set()

    @staticmethod
    def _fakes() -> list[tuple[str, str, JSONObject, list[str], tuple[Handler, str]]]:
        gemini_models = ["gemini-2.5-flash", "gemini-3-pro-preview"]

        def gemini(name: str) -> tuple[Handler, str]:
            fake = FakeGemini(f"sk-{name}-0123456789", gemini_models, "true")
            return StrictSchemas(fake), "/v1beta/models/"

        return [
            (
                "openrouter",
                "openrouter",
                {},
                ["openai/gpt-5"],
                (
                    FakeChatProvider("sk-openrouter-0123456789", ["openai/gpt-5"], "true"),
                    FakeChatProvider.path,
                ),
            ),
            (
                "deepseek",
                "deepseek",
                {},
                ["deepseek-chat"],
                (
                    FakeDeepSeek("sk-deepseek-0123456789", ["deepseek-chat"], "true"),
                    FakeDeepSeek.path,
                ),
            ),
            ("gemini", "gemini", {}, gemini_models, gemini("gemini")),
            (
                "gemini-openapi",
                "gemini",
                {"schema_format": "openapi"},
                gemini_models,
                gemini("gemini-openapi"),
            ),
            (
                "anthropic",
                "anthropic",
                {},
                ["claude-relay"],
                (FakeAnthropic("sk-anthropic-0123456789", "claude-relay"), "/v1/messages"),
            ),
        ]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("CONFIG_PATH", raising=False)
        gateway = Gateway(tmp_path_factory.mktemp("schema-fuzz"))
        gateway.start()
        try:
            with httpx.Client(base_url=gateway.url, timeout=30) as session:
                yield session
        finally:
            gateway.stop()


def send(client: httpx.Client, route: str, tools: list[Any], **fields: Any) -> None:
    """One request per way of sending it; each must be answered 200."""
    body = {
        "model": route,
        "max_tokens": 256,
        "messages": [{"role": "user", "content": "Run true."}],
        "tools": tools,
        **fields,
    }
    for stream in (False, True):
        answer = client.post(
            "/v1/messages", json={**body, "stream": stream}, headers={"x-api-key": KEY}
        )
        assert answer.status_code == 200, (route, stream, answer.text[:2000])
        if stream:
            assert "event: error" not in answer.text, (route, answer.text[-2000:])


def captured_tool_lists() -> list[tuple[str, list[Any]]]:
    found = []
    for path in sorted(FIXTURES.glob("*.json")):
        document = json.loads(path.read_text())
        if isinstance(document, dict) and isinstance(document.get("tools"), list):
            found.append((path.stem, document["tools"]))
    return found


CAPTURED = captured_tool_lists()


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(("name", "tools"), CAPTURED, ids=[name for name, _ in CAPTURED])
def test_claude_code_tool_lists(
    client: httpx.Client, route: str, name: str, tools: list[Any]
) -> None:
    send(client, route, tools)


@pytest.fixture(scope="module")
def mcp_tools(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Any]]:
    if not (Path(__file__).parent / "claude_code" / "node_modules" / ".bin").is_dir():
        pytest.fail("run `npm ci --prefix tests/claude_code` first (README, Quick start)")
    where = tmp_path_factory.mktemp("mcp")
    return {server: as_anthropic_tools(list_tools(server, where), server) for server in SERVERS}


@pytest.mark.parametrize("route", ROUTES)
def test_mcp_server_tool_lists(
    client: httpx.Client, mcp_tools: dict[str, list[Any]], route: str
) -> None:
    for server, tools in mcp_tools.items():
        assert tools, server
        send(client, route, tools)
    every = [tool for tools in mcp_tools.values() for tool in tools]
    send(client, route, every)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    schemas=st.lists(tool_input_schemas(wild=True), min_size=1, max_size=3),
    route=st.sampled_from(ROUTES),
)
def test_generated_schemas(client: httpx.Client, schemas: list[Any], route: str) -> None:
    tools = [{"name": f"t{i}", "input_schema": s} for i, s in enumerate(schemas)]
    output = {"format": {"type": "json_schema", "schema": schemas[0]}}
    send(client, route, tools, output_config=output)
