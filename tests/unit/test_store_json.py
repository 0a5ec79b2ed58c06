"""The store's JSON helpers: sorted keys read back as they are written."""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from fundflow.store.base import encode_json, sorted_keys

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=5)
    ),
    max_leaves=30,
)


def test_sorted_keys_sorts_nested_objects_by_code_point() -> None:
    value = {"b": [{"z": 1, "a": 2}], "a": {"é": 0, "e": 1, "𝓊": 2, "ab": 3}}
    assert sorted_keys(value) == value
    assert list(sorted_keys(value)) == ["a", "b"]
    assert list(sorted_keys(value)["a"]) == ["ab", "e", "é", "𝓊"]
    assert list(sorted_keys(value)["b"][0]) == ["a", "z"]


@settings(max_examples=300, deadline=None)
@given(_JSON)
def test_sorted_keys_gives_the_bytes_encode_json_writes(value: Any) -> None:
    # The generated objects hold their keys in any order, as jsonb gives
    # them; sorted, they must encode as the text the SQLite store keeps.
    assert msgspec.json.encode(sorted_keys(value)).decode() == encode_json(value)
