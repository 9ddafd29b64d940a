"""Fuzzing `conveyor server` from its own OpenAPI document (schemathesis): whatever a
client sends to any operation, with a valid admin token or none, no 5xx and no
traceback, and every error is `{error, hint}`.

The project has no release, so a generated deploy is refused before anything starts.
"""

from __future__ import annotations

import json

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.server.conftest import Api

MAX_EXAMPLES = 4  # per operation and mode: the whole file stays under a minute


def fuzz(strategy: st.SearchStrategy[schemathesis.Case], tokens: list[str]) -> None:
    """Call with each of `tokens` ("" for none) what `strategy` makes; check the answers."""

    @given(case=strategy)
    @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    def check(case: schemathesis.Case) -> None:
        for token in tokens:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            response = case.call(headers=headers)
            where = f"{case.method} {case.formatted_path}: {response.text}"
            assert response.status_code < 500, where
            assert "Traceback" not in response.text, where
            if response.status_code >= 400:
                assert set(json.loads(response.text)) == {"error", "hint"}, where

    check()


def test_no_answer_is_a_server_error_or_a_traceback(api: Api) -> None:
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", api.client.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15  # every route is in the document
    for operation in operations:
        for mode in GenerationMode:  # what the document allows, and what it does not
            positive = mode is GenerationMode.POSITIVE
            try:  # without a token, every call of an operation is the same 401
                fuzz(operation.as_strategy(mode), [api.tokens["admin"]] + [""] * positive)
            except Unsatisfiable:  # nothing to get wrong (no parameters, no body)
                assert not positive, operation.label
