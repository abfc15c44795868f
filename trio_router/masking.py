"""What counts as a secret in a config; masking secrets for people, redacting them from text.

One set of rules for every place a secret could leave the process: ``GET /api/config`` (masked),
the log, error messages to clients and upstream error text relayed to them (redacted).

Secrets are the router's keys (``APIKEY``, ``ADMIN_KEY``), each provider's ``api_key`` and
every key of its ``api_keys`` pool, the
values of provider ``headers`` whose names look like credentials (``Authorization``,
``x-api-key``, ``api-key``, ``x-goog-api-key``, anything with key/token/secret in it), and the
values of such parameters in an ``api_base_url``'s query string (Gemini's ``?key=...``) or a
password in its userinfo.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlsplit

from .config import Config, Provider

# Config fields whose whole value is a secret.
SECRET_FIELDS = frozenset({"APIKEY", "ADMIN_KEY", "METRICS_KEY", "api_key"})
# Config fields whose value is a list of secrets, each masked and restored on its own.
SECRET_LISTS = frozenset({"api_keys"})
# Fields holding a URL whose password (or query key) is a secret: masked inside the URL.
URL_FIELDS = frozenset({"api_base_url", "proxy", "PROXY_URL", "STORE_URL"})
_SECRET_NAME = re.compile(r"key|token|secret|passw|auth|credential|signature|cookie", re.I)
# Shorter strings are too likely to occur in ordinary text to be redacted from it.
MIN_REDACTED = 4
REDACTED = "***"


def is_secret_name(name: str) -> bool:
    """A header or query parameter name that carries a credential."""
    return bool(_SECRET_NAME.search(name))


def mask(value: str) -> str:
    """Enough of a key to recognise it, never enough to use it. ``$VAR`` references stay."""
    if not value or value.startswith("$"):
        return value
    if len(value) <= 12:
        return "****"
    return f"{value[:4]}****{value[-4:]}"


def url_secrets(url: str) -> list[str]:
    """The secret values inside a URL: credential query parameters and a userinfo password (or
    a user name alone, which a token-only proxy URL such as ``http://TOKEN@host`` is)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found = [v for k, v in parse_qsl(parts.query, keep_blank_values=False) if is_secret_name(k)]
    if parts.password:
        found.append(parts.password)
    elif parts.username:
        found.append(parts.username)
    return found


def mask_url(url: str) -> str:
    """``url`` with each secret it holds masked, so that it can be shown or logged."""
    for secret in url_secrets(url):
        if not secret.startswith("$"):
            url = url.replace(secret, mask(secret))
    return url


def header_secrets(name: str, value: str) -> list[str]:
    """A credential header's value, and its last word (``Bearer KEY`` -> ``KEY``) on its own."""
    if not is_secret_name(name) or not value:
        return []
    word = value.split()[-1] if value.split() else value
    return [value, word] if word != value else [value]


def provider_secrets(provider: Provider) -> list[str]:
    """Every secret the router sends to this provider: what its error text could quote."""
    found = [
        provider.api_key,
        *provider.api_keys,
        *url_secrets(provider.api_base_url),
        *url_secrets(provider.proxy),
    ]
    for name, value in provider.headers.items():
        found.extend(header_secrets(name, value))
    return found


def config_secrets(config: Config) -> list[str]:
    """Every secret value a loaded (interpolated) config holds."""
    found = [config.APIKEY, config.ADMIN_KEY, config.METRICS_KEY, *url_secrets(config.PROXY_URL)]
    found.extend(url_secrets(config.STORE_URL))
    for provider in config.Providers:
        found.extend(provider_secrets(provider))
    return found


class Redactor:
    """Replaces every known secret in a text with ``***``; longest first, so a key that
    contains another is masked whole."""

    def __init__(self, secrets: Iterable[str]) -> None:
        unique = {s for s in secrets if len(s) >= MIN_REDACTED}
        self.secrets = sorted(unique, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def __bool__(self) -> bool:
        return bool(self.secrets)
