"""Which HTTP proxy, if any, a request to a provider goes through.

Three sources, most specific first: a provider's own ``proxy``, the config's global one
(claude-code-router's ``PROXY_URL``), and ``HTTPS_PROXY`` / ``HTTP_PROXY`` from the environment,
chosen by the provider URL's scheme. ``NO_PROXY`` exempts hosts from the last two: a provider's
own ``proxy`` is an explicit choice for that provider, while ``NO_PROXY`` is the environment's word
on hosts reached directly whatever the rest says (curl, too, applies it to a proxy set by its
``-x`` option: https://curl.se/libcurl/c/CURLOPT_NOPROXY.html).

Environment names follow Python's ``urllib.request.getproxies_environment``, which httpx uses
(https://www.python-httpx.org/environment_variables/): a lowercase name wins over the uppercase
one, and a lowercase name set to the empty string turns the uppercase one off.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Mapping
from urllib.parse import unquote, urlsplit

_IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Proxy:
    """An HTTP proxy: where it listens, the ``Proxy-Authorization`` its URL's userinfo makes,
    and the URL as it may be shown (the password masked)."""

    __slots__ = ("authorization", "host", "key", "port", "shown")

    def __init__(self, host: str, port: int, authorization: bytes | None, shown: str) -> None:
        self.host = host
        self.port = port
        self.authorization = authorization
        self.shown = shown
        # What tells two proxies' connections apart in the pool: credentials too, since a proxy
        # may route by user.
        self.key = f"{host}:{port}:{authorization!r}"


class ProxyURLError(ValueError):
    """A proxy URL this router cannot use, and why."""


def parse_proxy(url: str) -> Proxy:
    """``http://[user[:password]@]host[:port]`` as a :class:`Proxy`.

    Without ``://`` the value is taken as ``http://`` + value, as curl and httpx do; without a
    port, 80, as httpx does (curl would assume 1080). Only plain-HTTP proxies: the tunnel to an
    ``https`` provider carries TLS end to end, but the hop to the proxy itself is not encrypted.
    """
    value = url.strip()
    if "://" not in value:
        value = "http://" + value
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as error:
        raise ProxyURLError(f"not a valid URL ({error})") from None
    if parts.scheme.lower() != "http":
        raise ProxyURLError(
            f"only http:// proxies are supported (HTTP CONNECT), not {parts.scheme}://"
        )
    host = parts.hostname
    if not host:
        raise ProxyURLError("has no host: expected http://host:port")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ProxyURLError("must be http://host:port, without a path or query")
    port = 80 if port is None else port
    if not 0 < port < 65536:
        raise ProxyURLError(f"port {port} is out of range")
    # Imported here: masking imports the config module, which validates proxy URLs with this one.
    from .masking import mask

    authorization = None
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    shown = f"http://{netloc}"
    if parts.username is not None:
        user, password = unquote(parts.username), unquote(parts.password or "")
        if ":" in user:
            raise ProxyURLError("the user name must not contain ':' (RFC 7617 section 2)")
        # RFC 7617 section 2: Basic credentials are base64("user-id:password"), UTF-8 here.
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        authorization = f"Basic {token}".encode("ascii")
        # A token-only proxy URL (http://TOKEN@host) carries its secret in the user name.
        who = f"{user}:{mask(password)}" if parts.password is not None else mask(user)
        shown = f"http://{who}@{netloc}"
    return Proxy(host, port, authorization, shown)


class NoProxy:
    """``NO_PROXY``: the hosts reached directly, as curl documents it
    (https://curl.se/libcurl/c/CURLOPT_NOPROXY.html).

    Comma-separated entries: ``*`` alone matches every host; a name matches that host and every
    host under it (``example.com`` and ``.example.com`` both match ``example.com`` and
    ``api.example.com``, not ``notexample.com``); an IP address matches itself, IPv6 written
    without brackets; CIDR (``10.0.0.0/8``) matches the addresses in it. As in Python's
    ``urllib`` and httpx, an entry may name a port (``host:8443``, ``[::1]:8443``), and then
    matches that port only.
    """

    def __init__(self, value: str) -> None:
        self.everything = False
        self._names: list[tuple[str, int | None]] = []
        self._networks: list[tuple[_IPNetwork, int | None]] = []
        for raw in value.replace(" ", ",").split(","):
            entry = raw.strip().lower()
            if entry == "*":
                self.everything = True
            elif entry:
                self._add(entry)

    def _add(self, entry: str) -> None:
        if "://" in entry:  # httpx accepts a URL form: its host and port count here
            entry = entry.split("://", 1)[1].rstrip("/")
        port: int | None = None
        host = entry
        if entry.startswith("["):
            host, _, rest = entry[1:].partition("]")
            port = int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
        elif entry.count(":") == 1:
            name, _, digits = entry.partition(":")
            if digits.isdigit():
                host, port = name, int(digits)
        try:
            self._networks.append((ipaddress.ip_network(host, strict=False), port))
            return
        except ValueError:
            pass
        self._names.append((host.removeprefix("*").removeprefix(".").removesuffix("."), port))

    def matches(self, host: str, port: int) -> bool:
        if self.everything:
            return True
        host = host.lower().removesuffix(".")
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = None
        if address is not None:
            return any(
                address in network and (want is None or want == port)
                for network, want in self._networks
            )
        return any(
            (host == name or host.endswith("." + name)) and (want is None or want == port)
            for name, want in self._names
        )


def _env(environ: Mapping[str, str], name: str) -> str:
    lower = name.lower()
    return environ[lower] if lower in environ else environ.get(name.upper(), "")


class ProxyChoice:
    """The global and environment proxies of one config, chosen per provider URL."""

    def __init__(self, global_proxy: str, environ: Mapping[str, str]) -> None:
        """Raises :class:`ProxyURLError` naming the setting whose value is unusable."""
        self._global = _parsed("PROXY_URL", global_proxy)
        self._by_scheme = {
            scheme: _parsed(f"{scheme.upper()}_PROXY (environment)", _env(environ, variable))
            for scheme, variable in (("https", "https_proxy"), ("http", "http_proxy"))
        }
        self._no_proxy = NoProxy(_env(environ, "no_proxy"))

    def for_url(self, scheme: str, host: str, port: int) -> Proxy | None:
        proxy = self._global or self._by_scheme.get(scheme)
        if proxy is None or self._no_proxy.matches(host, port):
            return None
        return proxy


def _parsed(where: str, value: str) -> Proxy | None:
    if not value.strip():
        return None
    try:
        return parse_proxy(value)
    except ProxyURLError as error:
        raise ProxyURLError(f"{where}: {error}") from None
