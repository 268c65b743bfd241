"""The Gramine target: render a Gramine manifest (TOML) and sign it with Gramine's own tools.

For SGX hardware the shielded image runs under Gramine. The converter renders a complete Gramine
manifest from the Sanctum enclave manifest so that nobody edits one by hand:

- ``libos.entrypoint`` is the Sanctum launcher; the launcher ``exec``s the original entrypoint
  inside the same enclave after attestation (Gramine supports ``execve`` in-enclave). A Gramine
  build ships the launcher *directory* (``/sanctum/launcher.d/``, ADR 0135): its entry program,
  interpreter, loader, libraries, extension modules and module archive are plain files, each a
  trusted file with its SHA-256 (they are in the Sanctum manifest's trusted files). The
  self-contained executable starts from memory files, which Gramine cannot execute; a manifest
  rendered for it says so in its header;
- ``loader.argv`` is fixed to the launcher unless the args policy allows run-time arguments
  (then ``loader.insecure__use_cmdline_argv = true``, named insecure by Gramine on purpose);
- ``loader.env`` holds the frozen environment; allowed host variables are ``passthrough``;
- ``fs.mounts``: Gramine's runtime at ``/lib``, ``type = "tmpfs"`` for ``rwDirs`` (writable,
  inside the enclave, never persisted), ``type = "encrypted"`` for ``encryptedDirs`` with a key
  name the launcher provisions after attestation, and ``type = "tmpfs"`` for the directory of
  every key, certificate, chain and CA file the launcher writes (unless it already lies in an
  rwDir or encryptedDir), so the workload's private key never reaches the host in clear;
- ``sgx.trusted_files`` lists every trusted file with its SHA-256 (and Gramine's own files, which
  ``gramine-sgx-sign`` hashes), so MRENCLAVE covers the whole image and the Sanctum manifest;
- ``sgx.enclave_size``, ``sgx.max_threads``, ``sgx.remote_attestation = "dcap"``,
  ``sgx.isvprodid``, ``sgx.isvsvn``, ``sgx.debug``.

When ``gramine-manifest`` and ``gramine-sgx-sign`` are on ``PATH`` (a production converter image
has them), :func:`sign_with_gramine` runs them and reads the real MRENCLAVE and MRSIGNER from the
resulting ``.sig`` with :func:`~sanctum.converter.sigstruct.parse_sigstruct`. Gramine cannot be
installed on Sanctum's build machines, so that path is tested with stand-in tools.

:func:`toml_dumps` is a small, strict TOML writer (strings escaped per TOML 1.0, no floats);
the standard library only reads TOML.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives.asymmetric import rsa

from sanctum.converter.keys import signing_key_mrsigner, signing_key_pem
from sanctum.converter.manifest import (
    DEFAULT_LAUNCHER_PATH,
    CaCertificateSpec,
    CertificateSpec,
    EnclaveManifest,
)
from sanctum.converter.manifest_errors import BuildOptionError, GramineToolError
from sanctum.converter.runtime_layer import LAUNCHER_DIR, LAUNCHER_DIR_ENTRY
from sanctum.converter.sigstruct import Sigstruct, parse_sigstruct

__all__ = [
    "MANIFEST_JSON_PATH",
    "SIGSTRUCT_PATH",
    "GramineBuild",
    "GramineOptions",
    "GramineTools",
    "check_provisioned_paths",
    "find_gramine_tools",
    "format_size",
    "launcher_runs_under_gramine",
    "provisioned_tmpfs_dirs",
    "render_gramine_manifest",
    "sign_with_gramine",
    "toml_dumps",
]

#: Where the Sanctum manifest lives in the image (a trusted file of the Gramine manifest).
MANIFEST_JSON_PATH: Final = "/sanctum/manifest.json"
#: Where the SIGSTRUCT lives in the image (readable inside the enclave, not trusted).
SIGSTRUCT_PATH: Final = "/sanctum/manifest.sigstruct"

TomlValue = str | int | bool | Sequence["TomlValue"] | Mapping[str, "TomlValue"]

_BARE_KEY: Final = re.compile(r"[A-Za-z0-9_-]+")
_SHORT_ESCAPES: Final = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}
#: Characters :func:`_toml_string` escapes or refuses; strings without any are written as-is.
_NEEDS_ESCAPE: Final = re.compile('[\x00-\x1f\x7f"\\\\\ud800-\udfff]')


# TOML writer -----------------------------------------------------------------------------------


def _toml_string(text: str) -> str:
    """Return ``text`` as a TOML basic string.

    Raises:
        BuildOptionError: ``text`` holds a lone surrogate (not representable in TOML).
    """
    if _NEEDS_ESCAPE.search(text) is None:
        return f'"{text}"'  # The common case (a path, a digest): one pass in C.
    out = ['"']
    for char in text:
        if char in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        elif 0xD800 <= ord(char) <= 0xDFFF:
            raise BuildOptionError(
                f"string {text!r} holds a lone surrogate", code="build.option_invalid"
            )
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def _toml_key(key: str) -> str:
    """Return ``key`` bare when TOML allows it, quoted otherwise."""
    return key if _BARE_KEY.fullmatch(key) else _toml_string(key)


def _toml_inline(value: TomlValue) -> str:
    """Return ``value`` as an inline TOML value.

    Raises:
        BuildOptionError: A float or another type TOML output does not support here.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, Mapping):
        items = ", ".join(f"{_toml_key(k)} = {_toml_inline(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    if isinstance(value, Sequence):
        if value and all(isinstance(item, Mapping) for item in value):
            lines = "".join(f"  {_toml_inline(item)},\n" for item in value)
            return "[\n" + lines + "]"
        return "[" + ", ".join(_toml_inline(item) for item in value) + "]"
    raise BuildOptionError(
        f"{type(value).__name__} values are not written to TOML", code="build.option_invalid"
    )


def _toml_table(table: Mapping[str, TomlValue], prefix: tuple[str, ...], out: list[str]) -> None:
    """Append ``table`` to ``out``: its plain keys, then its sub-tables."""
    plain: list[tuple[str, TomlValue]] = []
    nested: list[tuple[str, Mapping[str, TomlValue]]] = []
    for key, value in table.items():
        if isinstance(value, Mapping):
            nested.append((key, value))
        else:
            plain.append((key, value))
    if prefix and (plain or not nested):
        out.append(f"\n[{'.'.join(_toml_key(part) for part in prefix)}]\n")
    out.extend(f"{_toml_key(k)} = {_toml_inline(v)}\n" for k, v in plain)
    for key, sub in nested:
        _toml_table(sub, (*prefix, key), out)


def toml_dumps(document: Mapping[str, TomlValue], *, header: str = "") -> str:
    """Return ``document`` as TOML 1.0 text (tables for mappings, inline tables in arrays).

    Args:
        document: Nested mappings of strings, integers, booleans and arrays.
        header: Comment lines written first (each prefixed with ``#``).

    Raises:
        BuildOptionError: The document holds a float or an unsupported type.
    """
    out = [f"# {line}\n" if line else "#\n" for line in header.splitlines()]
    _toml_table(document, (), out)
    return "".join(out)


# Gramine manifest ------------------------------------------------------------------------------


def format_size(size: int) -> str:
    """Return an enclave size the way Gramine writes it (``"2G"``, ``"512M"``, ``"64K"``)."""
    for suffix, unit in (("G", 2**30), ("M", 2**20), ("K", 2**10)):
        if size % unit == 0:
            return f"{size // unit}{suffix}"
    return str(size)


@dataclass(frozen=True, slots=True)
class GramineOptions:
    """Where Gramine's files are in the shielded image (Debian/Ubuntu package layout by default).

    Attributes:
        libos: Gramine's LibOS (``loader.entrypoint``).
        runtime_dir: Gramine's patched C library, mounted at ``/lib``.
        library_path: ``LD_LIBRARY_PATH`` used when the image sets none.
    """

    libos: str = "/usr/lib/x86_64-linux-gnu/gramine/libsysdb.so"
    runtime_dir: str = "/usr/lib/x86_64-linux-gnu/gramine/runtime/glibc"
    library_path: str = "/lib:/lib/x86_64-linux-gnu:/usr/lib:/usr/lib/x86_64-linux-gnu"


def _ids(user: str) -> dict[str, TomlValue]:
    """Return ``loader.uid``/``loader.gid`` for a numeric ``uid[:gid]``, else nothing."""
    uid, _, gid = user.partition(":")
    out: dict[str, TomlValue] = {}
    if uid.isdigit():
        out["uid"] = int(uid)
        out["gid"] = int(gid) if gid.isdigit() else int(uid)
    return out


def _is_within(path: str, directory: str) -> bool:
    """Return whether ``path`` is ``directory`` or lies below it (both normalised, absolute)."""
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def _written_paths(
    certificates: Sequence[CertificateSpec], ca_certificates: Sequence[CaCertificateSpec]
) -> list[tuple[str, str]]:
    """Return ``(option name, path)`` of every file the launcher writes after attestation."""
    written: list[tuple[str, str]] = []
    for cert in certificates:
        written += [("keyPath", cert.key_path), ("certPath", cert.cert_path)]
        if cert.chain_path is not None:
            written.append(("chainPath", cert.chain_path))
    written.extend(("caPath", ca.ca_path) for ca in ca_certificates if ca.ca_path)
    return written


def _tmpfs_dirs(
    written: Sequence[tuple[str, str]], covered: Sequence[str], image_content: Sequence[str]
) -> tuple[str, ...]:
    """Return the tmpfs mount points for ``written`` (see :func:`provisioned_tmpfs_dirs`).

    Raises:
        BuildOptionError: A mount point would hide ``image_content`` or a ``covered`` directory,
            or would be ``/`` (code ``build.path_invalid``).
    """
    chosen: set[str] = set()
    for what, path in written:
        if any(_is_within(path, directory) for directory in covered):
            continue
        parent = posixpath.dirname(path)
        hidden = [p for p in image_content if _is_within(p, parent)]
        hidden += [d for d in covered if _is_within(d, parent)]
        if parent == "/" or hidden:
            shown = "/" if parent == "/" else min(hidden)
            raise BuildOptionError(
                f"the certificate {what} {path} is written in {parent}, which would have to be "
                f"an in-enclave tmpfs, but that would hide {shown} of the image",
                code="build.path_invalid",
                hint="write keys and certificates to a directory of their own "
                "(default /run/sanctum/tls) or inside an rwDir",
            )
        chosen.add(parent)
    return tuple(sorted(d for d in chosen if not any(o != d and _is_within(d, o) for o in chosen)))


def _runtime_paths(opts: GramineOptions, launcher: str) -> tuple[str, ...]:
    """Return the paths Sanctum and Gramine themselves place in every shielded image."""
    return (
        MANIFEST_JSON_PATH,
        SIGSTRUCT_PATH,
        launcher,
        LAUNCHER_DIR_ENTRY,
        opts.libos,
        opts.runtime_dir,
        "/lib",
    )


def launcher_runs_under_gramine(manifest: EnclaveManifest) -> bool:
    """Return whether the manifest's launcher is the launcher directory's entry (ADR 0135).

    Only that form runs under Gramine: the self-contained executable (``/sanctum/launcher``)
    executes its loader from a memory file, which the LibOS cannot do.
    """
    return manifest.launcher == LAUNCHER_DIR_ENTRY and all(
        path in manifest.trusted_files
        for path in (LAUNCHER_DIR_ENTRY, f"{LAUNCHER_DIR}/lib/sanctum-python")
    )


def check_provisioned_paths(
    certificates: Sequence[CertificateSpec],
    ca_certificates: Sequence[CaCertificateSpec],
    *,
    rw_dirs: Sequence[str],
    encrypted_dirs: Sequence[str],
    options: GramineOptions | None = None,
) -> None:
    """Check, before any image is read, that the launcher's files can be kept in the enclave.

    This is the part of :func:`provisioned_tmpfs_dirs` that needs no image: it refuses a key,
    certificate, chain or CA file directly in ``/``, or in a directory holding Sanctum's or
    Gramine's own files, or above an ``rwDir``/``encryptedDir``. Trusted files of the image are
    checked when the manifest is rendered.

    Raises:
        BuildOptionError: Such a path (code ``build.path_invalid``).
    """
    opts = options or GramineOptions()
    _tmpfs_dirs(
        _written_paths(certificates, ca_certificates),
        (*rw_dirs, *encrypted_dirs),
        _runtime_paths(opts, DEFAULT_LAUNCHER_PATH),
    )


def provisioned_tmpfs_dirs(
    manifest: EnclaveManifest, *, options: GramineOptions | None = None
) -> tuple[str, ...]:
    """Return the directories to mount as in-enclave tmpfs for the files the launcher writes.

    The launcher writes each certificate's key, certificate and chain and each CA file after
    attestation. Under Gramine a path outside every mount is the host's file system: the key
    would be refused by the strict file policy or written in clear on the host. Each such file's
    parent directory is therefore mounted as tmpfs, unless the file already lies in an ``rwDir``
    (tmpfs) or an ``encryptedDir``. Directories nested in another chosen one are dropped; the
    result is sorted so the rendered manifest is reproducible.

    Args:
        manifest: The Sanctum enclave manifest.
        options: Where Gramine's files are in the image.

    Returns:
        The tmpfs mount points, sorted and without nesting.

    Raises:
        BuildOptionError: A written file would need a tmpfs that hides image content: its
            directory is ``/``, holds (or is above) a trusted file, a symbolic link, Gramine's
            files, ``/sanctum`` or an ``rwDir``/``encryptedDir`` (code ``build.path_invalid``).
    """
    opts = options or GramineOptions()
    image_content = (
        *manifest.trusted_files,
        *manifest.symlinks,
        *_runtime_paths(opts, manifest.launcher),
    )
    return _tmpfs_dirs(
        _written_paths(manifest.certificates, manifest.ca_certificates),
        (*manifest.rw_dirs, *manifest.encrypted_dirs),
        image_content,
    )


def render_gramine_manifest(
    manifest: EnclaveManifest,
    *,
    manifest_json_sha256: str,
    options: GramineOptions | None = None,
) -> str:
    """Render the Gramine manifest TOML for ``manifest``.

    Args:
        manifest: The Sanctum enclave manifest.
        manifest_json_sha256: SHA-256 (hex) of ``/sanctum/manifest.json``, a trusted file.
        options: Where Gramine's files are in the image.

    Returns:
        TOML text accepted by ``gramine-manifest`` and ``gramine-sgx-sign``.

    Raises:
        BuildOptionError: A value cannot be written as TOML, or a key or certificate path
            cannot be kept inside the enclave (see :func:`provisioned_tmpfs_dirs`).
    """
    opts = options or GramineOptions()
    env: dict[str, TomlValue] = {"LD_LIBRARY_PATH": opts.library_path}
    env.update(manifest.env)
    for name in manifest.host_env_passthrough:
        env[name] = {"passthrough": True}
    loader: dict[str, TomlValue] = {
        "entrypoint": {"uri": f"file:{opts.libos}"},
        "log_level": "warning" if manifest.enclave.debug else "error",
        **_ids(manifest.user),
    }
    if manifest.allow_cmdline_args:
        loader["insecure__use_cmdline_argv"] = True
    else:
        loader["argv"] = [manifest.launcher]
    loader["env"] = env
    mounts: list[TomlValue] = [{"path": "/lib", "uri": f"file:{opts.runtime_dir}"}]
    mounts.extend({"type": "tmpfs", "path": path} for path in manifest.rw_dirs)
    mounts.extend(
        {"type": "tmpfs", "path": path} for path in provisioned_tmpfs_dirs(manifest, options=opts)
    )
    # Imported here: the encfs package pulls in FUSE and cipher modules that a conversion
    # without encrypted directories never needs, and `sanctum convert` pays for every import.
    from sanctum.encfs.gramine import gramine_key_name  # noqa: PLC0415

    mounts.extend(
        {
            "type": "encrypted",
            "path": path,
            "uri": f"file:{path}",
            # The launcher provisions exactly this name (no option: they cannot disagree).
            "key_name": gramine_key_name(path),
        }
        for path in manifest.encrypted_dirs
    )
    trusted: list[TomlValue] = [
        {"uri": f"file:{opts.libos}"},
        {"uri": f"file:{opts.runtime_dir}/"},
        {"uri": f"file:{MANIFEST_JSON_PATH}", "sha256": manifest_json_sha256},
    ]
    trusted.extend(
        {"uri": f"file:{path}", "sha256": digest}
        for path, digest in sorted(manifest.trusted_files.items())
    )
    document: dict[str, TomlValue] = {
        "libos": {"entrypoint": manifest.launcher},
        "loader": loader,
        "fs": {"start_dir": manifest.workdir, "mounts": mounts},
        "sgx": {
            "debug": manifest.enclave.debug,
            "edmm_enable": False,
            "enclave_size": format_size(manifest.enclave.size),
            "max_threads": manifest.enclave.threads,
            "remote_attestation": "dcap",
            "isvprodid": manifest.enclave.isvprodid,
            "isvsvn": manifest.enclave.isvsvn,
            "trusted_files": trusted,
            # The SIGSTRUCT cannot be a trusted file of the manifest it signs; the launcher may
            # read it for reports only (inside Gramine, EINIT has already enforced it).
            "allowed_files": [f"file:{SIGSTRUCT_PATH}"],
        },
    }
    header = (
        "Gramine manifest generated by the Sanctum converter from /sanctum/manifest.json.\n"
        "Do not edit: change the conversion options and convert again."
    )
    if not launcher_runs_under_gramine(manifest):
        header += (
            f"\nNOT RUNNABLE under Gramine: the launcher {manifest.launcher} is not the launcher"
            f"\ndirectory {LAUNCHER_DIR}/ (convert for gramine-sgx with make launcher's directory)."
        )
    return toml_dumps(document, header=header)


# Running Gramine's tools -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GramineTools:
    """Paths of Gramine's manifest and signing tools.

    Attributes:
        manifest_tool: ``gramine-manifest``.
        sign_tool: ``gramine-sgx-sign``.
    """

    manifest_tool: str
    sign_tool: str


def find_gramine_tools(
    which: Callable[[str], str | None] = shutil.which,
) -> GramineTools | None:
    """Return Gramine's tools when both are on ``PATH``, else ``None`` (simulated target)."""
    manifest_tool = which("gramine-manifest")
    sign_tool = which("gramine-sgx-sign")
    if manifest_tool and sign_tool:
        return GramineTools(manifest_tool=manifest_tool, sign_tool=sign_tool)
    return None


@dataclass(frozen=True, slots=True)
class GramineBuild:
    """What Gramine's tools produced.

    Attributes:
        manifest_toml: The manifest rendered by ``gramine-manifest``.
        manifest_sgx: The expanded manifest ``gramine-sgx-sign`` writes (what the loader reads).
        sigstruct_bytes: The ``.sig`` file.
        sigstruct: The parsed, verified SIGSTRUCT (real MRENCLAVE and MRSIGNER).
    """

    manifest_toml: str
    manifest_sgx: bytes
    sigstruct_bytes: bytes
    sigstruct: Sigstruct


def _run(command: list[str], *, cwd: Path, timeout: float) -> None:
    """Run a Gramine tool.

    Raises:
        GramineToolError: It could not start, timed out or exited non-zero.
    """
    try:
        result = subprocess.run(
            command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise GramineToolError(
            f"{Path(command[0]).name} could not run: {error}", code="gramine.tool_failed"
        ) from error
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip()[-2000:]
        raise GramineToolError(
            f"{Path(command[0]).name} exited with {result.returncode}: {tail}",
            code="gramine.tool_failed",
        )


def sign_with_gramine(
    manifest_toml: str,
    *,
    key: rsa.RSAPrivateKey,
    tools: GramineTools,
    workdir: Path,
    timeout: float = 600.0,
) -> GramineBuild:
    """Render and sign ``manifest_toml`` with Gramine's tools and read the resulting SIGSTRUCT.

    The key is written to ``workdir`` with mode 0600 for the duration of the call (Gramine's
    signer reads a PEM file) and removed afterwards.

    Args:
        manifest_toml: Output of :func:`render_gramine_manifest`.
        key: The RSA-3072, exponent-3 signing key.
        tools: Gramine's tools (:func:`find_gramine_tools`).
        workdir: An empty private directory for the tools' files.
        timeout: Seconds each tool may run.

    Returns:
        The rendered manifest, the expanded manifest, the ``.sig`` and its parsed SIGSTRUCT.

    Raises:
        GramineToolError: A tool failed, or wrote no ``.sig`` (``gramine.sig_missing``).
        SigstructError: The ``.sig`` is malformed or badly signed.
        GramineToolError: The ``.sig`` is not signed by ``key`` (``gramine.tool_failed``).
    """
    template = workdir / "sanctum.manifest.template"
    rendered = workdir / "sanctum.manifest"
    output = workdir / "sanctum.manifest.sgx"
    sigfile = workdir / "sanctum.sig"
    key_file = workdir / "signing-key.pem"
    template.write_text(manifest_toml, encoding="utf-8")
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(signing_key_pem(key))
        _run([tools.manifest_tool, str(template), str(rendered)], cwd=workdir, timeout=timeout)
        _run(
            [
                tools.sign_tool,
                "--key", str(key_file),
                "--manifest", str(rendered),
                "--output", str(output),
                "--sigfile", str(sigfile),
            ],
            cwd=workdir,
            timeout=timeout,
        )  # fmt: skip
    finally:
        key_file.unlink(missing_ok=True)
    try:
        sig_bytes = sigfile.read_bytes()
        manifest_sgx = output.read_bytes()
        rendered_text = rendered.read_text(encoding="utf-8")
    except OSError as error:
        raise GramineToolError(
            f"gramine-sgx-sign did not write its outputs: {error}", code="gramine.sig_missing"
        ) from error
    sigstruct = parse_sigstruct(sig_bytes)
    if sigstruct.mrsigner != signing_key_mrsigner(key):
        raise GramineToolError(
            "the .sig written by gramine-sgx-sign is not signed by the conversion's key",
            code="gramine.tool_failed",
        )
    return GramineBuild(
        manifest_toml=rendered_text,
        manifest_sgx=manifest_sgx,
        sigstruct_bytes=sig_bytes,
        sigstruct=sigstruct,
    )
