"""JSON Schema (draft 2020-12, as Claude Code and MCP servers write it) for Gemini: as it is, for
``parametersJsonSchema``/``responseJsonSchema``, or converted to the OpenAPI-subset Schema object.

The JSON Schema fields take "JSON Schema" with ``$ref``/``$defs``, ``anyOf``,
``additionalProperties``, ``type: 'null'`` and ``prefixItems`` on "all actively supported Gemini
models" (https://blog.google/technology/developers/gemini-api-structured-outputs/, Nov 2025;
https://ai.google.dev/api/caching#FunctionDeclaration: "mutually exclusive with parameters").
:func:`json_schema_parameters` and :func:`json_response_schema` send the client's schema with only
the root ``$schema`` removed, once :func:`_prepared` finds every subschema where a schema
belongs and every ``$ref`` local and resolvable; anything else goes through the converter below.

The Schema object (the converter's output):

Gemini accepts "a select subset of an OpenAPI 3.0 schema object"
(https://ai.google.dev/api/caching#Schema): type, format, title, description, nullable, enum,
properties, required, items, anyOf, minItems/maxItems, minLength/maxLength,
minProperties/maxProperties, minimum/maximum, pattern, example, default, propertyOrdering. Any
other keyword (``$schema``, ``additionalProperties``, ``propertyNames``, ``exclusiveMinimum``,
``const``, ``$ref``...) is a 400 ``Unknown name`` or ``Invalid JSON payload``, so the cleaner
builds each node from a whitelist instead of deleting what it knows to be bad.

Choices, each one lossy only for hints the model cannot be held to anyway:

- ``$ref`` is inlined from ``$defs``/``definitions``; a recursive reference becomes JSON text.
- ``type: [T, "null"]``, ``anyOf: [..., {"type": "null"}]`` and ``null`` in ``enum`` become
  ``nullable: true``; other type lists become an ``anyOf`` of one branch per type.
- ``anyOf``/``oneOf`` of string literals collapse to one string ``enum``; a single remaining
  branch is merged into its parent. ``allOf`` is merged into one schema.
- ``const`` becomes a one-value ``enum``. Gemini's ``enum`` holds strings only
  (https://ai.google.dev/api/caching#Schema "enum[] string"), so non-string enums are moved into
  the description.
- ``exclusiveMinimum``/``exclusiveMaximum`` become ``minimum``/``maximum`` (one step inside for
  integers). Bounds at JavaScript's safe-integer limit (zod's ``int()``) are noise and dropped.
- ``format`` is kept only where Gemini documents it: ``enum`` and ``date-time`` for strings,
  ``float``/``double`` for numbers, ``int32``/``int64`` for integers.
- ``pattern`` is dropped: Gemini compiles it with RE2, which rejects the look-arounds that
  ECMAScript patterns may use, and a 400 on a whole request is worse than a lost hint.
- ``default`` and ``examples`` are dropped: Gemini documents ``default`` as ignored.
- An OBJECT without properties (``{"type": "object"}``, records written with
  ``additionalProperties``/``propertyNames``) becomes a STRING holding the object as JSON text,
  with a note in the description: Gemini rejects an OBJECT whose ``properties`` are empty or
  missing ("should be non-empty for OBJECT type", pydantic/pydantic-ai#1203). A node that says
  no type at all (``{}``, ``true``, mixed-type ``enum``s) becomes JSON text of any value the same
  way: Gemini needs a ``type`` wherever there is no ``anyOf`` ("type: must be specified when not
  using one_of, any_of or all_of fields", danny-avila/LibreChat#6971). ``marks`` records where
  this happened, and :func:`restore_json_text` turns the model's text back into the value.
- ``required`` keeps only names present in ``properties`` (Gemini rejects the others), once
  each; anything else a client wrote there (``[["a"]]``, ``[{}]``) is dropped.
- A keyword whose value has the wrong JSON type is ignored, as if absent: the converter never
  fails on a schema, whatever a client sends.
- Past ``_MAX_DEPTH`` levels or ``_MAX_NODES`` converted nodes a node is JSON text (any value):
  ``$ref``s, type lists and ``anyOf`` siblings copy subtrees, so a small schema could otherwise
  expand exponentially.
- An ARRAY without ``items`` gets string items: Gemini requires ``items`` on arrays.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, TypeGuard

import msgspec

JSONObject = dict[str, Any]
# Where the converter replaced a value by JSON text: the path of property names from the root,
# None standing for "each item of an array", to the kind of value the text holds.
Path = tuple[str | None, ...]
Marks = dict[Path, str]
TEXT_OBJECT: Final = "object"
TEXT_ANY: Final = "any"
_NOTES = {
    TEXT_OBJECT: "A JSON object, written as a JSON string.",
    TEXT_ANY: "Any JSON value, written as a JSON string.",
}

_TYPES = {
    "string": "STRING",
    "number": "NUMBER",
    "integer": "INTEGER",
    "boolean": "BOOLEAN",
    "array": "ARRAY",
    "object": "OBJECT",
}
_FORMATS = {
    "STRING": frozenset({"enum", "date-time"}),
    "NUMBER": frozenset({"float", "double"}),
    "INTEGER": frozenset({"int32", "int64"}),
}
_COUNTS = ("minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties")
_SAFE_INTEGER = 2**53 - 1
_INT64_MAX = 2**63 - 1  # the counts are int64 fields (https://ai.google.dev/api/caching#Schema)
_MAX_DEPTH = 32
# Claude Code's largest tool schema converts to under 100 nodes; at about 5 us a node, the cap
# bounds one schema's cost to some 25 ms.
_MAX_NODES = 5000


def convert_schema(schema: Mapping[str, Any]) -> tuple[JSONObject, Marks]:
    """The Gemini Schema equivalent of one JSON Schema, and where it holds JSON text.

    A new dict; the input is not modified.
    """
    defs: dict[str, Any] = {}
    for key in ("definitions", "$defs"):
        found = schema.get(key)
        if isinstance(found, Mapping):
            defs.update(found)
    converter = _Converter(defs)
    return converter.convert(schema, (), 0, ()), converter.marks


def to_gemini_schema(schema: Mapping[str, Any]) -> JSONObject:
    """:func:`convert_schema` without the marks."""
    return convert_schema(schema)[0]


def parameters_schema(schema: Mapping[str, Any] | None) -> tuple[JSONObject | None, Marks]:
    """A tool's ``input_schema`` as ``FunctionDeclaration.parameters`` (None for no parameters),
    and where the model's arguments hold JSON text.

    Gemini rejects an OBJECT with empty ``properties`` at the top level
    (https://ai.google.dev/gemini-api/docs/function-calling: leave ``parameters`` unset instead).
    """
    if not schema:
        return None, {}
    converted, marks = convert_schema(schema)
    if converted.get("type") != "OBJECT" or not converted.get("properties"):
        return None, {}
    return converted, marks


def function_parameters(schema: Mapping[str, Any] | None) -> JSONObject | None:
    """:func:`parameters_schema` without the marks."""
    return parameters_schema(schema)[0]


def json_schema_parameters(schema: Mapping[str, Any] | None) -> JSONObject | None:
    """A tool's ``input_schema`` as ``FunctionDeclaration.parametersJsonSchema``, or None when
    it takes no arguments or cannot be sent as it is (then use :func:`parameters_schema`).

    "The schema must describe an object where the properties are the parameters"
    (https://ai.google.dev/api/caching#FunctionDeclaration), so the root is made an object.
    """
    if not isinstance(schema, Mapping) or schema.get("type", "object") != "object":
        return None
    properties = schema.get("properties")
    extra = schema.get("additionalProperties", schema.get("patternProperties"))
    if not properties and extra in (None, False):
        return None  # no arguments: Gemini wants no schema at all (as above)
    sent = json_response_schema(schema)
    if sent is not None:
        sent["type"] = "object"
    return sent


def json_response_schema(schema: Mapping[str, Any]) -> JSONObject | None:
    """``output_config.format.schema`` as ``GenerationConfig.responseJsonSchema``, or None when
    it cannot be sent as it is. The root ``$schema`` goes: Gemini answers ``Unknown name
    "$schema"`` where it reads a Schema (QwenLM/qwen-code#1186), and it says nothing to a model.
    """
    defs = {
        f"#/{key}/{name}"
        for key in ("$defs", "definitions")
        if isinstance(schema.get(key), Mapping)
        for name in schema[key]
    }
    try:
        prepared: JSONObject = _prepared(schema, defs, 0)
    except _Malformed:
        return None
    prepared.pop("$schema", None)
    return prepared


def restore_json_text(value: Any, marks: Mapping[Path, str]) -> Any:
    """The model's arguments with the JSON text the converter asked for decoded again, so that
    the client gets the object its schema declared. Text that does not decode (or, for an
    object, does not decode to one) is left as the model wrote it."""
    for path in sorted(marks, key=len):
        value = _restore(value, path, marks[path])
    return value


def _restore(value: Any, path: Path, kind: str) -> Any:
    if not path:
        if not isinstance(value, str):
            return value
        try:
            decoded = msgspec.json.decode(value)
        except msgspec.DecodeError:
            return value
        return decoded if kind == TEXT_ANY or isinstance(decoded, dict) else value
    key, rest = path[0], path[1:]
    if key is None:
        if isinstance(value, list):
            return [_restore(item, rest, kind) for item in value]
    elif isinstance(value, dict) and key in value:
        value[key] = _restore(value[key], rest, kind)
    return value


# Keywords whose value is one schema, a map of schemas, or a list of schemas (draft 2020-12 and
# draft-07, https://json-schema.org/draft/2020-12/json-schema-core).
_ONE = frozenset(
    {
        "items",
        "additionalItems",
        "additionalProperties",
        "propertyNames",
        "contains",
        "not",
        "if",
        "then",
        "else",
        "unevaluatedItems",
        "unevaluatedProperties",
        "contentSchema",
    }
)
_MAP = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
_LIST = frozenset({"prefixItems", "anyOf", "oneOf", "allOf"})
_JSON_TYPES = frozenset({"string", "number", "integer", "boolean", "array", "object", "null"})


class _Malformed(Exception):
    """Raised inside :func:`_prepared` for a schema that is not one in shape."""


def _prepared(node: Any, defs: set[str], depth: int) -> Any:
    """A copy of ``node`` fit for the JSON Schema fields, or :class:`_Malformed`.

    In shape: a schema wherever one belongs, known type names, ``required`` a list of names,
    every ``$ref`` one of this document's definitions. "If $ref is set on a sub-schema, no other
    properties, except for than those starting as a $, may be set" (GenerateContentConfig's
    responseJsonSchema, https://googleapis.github.io/java-genai/javadoc/): a ``$ref`` with
    siblings (pydantic writes a field's description there) moves into a one-branch ``anyOf``.
    """
    if isinstance(node, bool):
        return node
    if not isinstance(node, Mapping) or depth > _MAX_DEPTH:
        raise _Malformed
    out: JSONObject = {}
    for key, value in node.items():
        if key == "type":
            kinds = value if isinstance(value, list) else [value]
            if not kinds or not all(isinstance(k, str) and k in _JSON_TYPES for k in kinds):
                raise _Malformed
        elif key == "required":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise _Malformed
            if len(set(value)) < len(value):  # "MUST be unique"
                raise _Malformed
        elif key == "enum":
            if not isinstance(value, list) or not value:
                raise _Malformed
        elif key == "$ref":
            if not isinstance(value, str) or value not in defs:
                raise _Malformed
        elif key in _ONE:
            if key == "items" and isinstance(value, list):  # draft-07 tuple form
                value = [_prepared(v, defs, depth + 1) for v in value]
            else:
                value = _prepared(value, defs, depth + 1)
        elif key in _MAP:
            if not isinstance(value, Mapping):
                raise _Malformed
            value = {name: _prepared(v, defs, depth + 1) for name, v in value.items()}
        elif key in _LIST:
            if not isinstance(value, list) or not value:  # "MUST be a non-empty array"
                raise _Malformed
            value = [_prepared(v, defs, depth + 1) for v in value]
        out[key] = value
    if "$ref" in out and any(not k.startswith("$") for k in out):
        if "anyOf" in out:
            raise _Malformed  # a reference and a union at once: rare, and the converter copes
        ref = out.pop("$ref")
        out["anyOf"] = [{"$ref": ref}]
    return out


class _Converter:
    __slots__ = ("defs", "marks", "nodes")

    def __init__(self, defs: dict[str, Any]) -> None:
        self.defs = defs
        self.nodes = _MAX_NODES  # left to convert
        self.marks: Marks = {}

    def convert(self, node: Any, refs: tuple[str, ...], depth: int, path: Path) -> JSONObject:
        if not isinstance(node, Mapping) or depth > _MAX_DEPTH or self.nodes <= 0:
            return self._text(TEXT_ANY, path)  # ``true`` (any value), or past the limits
        self.nodes -= 1
        resolved = self._resolve(node, refs)
        if resolved is None:
            return self._text(TEXT_ANY, path, node.get("description"))
        node, refs = resolved
        if isinstance(node.get("allOf"), list):
            parts = [self._resolve(p, refs) for p in node["allOf"] if isinstance(p, Mapping)]
            node = _merge_all_of(node, [part[0] for part in parts if part is not None])
        union = node.get("anyOf", node.get("oneOf"))
        if isinstance(union, list):
            return self._union(node, union, refs, depth, path)
        return self._single(node, refs, depth, path)

    def _text(self, kind: str, path: Path, description: Any = None) -> JSONObject:
        """A STRING that holds a value as JSON text (see the module's docstring)."""
        if self.marks.get(path) != TEXT_ANY:
            self.marks[path] = kind
        note = _NOTES[kind]
        if isinstance(description, str) and description.strip():
            head = description.rstrip()
            note = f"{head} {note}" if head.endswith((".", "!", "?", ":")) else f"{head}. {note}"
        return {"type": "STRING", "description": note}

    def _resolve(
        self, node: Mapping[str, Any], refs: tuple[str, ...]
    ) -> tuple[Mapping[str, Any], tuple[str, ...]] | None:
        """Inline ``$ref`` (its siblings, e.g. ``description``, win); None for a reference cycle."""
        while True:
            ref = node.get("$ref")
            if not isinstance(ref, str):
                return node, refs
            if ref in refs:
                return None
            siblings = {k: v for k, v in node.items() if k != "$ref"}
            target = self.defs.get(ref.rsplit("/", 1)[-1]) if ref.startswith("#/") else None
            if not isinstance(target, Mapping):
                return siblings, refs
            refs = (*refs, ref)
            node = {**target, **siblings}

    def _union(
        self,
        node: Mapping[str, Any],
        branches: list[Any],
        refs: tuple[str, ...],
        depth: int,
        path: Path,
    ) -> JSONObject:
        nullable = False
        converted: list[JSONObject] = []
        # Keywords written beside anyOf apply to every branch (zod puts ``type`` there at times).
        shared = {k: v for k, v in node.items() if k not in ("anyOf", "oneOf", "description")}
        for branch in branches:
            if isinstance(branch, Mapping) and branch.get("type") == "null":
                nullable = True
                continue
            merged = {**shared, **branch} if isinstance(branch, Mapping) else branch
            out = self.convert(merged, refs, depth + 1, path)
            if out.pop("nullable", False):
                nullable = True
                if not out:  # a branch that was only ``null`` (``const: null``)
                    continue
            converted.append(out)
        result: JSONObject
        literals = _string_literals(converted)
        description = node.get("description")
        kind = self.marks.get(path)
        if kind == TEXT_ANY or (kind is not None and len(converted) == 1):
            # One branch takes any value, so the union does: one JSON text, nothing below it.
            for marked in [p for p in self.marks if len(p) > len(path) and p[: len(path)] == path]:
                del self.marks[marked]
            result = self._text(kind, path, description)
        else:
            if literals is not None:
                result = {"type": "STRING", "format": "enum", "enum": literals}
            elif len(converted) == 1:
                result = converted[0]
            elif converted:
                result = {"anyOf": converted}
            else:
                result = {"type": "STRING"}
            if isinstance(description, str):
                result["description"] = description
        if nullable:
            result["nullable"] = True
        return result

    def _single(
        self, node: Mapping[str, Any], refs: tuple[str, ...], depth: int, path: Path
    ) -> JSONObject:
        out: JSONObject = {}
        nullable = node.get("nullable") is True
        kind = node.get("type")
        if isinstance(kind, list):
            kinds = [k for k in kind if k != "null"]
            nullable = nullable or len(kinds) < len(kind)
            if len(kinds) > 1:
                rest = {k: v for k, v in node.items() if k not in ("type", "description")}
                branches = [{**rest, "type": k} for k in kinds]
                head = {"description": node["description"]} if "description" in node else {}
                result = self._union(head, branches, refs, depth, path)
                if nullable:
                    result["nullable"] = True
                return result
            kind = kinds[0] if kinds else None
        values = _enum_values(node)
        gemini_type = _TYPES.get(kind) if isinstance(kind, str) else None
        if gemini_type is None and values:
            gemini_type = _literal_type([v for v in values if v is not None])
        if gemini_type is None and isinstance(node.get("properties"), Mapping):
            gemini_type = "OBJECT"
        if gemini_type is None and "items" in node:
            gemini_type = "ARRAY"
        if gemini_type is not None:
            out["type"] = gemini_type
        for key in ("title", "description"):
            if isinstance(node.get(key), str):
                out[key] = node[key]
        if values is not None:
            if None in values:
                nullable = True
                values = [v for v in values if v is not None]
            if values and gemini_type == "STRING" and all(isinstance(v, str) for v in values):
                # https://ai.google.dev/api/caching#Schema: "set format to enum and provide enum"
                out["format"] = "enum"
                out["enum"] = values
            elif values:
                note = "Allowed values: " + ", ".join(_literal(v) for v in values) + "."
                description = out.get("description")
                out["description"] = f"{description} {note}" if description else note
        fmt = node.get("format")
        allowed = _FORMATS.get(gemini_type or "", frozenset())
        if "enum" not in out and isinstance(fmt, str) and fmt in allowed:
            out["format"] = fmt
        if gemini_type in ("NUMBER", "INTEGER"):
            _bounds(node, out, gemini_type == "INTEGER")
        for key in _COUNTS:
            value = node.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _INT64_MAX:
                out[key] = value
        if gemini_type == "OBJECT":
            self._object(node, out, refs, depth, path)
        elif gemini_type == "ARRAY":
            items = node.get("items", node.get("prefixItems"))
            if isinstance(items, list):
                items = {"anyOf": items} if len(items) > 1 else (items[0] if items else None)
            if isinstance(items, Mapping | bool):
                out["items"] = self.convert(items, refs, depth + 1, (*path, None))
            else:
                out["items"] = {"type": "STRING"}
        if gemini_type is None:
            out = self._text(TEXT_ANY, path, out.get("description"))
        elif gemini_type == "OBJECT" and "properties" not in out:
            out = self._text(TEXT_OBJECT, path, out.get("description"))
        if nullable:
            out["nullable"] = True
        return out

    def _object(
        self,
        node: Mapping[str, Any],
        out: JSONObject,
        refs: tuple[str, ...],
        depth: int,
        path: Path,
    ) -> None:
        properties = node.get("properties")
        if not isinstance(properties, Mapping) or not properties:
            return
        out["properties"] = {
            name: self.convert(value, refs, depth + 1, (*path, name))
            for name, value in properties.items()
        }
        required = node.get("required")
        if isinstance(required, list):
            kept = [name for name in required if isinstance(name, str) and name in properties]
            if kept:
                out["required"] = list(dict.fromkeys(kept))


def _enum_values(node: Mapping[str, Any]) -> list[Any] | None:
    if "const" in node:
        return [node["const"]]
    values = node.get("enum")
    return list(values) if isinstance(values, list) else None


def _literal_type(values: list[Any]) -> str | None:
    """The type of a typeless ``enum``/``const``, when all its values share one."""
    if not values:
        return None
    if all(isinstance(v, str) for v in values):
        return "STRING"
    if all(isinstance(v, bool) for v in values):
        return "BOOLEAN"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "INTEGER"
    if all(_is_number(v) for v in values):
        return "NUMBER"
    return None


def _string_literals(branches: list[JSONObject]) -> list[str] | None:
    """The values of a union whose every branch is a plain string enum (zod literal unions)."""
    values: list[str] = []
    for branch in branches:
        if branch.get("type") != "STRING" or "enum" not in branch:
            return None
        if set(branch) - {"type", "format", "enum", "description"}:
            return None
        values.extend(v for v in branch["enum"] if v not in values)
    return values or None


def _bounds(node: Mapping[str, Any], out: JSONObject, integer: bool) -> None:
    step = 1 if integer else 0
    for key, exclusive, sign in (
        ("minimum", "exclusiveMinimum", 1),
        ("maximum", "exclusiveMaximum", -1),
    ):
        value = node.get(key)
        strict = node.get(exclusive)
        if _is_number(strict):
            candidate = strict + sign * step
            # Compared, not subtracted: a 10**400 bound minus a float overflows.
            if not _is_number(value) or sign * candidate > sign * value:
                value = candidate
        elif strict is True and _is_number(value):  # draft-4 boolean form
            value = value + sign * step
        if _is_number(value) and abs(value) < _SAFE_INTEGER:
            out[key] = value


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, str) else str(value)


def _merge_all_of(node: Mapping[str, Any], parts: list[Mapping[str, Any]]) -> JSONObject:
    merged: JSONObject = {k: v for k, v in node.items() if k != "allOf"}
    for part in parts:
        for key, value in part.items():
            known = merged.get(key)
            if key == "properties" and isinstance(value, Mapping):
                merged[key] = {**(known if isinstance(known, Mapping) else {}), **value}
            elif key == "required" and isinstance(value, list):
                merged[key] = [*(known if isinstance(known, list) else []), *value]
            else:
                merged.setdefault(key, value)
    return merged
