from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoestring.tables import InvalidItem, codec

numbers = st.one_of(
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False),
)
# What keys can hold: no lone surrogates (not Unicode text) and no NUL (PostgreSQL's text refuses it).
texts = st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\0"))


@given(a=numbers, b=numbers)
def test_encoded_numbers_sort_like_numbers(a: float, b: float) -> None:
    ea, eb = codec.sortable(a, "a"), codec.sortable(b, "b")
    assert (ea < eb) == (a < b)
    assert (ea == eb) == (a == b)


@given(a=texts, b=texts)
def test_encoded_strings_sort_by_code_point_in_utf8_byte_order(a: str, b: str) -> None:
    ea, eb = codec.sortable(a, "a").encode(), codec.sortable(b, "b").encode()
    assert (ea < eb) == (a < b)


@given(n=numbers, s=texts)
def test_numbers_sort_before_strings(n: float, s: str) -> None:
    assert codec.sortable(n, "n") < codec.sortable(s, "s")


@pytest.mark.parametrize("key", ["a\0b", "\ud800"])
def test_a_key_neither_database_can_store_is_refused_the_same_on_both(key: str) -> None:
    with pytest.raises(InvalidItem):
        codec.sortable(key, "key id")


def test_an_item_holding_a_lone_surrogate_is_refused_with_a_clear_error() -> None:
    with pytest.raises(InvalidItem, match="not valid Unicode"):
        codec.dumps({"id": "x", "note": "half a pair: \udc00"})
    assert codec.loads(codec.dumps({"id": "x", "nul": "a\0b"})) == {"id": "x", "nul": "a\0b"}


@given(prefix=texts, rest=texts)
def test_prefix_range_holds_every_string_with_that_prefix(prefix: str, rest: str) -> None:
    low, high = codec.prefix_range(prefix)
    encoded = codec.sortable(prefix + rest, "x")
    assert low <= encoded < high or rest.startswith("\U0010ffff")


json_values = st.recursive(
    st.none()
    | st.booleans()
    | numbers
    | texts
    | st.binary()
    | st.datetimes(timezones=st.just(UTC)),
    lambda children: st.lists(children) | st.dictionaries(texts, children),
    max_leaves=20,
)


@given(item=st.dictionaries(texts, json_values))
def test_any_item_round_trips_exactly(item: dict[str, Any]) -> None:
    assert codec.loads(codec.dumps(item)) == item


def test_datetime_keeps_its_offset_and_microseconds() -> None:
    value = datetime.fromisoformat("2026-11-24T07:00:00.000001+13:45")
    back = codec.loads(codec.dumps({"t": value}))["t"]
    assert back == value and back.utcoffset() == value.utcoffset()
