from __future__ import annotations

import pytest
from launcher_fixtures import build_shielded_root

from sanctum.launcher.errors import LauncherConfigError
from sanctum.launcher.policy import (
    AppUser,
    build_argv,
    build_env,
    refusal_hint,
    resolve_user,
    split_san,
)

PASSWD = "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n"
GROUP = "root:x:0:\nstaff:x:50:\napp:x:1001:\n"


@pytest.fixture
def manifest(tmp_path):
    return build_shielded_root(tmp_path / "closed", pin=None).manifest


@pytest.fixture
def open_manifest(tmp_path):
    return build_shielded_root(tmp_path / "open", pin=None, allow_cmdline_args=True).manifest


def test_env_is_the_manifests_plus_allowed_host_names_plus_env_secrets(manifest):
    env = build_env(
        manifest,
        {"HOST_ALLOWED": "h", "HOME": "/root", "GREETING": "host-wins?"},
        {"DB_PASSWORD": "pw", "GREETING": "secret-wins"},
    )
    assert env == {
        "PATH": "/usr/bin:/bin",
        "GREETING": "secret-wins",
        "HOST_ALLOWED": "h",
        "DB_PASSWORD": "pw",
    }


def test_host_env_cannot_override_frozen_env_unless_allowed(manifest):
    env = build_env(manifest, {"PATH": "/evil", "LD_PRELOAD": "/evil.so"}, {})
    assert env["PATH"] == "/usr/bin:/bin"
    assert "LD_PRELOAD" not in env


def test_args_policy(manifest, open_manifest):
    assert build_argv(manifest, ()) == (["/app/run.sh", "default-arg"], False)
    assert build_argv(manifest, ("x",)) == (["/app/run.sh", "default-arg"], True)
    assert build_argv(open_manifest, ("x", "y")) == (["/app/run.sh", "x", "y"], False)
    assert build_argv(open_manifest, ()) == (["/app/run.sh", "default-arg"], False)


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("", None),
        ("app", AppUser(1000, 1001)),
        ("1000", AppUser(1000, 1001)),
        ("4242", AppUser(4242, 4242)),
        ("app:staff", AppUser(1000, 50)),
        ("app:7", AppUser(1000, 7)),
        ("0:0", AppUser(0, 0)),
    ],
)
def test_resolve_user(user, expected):
    assert resolve_user(user, PASSWD, GROUP) == expected


@pytest.mark.parametrize("user", ["nobody", "app:wheel"])
def test_unknown_names_are_refused(user):
    with pytest.raises(LauncherConfigError) as caught:
        resolve_user(user, PASSWD, GROUP)
    assert caught.value.code == "launcher.user_unknown"


def test_hints_and_sans():
    assert "allowlist" in refusal_hint("attest.build_not_allowlisted")
    assert "unsafe_allow_simulated" in refusal_hint("attest.simulated_not_allowed")
    assert "audit" in refusal_hint("attest.something_new")
    assert split_san("DNS:bank.demo.local") == "bank.demo.local"
    assert split_san("IP:10.0.0.1") == "10.0.0.1"
    assert split_san("plain.example") == "plain.example"
