"""Upstream proxies and private CAs, through the real server: an HTTP proxy written here (trio,
on loopback) sees the CONNECT tunnel, and the request still reaches an HTTPS fake provider whose
certificate comes from a CA made for the test; proxy credentials, NO_PROXY, the environment's
proxy and CA variables in a ``trio-router start`` process, and the errors when a proxy refuses
or cannot be reached.
"""

from __future__ import annotations

import base64
import json
import shutil
import ssl
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import trio

from tests import openai_wire as wire
from tests.conftest import RouterProcess, StartFake, StartRouter, free_port, provider_config
from tests.fakeserver import FakeServer, Handler, Reply, Request
from trio_router.config import ConfigError
from trio_router.proxy import NoProxy, ProxyURLError, parse_proxy

KEY = "sk-fake-provider-key-0123456789"
ASK = {
    "model": "fake,fake-model",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "hi"}],
}
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture(autouse=True)
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The router reads proxies from the environment: each test sets its own."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


# -- a CA, and a server certificate it signed ----------------------------------------------------


@dataclass
class Certificates:
    ca: Path
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    where = tmp_path_factory.mktemp("ca")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=where, check=True, capture_output=True)

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    ca_subject = ("-subj", "/CN=trio-router test CA")
    openssl("req", "-x509", *ec, *ca_subject, "-days", "2", "-keyout", "ca.key", "-out", "ca.pem")
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    (where / "ext.cnf").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "extendedKeyUsage=serverAuth\nauthorityKeyIdentifier=keyid\n"
    )
    openssl(
        *("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key"),
        *("-CAcreateserial", "-days", "2", "-out", "server.pem", "-extfile", "ext.cnf"),
    )
    return Certificates(where / "ca.pem", where / "server.pem", where / "server.key")


@dataclass
class TLSFake:
    fake: FakeServer
    port: int
    # The server name each TLS client asked for (SNI).
    names: list[str | None]

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"


async def start_tls_fake(
    nursery: trio.Nursery, certificates: Certificates, handler: Handler
) -> TLSFake:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificates.cert, certificates.key)
    names: list[str | None] = []
    context.sni_callback = lambda _socket, name, _context: names.append(name)
    fake = FakeServer(handler)
    serve = partial(
        trio.serve_ssl_over_tcp,
        fake._connection,  # type: ignore[arg-type]  # an SSLStream serves as well
        0,
        context,
        host="127.0.0.1",
    )
    listeners = await nursery.start(serve)
    return TLSFake(fake, listeners[0].transport_listener.socket.getsockname()[1], names)


def answering(text: str) -> Handler:
    def handle(request: Request) -> Reply:
        if request.json().get("stream"):
            return wire.stream_reply(wire.text_stream([text]))
        return Reply.json(wire.completion(text))

    return handle


# -- the proxy -----------------------------------------------------------------------------------


@dataclass
class LoopbackProxy:
    """An HTTP proxy: CONNECT tunnels, and absolute-form requests forwarded in origin form.
    With ``credentials`` ("user:password") it answers 407 to a request without them."""

    credentials: str | None = None
    port: int = 0
    connections: int = 0
    tunnels: list[str] = field(default_factory=list)
    forwarded: list[str] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)
    # Every byte the client sent through a tunnel or a forwarded connection.
    relayed: bytearray = field(default_factory=bytearray)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, nursery: trio.Nursery) -> LoopbackProxy:
        listeners = await nursery.start(partial(trio.serve_tcp, self._serve, 0, host="127.0.0.1"))
        self.port = listeners[0].socket.getsockname()[1]
        return self

    async def _serve(self, client: trio.SocketStream) -> None:
        self.connections += 1
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            data = await client.receive_some(65536)
            if not data:
                return
            buffer += data
        head, _, rest = buffer.partition(b"\r\n\r\n")
        request_line, *lines = head.split(b"\r\n")
        method, target, _ = request_line.split(b" ")
        fields = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(b":") for line in lines)
        }
        authorization = fields.get(b"proxy-authorization")
        self.authorizations.append(authorization.decode() if authorization else None)
        if self.credentials is not None and authorization != basic(self.credentials):
            await client.send_all(
                b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                b'Proxy-Authenticate: Basic realm="test"\r\ncontent-length: 0\r\n\r\n'
            )
            return
        if method == b"CONNECT":
            self.tunnels.append(target.decode())
            port = int(target.rsplit(b":", 1)[1])
            origin = await trio.open_tcp_stream("127.0.0.1", port)
            await client.send_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            first = rest
        else:
            self.forwarded.append(request_line.decode())
            url = urlsplit(target.decode())
            origin = await trio.open_tcp_stream("127.0.0.1", url.port or 80)
            kept = [line for line in lines if not line.lower().startswith(b"proxy-authorization")]
            origin_form = b"%b %b HTTP/1.1" % (method, url.path.encode())
            first = b"\r\n".join([origin_form, *kept]) + b"\r\n\r\n" + rest
        self.relayed += first
        async with origin, trio.open_nursery() as nursery:

            async def pump(source: trio.SocketStream, sink: trio.SocketStream, note: bool) -> None:
                try:
                    while data := await source.receive_some(65536):
                        if note:
                            self.relayed += data
                        await sink.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
                nursery.cancel_scope.cancel()

            await origin.send_all(first)
            nursery.start_soon(pump, client, origin, True)
            nursery.start_soon(pump, origin, client, False)


