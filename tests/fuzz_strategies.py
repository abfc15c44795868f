"""Hypothesis strategies for Claude Code-shaped ``/v1/messages`` requests, valid and not.

Each request starts from a real capture (tests/fixtures/claude_code/) or a one-turn request with
Claude Code's own Bash tool, and goes through a few mutations chosen from what a client, a buggy
client or an attacker can send: fields dropped, duplicated or of the wrong type, odd unicode (lone
surrogates travel as JSON escapes), edge integers, nesting up to a few hundred levels in tool
schemas and tool inputs, bogus block types, tool_result and image variants, unknown tool_choice,
and random JSON anywhere. The small base comes first so that shrinking ends on a short body.
"""

from __future__ import annotations

import base64
import copy
import json
import zlib
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

JSON = Any
Draw = Callable[[st.SearchStrategy[Any]], Any]

FIXTURES = Path(__file__).parent / "fixtures" / "claude_code"
CAPTURED = ["default", "sonnet_4_5", "tool_use_2", "broken_stream_2"]
_HEAD = json.loads((FIXTURES / "default.headers.json").read_text())
# The headers Claude Code sends, less those httpx sets from the request itself.
HEADERS: dict[str, str] = {
    k: v
    for k, v in _HEAD["headers"].items()
    if k.lower() not in ("host", "content-length", "connection", "accept-encoding")
}
TARGET: str = _HEAD["target"]

_CAPTURES: list[dict[str, Any]] = [
    json.loads((FIXTURES / f"{name}.json").read_text()) for name in CAPTURED
]
TOOLS: list[dict[str, Any]] = _CAPTURES[0]["tools"]
TOOL_NAMES = [t["name"] for t in TOOLS]
_BASH = next(t for t in TOOLS if t["name"] == "Bash")
_SMALL: dict[str, Any] = {
    "model": "",
    "max_tokens": 32000,
    "messages": [{"role": "user", "content": "hi"}],
    "tools": [_BASH],
}
# Dumped once: a parse per example is cheaper than a deep copy of a 90 KB tree.
_BASES = [json.dumps(b) for b in [_SMALL, *_CAPTURES]]

# --- scalars --------------------------------------------------------------------------------

# Lone surrogates are valid JSON escapes but no Unicode text: a body holding one is a 400, so
# they come rarely, or little else would get past the decoder.
_SURROGATE = st.sampled_from(["\ud800", "\udfff", "\ud83d", "a\ud800b"])
_ODD = [
    "\x00",
    "\x1b[31m",
    "\r\n",
    "\u202e",
    "\ufeff",
    "\u2028",
    "\U0001f600",
    "e\u0301",
    "\\",
    '"',
    "%00",
    "{",
    "</system-reminder>",
    "x-anthropic-billing-header:",
]


def rarely(
    rare: st.SearchStrategy[Any], common: st.SearchStrategy[Any], one_in: int
) -> st.SearchStrategy[Any]:
    """``rare`` about once in ``one_in`` draws, else ``common`` (``|`` would give it half)."""
    return st.integers(1, one_in).flatmap(lambda n: rare if n == one_in else common)


odd_text: st.SearchStrategy[str] = rarely(
    _SURROGATE,
    st.one_of(
        st.just(""),
        st.text(max_size=16),
        st.lists(st.sampled_from(_ODD) | st.characters(), min_size=1, max_size=8).map("".join),
        st.sampled_from(["a" * 70_000, "\U0001f600" * 5000, "\u0301" * 5000]),
    ),
    50,
)
edge_int: st.SearchStrategy[int] = (
    st.sampled_from(
        [
            0,
            -1,
            1,
            2**31 - 1,
            2**31,
            2**53 + 1,
            2**63 - 1,
            2**63,
            2**64,
            -(2**63) - 1,
            10**30,
            -(10**30),
        ]
    )
    | st.integers()
)
_NUMBER = edge_int | st.floats(allow_nan=False, allow_infinity=False)
_SCALAR = st.none() | st.booleans() | _NUMBER | odd_text
_KEYS = (
    st.sampled_from(
        [
            "type",
            "text",
            "name",
            "id",
            "input",
            "content",
            "properties",
            "required",
            "items",
            "anyOf",
            "$ref",
            "enum",
            "source",
            "data",
            "role",
            "cache_control",
            "",
        ]
    )
    | odd_text
)
random_json: st.SearchStrategy[JSON] = st.recursive(
    _SCALAR,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=4),
    max_leaves=12,
)
depth: st.SearchStrategy[int] = st.integers(1, 200) | st.sampled_from([199, 200])


