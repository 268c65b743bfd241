"""Every route of the OpenAPI document, for every role (and anonymous, and a non-member) against
the permission matrix. A route without a matrix entry fails here."""

from __future__ import annotations

import pytest

from sanctum.manager.models import Role
from sanctum.manager.permissions import ROUTE_ACCESS, Access, required_role

DENIED = {401, 403}
ZERO = "00000000-0000-0000-0000-000000000000"
ROLE_CALLERS = ["viewer", "editor", "administrator"]
# API keys are callers too: one per role in the account, and one of another account.
CALLERS = [
    "anonymous",
    "outsider",
    *ROLE_CALLERS,
    *(f"key:{role}" for role in ROLE_CALLERS),
    "key:outsider",
]


def _operations(spec: dict) -> list[tuple[str, str]]:
    return sorted(
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    )


def _expected(access: Access, caller: str) -> int | None:
    """Return 401 or 403 if the caller must be refused, else None."""
    if access in {Access.public, Access.workload}:
        return None
    if caller == "anonymous":
        return 401
    needed = required_role(access)
    if needed is None:
        return None
    role = caller.removeprefix("key:")
    if role == "outsider" or Role(role).rank < needed.rank:
        return 403
    return None


def _key_token(harness, owner_token: str, account_id: str, role: str) -> str:
    created = harness.client.post(
        f"/v1/accounts/{account_id}/apikeys",
        json={"name": f"matrix-{role}", "role": role},
        headers=harness.headers(owner_token),
    )
    assert created.status_code == 201, created.text
    secret = created.json()["secret"]
    return harness.client.post("/v1/auth/token", json={"api_key": secret}).json()["access_token"]


def test_every_route_has_a_matrix_entry(harness):
    operations = set(_operations(harness.client.get("/openapi.json").json()))
    assert operations, "the OpenAPI document lists no operation"
    assert operations - set(ROUTE_ACCESS) == set(), "routes missing from the permission matrix"
    assert set(ROUTE_ACCESS) - operations == set(), "matrix entries for routes that do not exist"


def test_route_times_role(harness):
    tokens: dict[str, str | None] = {"anonymous": None}
    other_account = harness.client.post(
        "/v1/accounts", json={"name": "elsewhere"}, headers=harness.headers()
    ).json()["id"]
    _, tokens["outsider"] = harness.add_user(Role.administrator, account_id=other_account)
    for role in (Role.viewer, Role.editor):
        _, tokens[str(role)] = harness.add_user(role)
    _, tokens["administrator"] = harness.add_user(Role.administrator)
    for role in ROLE_CALLERS:
        tokens[f"key:{role}"] = _key_token(harness, harness.admin_token, harness.account_id, role)
    tokens["key:outsider"] = _key_token(harness, tokens["outsider"], other_account, "administrator")
    spec = harness.client.get("/openapi.json").json()
    failures = []
    for method, path in _operations(spec):
        access = ROUTE_ACCESS[(method, path)]
        url = path.replace("{account_id}", harness.account_id)
        for name in ("user_id", "key_id", "task_id"):
            url = url.replace("{" + name + "}", ZERO)
        for caller in CALLERS:
            token = tokens[caller]
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            kwargs = {"json": {}} if method in {"POST", "PATCH", "PUT"} else {}
            status = harness.client.request(method, url, headers=headers, **kwargs).status_code
            expected = _expected(access, caller)
            if expected is not None and status != expected:
                failures.append(f"{method} {path} as {caller}: {status}, expected {expected}")
            if expected is None and status in DENIED:
                failures.append(f"{method} {path} as {caller}: {status}, expected allowed")
            if status >= 500:
                failures.append(f"{method} {path} as {caller}: server error {status}")
    assert failures == []


@pytest.mark.parametrize("role", [Role.viewer, Role.editor, Role.administrator])
def test_api_key_role_is_capped_by_owner(harness, role):
    user_id, token = harness.add_user(role)
    created = harness.client.post(
        harness.url("/apikeys"),
        json={"name": "k", "role": str(role)},
        headers=harness.headers(token),
    )
    assert created.status_code == 201
    key = created.json()["secret"]
    key_token = harness.client.post("/v1/auth/token", json={"api_key": key}).json()["access_token"]
    # The key may do what its role allows...
    assert (
        harness.client.get(harness.url("/users"), headers=harness.headers(key_token)).status_code
        == 200
    )
    # ...and no more than its owner's current role: demote the owner to viewer.
    if role != Role.viewer:
        demoted = harness.client.patch(
            harness.url(f"/users/{user_id}"), json={"role": "viewer"}, headers=harness.headers()
        )
        assert demoted.status_code == 200, demoted.text
        refused = harness.client.post(
            harness.url(f"/tasks/{ZERO}/approve"), headers=harness.headers(key_token)
        )
        assert refused.status_code == 403
