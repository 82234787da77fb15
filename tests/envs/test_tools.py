"""Tools: the schema is derived from the signature; arguments are validated; errors never raise."""

import functools
from typing import Annotated, Literal

import pydantic
import pytest
from pydantic import BaseModel, ConfigDict, Field

from toolgym.envs.tools import ToolError, Toolset, as_tool, make_tool, tool, tool_from_model


class Item(BaseModel):
    sku: str
    qty: int = Field(ge=1)


@tool("write")
def order(
    ctx: dict,
    items: list[Item],
    express: bool = False,
    note: str | None = None,
    size: Annotated[int, Field(ge=1, le=9)] = 1,
    mode: Literal["a", "b"] = "a",
) -> dict:
    """Place an order.

    More text about ordering.

    Args:
        items: What to buy,
            one entry per product.
        express: Ship fast.
        note: Free text.
        size: Box size.
        mode: A or B.

    Returns:
        The order.
    """
    if items[0].sku == "boom":
        raise RuntimeError("kaput")
    if items[0].sku == "nope":
        raise ToolError("no such product; list products first")
    ctx.setdefault("orders", []).append([i.sku for i in items])
    return {"n": len(items), "express": express}


def test_schema_is_derived_from_signature_and_docstring():
    t = as_tool(order)
    fn = t.schema["function"]
    assert t.kind == "write" and fn["name"] == "order"
    assert fn["description"] == "Place an order. More text about ordering."
    params = fn["parameters"]
    assert params["required"] == ["items"] and params["additionalProperties"] is False
    assert params["properties"]["items"]["description"] == "What to buy, one entry per product."
    item = params["properties"]["items"]["items"]
    assert "$ref" not in str(params) and item["properties"]["qty"]["minimum"] == 1
    assert params["properties"]["size"]["maximum"] == 9 and params["properties"]["mode"]["enum"] == ["a", "b"]
    assert "title" not in str(params)


def test_an_argument_named_title_stays_in_the_schema():
    """Schema titles are dropped, not properties that happen to be called title (a book's title)."""

    def shelve(ctx: dict, title: str, shelf: int = 1) -> str:
        """Shelve a book.

        Args:
            title: The book's title.
            shelf: Shelf number.
        """
        return title

    params = make_tool(shelve).schema["function"]["parameters"]
    assert list(params["properties"]) == ["title", "shelf"] and params["required"] == ["title"]
    assert params["properties"]["title"] == {"description": "The book's title.", "type": "string"}


def test_dispatch_validates_and_turns_every_failure_into_a_sentence():
    ts = Toolset([order])
    ctx: dict = {}
    assert ts.call(ctx, "order", {"items": [{"sku": "x", "qty": 2}]}) == (True, {"n": 1, "express": False})
    assert ctx == {"orders": [["x"]]}
    ok, msg = ts.call(ctx, "ordr", {})
    assert not ok and "did you mean 'order'" in msg
    ok, msg = ts.call(ctx, "order", {"items": [{"sku": "x", "qty": 0}]})
    assert not ok and "items[0].qty" in msg
    ok, msg = ts.call(ctx, "order", {"items": [], "colour": "red"})
    assert not ok and "unknown argument" in msg and "colour" in msg
    ok, msg = ts.call(ctx, "order", {"items": [{"sku": "nope", "qty": 1}]})
    assert (ok, msg) == (False, "no such product; list products first")
    ok, msg = ts.call(ctx, "order", {"items": [{"sku": "boom", "qty": 1}]})
    assert not ok and "RuntimeError: kaput" in msg


def test_lax_coercion_of_numeric_strings():
    ok, res = Toolset([order]).call({}, "order", {"items": [{"sku": "x", "qty": "3"}], "size": "2"})
    assert ok and res["n"] == 1


def test_untyped_tools_are_rejected():
    import pytest

    with pytest.raises(TypeError, match="no type annotation"):

        @tool()
        def bad(ctx, x):  # noqa: ANN001
            """Bad."""


class Day(BaseModel):
    model_config = ConfigDict(extra="forbid")
    city: str
    hotel: str


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    value: float


@tool()
def submit_plan(ctx: dict, answer: list[Day]) -> str:
    """Submit."""
    return "ok"


@tool()
def submit_record(ctx: dict, answer: Record | list[Record]) -> str:
    """Submit."""
    return "ok"


def test_unknown_nested_key_names_its_path_and_the_keys_that_object_takes():
    day = {"city": "a", "hotel": "b"}
    ok, msg = Toolset([submit_plan]).call({}, "submit_plan", {"answer": [day, {**day, "bogus": 1}]})
    assert not ok and "answer[1].bogus: unknown key in answer[1], which takes ['city', 'hotel']" in msg
    assert "takes ['answer']" not in msg
    ts = Toolset([submit_record])
    ok, msg = ts.call({}, "submit_record", {"answer": {"name": "x", "value": 1, "bogus": 2}})
    assert not ok and "bogus: unknown key in answer" in msg and "which takes ['name', 'value']" in msg
    ok, msg = ts.call({}, "submit_record", {"answer": [{"name": "x", "value": 1, "bogus": 2}]})
    assert not ok and "which takes ['name', 'value']" in msg
    ok, msg = ts.call({}, "submit_record", {"answer": {"name": "x", "value": 1}, "extra": 1})
    assert not ok and "extra: unknown argument; submit_record takes ['answer']" in msg


def test_the_issues_nested_keys_in_real_submit_schemas():
    from toolgym.synth.code.tools import toolset as code_tools
    from toolgym.synth.trip.tools import toolset as trip_tools

    ok, msg = Toolset(code_tools({"answer": "group_value"})).call({}, "submit", {"answer": {"x": 1, "bogus": 2}})
    assert not ok and "answer.bogus: unknown key in answer, which takes ['name', 'value']" in msg
    day = {"date": "2026-05-01", "city": "a", "hotel": "b", "lunch": "c", "attraction": "d", "dinner": "e"}
    ok, msg = Toolset(trip_tools({})).call({}, "submit", {"answer": [{**day, "breakfast": "f"}]})
    assert not ok and "answer[0].breakfast: unknown key in answer[0], which takes ['date', 'city', 'hotel'," in msg


def test_a_long_unknown_tool_name_is_echoed_short():
    ok, msg = Toolset([order]).call({}, "x" * 10_000, {})
    assert not ok and len(msg) < 200 and "unknown tool 'xxx" in msg


def test_a_deferred_arguments_model_is_built_on_the_first_call_only():
    """A toolset's schemas come without the model; the first call builds it, once."""
    built = []

    def factory() -> type[pydantic.BaseModel]:
        built.append(1)
        return pydantic.create_model("twice_args", __config__=pydantic.ConfigDict(extra="forbid"), n=(int, ...))

    params = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    t = tool_from_model("twice", lambda ctx, n: 2 * n, "read", "Twice n.", factory, params)
    toolset = Toolset([t])
    assert toolset.schemas[0]["function"]["parameters"]["required"] == ["n"] and built == []
    assert toolset.call(None, "twice", {"n": 4}) == (True, 8)
    assert toolset.call(None, "twice", {"n": "x"})[0] is False and built == [1]
    with pytest.raises(TypeError, match="parameters"):
        tool_from_model("twice", lambda ctx, n: n, "read", "Twice n.", functools.partial(factory))