def logged(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def basic(credentials: str) -> bytes:
    return b"Basic " + base64.b64encode(credentials.encode())


async def ask(url: str, **extra: Any) -> httpx.Response:
    # trust_env=False: the proxy variables a test sets are for the router, not for its client.
    async with httpx.AsyncClient(base_url=url, timeout=30, trust_env=False) as client:
        return await client.post("/v1/messages", json={**ASK, **extra})


def text_of(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    if response.headers["content-type"].startswith("text/event-stream"):
        parts = []
        for line in response.text.splitlines():
            if line.startswith("data: "):
                event = json.loads(line[6:])
                if event["type"] == "content_block_delta":
                    parts.append(event["delta"]["text"])
        return "".join(parts)
    return str(response.json()["content"][0]["text"])


def config(provider: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"Providers": [provider], "Router": {"default": "fake,fake-model"}, **top}


def https_provider(tls: TLSFake, **extra: Any) -> dict[str, Any]:
    return {
        "name": "fake",
        "api_base_url": tls.url + "/v1/chat/completions",
        "api_key": KEY,
        "models": ["fake-model"],
        **extra,
    }


# -- through the tunnel --------------------------------------------------------------------------


async def test_https_provider_through_a_connect_tunnel_with_its_own_ca(
    nursery: trio.Nursery, start_router: StartRouter, certificates: Certificates
) -> None:
    tls = await start_tls_fake(nursery, certificates, answering("through the tunnel"))
    proxy = await LoopbackProxy().start(nursery)
    provider = https_provider(tls, proxy=proxy.url, ca_bundle=str(certificates.ca))
    router = await start_router(config(provider))
    assert text_of(await ask(router.url)) == "through the tunnel"
    assert text_of(await ask(router.url, stream=True)) == "through the tunnel"
    # One tunnel, kept alive for the second request; TLS to the provider's own name inside.
    assert proxy.tunnels == [f"localhost:{tls.port}"]
    assert proxy.connections == 1
    assert tls.names == ["localhost"]
    assert [r.headers["authorization"] for r in tls.fake.requests] == [f"Bearer {KEY}"] * 2
    # The proxy carried only ciphertext: neither the key nor the prompt crossed it in the clear.
    assert proxy.relayed and KEY.encode() not in proxy.relayed
    assert b"chat/completions" not in proxy.relayed


async def test_without_its_ca_the_provider_certificate_is_refused(
    nursery: trio.Nursery, start_router: StartRouter, certificates: Certificates
) -> None:
    tls = await start_tls_fake(nursery, certificates, answering("never"))
    proxy = await LoopbackProxy().start(nursery)
    router = await start_router(config(https_provider(tls, proxy=proxy.url)))
    response = await ask(router.url)
    assert response.status_code == 502, response.text
    assert "CERTIFICATE_VERIFY_FAILED" in response.json()["error"]["message"]
    assert proxy.tunnels == [f"localhost:{tls.port}"]
    assert not tls.fake.requests


async def test_proxy_credentials_go_in_proxy_authorization_and_stay_masked(
    nursery: trio.Nursery, start_router: StartRouter, certificates: Certificates
) -> None:
    password = "s3cret-proxy-pass"
    tls = await start_tls_fake(nursery, certificates, answering("authorized"))
    proxy = await LoopbackProxy(credentials=f"user:{password}").start(nursery)
    ca = str(certificates.ca)
    good = https_provider(tls, proxy=f"http://user:{password}@127.0.0.1:{proxy.port}", ca_bundle=ca)
    router = await start_router(config(good))
    assert text_of(await ask(router.url)) == "authorized"
    assert proxy.authorizations == [basic(f"user:{password}").decode()]

    wrong = https_provider(tls, proxy=f"http://user:wrong-password-1@127.0.0.1:{proxy.port}")
    refused = await start_router(config(wrong))
    response = await ask(refused.url)
    assert response.status_code == 502, response.text
    message = response.json()["error"]["message"]
    assert message == (
        f"cannot reach provider 'fake': proxy http://user:wron****rd-1@127.0.0.1:{proxy.port} "
        f"refused the tunnel to localhost:{tls.port}: 407 Proxy Authentication Required"
    )
    # The request's log line names the masked proxy, never the password.
    with trio.fail_after(10):
        while "407" not in (log := logged(refused.log_file)):
            await trio.sleep(0.05)
    assert "wron****rd-1" in log and "wrong-password-1" not in log


async def test_an_unreachable_proxy_is_a_502_that_names_it(
    nursery: trio.Nursery, start_router: StartRouter, certificates: Certificates
) -> None:
    tls = await start_tls_fake(nursery, certificates, answering("never"))
    port = free_port()
    router = await start_router(config(https_provider(tls, proxy=f"http://127.0.0.1:{port}")))
    response = await ask(router.url)
    assert response.status_code == 502, response.text
    message = response.json()["error"]["message"]
    assert message.startswith(
        f"cannot reach provider 'fake': cannot connect to proxy http://127.0.0.1:{port}: "
    )


async def test_http_provider_through_a_proxy_gets_the_absolute_form(
    nursery: trio.Nursery, start_router: StartRouter, start_fake: StartFake
) -> None:
    fake = await start_fake(answering("forwarded"))
    proxy = await LoopbackProxy(credentials="u:p4ss-word").start(nursery)
    provider = provider_config(fake, proxy=f"http://u:p4ss-word@127.0.0.1:{proxy.port}")
    router = await start_router(config(provider))
    assert text_of(await ask(router.url)) == "forwarded"
    assert proxy.forwarded == [f"POST {fake.url}/v1/chat/completions HTTP/1.1"]
    assert proxy.authorizations == [basic("u:p4ss-word").decode()]

    refused = await start_router(config(provider_config(fake, proxy=proxy.url)))
    response = await ask(refused.url)
    assert response.status_code == 502, response.text
    assert response.json()["error"]["message"] == (
        f"cannot reach provider 'fake': proxy {proxy.url} refused the request: "
        "407 Proxy Authentication Required"
    )


async def test_direct_and_proxied_connections_to_one_origin_are_pooled_apart(
    nursery: trio.Nursery, start_router: StartRouter, start_fake: StartFake
) -> None:
    fake = await start_fake(answering("pooled"))
    proxy = await LoopbackProxy().start(nursery)
    proxied = provider_config(fake, proxy=proxy.url)
    direct = provider_config(fake, name="direct")
    router = await start_router(
        {"Providers": [proxied, direct], "Router": {"default": "fake,fake-model"}}
    )
    for model in ("fake,fake-model", "direct,fake-model", "fake,fake-model", "direct,fake-model"):
        assert text_of(await ask(router.url, model=model)) == "pooled"
    # Each kept its own connection: the proxy carried exactly the proxied provider's two.
    assert proxy.connections == 1
    assert len(proxy.forwarded) == 1  # the test proxy logs only a connection's first request
    assert proxy.relayed.count(b"POST /v1/chat/completions") == 1
    assert proxy.relayed.count(f"POST {fake.url}/v1/chat/completions".encode()) == 1


# -- the environment -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("no_proxy", "bypassed"),
    [
        ("127.0.0.1", True),
        ("example.com, 127.0.0.1", True),
        ("127.0.0.0/8", True),
        ("*", True),
        ("{port}", True),
        ("127.0.0.2,example.com", False),
        ("127.0.0.1:1", False),
        ("", False),
    ],
)
async def test_environment_proxy_and_no_proxy(
    nursery: trio.Nursery,
    start_router: StartRouter,
    start_fake: StartFake,
    monkeypatch: pytest.MonkeyPatch,
    no_proxy: str,
    bypassed: bool,
) -> None:
    fake = await start_fake(answering("env"))
    proxy = await LoopbackProxy().start(nursery)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", no_proxy.replace("{port}", f"127.0.0.1:{fake.port}"))
    router = await start_router(config(provider_config(fake)))
    assert text_of(await ask(router.url)) == "env"
    assert proxy.connections == (0 if bypassed else 1)


async def test_a_lowercase_variable_wins_over_the_uppercase_one(
    nursery: trio.Nursery,
    start_router: StartRouter,
    start_fake: StartFake,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = await start_fake(answering("lower"))
    proxy = await LoopbackProxy().start(nursery)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("http_proxy", proxy.url)
    router = await start_router(config(provider_config(fake)))
    assert text_of(await ask(router.url)) == "lower"
    assert proxy.connections == 1


async def test_a_router_process_uses_the_environment_proxy_and_ca(
    nursery: trio.Nursery,
    router_process: Callable[..., RouterProcess],
    certificates: Certificates,
    tmp_path: Path,
) -> None:
    tls = await start_tls_fake(nursery, certificates, answering("from the environment"))
    proxy = await LoopbackProxy().start(nursery)
    (tmp_path / "config.json").write_text(json.dumps(config(https_provider(tls))))
    env = {"SSL_CERT_FILE": str(certificates.ca), "SSL_CERT_DIR": ""}
    for name in PROXY_VARIABLES:
        for variable in (name, name.upper()):
            env[variable] = proxy.url if name == "https_proxy" else ""
    process = await trio.to_thread.run_sync(partial(router_process, env=env))
    assert text_of(await ask(process.url)) == "from the environment"
    assert proxy.tunnels == [f"localhost:{tls.port}"]
    assert tls.names == ["localhost"]


# -- settings checked before they serve ----------------------------------------------------------


async def test_an_unusable_proxy_url_is_refused_at_start(
    start_router: StartRouter, start_fake: StartFake
) -> None:
    fake = await start_fake(answering("never"))
    with pytest.raises(ConfigError) as caught:
        await start_router(config(provider_config(fake, proxy="socks5://127.0.0.1:1080")))
    assert caught.value.problems == [
        "Providers[0].proxy: only http:// proxies are supported (HTTP CONNECT), not socks5://"
    ]


async def test_a_missing_or_broken_ca_bundle_is_refused_at_start(
    start_router: StartRouter, start_fake: StartFake, tmp_path: Path
) -> None:
    fake = await start_fake(answering("never"))
    missing, broken = tmp_path / "missing.pem", tmp_path / "broken.pem"
    broken.write_text("not a certificate")
    other = provider_config(fake, name="other", ca_bundle=str(broken))
    with pytest.raises(ConfigError) as caught:
        await start_router(
            {
                "Providers": [provider_config(fake, ca_bundle=str(missing)), other],
                "Router": {"default": "fake,fake-model"},
            }
        )
    first, second = caught.value.problems
    assert first == f"Providers[0].ca_bundle: file not found: {str(missing)!r}"
    assert second.startswith(
        f"Providers[1].ca_bundle: cannot load CA certificates from {str(broken)!r}"
    )


# -- the rules, one by one -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entries", "host", "port", "matched"),
    [
        ("example.com", "example.com", 443, True),
        ("example.com", "api.example.com", 443, True),
        ("example.com", "notexample.com", 443, False),
        ("example.com", "example.com.org", 443, False),
        (".example.com", "example.com", 443, True),
        ("*.example.com", "a.b.example.com", 443, True),
        ("EXAMPLE.com", "Api.Example.COM.", 443, True),
        ("*", "anything", 1, True),
        ("a.com,*", "b.com", 1, True),
        ("example.com:8443", "example.com", 8443, True),
        ("example.com:8443", "example.com", 443, False),
        ("10.0.0.0/8", "10.1.2.3", 443, True),
        ("10.0.0.0/8", "11.1.2.3", 443, False),
        ("192.168.1.5", "192.168.1.5", 80, True),
        ("192.168.1.5", "192.168.1.50", 80, False),
        ("::1", "::1", 443, True),
        ("[::1]:8080", "::1", 8080, True),
        ("[::1]:8080", "::1", 443, False),
        ("fd00::/8", "fd12::1", 443, True),
        ("https://internal.corp", "internal.corp", 443, True),
        ("", "example.com", 443, False),
    ],
)
def test_no_proxy_rules(entries: str, host: str, port: int, matched: bool) -> None:
    assert NoProxy(entries).matches(host, port) is matched


@pytest.mark.parametrize(
    ("url", "host", "port", "authorization", "shown"),
    [
        ("http://proxy.corp:3128", "proxy.corp", 3128, None, "http://proxy.corp:3128"),
        ("proxy.corp:3128", "proxy.corp", 3128, None, "http://proxy.corp:3128"),
        ("http://proxy.corp", "proxy.corp", 80, None, "http://proxy.corp:80"),
        ("http://[::1]:3128/", "::1", 3128, None, "http://[::1]:3128"),
        (
            "http://us%40er:p%3Ass@proxy:1",
            "proxy",
            1,
            basic("us@er:p:ss"),
            "http://us@er:****@proxy:1",
        ),
        ("http://token-only-secret@proxy:1", "proxy", 1, basic("token-only-secret:"), None),
    ],
)
def test_proxy_urls(
    url: str, host: str, port: int, authorization: bytes | None, shown: str | None
) -> None:
    proxy = parse_proxy(url)
    assert (proxy.host, proxy.port, proxy.authorization) == (host, port, authorization)
    if shown is not None:
        assert proxy.shown == shown
    else:
        assert "token-only-secret" not in proxy.shown


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://proxy:443", "only http:// proxies are supported"),
        ("socks5h://proxy:1080", "only http:// proxies are supported"),
        ("http://:3128", "has no host"),
        ("http://proxy:3128/path", "without a path or query"),
        ("http://proxy:99999", "not a valid URL"),
    ],
)
def test_unusable_proxy_urls(url: str, problem: str) -> None:
    with pytest.raises(ProxyURLError, match=problem):
        parse_proxy(url)