def nest(levels: int, leaf: JSON, wrap: Callable[[JSON], JSON]) -> JSON:
    value = leaf
    for _ in range(levels):
        value = wrap(value)
    return value


def _paths(value: JSON, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [here]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*here, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            found += _paths(child, (*here, i))
    return found


def _at(body: JSON, path: tuple[Any, ...]) -> JSON:
    for step in path:
        body = body[step]
    return body


# --- tool schemas ---------------------------------------------------------------------------

_WRAPS: list[Callable[[JSON], JSON]] = [
    lambda s: {"type": "object", "properties": {"a": s}, "required": ["a"]},
    lambda s: {"type": "array", "items": s},
    lambda s: {"anyOf": [s, {"type": "null"}]},
    lambda s: {"allOf": [s]},
    lambda s: {"type": "object", "additionalProperties": s},
    lambda s: {"$defs": {"d": s}, "$ref": "#/$defs/d"},
]


@st.composite
def deep_schema(draw: Draw) -> JSON:
    wrap = draw(st.sampled_from(_WRAPS))
    return nest(draw(depth), {"type": "string"}, wrap)


_HUGE = st.sampled_from([10**400, -(10**400), 1e308, -1e308, 5e-324, 2**63, -0.0])
_KEYWORD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "type": st.sampled_from(
        [["string", "null"], ["null"], [], ["object", "array"], 5, "OBJECT", "bogus", "null", ""]
    ),
    "required": st.lists(random_json | st.sampled_from(["a", "command"]), max_size=3),
    "properties": st.dictionaries(odd_text, random_json | deep_schema(), max_size=3),
    "items": st.lists(random_json, max_size=3) | st.booleans(),
    "prefixItems": st.lists(random_json, max_size=3),
    "enum": st.lists(random_json, max_size=4),
    "const": random_json,
    "anyOf": st.lists(random_json | deep_schema(), max_size=3),
    "oneOf": st.lists(random_json, max_size=3),
    "allOf": st.lists(random_json, max_size=3),
    "$ref": st.sampled_from(["#", "#/$defs/missing", "#/properties/command", "#/$defs/a", ""]),
    "$defs": st.just({"a": {"$ref": "#/$defs/a"}, "b": {"allOf": [{"$ref": "#/$defs/b"}]}}),
    "minimum": _HUGE | _NUMBER,
    "maximum": _HUGE | _NUMBER,
    "exclusiveMinimum": _HUGE | _NUMBER | st.booleans(),
    "exclusiveMaximum": _HUGE | _NUMBER | st.booleans(),
    "minItems": _HUGE | edge_int,
    "maxLength": _HUGE | edge_int,
    "format": st.sampled_from(["enum", "date-time", "int64", "float", "uri", ""]) | odd_text,
    "nullable": random_json,
    "description": random_json,
    "title": random_json,
    "additionalProperties": random_json,
    "default": random_json,
}


@st.composite
def schema_edits(draw: Draw, schema: JSON) -> JSON:
    """``schema`` with one to three keywords, each of one of its nodes, set to odd values."""
    for _ in range(draw(st.integers(1, 3))):
        nodes = [
            node for node in map(partial(_at, schema), _paths(schema)) if isinstance(node, dict)
        ]
        if not nodes:
            return schema
        node = draw(st.sampled_from(nodes))
        keyword = draw(st.sampled_from(sorted(_KEYWORD_VALUES)))
        # A copy: the value may come from st.just, and the next edit may land inside it.
        node[keyword] = copy.deepcopy(draw(_KEYWORD_VALUES[keyword] | random_json))
    return schema


