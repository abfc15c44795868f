"""The official ``anthropic`` Python SDK pointed at trio-router.

    ANTHROPIC_BASE_URL=http://127.0.0.1:3456 ANTHROPIC_API_KEY=your-router-APIKEY \\
        .venv/bin/python examples/python_sdk.py

The SDK reads both variables itself, so code written for Anthropic needs no change. The model
name goes through the router's rules; ``MODEL="provider,model"`` names a route directly.
"""

from __future__ import annotations

import os

import anthropic
from anthropic.types import MessageParam

MODEL = os.environ.get("MODEL", "claude-sonnet-4-5")
MESSAGES: list[MessageParam] = [{"role": "user", "content": "Say hello"}]


def main() -> None:
    client = anthropic.Anthropic(max_retries=0)

    message = client.messages.create(model=MODEL, max_tokens=256, messages=MESSAGES)
    text = "".join(block.text for block in message.content if block.type == "text")
    print(f"answer: {text}")
    print(f"usage: {message.usage.input_tokens} in, {message.usage.output_tokens} out")

    with client.messages.stream(model=MODEL, max_tokens=256, messages=MESSAGES) as stream:
        for chunk in stream.text_stream:
            print(chunk, end="", flush=True)
        final = stream.get_final_message()
    print(f"\nstream stopped: {final.stop_reason}")

    count = client.messages.count_tokens(model=MODEL, messages=MESSAGES)
    print(f"count_tokens: {count.input_tokens}")


if __name__ == "__main__":
    main()
