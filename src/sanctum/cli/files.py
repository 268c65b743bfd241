"""``sanctum files``: operators' offline tool for encrypted directories.

``encrypt`` pre-encrypts input data for an app's encrypted directory, ``decrypt`` reads it back,
``inspect`` shows what the host sees (and, with the key, the names, sizes and generations, and
optionally authenticates every byte), ``keygen`` makes a key file and ``rekey`` re-encrypts a
directory under a new key. The directory key comes from a
file here; when the Enclave Manager holds the keys, releasing one to an operator requires the
administrator role and is audited there.

Exit codes: 0 ok, 1 tampering or a wrong key, 2 a usage error.
"""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime
from pathlib import Path

import click

from sanctum.cli._base import SanctumGroup, emit_json, json_option
from sanctum.encfs.directory import EncryptedDirectory
from sanctum.encfs.format import DEFAULT_CHUNK_SIZE, KEY_SIZE
from sanctum.encfs.rotation import rotate_key, rotate_key_in_place
from sanctum.encfs.transfer import (
    describe_host,
    export_tree,
    import_tree,
    load_key,
    write_key,
)
from sanctum.errors import UsageError

__all__ = ["group"]

_KEY_FILE = click.option(
    "--key-file",
    "-k",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="File holding the directory key (32 raw bytes or 64 hex digits).",
)


@click.group(cls=SanctumGroup)
def group() -> None:
    """Encrypted directories: encrypt input data, decrypt and inspect offline."""


@group.command()
@click.argument("key_file", type=click.Path(dir_okay=False, path_type=Path))
@json_option
def keygen(key_file: Path, as_json: bool) -> None:
    """Write a new random directory key to KEY_FILE (hex, mode 0600; refuses to overwrite)."""
    write_key(key_file, os.urandom(KEY_SIZE))
    if as_json:
        emit_json({"key_file": str(key_file)})
    else:
        click.echo(f"wrote a new directory key to {key_file}")


@group.command()
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.argument("host_dir", type=click.Path(file_okay=False, path_type=Path))
@_KEY_FILE
@click.option("--into", default="", help="Name inside the encrypted directory (default: root).")
@click.option("--overwrite", is_flag=True, help="Replace files that exist.")
@click.option(
    "--chunk-size",
    type=int,
    default=DEFAULT_CHUNK_SIZE,
    show_default=True,
    help="Chunk size of a new directory (bytes, a power of two).",
)
@json_option
def encrypt(
    *,
    source: Path,
    host_dir: Path,
    key_file: Path,
    into: str,
    overwrite: bool,
    chunk_size: int,
    as_json: bool,
) -> None:
    """Encrypt the file or directory SOURCE into the encrypted directory HOST_DIR.

    HOST_DIR is created when missing or empty.
    """
    key = load_key(key_file)
    with EncryptedDirectory.open(host_dir, key, create=True, chunk_size=chunk_size) as directory:
        stats = import_tree(source, directory, into, overwrite=overwrite)
    result = {
        "host_dir": str(host_dir),
        "files": stats.files,
        "directories": stats.directories,
        "bytes": stats.bytes,
        "epoch": directory.epoch,
    }
    if as_json:
        emit_json(result)
    else:
        click.echo(
            f"encrypted {stats.files} files ({stats.bytes} bytes) and {stats.directories} "
            f"directories into {host_dir} (index epoch {directory.epoch})"
        )