# Dumped, so that each draw parses its own copy to edit.
_REAL_SCHEMAS = sorted({json.dumps(t["input_schema"]) for t in TOOLS if "input_schema" in t})
edited_schema: st.SearchStrategy[JSON] = (
    st.sampled_from(_REAL_SCHEMAS).map(json.loads).flatmap(schema_edits)
)
# Shapes that broke a schema converter once (issue 15, item 12) or that each converter must
# refuse or clean: non-string required names, cycles, out-of-range bounds, unsupported keywords.
KNOWN_BAD_SCHEMAS: dict[str, JSON] = {
    "required_list": {"type": "object", "properties": {"a": {}}, "required": [["a"]]},
    "required_object": {"type": "object", "properties": {"a": {}}, "required": [{}]},
    "required_string": {"type": "object", "properties": {"a": {}}, "required": "a"},
    "properties_list": {"type": "object", "properties": [{"a": {"type": "string"}}]},
    "type_lists": {"type": ["object", "null"], "properties": {"a": {"type": ["string", "null"]}}},
    "ref_cycle": {"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
    "huge_bound": {"type": "number", "minimum": 1.5, "exclusiveMinimum": 10**400},
    "odd_enum": {"type": "string", "format": "enum", "enum": [None, 1, [2], {"a": 3}]},
    "not": {"not": {}},
    "pattern_properties": {"type": "object", "patternProperties": {"^x": {"type": "string"}}},
}
# User content blocks that broke a translator once (found by this fuzzing): a document's
# "content" source whose items are not blocks, or which is not a list.
KNOWN_BAD_BLOCKS: dict[str, JSON] = {
    "document_null_item": {"type": "document", "source": {"type": "content", "content": [None]}},
    "document_int_item": {"type": "document", "source": {"type": "content", "content": [1]}},
    "document_object": {"type": "document", "source": {"type": "content", "content": {"a": 1}}},
    "document_int": {"type": "document", "source": {"type": "content", "content": 5}},
}
schema: st.SearchStrategy[JSON] = st.one_of(
    edited_schema,
    deep_schema(),
    st.sampled_from(sorted(map(json.dumps, KNOWN_BAD_SCHEMAS.values()))).map(json.loads),
    st.dictionaries(st.sampled_from(sorted(_KEYWORD_VALUES)), random_json, max_size=5),
    random_json,
)

# --- content blocks -------------------------------------------------------------------------

_CACHE = (
    st.sampled_from(
        [{"type": "ephemeral"}, {"type": "ephemeral", "ttl": "1h"}, {"type": "bogus"}, {}, None]
    )
    | random_json
)
_B64 = st.sampled_from(["", "!!!not base64!!!", "iVBORw0KGgo=", "a", "====", "data:,"]) | (
    st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode())
)
_MEDIA = (
    st.sampled_from(
        ["image/png", "image/jpeg", "image/gif", "image/webp", "text/plain", "application/pdf", ""]
    )
    | odd_text
)


@st.composite
def image_block(draw: Draw) -> JSON:
    source = draw(
        st.one_of(
            st.builds(lambda m, d: {"type": "base64", "media_type": m, "data": d}, _MEDIA, _B64),
            st.builds(
                lambda u: {"type": "url", "url": u},
                st.sampled_from(["http://127.0.0.1:1/x.png", "file:///etc/passwd", ""]) | odd_text,
            ),
            st.builds(lambda t: {"type": t, "data": "x"}, odd_text),
            random_json,
        )
    )
    return {"type": "image", "source": source}


