"""trio-router: an Anthropic Messages API gateway to other LLM providers."""

__version__ = "0.1.0"