@group.command()
@click.argument("host_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("target", type=click.Path(path_type=Path))
@_KEY_FILE
@click.option("--path", "inner", default="", help="Only this file or directory.")
@json_option
def decrypt(host_dir: Path, target: Path, key_file: Path, inner: str, as_json: bool) -> None:
    """Decrypt HOST_DIR (or --path inside it) into TARGET (missing or empty).

    Every byte is authenticated; tampering stops the command with exit code 1.
    """
    key = load_key(key_file)
    with EncryptedDirectory.open(host_dir, key, writable=False) as directory:
        stats = export_tree(directory, target, inner)
    result = {"target": str(target), "files": stats.files, "bytes": stats.bytes}
    if as_json:
        emit_json(result)
    else:
        click.echo(f"decrypted {stats.files} files ({stats.bytes} bytes) into {target}")


@group.command()
@click.argument("host_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@_KEY_FILE
@click.option(
    "--new-key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="File holding the new key.",
)
@click.option(
    "--rename/--in-place",
    default=False,
    help="Build the copy beside HOST_DIR and swap by renames (needs a writable parent), or "
    "inside it (default: works when HOST_DIR is a mount point, such as a volume).",
)
@json_option
def rekey(host_dir: Path, key_file: Path, new_key_file: Path, rename: bool, as_json: bool) -> None:
    """Re-encrypt HOST_DIR under a new key (interrupted runs are completed by the next one).

    After a manager-driven rotation (``sanctum apps dir-rotate``) fetch both keys with
    ``fetch-key``; the workload's next start reports the rotation done. Until then the manager
    keeps releasing the old key too.
    """
    old, new = load_key(key_file), load_key(new_key_file)
    files = rotate_key(host_dir, old, new) if rename else rotate_key_in_place(host_dir, old, new)
    if as_json:
        emit_json({"host_dir": str(host_dir), "files": files})
    else:
        click.echo(f"re-encrypted {files} files of {host_dir} under the new key")


@group.command()
@click.argument("host_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--key-file",
    "-k",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The directory key: also list names, sizes and generations.",
)
@click.option("--verify", is_flag=True, help="Authenticate every byte (needs --key-file).")
@json_option
def inspect(host_dir: Path, key_file: Path | None, verify: bool, as_json: bool) -> None:
    """Show the encrypted directory HOST_DIR: what the host sees, and with a key its content."""
    if verify and key_file is None:
        raise UsageError("--verify needs --key-file", code="usage.invalid")
    facts: dict[str, object] = describe_host(host_dir)
    entries: list[dict[str, object]] = []
    if key_file is not None:
        with EncryptedDirectory.open(host_dir, load_key(key_file), writable=False) as directory:
            facts["epoch"] = directory.epoch
            entries = [
                {
                    "path": item.path,
                    "kind": item.kind,
                    "size": item.size,
                    "mode": f"{item.mode:04o}",
                    "mtime": datetime.fromtimestamp(item.mtime_ns / 1e9, tz=UTC).isoformat(),
                    "file_id": item.file_id,
                    "generation": item.generation,
                }
                for item in directory.walk()
            ]
            facts["entries"] = entries
            if verify:
                facts["verified_files"] = directory.verify()
    if as_json:
        emit_json(facts)
        return
    for name in ("host_dir", "format", "version", "chunk_size", "dir_id", "files_on_host"):
        click.echo(f"{name}: {facts[name]}")
    click.echo(f"bytes_on_host: {facts['bytes_on_host']}")
    if key_file is not None:
        click.echo(f"epoch: {facts['epoch']}")
        for entry in entries:
            size = "-" if entry["kind"] == "dir" else entry["size"]
            click.echo(
                f"  {entry['mode']} {size!s:>12} gen {entry['generation']!s:>4} {entry['path']}"
                + ("/" if entry["kind"] == "dir" else "")
            )
        if verify:
            click.echo(f"verified: {facts['verified_files']} files authenticated")


@group.command("fetch-key")
@click.argument("app")
@click.argument("directory")
@click.argument("key_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--build", default=None, help="Build id or measurement (same_build policy).")
@click.option("--account", "account", default=None, help="Account id (default: from login).")
@json_option
def fetch_key(
    *,
    app: str,
    directory: str,
    key_file: Path,
    build: str | None,
    account: str | None,
    as_json: bool,
) -> None:
    """Fetch the key of APP's encrypted DIRECTORY from the manager into KEY_FILE (mode 0600).

    Administrators only; every fetch is audited. Use the key file with ``encrypt``,
    ``decrypt``, ``inspect`` and ``rekey``. Under the ``same_build`` key policy name the build.

    Raises:
        SanctumError: The manager refused or the file exists.
    """
    from sanctum.manager.client import load_client  # noqa: PLC0415 (only this command needs it)

    name = directory.strip("/").replace("/", ":")
    client = load_client()
    try:
        data = client.request(
            "GET",
            f"/v1/accounts/{client.account(account)}/apps/{app}/encrypted-dirs/{name}/key",
            params={"build": build},
        )
    finally:
        client.close()
    write_key(key_file, base64.b64decode(data["key"]))
    facts = {
        "key_file": str(key_file),
        "path": data["path"],
        "scope": data["scope"],
        "version": data["version"],
        "created": data["created"],
    }
    if as_json:
        emit_json(facts)
    else:
        click.echo(
            f"wrote the key of {data['path']} ({data['scope']}, version {data['version']}) "
            f"to {key_file}"
        )