text_block = st.fixed_dictionaries({"type": st.just("text"), "text": odd_text})
tool_input = st.one_of(
    st.builds(lambda n: nest(n, "x", lambda v: {"a": [v]}), depth),
    st.dictionaries(_KEYS, random_json, max_size=5),
    random_json,
)
_RESULT_CONTENT = st.one_of(
    odd_text,
    st.none(),
    st.just([]),
    st.lists(text_block | image_block(), max_size=3),
    st.lists(
        st.fixed_dictionaries(
            {"type": st.sampled_from(["tool_reference", "search_result", "document", "bogus"])}
        ),
        max_size=2,
    ),
    random_json,
)
_TOOL_NAME = st.sampled_from(TOOL_NAMES) | odd_text
# The Gemini format carries a thought signature inside the ids it makes: "toolu_", 24 hex digits,
# a mark ("_s" raw, "_z" deflated, "_t" text) and urlsafe base64 (trio_router/providers/gemini.py).
_SIGNED_ID = st.builds(
    lambda mark, payload: "toolu_" + "0" * 24 + mark + payload,
    st.sampled_from(["_s", "_z", "_t", "_x"]),
    st.one_of(
        st.binary(max_size=48).map(lambda b: base64.urlsafe_b64encode(b).decode().rstrip("=")),
        st.binary(max_size=48).map(
            lambda b: base64.urlsafe_b64encode(zlib.compress(b * 1000)).decode()
        ),
        odd_text,
    ),
)
_ID = st.sampled_from(["toolu_fake0001", "toolu_01", ""]) | _SIGNED_ID | odd_text


@st.composite
def block(draw: Draw) -> JSON:
    kind = draw(
        st.sampled_from(
            [
                "text",
                "image",
                "document",
                "tool_use",
                "tool_result",
                "thinking",
                "redacted_thinking",
                "server_tool_use",
                "web_search_tool_result",
                "bogus",
                "random",
            ]
        )
    )
    if kind == "text":
        found: JSON = draw(text_block)
        if draw(st.booleans()):
            found["cache_control"] = draw(_CACHE)
        if draw(st.booleans()):
            found["citations"] = draw(random_json)
        return found
    if kind == "image":
        return draw(image_block())
    if kind == "document":
        # https://docs.anthropic.com/en/docs/build-with-claude/pdf-support: base64, url, text
        # and content sources; each field here may be of the wrong type.
        kind = draw(st.sampled_from(["base64", "url", "text", "content", "bogus"]))
        source: JSON = {"type": kind}
        for name in draw(st.sets(st.sampled_from(["media_type", "data", "url", "content"]))):
            source[name] = draw(
                st.lists(random_json | text_block, max_size=3)
                if name == "content"
                else _B64 | random_json
            )
        found = {"type": "document", "source": source}
        if draw(st.booleans()):
            found["title"] = draw(odd_text)
        return found
    if kind == "tool_use":
        return {
            "type": "tool_use",
            "id": draw(_ID),
            "name": draw(_TOOL_NAME),
            "input": draw(tool_input),
        }
    if kind == "tool_result":
        result: JSON = {
            "type": "tool_result",
            "tool_use_id": draw(_ID),
            "content": draw(_RESULT_CONTENT),
        }
        if draw(st.booleans()):
            result["is_error"] = draw(st.booleans() | random_json)
        return result
    if kind == "thinking":
        return {"type": "thinking", "thinking": draw(odd_text), "signature": draw(odd_text)}
    if kind == "redacted_thinking":
        return {"type": "redacted_thinking", "data": draw(odd_text)}
    if kind == "server_tool_use":
        return {
            "type": "server_tool_use",
            "id": draw(_ID),
            "name": "web_search",
            "input": draw(tool_input),
        }
    if kind == "web_search_tool_result":
        return {
            "type": "web_search_tool_result",
            "tool_use_id": draw(_ID),
            "content": draw(random_json),
        }
    if kind == "bogus":
        return {"type": draw(odd_text), **draw(st.dictionaries(_KEYS, random_json, max_size=3))}
    return draw(random_json)


content: st.SearchStrategy[JSON] = odd_text | st.lists(block(), max_size=4) | random_json
_ROLE = st.sampled_from(["user", "assistant", "system", "tool", "developer", "bogus", ""])

# --- mutations: each edits the body in place ------------------------------------------------


