"""Strict JSON types for tool arguments and answers: a boolean is never a number.

pydantic's default (lax) mode turns ``true`` into ``1`` for an ``int`` field and ``"3"`` into
``3``; for a ``submit`` schema that is a reward for the wrong type (``true`` scoring 1.0 on an
integer task whose answer is 1). These annotated types validate strictly and reject with a
sentence that says how to write the value, while their JSON schema stays the plain
``{"type": "integer"}`` / ``{"type": "number"}`` / ``{"type": "string"}`` a policy reads.

Decisions:

* :data:`Integer` takes a JSON integer only: ``3.0`` is rejected ("write 3, not 3.0"), so an
  integer answer has one spelling. Booleans and numeric strings are rejected.
* :data:`Number` takes a JSON integer or a finite JSON float (``3`` and ``3.0`` both mean
  three); booleans, numeric strings, NaN and infinities are rejected.
* :data:`Text` takes a JSON string only (no number or boolean is turned into one).
* :data:`Page` is an :data:`Integer` of at least 1, for the paged list and file tools.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AllowInfNan, BeforeValidator, Field, Strict, StrictStr
from pydantic_core import PydanticCustomError


def _number_check(value: Any) -> Any:
    if isinstance(value, bool):
        raise PydanticCustomError("bool_not_number", "a boolean is not a number; write a JSON number such as 3")
    return value


def _integer_check(value: Any) -> Any:
    _number_check(value)
    if isinstance(value, float) and value.is_integer() and abs(value) >= 2**63:
        # orjson reads an integer past 64 bits as a float: the policy wrote no decimal point
        raise PydanticCustomError("integer_range", "integer out of range (at most 19 digits)")
    if isinstance(value, float) and value.is_integer():
        raise PydanticCustomError(
            "integer_spelling", "write an integer without a decimal point ({n}, not {x})", {"n": int(value), "x": value}
        )
    return value


#: A JSON integer (not a boolean, not ``3.0``, not a string).
Integer = Annotated[int, Strict(), BeforeValidator(_integer_check)]
#: A finite JSON number (integer or float; not a boolean, not a string, not NaN).
Number = Annotated[float, Strict(), AllowInfNan(False), BeforeValidator(_number_check)]
#: A JSON string.
Text = StrictStr
#: A 1-based page number of a list or file (bounds go before the validator, or the schema loses them).
Page = Annotated[int, Field(ge=1), Strict(), BeforeValidator(_integer_check)]
