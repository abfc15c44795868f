"""What a request cost in USD: the config's ``prices``, else the genai-prices library.

genai-prices (https://github.com/pydantic/genai-prices) is a maintained price list for LLM
APIs; its snapshot is bundled with the package and read as installed: prices are never
downloaded at runtime (the gateway may have no way out, and a price must not change under a
running process). A model neither knows is unpriced: ``None`` (JSON ``null``), never 0.

A lookup is cached per (provider, model): the library matches a model name against every
provider's patterns, which costs far more than the arithmetic.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

from genai_prices import Usage, calc_price
from genai_prices.types import ModelPrice

from .config import Config, Price, Provider

# Our provider (its name or its api_base_url's host) -> genai-prices' provider id, for the
# providers whose model names alone are ambiguous (OpenRouter's "vendor/model", Gemini's names
# on Vertex and Google AI). The ids are genai-prices' own (prices/providers/*.yml upstream).
_PROVIDER_IDS: Final = (
    ("openrouter", "openrouter"),
    ("deepseek", "deepseek"),
    ("gemini", "google"),
    ("googleapis", "google"),
    ("google", "google"),
    ("anthropic", "anthropic"),
    ("openai", "openai"),
)

PER_TOKEN: Final = 1e-6  # the config's prices are USD per million tokens
# Lookups kept per config: a client may name any model ("provider,model"), so the cache is
# bounded; past it a lookup is made each time.
MAX_CACHED: Final = 4096


def _override(price: Price, tokens: tuple[int, int, int, int]) -> float:
    """The cost at a price of the config; cache reads and writes default to the input price."""
    fresh, output, cache_read, cache_write = tokens
    read = price.input if price.cache_read is None else price.cache_read
    write = price.input if price.cache_write is None else price.cache_write
    return (
        fresh * price.input + output * price.output + cache_read * read + cache_write * write
    ) * PER_TOKEN


def _provider_ids(provider: Provider | None) -> list[str]:
    if provider is None:
        return []
    host = (urlsplit(provider.api_base_url).hostname or "").lower()
    name = provider.name.lower()
    return list(dict.fromkeys(pid for word, pid in _PROVIDER_IDS if word in name or word in host))


def _library_price(provider: Provider | None, model: str) -> ModelPrice | None:
    """genai-prices' price for ``model``: at the provider its api_base_url or its name says,
    else wherever the library finds the model by name alone; None when it knows no price."""
    probe = Usage(input_tokens=0, output_tokens=0)
    attempts: list[tuple[str | None, str | None]] = []  # (provider_id, provider_api_url)
    if provider is not None and provider.api_base_url:
        attempts.append((None, provider.api_base_url))
    attempts += [(pid, None) for pid in _provider_ids(provider)]
    attempts.append((None, None))
    for provider_id, api_url in attempts:
        try:
            if api_url is not None:
                found: ModelPrice = calc_price(probe, model, provider_api_url=api_url).model_price
            else:
                found = calc_price(probe, model, provider_id=provider_id).model_price
        except LookupError:
            continue
        return found
    return None


class Prices:
    """One config's prices: its overrides, then the library's, cached per (provider, model)."""

    def __init__(self, config: Config) -> None:
        self._overrides = config.prices
        self._providers = {provider.name: provider for provider in config.Providers}
        self._found: dict[tuple[str, str], Price | ModelPrice | None] = {}

    def _lookup(self, provider: str, model: str) -> Price | ModelPrice | None:
        key = (provider, model)
        try:
            return self._found[key]
        except KeyError:
            pass
        found: Price | ModelPrice | None = self._overrides.get(
            f"{provider},{model}"
        ) or self._overrides.get(model)
        if found is None:
            found = _library_price(self._providers.get(provider), model)
        if len(self._found) < MAX_CACHED:
            self._found[key] = found
        return found

    def cost(
        self,
        provider: str,
        model: str,
        input_tokens: int,
        output_tokens: int,
        cache_read: int = 0,
        cache_write: int = 0,
    ) -> float | None:
        """USD for one request, in Anthropic's usage terms: ``input_tokens`` excludes the
        cache reads and writes (https://docs.anthropic.com/en/api/messages, ``usage``)."""
        price = self._lookup(provider, model)
        if price is None:
            return None
        if isinstance(price, Price):
            return _override(price, (input_tokens, output_tokens, cache_read, cache_write))
        # genai-prices' input_tokens includes the cached ones, which it prices at their own
        # rates (its README's gpt-4o example: 1000 input with 500 cache reads).
        usage = Usage(
            input_tokens=input_tokens + cache_read + cache_write,
            output_tokens=output_tokens,
            cache_read_tokens=cache_read,
            cache_write_tokens=cache_write,
        )
        return float(price.calc_price(usage)["total_price"])