def mutate_anywhere(draw: Draw, body: JSON) -> None:
    """Delete, replace, retype or duplicate the value at a random place."""
    paths = [p for p in _paths(body) if p]
    path = draw(st.sampled_from(paths))
    parent, key = _at(body, path[:-1]), path[-1]
    action = draw(st.sampled_from(["delete", "replace", "duplicate", "empty"]))
    if action == "delete":
        del parent[key]
    elif action == "replace":
        parent[key] = draw(random_json)
    elif action == "duplicate" and isinstance(parent, list):
        parent.insert(key, copy.deepcopy(parent[key]))
    else:
        parent[key] = type(parent[key])() if isinstance(parent[key], (dict, list, str)) else None


def mutate_top_level(draw: Draw, body: JSON) -> None:
    field = draw(
        st.sampled_from(
            [
                "max_tokens",
                "tool_choice",
                "thinking",
                "metadata",
                "system",
                "temperature",
                "top_p",
                "top_k",
                "stop_sequences",
                "output_config",
                "context_management",
                "tools",
                "messages",
                "unknown",
            ]
        )
    )
    choices: dict[str, st.SearchStrategy[Any]] = {
        "max_tokens": edge_int | st.sampled_from([1.5, "100", None, True]),
        "tool_choice": st.builds(
            lambda t, n, p: {"type": t, "name": n, "disable_parallel_tool_use": p},
            st.sampled_from(["auto", "any", "tool", "none", "bogus", ""]) | odd_text,
            _TOOL_NAME | st.none(),
            st.booleans() | st.none(),
        ).map(lambda c: {k: v for k, v in c.items() if v is not None}),
        "thinking": st.builds(
            lambda t, b: {"type": t, "budget_tokens": b},
            st.sampled_from(["enabled", "disabled", "adaptive", "bogus"]),
            edge_int | st.none(),
        ).map(lambda c: {k: v for k, v in c.items() if v is not None}),
        "metadata": st.builds(
            lambda u: {"user_id": u},
            st.one_of(
                odd_text,
                st.builds(
                    lambda s: json.dumps({"device_id": "d", "session_id": s}),
                    odd_text | random_json,
                ),
                st.just('{"session_id": '),
                random_json,
            ),
        ),
        "system": odd_text
        | st.lists(block(), max_size=4)
        | st.lists(
            st.builds(
                lambda t, c: {"type": "text", "text": t, "cache_control": c}, odd_text, _CACHE
            ),
            max_size=4,
        ),
        "temperature": _NUMBER,
        "top_p": _NUMBER,
        "top_k": edge_int,
        "stop_sequences": st.lists(odd_text, max_size=5),
        "output_config": st.builds(
            lambda e, f: {"effort": e, "format": f},
            st.sampled_from(["low", "medium", "high", "max"]) | odd_text,
            # https://docs.anthropic.com/en/docs/build-with-claude/structured-outputs
            st.builds(lambda s: {"type": "json_schema", "schema": s}, schema) | random_json,
        ),
        "context_management": random_json,
        "tools": st.sampled_from([[], TOOLS + TOOLS, TOOLS * 10]),
        "messages": st.sampled_from(
            [[], [{"role": "user", "content": ""}], [{"role": "user", "content": []}]]
        ),
        "unknown": random_json,
    }
    strategy = choices[field] | random_json if draw(st.booleans()) else choices[field]
    body["unknown" if field == "unknown" else field] = draw(strategy)


def mutate_tool(draw: Draw, body: JSON) -> None:
    """Edit one tool; mostly its schema, where each provider format converts the most."""
    tools = body.get("tools")
    if not isinstance(tools, list) or not tools:
        body["tools"] = tools = [copy.deepcopy(_BASH)]
    at = draw(st.integers(0, len(tools) - 1))
    if not isinstance(tools[at], dict):
        tools[at] = copy.deepcopy(_BASH)
    tool = tools[at]
    part = draw(st.sampled_from(["edit", "edit", "replace", "name", "description", "type"]))
    if part == "edit" and isinstance(tool.get("input_schema"), dict):
        tool["input_schema"] = draw(schema_edits(tool["input_schema"]))
    elif part in ("edit", "replace"):
        tool["input_schema"] = draw(schema)
    elif part == "name":
        tool["name"] = draw(odd_text | st.sampled_from(["a" * 65, "a.b", "a b", "Bash"]))
    elif part == "description":
        tool["description"] = draw(odd_text | random_json)
    else:
        tool["type"] = draw(
            st.sampled_from(["web_search_20250305", "custom", "bash_20250124"]) | odd_text
        )
        if draw(st.booleans()):
            tool.pop("input_schema", None)


