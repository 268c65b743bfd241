"""Pure decisions of the launcher: the app's environment, arguments, user and refusal hints.

Nothing here reads the host: callers pass the host environment, the run-time arguments and the
image's ``/etc/passwd`` text in, so every rule is a plain function with a plain test.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from sanctum.converter.manifest import EnclaveManifest
from sanctum.launcher.errors import LauncherConfigError

__all__ = [
    "AppUser",
    "build_argv",
    "build_env",
    "check_secret_paths",
    "enclave_protected_dirs",
    "refusal_hint",
    "resolve_user",
    "split_san",
]

_HINTS: Final[Mapping[str, str]] = {
    "attest.build_not_allowlisted": (
        "this image's measurement is not an allowlisted build of the app: register the build "
        "(convert through the manager) and approve its allowlisting task"
    ),
    "attest.build_revoked": "this build was revoked by an administrator; deploy a newer build",
    "attest.tcb_status_rejected": (
        "the platform's TCB status is not accepted by the app's policy: update the platform "
        "(microcode/BIOS) or widen the accepted statuses"
    ),
    "attest.advisory_rejected": "the platform has an advisory the app's policy rejects",
    "attest.debug_not_allowed": (
        "debug enclaves are refused: convert without --debug, or set unsafe_allow_debug for "
        "development apps only"
    ),
    "attest.simulated_not_allowed": (
        "simulated evidence is refused: run on SGX hardware, or set unsafe_allow_simulated on a "
        "development app only"
    ),
    "attest.domain_not_approved": (
        "a requested certificate name is not an approved domain of the app: add the domain and "
        "approve its task"
    ),
    "attest.nonce_invalid": "the challenge expired or was already used; start the workload again",
    "attest.binding_mismatch": "the quote does not bind this key and nonce (a launcher bug?)",
    "attest.isvsvn_too_low": "the ISVSVN is below the app's minimum; rebuild with a higher one",
    "attest.isvprodid_mismatch": "the build's ISVPRODID differs from the app's",
    "attest.app_not_found": "no such app in this account: check the manifest's app name",
    "attest.node_required": "the app requires quotes from a registered, active node",
}


def refusal_hint(code: str) -> str:
    """Return advice for a manager reason code (a generic one for unknown codes)."""
    return _HINTS.get(
        code, "see the manager's audit log (sanctum audit list) for this attempt's details"
    )


def build_env(
    manifest: EnclaveManifest,
    host_env: Mapping[str, str],
    secret_env: Mapping[str, str],
) -> dict[str, str]:
    """Return the app's environment.

    Order of precedence (later wins): the manifest's frozen environment, the host variables the
    manifest allows through (``hostEnvPassthrough``; nothing else from the host), the secrets
    delivered as environment variables.

    Args:
        manifest: The verified manifest.
        host_env: The launcher's own environment.
        secret_env: Secret values by variable name (opened from the attestation response).

    Returns:
        The environment for ``execve``.
    """
    env = dict(manifest.env)
    for name in manifest.host_env_passthrough:
        if name in host_env:
            env[name] = host_env[name]
    env.update(secret_env)
    return env


def build_argv(manifest: EnclaveManifest, runtime_args: Sequence[str]) -> tuple[list[str], bool]:
    """Return the app's argv and whether run-time arguments were ignored.

    With ``allowCmdlineArgs`` the run-time arguments, when there are any, replace the manifest's
    ``args``; otherwise the manifest's ``args`` are used and run-time arguments are ignored (the
    measured command line is what runs).

    Args:
        manifest: The verified manifest.
        runtime_args: Arguments given to the launcher after its own options.

    Returns:
        ``(argv, ignored)``: the full argv (entrypoint first) and whether arguments were dropped.
    """
    if manifest.allow_cmdline_args and runtime_args:
        return [*manifest.entrypoint, *runtime_args], False
    return [*manifest.entrypoint, *manifest.args], bool(runtime_args)


@dataclass(frozen=True, slots=True)
class AppUser:
    """The numeric identity the app runs as.

    Attributes:
        uid: User id.
        gid: Primary group id.
    """

    uid: int
    gid: int


def _lookup(text: str, name: str, field: int) -> int | None:
    """Return field ``field`` of the ``passwd``/``group`` line for ``name`` (None if absent)."""
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) > field and parts[0] == name and parts[field].isdigit():
            return int(parts[field])
    return None


def resolve_user(user: str, passwd: str, group: str) -> AppUser | None:
    """Resolve the manifest's ``user`` (``name|uid[:group|gid]``) with the image's files.

    Args:
        user: The manifest's ``user`` (``""`` means the image default: whoever runs the launcher).
        passwd: Text of the image's ``/etc/passwd`` (``""`` when absent).
        group: Text of the image's ``/etc/group`` (``""`` when absent).

    Returns:
        The numeric user, or ``None`` for the image default.

    Raises:
        LauncherConfigError: A name is not in the image's files (``launcher.user_unknown``).
    """
    if not user:
        return None
    name, _, group_name = user.partition(":")
    if name.isdigit():
        uid = int(name)
        gid = _lookup_gid_of_uid(passwd, uid)
    else:
        found = _lookup(passwd, name, 2)
        if found is None:
            raise LauncherConfigError(
                f"user {name!r} is not in the image's /etc/passwd", code="launcher.user_unknown"
            )
        uid = found
        gid = _lookup(passwd, name, 3)
    if group_name:
        if group_name.isdigit():
            gid = int(group_name)
        else:
            gid = _lookup(group, group_name, 2)
            if gid is None:
                raise LauncherConfigError(
                    f"group {group_name!r} is not in the image's /etc/group",
                    code="launcher.user_unknown",
                )
    return AppUser(uid=uid, gid=uid if gid is None else gid)


def _lookup_gid_of_uid(passwd: str, uid: int) -> int | None:
    """Return the primary group of the passwd entry with ``uid`` (None if absent)."""
    for line in passwd.splitlines():
        parts = line.split(":")
        if len(parts) > 3 and parts[2] == str(uid) and parts[3].isdigit():
            return int(parts[3])
    return None


def split_san(name: str) -> str:
    """Return a subject alternative name without its ``DNS:``/``IP:`` prefix."""
    for prefix in ("DNS:", "IP:", "dns:", "ip:"):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def enclave_protected_dirs(manifest: EnclaveManifest) -> tuple[str, ...]:
    """Return the directories whose files Gramine keeps inside the enclave for ``manifest``.

    They are exactly the mounts the converter declares in the Gramine manifest
    (:func:`sanctum.converter.gramine.render_gramine_manifest`): every ``rwDir`` (tmpfs), every
    ``encryptedDir`` (encrypted mount) and the tmpfs directories holding the key, certificate,
    chain and CA paths (:func:`~sanctum.converter.gramine.provisioned_tmpfs_dirs`). Anywhere
    else is the host's file system, where a written secret would be in clear.

    Raises:
        LauncherConfigError: The manifest's key paths cannot be kept in the enclave
            (``launcher.secret_path_unprotected``; the converter refuses such manifests).
    """
    from sanctum.converter.gramine import provisioned_tmpfs_dirs  # noqa: PLC0415 (Gramine only)
    from sanctum.converter.manifest_errors import BuildOptionError  # noqa: PLC0415

    try:
        tmpfs = provisioned_tmpfs_dirs(manifest)
    except BuildOptionError as error:
        raise LauncherConfigError(
            f"the manifest's key and certificate paths cannot be kept in the enclave: "
            f"{error.message}",
            code="launcher.secret_path_unprotected",
        ) from error
    return (*manifest.rw_dirs, *manifest.encrypted_dirs, *tmpfs)


def check_secret_paths(files: Mapping[str, str], protected: Sequence[str]) -> None:
    """Refuse file secrets that would be written outside every enclave-protected directory.

    Args:
        files: Secret name to the image path it is delivered to (file delivery only).
        protected: The enclave-protected directories (:func:`enclave_protected_dirs`).

    Raises:
        LauncherConfigError: A path lies outside all of ``protected``
            (``launcher.secret_path_unprotected``); nothing has been written yet.
    """

    def normal(path: str) -> str:
        # As the launcher resolves it under the root: leading slashes collapse to one.
        return posixpath.normpath("/" + path.lstrip("/"))

    roots = [normal(directory).rstrip("/") for directory in protected]
    for name, path in sorted(files.items()):
        target = normal(path)
        if not any(target.startswith(root + "/") for root in roots if root):
            raise LauncherConfigError(
                f"secret {name} would be written to {path}, outside every enclave-protected "
                f"directory ({', '.join(sorted(set(roots))) or 'none'}); under Gramine it would "
                "land in clear on the host",
                code="launcher.secret_path_unprotected",
                hint="deliver the secret into an rwDir, an encryptedDir or the certificates' "
                "directory (for example /run/sanctum/tls), or as an environment variable",
                details={"secret": name, "path": path},
            )
