"""Hypothesis strategies of JSON Schemas as clients write them for tools and structured output.

Draft 2020-12 keywords (https://json-schema.org/draft/2020-12/json-schema-validation): nested
objects, records (``additionalProperties``/``propertyNames``/``patternProperties``), unions
(``anyOf``/``oneOf``/``allOf``, type lists), ``$ref`` into ``$defs``/``definitions`` (recursive
too), ``enum``/``const`` of any JSON values, nullable types, tuples, bounds and formats; and,
with ``wild=True``, keyword values of the wrong JSON type, as a buggy client may send.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

JSON = dict[str, Any]

TYPES = ["string", "number", "integer", "boolean", "array", "object", "null"]
NAMES = st.sampled_from(["a", "b", "path", "metadata", "items", "type", "$x", "n-1", "ключ"])
DEF_NAMES = ["Node", "Item", "Meta"]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(NAMES, inner, max_size=3),
    max_leaves=6,
)


def _leaf() -> st.SearchStrategy[Any]:
    ref = st.sampled_from(DEF_NAMES).flatmap(
        lambda n: st.sampled_from([{"$ref": f"#/$defs/{n}"}, {"$ref": f"#/definitions/{n}"}])
    )
    return st.one_of(
        st.booleans(),
        st.just({}),
        st.builds(lambda t: {"type": t}, st.sampled_from(TYPES)),
        st.builds(lambda t: {"type": [t, "null"]}, st.sampled_from(TYPES[:-1])),
        st.lists(st.sampled_from(TYPES), min_size=1, max_size=3).map(lambda ts: {"type": ts}),
        st.builds(lambda v: {"enum": v}, st.lists(json_values, min_size=1, max_size=4)),
        st.builds(lambda v: {"const": v}, json_values),
        st.just({"type": "string", "format": "date-time", "pattern": "^(?!x).*$"}),
        st.just({"type": "integer", "minimum": 0, "exclusiveMaximum": 2**53}),
        st.just({"type": "number", "exclusiveMinimum": 0.5, "multipleOf": 0.25}),
        st.just(
            {"type": "object", "propertyNames": {"type": "string"}, "additionalProperties": {}}
        ),
        st.just({"type": "object", "additionalProperties": True}),
        ref,
    )


def _extend(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    props = st.dictionaries(NAMES, inner, max_size=4)
    return st.one_of(
        st.builds(
            lambda p, req, extra: {
                "type": "object",
                "properties": p,
                "required": req,
                "additionalProperties": extra,
            },
            props,
            st.lists(NAMES, max_size=3),
            st.booleans() | inner,
        ),
        st.builds(lambda v: {"type": "object", "additionalProperties": v}, inner),
        st.builds(lambda v: {"type": "object", "patternProperties": {"^x": v}}, inner),
        st.builds(lambda i: {"type": "array", "items": i, "minItems": 1}, inner),
        st.builds(lambda i: {"type": "array", "prefixItems": i}, st.lists(inner, max_size=3)),
        st.builds(lambda b: {"anyOf": b}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda b: {"oneOf": b, "description": "one of"}, st.lists(inner, max_size=3)),
        st.builds(lambda b: {"allOf": b}, st.lists(inner, min_size=1, max_size=2)),
        st.builds(
            lambda s: {**s, "description": "d", "title": "T"} if isinstance(s, dict) else s, inner
        ),
        st.builds(lambda s: {"not": s}, inner),
    )


def schemas(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """One (sub)schema: a boolean or an object."""
    return st.recursive(_leaf(), _extend, max_leaves=max_leaves)


def _wild(node: Any) -> st.SearchStrategy[Any]:
    """``node`` with one keyword replaced by a value of the wrong JSON type, or as it is."""
    if not isinstance(node, dict) or not node:
        return st.just(node)
    return st.one_of(
        st.just(node),
        st.tuples(st.sampled_from(sorted(node)), json_values).map(
            lambda kv: {**node, kv[0]: kv[1]}
        ),
        st.sampled_from(["properties", "items", "anyOf", "required", "$ref", "type"]).flatmap(
            lambda key: json_values.map(lambda v: {**node, key: v})
        ),
    )


@st.composite
def tool_input_schemas(draw: st.DrawFn, wild: bool = False) -> JSON:
    """A whole ``input_schema``: an object at the root (as Anthropic requires), with
    definitions its ``$ref``s may point at, some of them recursive."""
    defs = {name: draw(schemas(6)) for name in draw(st.sets(st.sampled_from(DEF_NAMES)))}
    properties = draw(st.dictionaries(NAMES, schemas(), max_size=5))
    schema: JSON = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": properties,
        "required": draw(st.lists(NAMES, max_size=3)),
    }
    if defs:
        schema[draw(st.sampled_from(["$defs", "definitions"]))] = defs
    if draw(st.booleans()):
        schema["additionalProperties"] = draw(st.booleans() | schemas(3))
    if wild:
        name = draw(st.sampled_from(sorted(properties))) if properties else None
        if name is not None:
            properties[name] = draw(_wild(properties[name]))
        schema = draw(_wild(schema))
    return schema