def append_tool_round(draw: Draw, body: JSON) -> None:
    """An assistant tool_use turn and the user's tool_result turn, ids matching or not."""
    call_id = draw(_ID)
    assistant: list[JSON] = []
    if draw(st.booleans()):
        assistant.append(
            {"type": "thinking", "thinking": draw(odd_text), "signature": draw(odd_text)}
        )
    assistant.append({"type": "text", "text": draw(odd_text)})
    assistant.append(
        {"type": "tool_use", "id": call_id, "name": draw(_TOOL_NAME), "input": draw(tool_input)}
    )
    answer_id = call_id if draw(st.booleans()) else draw(_ID)
    result: JSON = {
        "type": "tool_result",
        "tool_use_id": answer_id,
        "content": draw(_RESULT_CONTENT),
    }
    if draw(st.booleans()):
        result["is_error"] = draw(st.booleans())
    body.setdefault("messages", [])
    if not isinstance(body["messages"], list):
        body["messages"] = []
    body["messages"] += [
        {"role": "assistant", "content": assistant},
        {"role": "user", "content": [result, *draw(st.lists(block(), max_size=2))]},
    ]


def mutate_messages(draw: Draw, body: JSON) -> None:
    messages = body.get("messages")
    if not isinstance(messages, list):
        body["messages"] = messages = []
    at = draw(st.integers(0, len(messages)))
    action = draw(st.sampled_from(["insert", "content", "drop", "duplicate", "role"]))
    if action == "insert" or not messages:
        messages.insert(at, {"role": draw(_ROLE | odd_text), "content": draw(content)})
        return
    at = min(at, len(messages) - 1)
    message = messages[at]
    if not isinstance(message, dict):
        return
    if action == "content":
        message["content"] = draw(content)
    elif action == "drop":
        del messages[at]
    elif action == "duplicate":
        messages.insert(at, copy.deepcopy(message))
    else:
        message["role"] = draw(_ROLE | random_json)


def mutate_text(draw: Draw, body: JSON) -> None:
    """Replace one string anywhere with odd unicode."""
    paths = [p for p in _paths(body) if p and isinstance(_at(body, p), str)]
    if paths:
        path = draw(st.sampled_from(paths))
        _at(body, path[:-1])[path[-1]] = draw(odd_text)


# Weighted towards what gets past the decoder (a retyped field is a 400 from msgspec at once)
# and towards tool schemas, which each format converts the most.
MUTATIONS: list[Callable[[Draw, JSON], None]] = [
    *[mutate_top_level] * 3,
    *[mutate_tool] * 4,
    *[append_tool_round] * 3,
    *[mutate_messages] * 2,
    mutate_text,
    mutate_anywhere,
]


@st.composite
def claude_code_request(draw: Draw, model: str) -> JSON:
    """A mutated Claude Code request for ``model`` ("provider,model"); ``stream`` is always
    set, to a boolean unless a mutation retyped it."""
    body: JSON = json.loads(draw(st.sampled_from(_BASES)))
    body["model"] = model
    body["stream"] = draw(st.booleans())
    for mutate in draw(st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=4)):
        mutate(draw, body)
        # Detach what came from sampled_from or just: a shared value edited by the next
        # mutation would change the strategies themselves.
        body = json.loads(json.dumps(body))
    if draw(st.integers(0, 19)) == 19:
        body["model"] = draw(
            odd_text
            | st.sampled_from([",", "nobody,x", model.split(",")[0] + ",", "," + model])
            | random_json
        )
    if draw(st.integers(0, 24)) == 24:
        body["stream"] = draw(random_json)
    return body


