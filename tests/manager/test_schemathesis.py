"""OpenAPI-driven fuzzing of the manager API with schemathesis: no 5xx, responses match the
documented statuses, content types and schemas. Runs authenticated as an administrator, with a
bounded number of examples per operation."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance

from conftest import build_harness, make_settings


@pytest.fixture(scope="module")
def fuzz_harness(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    harness = build_harness(
        make_settings(tmp, f"sqlite:///{tmp / 'fuzz.db'}", login_max_failures_per_address=10_000)
    )
    yield harness
    harness.client.close()
    harness.runtime.db.dispose()


@pytest.mark.slow
def test_api_conforms_to_its_schema(fuzz_harness):
    api = schemathesis.openapi.from_asgi("/openapi.json", fuzz_harness.app)
    failures: list[str] = []
    operations = 0
    for result in api.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=15,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case) -> None:
            # Keep the fuzzer inside the harness's account so it reaches real handlers.
            if case.path_parameters and "account_id" in case.path_parameters:
                case.path_parameters["account_id"] = fuzz_harness.account_id
            token = fuzz_harness.token_for(fuzz_harness.admin_id)
            # Business rules may refuse schema-valid input (an expiry in the past, inviting an
            # administrator): every other check (no 5xx, documented statuses, content types and
            # response schemas) applies.
            case.call_and_validate(
                headers=fuzz_harness.headers(token), excluded_checks=[positive_data_acceptance]
            )

        try:
            fuzz()
        except Exception as error:  # noqa: BLE001 (collected per operation, reported below)
            failures.append(f"{operation.method.upper()} {operation.path}: {error}")
    assert operations >= 20
    assert failures == [], "\n\n".join(failures)
