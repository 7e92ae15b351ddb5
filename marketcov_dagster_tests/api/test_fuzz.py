"""Schemathesis fuzzes every operation of the OpenAPI document against a real server: no 5xx,
and every response matches the status codes, content types and schemas the document declares.

Driven through Hypothesis directly (``APIOperation.as_strategy``): schemathesis's own pytest
plugin does not load under this pytest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from marketcov_dagster_tests.api.conftest import serving

EXAMPLES_PER_OPERATION = 30  # per generation mode: valid input, and input the schema forbids


def _fuzz(operation: Any, mode: schemathesis.GenerationMode) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck))
    def one(case: Any) -> None:
        response = case.call(timeout=60)
        assert response.status_code < 500, (case.method, case.formatted_path, case.query, response.text[:500])
        case.validate_response(
            response, checks=[status_code_conformance, content_type_conformance, response_schema_conformance]
        )

    one()


def test_no_server_errors_and_responses_match_the_schema(tmp_path: Path) -> None:
    with serving("sqlite", tmp_path) as served:
        schema = schemathesis.openapi.from_url(f"{served.base}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 12, [op.label for op in operations]
        assert "GET /api/bars/{symbol}/{interval}" in [op.label for op in operations]
        negative = []
        for operation in operations:
            _fuzz(operation, schemathesis.GenerationMode.POSITIVE)
            try:
                _fuzz(operation, schemathesis.GenerationMode.NEGATIVE)
                negative.append(operation.label)
            except Unsatisfiable:  # nothing in its parameters can be invalid (no params, or free strings)
                pass
        # pages, dates-free bounds, enums and required parameters: invalid input was sent to these
        assert len(negative) >= 6, negative
