"""Stand-ins for Gramine's ``gramine-manifest`` and ``gramine-sgx-sign`` (no Gramine here).

The manifest tool copies the manifest; the signing tool writes a genuine SGX SIGSTRUCT whose
MRENCLAVE is ``SHA-256(b"pages" + manifest)`` and whose fields come from the manifest's ``sgx``
table, so a test can check that the converter ran the tools and recorded what they signed.
"""

from __future__ import annotations

import sys
from pathlib import Path

from sanctum.converter.gramine import GramineTools

_SIGN = """#!{python}
import argparse, datetime, hashlib, pathlib, tomllib
from sanctum.converter.keys import load_signing_key
from sanctum.converter.sigstruct import sign_sigstruct
p = argparse.ArgumentParser()
for o in ("--key", "--manifest", "--output", "--sigfile"):
    p.add_argument(o)
a = p.parse_args()
text = pathlib.Path(a.manifest).read_bytes()
sgx = tomllib.loads(text.decode())["sgx"]
pathlib.Path(a.output).write_bytes(text)
sig = sign_sigstruct(key=load_signing_key(pathlib.Path(a.key).read_bytes()),
                     enclavehash=hashlib.sha256(b"pages" + text).digest(),
                     isvprodid=sgx["isvprodid"], isvsvn=sgx["isvsvn"], debug=sgx["debug"],
                     date=datetime.date(2026, 11, 28))
pathlib.Path(a.sigfile).write_bytes(sig.to_bytes())
"""


def stand_in_gramine_tools(bin_dir: Path) -> GramineTools:
    """Write both stand-in tools into ``bin_dir`` (created) and return them as tools."""
    bin_dir.mkdir(parents=True)
    manifest_tool = bin_dir / "gramine-manifest"
    sign_tool = bin_dir / "gramine-sgx-sign"
    manifest_tool.write_text('#!/bin/sh\ncp "$1" "$2"\n')
    sign_tool.write_text(_SIGN.format(python=sys.executable))
    for tool in (manifest_tool, sign_tool):
        tool.chmod(0o755)
    return GramineTools(str(manifest_tool), str(sign_tool))
