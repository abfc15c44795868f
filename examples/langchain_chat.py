"""LangChain's ``ChatAnthropic`` pointed at trio-router (``pip install langchain-anthropic``).

    ANTHROPIC_BASE_URL=http://127.0.0.1:3456 ANTHROPIC_API_KEY=your-router-APIKEY \\
        .venv/bin/python examples/langchain_chat.py

``base_url`` is where ChatAnthropic sends its Messages API calls; the model name goes through the
router's rules (``MODEL="provider,model"`` names a route directly).
"""

from __future__ import annotations

import os

from langchain_anthropic import ChatAnthropic


def main() -> None:
    chat = ChatAnthropic(
        model=os.environ.get("MODEL", "claude-sonnet-4-5"),
        base_url=os.environ.get("ANTHROPIC_BASE_URL", "http://127.0.0.1:3456"),
        api_key=os.environ["ANTHROPIC_API_KEY"],
        max_tokens=256,
        max_retries=0,
    )
    answer = chat.invoke("Say hello")
    print(f"answer: {answer.text}")
    print(f"usage: {answer.usage_metadata}")

    print("stream: ", end="")
    for chunk in chat.stream("Say hello"):
        print(chunk.text, end="", flush=True)
    print()


if __name__ == "__main__":
    main()
