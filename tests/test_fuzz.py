"""Fuzzing params.yaml: any mutation is either accepted or refused with the one-line error, never a crash."""

from __future__ import annotations

import copy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prunequant.check import params_from_dict
from prunequant.errors import PrunequantError

from .conftest import params_dict

PARAMS = params_dict()  # the tests' own complete params, not this checkout's params.yaml

pytestmark = pytest.mark.bad_input


def _paths(node, prefix=()):
    """Every key path of the nested params (mappings and list items)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*prefix, key)
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield (*prefix, i)
            yield from _paths(value, (*prefix, i))


PATHS = sorted(_paths(PARAMS), key=str)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["", "0", "-1", "1e-3", "5e-5", "nan", "inf", "..", "../outside", "/tmp", "fp16", "int8"]),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6),
                                                                                          inner, max_size=3),
                      max_leaves=6)
mutations = st.lists(
    st.tuples(st.sampled_from(["drop", "set", "add"]), st.sampled_from(PATHS), values, st.text(max_size=8)),
    min_size=1, max_size=4,
)


def _mutate(raw: dict, edits) -> dict:
    raw = copy.deepcopy(raw)
    for op, path, value, new_key in edits:
        parent = raw
        try:
            for key in path[:-1]:
                parent = parent[key]
            if op == "drop":
                del parent[path[-1]]
            elif op == "set":
                parent[path[-1]] = value
            elif isinstance(parent[path[-1]], dict):
                parent[path[-1]][new_key] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier edit removed or replaced this path
    return raw


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutations)
def test_mutated_params_are_accepted_or_refused_in_one_line(edits):
    raw = _mutate(PARAMS, edits)
    try:
        params_from_dict(raw)
    except PrunequantError as error:
        message = error.format_message()
        assert message.startswith("params.yaml: ") and "\n" not in message, message


@settings(max_examples=200, deadline=None)
@given(st.one_of(values, st.dictionaries(st.sampled_from(sorted(PARAMS)), values, max_size=3)))
def test_random_documents_are_accepted_or_refused_in_one_line(raw):
    try:
        params_from_dict(raw)
    except PrunequantError as error:
        assert "\n" not in error.format_message()
