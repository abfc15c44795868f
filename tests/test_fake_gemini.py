"""The Gemini fake's own rules (tests/fake_gemini.py): for each, a request the Gemini API rejects,
which the fake must reject with Google's error body, and its nearest valid twin, accepted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.fake_gemini import FakeGemini, Rejection, validate_schema
from tests.fakeserver import Reply, Request

KEY = "AIza-fake-gemini-key-0123456789"
MODEL = "gemini-2.5-flash"
FIXTURES = Path(__file__).parent / "fixtures" / "claude_code"


def body(**fields: Any) -> dict[str, Any]:
    return {"contents": [{"role": "user", "parts": [{"text": "hi"}]}], **fields}


def declare(**declaration: Any) -> dict[str, Any]:
    return body(tools=[{"functionDeclarations": [{"name": "Bash", **declaration}]}])


def params(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` as the only property of a function's ``parameters``."""
    return declare(parameters={"type": "OBJECT", "properties": {"x": schema}})


def json_params(schema: Any) -> dict[str, Any]:
    return declare(parametersJsonSchema=schema)


def config(**generation: Any) -> dict[str, Any]:
    return body(generationConfig=generation)


def send(data: Any) -> Reply:
    fake = FakeGemini(KEY, [MODEL], "true")
    raw = json.dumps(data).encode()
    target = f"/v1beta/models/{MODEL}:generateContent"
    return fake(Request("POST", target, {"x-goog-api-key": KEY}, raw))


def error_of(reply: Reply) -> str:
    assert reply.status == 400, reply.chunks
    error = json.loads(reply.chunks[0])["error"]
    # https://ai.google.dev/gemini-api/docs/troubleshooting#error-codes
    assert error["code"] == 400 and error["status"] == "INVALID_ARGUMENT"
    message: str = error["message"]
    return message


RECORD = {"type": "object", "propertyNames": {"type": "string"}, "additionalProperties": {}}
STRINGS = {"type": "STRING"}