def encode(body: JSON) -> bytes:
    # ensure_ascii: lone surrogates travel as \\udXXX escapes, which is valid JSON.
    return json.dumps(body).encode()


# --- bodies that are not a Messages request at all -----------------------------------------


def _deep_raw(levels: int, where: str, model: str) -> bytes:
    """A small request with ``levels`` of nesting, built as bytes: json.dumps would recurse."""
    if where == "schema":
        deep = b'{"type": "object", "properties": {"a": ' * levels + b"{}" + b"}}" * levels
        extra = b'"tools": [{"name": "f", "input_schema": %s}]' % deep
    elif where == "tool_use":
        deep = b'{"a": [' * levels + b"1" + b"]}" * levels
        extra = (
            b'"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": '
            b'[{"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": %s}]}]' % deep
        )
    else:
        extra = b'"metadata": {"x": %s}' % (b"[" * levels + b"]" * levels)
    head = b'{"model": "%s", "max_tokens": 5, ' % model.encode()
    messages = b"" if where == "tool_use" else b'"messages": [{"role": "user", "content": "hi"}], '
    return head + messages + extra + b"}"


@st.composite
def raw_body(draw: Draw, model: str) -> bytes:
    small = encode({**_SMALL, "model": model})
    kind = draw(
        st.sampled_from(
            [
                "binary",
                "fixed",
                "truncated",
                "deep",
                "invalid_utf8",
                "surrogate_bytes",
                "bom",
                "utf16",
                "nonfinite",
                "huge_number",
                "duplicate_keys",
            ]
        )
    )
    if kind == "binary":
        return bytes(draw(st.binary(max_size=64)))
    if kind == "fixed":
        fixed: bytes = draw(
            st.sampled_from(
                [
                    b"",
                    b"null",
                    b"[]",
                    b"[1, 2]",
                    b'"hi"',
                    b"1",
                    b"true",
                    b"{}",
                    b"{",
                    b"}",
                    b'{"messages": null}',
                    b'{"messages": {}}',
                    b'{"model": "%s"}' % model.encode(),
                    b"\x00" * 16,
                    b" " * 1000,
                    b"{}" * 100,
                ]
            )
        )
        return fixed
    if kind == "truncated":
        return small[: draw(st.integers(1, len(small) - 1))]
    if kind == "deep":
        levels = draw(st.sampled_from([100, 1000, 5000, 100_000]))
        return _deep_raw(levels, draw(st.sampled_from(["metadata", "schema", "tool_use"])), model)
    if kind == "invalid_utf8":
        return small.replace(b'"hi"', b'"\xff\xfe\xc3("')
    if kind == "surrogate_bytes":
        return small.replace(b'"hi"', '"\ud800"'.encode("utf-8", "surrogatepass"))
    if kind == "bom":
        return b"\xef\xbb\xbf" + small
    if kind == "utf16":
        return small.decode().encode("utf-16")
    if kind == "nonfinite":
        value = draw(st.sampled_from([b"NaN", b"Infinity", b"-Infinity"]))
        field = draw(st.sampled_from([b"max_tokens", b"temperature", b"top_k"]))
        return small[:-1] + b', "%s": %s}' % (field, value)
    if kind == "huge_number":
        value = draw(
            st.sampled_from([b"1e999999", b"9" * 5000, b"-0", b"1E400", b"0.0000001e-999"])
        )
        return small[:-1] + b', "max_tokens": %s}' % value
    return small[:-1] + b', "model": 5, "model": "%s", "stream": true, "stream": false}' % (
        model.encode()
    )


# Header values h11 will send: visible ASCII, latin-1 and inner spaces or tabs.
header_value: st.SearchStrategy[str] = st.text(
    st.characters(codec="latin-1", exclude_characters="\r\n\x00", exclude_categories=["Cc"])
    | st.sampled_from(["\t", "\x7f"]),
    max_size=300,
).map(str.strip)
