"""The permission matrix: who may call which route. Data, in one place, checked on every route.

Each API route (method and path template) maps to the least :class:`Access` it needs:

- ``public``: anyone, no credentials (health, sign-in, accepting an invitation);
- ``authenticated``: any valid user or API key (its own profile, its accounts);
- ``viewer`` / ``editor`` / ``administrator``: that role or higher in the account named by the
  route's ``{account_id}``.

:func:`sanctum.manager.deps.authorize` enforces this table for every route (it is an app-wide
dependency); a route missing from the table is refused with 403 ``auth.route_unlisted``, and a
test enumerates every route of the OpenAPI document against the table for every role. Finer
rules inside a route (only the owner or an administrator may revoke a key) live in the services.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from sanctum.manager.models import Role

__all__ = ["ROUTE_ACCESS", "Access", "required_role"]


class Access(enum.StrEnum):
    """The least a caller needs to use a route."""

    public = "public"
    #: No user credentials: the caller is a workload or node whose quote (or join token) is
    #: its credential, checked by the route; rate limited per source address (ADR 0090).
    workload = "workload"
    authenticated = "authenticated"
    viewer = "viewer"
    editor = "editor"
    administrator = "administrator"


_A = "/v1/accounts/{account_id}"

ROUTE_ACCESS: Final[Mapping[tuple[str, str], Access]] = MappingProxyType(
    {
        # Operations.
        ("GET", "/healthz"): Access.public,
        ("GET", "/readyz"): Access.public,
        ("GET", "/metrics"): Access.public,
        # Sign-in and self-service.
        ("POST", "/v1/auth/token"): Access.public,
        ("POST", "/v1/invitations/accept"): Access.public,
        ("GET", "/v1/auth/whoami"): Access.authenticated,
        ("POST", "/v1/auth/password"): Access.authenticated,
        # Accounts.
        ("GET", "/v1/accounts"): Access.authenticated,
        ("POST", "/v1/accounts"): Access.authenticated,
        ("GET", _A): Access.viewer,
        ("PATCH", _A): Access.administrator,
        # Users and memberships.
        ("GET", f"{_A}/users"): Access.viewer,
        ("POST", f"{_A}/users"): Access.administrator,
        ("GET", f"{_A}/users/{{user_id}}"): Access.viewer,
        ("PATCH", f"{_A}/users/{{user_id}}"): Access.administrator,
        ("DELETE", f"{_A}/users/{{user_id}}"): Access.administrator,
        # API keys (owners manage their own; administrators all: see the service).
        ("GET", f"{_A}/apikeys"): Access.viewer,
        ("POST", f"{_A}/apikeys"): Access.viewer,
        ("DELETE", f"{_A}/apikeys/{{key_id}}"): Access.viewer,
        # Approval tasks.
        ("GET", f"{_A}/tasks"): Access.viewer,
        ("GET", f"{_A}/tasks/{{task_id}}"): Access.viewer,
        ("POST", f"{_A}/tasks/{{task_id}}/approve"): Access.editor,
        ("POST", f"{_A}/tasks/{{task_id}}/deny"): Access.editor,
        ("POST", f"{_A}/tasks/{{task_id}}/cancel"): Access.editor,
        # Audit log.
        ("GET", f"{_A}/audit"): Access.viewer,
        ("GET", f"{_A}/audit/export"): Access.viewer,
        ("GET", f"{_A}/audit/verify"): Access.viewer,
        # Attestation and issuance ([E], ADR 0090).
        ("POST", "/v1/attest/challenge"): Access.workload,
        ("POST", "/v1/attest"): Access.workload,
        ("POST", "/v1/nodes/join"): Access.workload,
        ("POST", "/v1/attest/verify-evidence"): Access.authenticated,
        ("GET", "/.well-known/jwks.json"): Access.public,
        ("GET", f"{_A}/ca/crl"): Access.public,
        ("GET", f"{_A}/ca"): Access.viewer,
        ("GET", f"{_A}/apps"): Access.viewer,
        ("POST", f"{_A}/apps"): Access.editor,
        ("GET", f"{_A}/apps/{{app_id}}"): Access.viewer,
        ("PATCH", f"{_A}/apps/{{app_id}}"): Access.editor,
        ("DELETE", f"{_A}/apps/{{app_id}}"): Access.editor,
        ("PUT", f"{_A}/apps/{{app_id}}/secrets/{{name}}"): Access.editor,
        ("DELETE", f"{_A}/apps/{{app_id}}/secrets/{{name}}"): Access.editor,
        ("GET", f"{_A}/apps/{{app_id}}/instances"): Access.viewer,
        ("GET", f"{_A}/apps/{{app_id}}/encrypted-dirs"): Access.viewer,
        ("PUT", f"{_A}/apps/{{app_id}}/encrypted-dirs/policy"): Access.administrator,
        ("GET", f"{_A}/apps/{{app_id}}/encrypted-dirs/{{name}}/key"): Access.administrator,
        ("POST", f"{_A}/apps/{{app_id}}/encrypted-dirs/{{name}}/rotate"): Access.administrator,
        ("POST", f"{_A}/apps/{{app_id}}/encrypted-dirs/{{name}}/retire"): Access.administrator,
        # Signed by the attested workload key, checked by the route (ADR 0116).
        ("POST", "/v1/workloads/encrypted-dirs/report"): Access.workload,
        ("GET", f"{_A}/builds"): Access.viewer,
        ("POST", f"{_A}/builds"): Access.editor,
        ("GET", f"{_A}/builds/{{build_id}}"): Access.viewer,
        ("POST", f"{_A}/builds/{{build_id}}/revoke"): Access.administrator,
        ("GET", f"{_A}/domains"): Access.viewer,
        ("POST", f"{_A}/domains"): Access.editor,
        ("DELETE", f"{_A}/domains/{{domain_id}}"): Access.editor,
        ("GET", f"{_A}/nodes"): Access.viewer,
        ("POST", f"{_A}/nodes"): Access.editor,
        ("POST", f"{_A}/nodes/recheck"): Access.administrator,
        ("GET", f"{_A}/nodes/{{node_id}}"): Access.viewer,
        ("POST", f"{_A}/nodes/{{node_id}}/deactivate"): Access.editor,
        ("POST", f"{_A}/nodes/{{node_id}}/join-token"): Access.editor,
        ("GET", f"{_A}/certificates"): Access.viewer,
        ("GET", f"{_A}/certificates/{{serial}}"): Access.viewer,
        ("POST", f"{_A}/certificates/{{serial}}/revoke"): Access.editor,
        # Conversions and background jobs (ADR 0091).
        ("POST", f"{_A}/apps/{{app_id}}/convert"): Access.editor,
        ("POST", f"{_A}/tools/converter/convert-app"): Access.editor,
        # Data Shield's path: editor of the key's (or ?account=) account, checked by the route.
        ("POST", "/v1/tools/converter/convert-app"): Access.authenticated,
        ("GET", f"{_A}/jobs"): Access.viewer,
        ("GET", f"{_A}/jobs/{{job_id}}"): Access.viewer,
        ("GET", f"{_A}/registry-credentials"): Access.viewer,
        ("DELETE", f"{_A}/registry-credentials/{{registry}}"): Access.editor,
    }
)

_ROLE_OF: Final = {
    Access.viewer: Role.viewer,
    Access.editor: Role.editor,
    Access.administrator: Role.administrator,
}


def required_role(access: Access) -> Role | None:
    """Return the account role ``access`` needs (``None`` for public/authenticated)."""
    return _ROLE_OF.get(access)