RULES: dict[str, tuple[Any, Any, str]] = {
    "Schema fields only": (
        params({"type": "STRING", "additionalProperties": False}),
        params({"type": "STRING", "description": "a name"}),
        'Unknown name "additionalProperties"',
    ),
    "properties only on OBJECT": (
        params({"type": "STRING", "properties": {"a": STRINGS}}),
        params({"type": "OBJECT", "properties": {"a": STRINGS}}),
        "properties[x].properties: only allowed for OBJECT type",
    ),
    "type is one name": (
        params({"type": ["STRING", "NULL"]}),
        params({"type": "STRING", "nullable": True}),
        "Proto field is not repeating, cannot start list",
    ),
    "type is a Type": (
        params({"type": "ANY"}),
        params({"type": "string"}),
        "Invalid value at 'tools[0].function_declarations[0].parameters.properties[x].type'",
    ),
    "ARRAY needs items": (
        params({"type": "ARRAY"}),
        params({"type": "ARRAY", "items": STRINGS}),
        "properties[x].items: missing field.",
    ),
    "OBJECT needs properties (the disputed record rule)": (
        params({"type": "OBJECT", "description": "free-form"}),
        params({"type": "OBJECT", "properties": {"k": STRINGS}}),
        "properties[x].properties: should be non-empty for OBJECT type",
    ),
    "required names are properties": (
        params({"type": "OBJECT", "properties": {"a": STRINGS}, "required": ["b"]}),
        params({"type": "OBJECT", "properties": {"a": STRINGS}, "required": ["a"]}),
        "required[0]: property is not defined",
    ),
    "enum only on STRING": (
        params({"type": "INTEGER", "enum": ["1", "2"]}),
        params({"type": "STRING", "format": "enum", "enum": ["1", "2"]}),
        "enum: only allowed for STRING type",
    ),
    "format values": (
        params({"type": "STRING", "format": "uri"}),
        params({"type": "STRING", "format": "date-time"}),
        "format: unsupported format",
    ),
    "anyOf branches are checked too": (
        params({"anyOf": [STRINGS, {"type": "ARRAY"}]}),
        params({"anyOf": [STRINGS, {"type": "ARRAY", "items": STRINGS}]}),
        "any_of[1].items: missing field.",
    ),
    "function names: no slash": (
        declare(name="mcp/run"),
        declare(name="mcp__server__run-it"),
        "function_declarations[0].name: Invalid function name",
    ),
    "function names: no space": (
        declare(name="run it"),
        declare(name="ns.run:v1"),
        "Invalid function name",
    ),
    "function names: a letter or underscore first": (
        declare(name="1run"),
        declare(name="_run"),
        "Invalid function name",
    ),
    "function names: at most 64 characters": (
        declare(name="r" * 65),
        declare(name="r" * 64),
        "Invalid function name",
    ),
    "parameters or parametersJsonSchema, not both": (
        declare(
            parameters={"type": "OBJECT", "properties": {"a": STRINGS}},
            parametersJsonSchema={"type": "object"},
        ),
        declare(parametersJsonSchema={"type": "object", "properties": {"a": {"type": "string"}}}),
        "parameters and parameters_json_schema are mutually exclusive",
    ),
    "parametersJsonSchema takes records, $defs, $ref, const and anyOf": (
        json_params({"type": "object", "properties": {"metadata": {"type": "OBJECT"}}}),
        json_params(
            {
                "$defs": {"tag": {"type": "string", "const": "x"}},
                "type": "object",
                "properties": {
                    "metadata": RECORD,
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "tag": {"$ref": "#/$defs/tag"},
                    "target": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                    "kinds": {"type": ["string", "null"], "enum": ["a", None]},
                },
                "required": ["metadata"],
                "additionalProperties": False,
            }
        ),
        "properties[metadata].type: invalid JSON Schema type 'OBJECT'",
    ),
    "parametersJsonSchema describes an object": (
        json_params({"type": "string"}),
        json_params({"type": "object"}),
        'the schema must describe an object ("type": "object")',
    ),
    "parametersJsonSchema's $ref resolves": (
        json_params({"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}),
        json_params(
            {"type": "object", "$defs": {"a": {}}, "properties": {"a": {"$ref": "#/$defs/a"}}}
        ),
        "cannot resolve '#/$defs/missing'",
    ),
    "parametersJsonSchema's subschemas are schemas": (
        json_params({"type": "object", "properties": {"a": "string"}}),
        json_params({"type": "object", "properties": {"a": True}}),
        "properties[a]: a JSON Schema must be an object or a boolean",
    ),
    "thinkingBudget or thinkingLevel, not both": (
        config(thinkingConfig={"thinkingBudget": 1024, "thinkingLevel": "low"}),
        config(thinkingConfig={"thinkingLevel": "low", "includeThoughts": True}),
        "thinking_budget and thinking_level cannot both be set",
    ),
    "thinkingLevel values": (
        config(thinkingConfig={"thinkingLevel": "max"}),
        config(thinkingConfig={"thinkingLevel": "HIGH"}),
        "thinking_config.thinking_level",
    ),
    "responseSchema follows the Schema rules": (
        config(responseMimeType="application/json", responseSchema={"type": "ARRAY"}),
        config(
            responseMimeType="application/json",
            responseSchema={"type": "ARRAY", "items": STRINGS},
        ),
        "generation_config.response_schema.items: missing field.",
    ),
    "responseSchema's fields are Schema fields": (
        config(
            responseMimeType="application/json",
            responseSchema={"type": "OBJECT", "properties": {"a": STRINGS}, "$defs": {}},
        ),
        config(
            responseMimeType="application/json",
            responseSchema={"type": "OBJECT", "properties": {"a": STRINGS}},
        ),
        'Unknown name "$defs"',
    ),
    "responseSchema needs a JSON MIME type": (
        config(responseSchema={"type": "OBJECT", "properties": {"a": STRINGS}}),
        config(
            responseMimeType="application/json",
            responseSchema={"type": "OBJECT", "properties": {"a": STRINGS}},
        ),
        "response_mime_type: must be application/json",
    ),
    "responseSchema or responseJsonSchema, not both": (
        config(
            responseMimeType="application/json",
            responseSchema={"type": "STRING"},
            responseJsonSchema={"type": "string"},
        ),
        config(responseMimeType="application/json", responseJsonSchema={"type": "string"}),
        "response_schema and response_json_schema are mutually exclusive",
    ),
    "responseJsonSchema needs application/json": (
        config(responseJsonSchema=RECORD),
        config(responseMimeType="application/json", responseJsonSchema=RECORD),
        "must be application/json with response_json_schema",
    ),
    "a Content is an object": (
        {"contents": ["hi"]},
        body(),
        "Invalid value at 'contents[0]'",
    ),
}


@pytest.mark.parametrize("rule", list(RULES))
def test_rule(rule: str) -> None:
    bad, good, words = RULES[rule]
    assert words in error_of(send(bad))
    assert send(good).status == 200, send(good).chunks


def test_claude_code_2_1_197_record_schema() -> None:
    """TaskCreate's ``metadata`` record, as Claude Code 2.1.197 sends it (captured): cleaned
    to a bare OBJECT it is a 400; as JSON Schema it is taken."""
    tools = json.loads((FIXTURES / "cli_2_1_197_default.json").read_text())["tools"]
    schema = next(t for t in tools if t["name"] == "TaskCreate")["input_schema"]
    assert send(json_params(schema)).status == 200
    bare = {
        "type": "OBJECT",
        "properties": {
            "subject": STRINGS,
            "metadata": {"type": "OBJECT", "description": "Arbitrary metadata"},
        },
    }
    assert "properties[metadata].properties: should be non-empty" in error_of(
        send(declare(parameters=bare))
    )


def test_validate_schema_checks_one_schema_alone() -> None:
    """What other tests use to check a cleaned schema with the fake's rules."""
    validate_schema({"type": "OBJECT", "properties": {"a": {"type": "ARRAY", "items": STRINGS}}})
    with pytest.raises(Rejection, match='Unknown name "propertyNames"'):
        validate_schema({"type": "OBJECT", "properties": {"a": STRINGS}, "propertyNames": {}})
