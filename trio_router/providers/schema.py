"""JSON Schema (draft 2020-12, as Claude Code and MCP servers write it) to Gemini's Schema object.

Gemini accepts "a select subset of an OpenAPI 3.0 schema object"
(https://ai.google.dev/api/caching#Schema): type, format, title, description, nullable, enum,
properties, required, items, anyOf, minItems/maxItems, minLength/maxLength,
minProperties/maxProperties, minimum/maximum, pattern, example, default, propertyOrdering. Any
other keyword (``$schema``, ``additionalProperties``, ``propertyNames``, ``exclusiveMinimum``,
``const``, ``$ref``...) is a 400 ``Unknown name`` or ``Invalid JSON payload``, so the cleaner
builds each node from a whitelist instead of deleting what it knows to be bad.

Choices, each one lossy only for hints the model cannot be held to anyway:

- ``$ref`` is inlined from ``$defs``/``definitions``; a recursive reference becomes a bare OBJECT.
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
- ``additionalProperties``/``propertyNames`` (records) leave a bare OBJECT; an empty
  ``properties`` map is omitted because Gemini rejects it ("should be non-empty for OBJECT type").
- ``required`` keeps only names present in ``properties`` (Gemini rejects the others), once
  each; anything else a client wrote there (``[["a"]]``, ``[{}]``) is dropped.
- A keyword whose value has the wrong JSON type is ignored, as if absent: the converter never
  fails on a schema, whatever a client sends.
- Past ``_MAX_DEPTH`` levels or ``_MAX_NODES`` converted nodes a node is left empty (any value):
  ``$ref``s, type lists and ``anyOf`` siblings copy subtrees, so a small schema could otherwise
  expand exponentially.
- An ARRAY without ``items`` gets string items: Gemini requires ``items`` on arrays.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeGuard

JSONObject = dict[str, Any]

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


def to_gemini_schema(schema: Mapping[str, Any]) -> JSONObject:
    """The Gemini equivalent of one JSON Schema (a new dict; the input is not modified)."""
    defs: dict[str, Any] = {}
    for key in ("definitions", "$defs"):
        found = schema.get(key)
        if isinstance(found, Mapping):
            defs.update(found)
    return _Converter(defs).convert(schema, (), 0)


def function_parameters(schema: Mapping[str, Any] | None) -> JSONObject | None:
    """A tool's ``input_schema`` as ``FunctionDeclaration.parameters``, or None for no parameters.

    Gemini rejects an OBJECT with empty ``properties`` at the top level
    (https://ai.google.dev/gemini-api/docs/function-calling: leave ``parameters`` unset instead).
    """
    if not schema:
        return None
    converted = to_gemini_schema(schema)
    if converted.get("type") != "OBJECT" or not converted.get("properties"):
        return None
    return converted


class _Converter:
    __slots__ = ("defs", "nodes")

    def __init__(self, defs: dict[str, Any]) -> None:
        self.defs = defs
        self.nodes = _MAX_NODES  # left to convert

    def convert(self, node: Any, refs: tuple[str, ...], depth: int) -> JSONObject:
        if not isinstance(node, Mapping) or depth > _MAX_DEPTH or self.nodes <= 0:
            # ``true``/``{}`` (any value): Gemini's type is optional, so say nothing.
            return {}
        self.nodes -= 1
        resolved = self._resolve(node, refs)
        if resolved is None:
            return {"type": "OBJECT"}
        node, refs = resolved
        if isinstance(node.get("allOf"), list):
            parts = [self._resolve(p, refs) for p in node["allOf"] if isinstance(p, Mapping)]
            node = _merge_all_of(node, [part[0] for part in parts if part is not None])
        union = node.get("anyOf", node.get("oneOf"))
        if isinstance(union, list):
            return self._union(node, union, refs, depth)
        return self._single(node, refs, depth)

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
        self, node: Mapping[str, Any], branches: list[Any], refs: tuple[str, ...], depth: int
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
            out = self.convert(merged, refs, depth + 1)
            if out.pop("nullable", False):
                nullable = True
                if not out:  # a branch that was only ``null`` (``const: null``)
                    continue
            converted.append(out)
        result: JSONObject
        literals = _string_literals(converted)
        if literals is not None:
            result = {"type": "STRING", "format": "enum", "enum": literals}
        elif len(converted) == 1:
            result = converted[0]
        elif converted:
            result = {"anyOf": converted}
        else:
            result = {"type": "STRING"}
        description = node.get("description")
        if isinstance(description, str):
            result["description"] = description
        if nullable:
            result["nullable"] = True
        return result

    def _single(self, node: Mapping[str, Any], refs: tuple[str, ...], depth: int) -> JSONObject:
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
                result = self._union(head, branches, refs, depth)
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
            self._object(node, out, refs, depth)
        elif gemini_type == "ARRAY":
            items = node.get("items", node.get("prefixItems"))
            if isinstance(items, list):
                items = {"anyOf": items} if len(items) > 1 else (items[0] if items else None)
            converted = self.convert(items, refs, depth + 1) if isinstance(items, Mapping) else {}
            out["items"] = converted or {"type": "STRING"}
        if nullable:
            out["nullable"] = True
        return out

    def _object(
        self, node: Mapping[str, Any], out: JSONObject, refs: tuple[str, ...], depth: int
    ) -> None:
        properties = node.get("properties")
        if not isinstance(properties, Mapping) or not properties:
            return
        out["properties"] = {
            name: self.convert(value, refs, depth + 1) for name, value in properties.items()
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
