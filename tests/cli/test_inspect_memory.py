from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
from click.testing import CliRunner

from sanctum.cli.inspect import Region, parse_maps, read_process, scan_memory, verdict
from sanctum.cli.main import cli
from sanctum.errors import NotFoundError, UsageError

MAPS = """\
00400000-00401000 r-xp 00000000 08:01 123  /usr/bin/app
7f0000000000-7f0000002000 rw-p 00000000 00:00 0
7f1000000000-7f1000001000 ---p 00000000 00:00 0
7f2000000000-7f2000002000 rw-s 00000000 00:05 9  /dev/sgx_enclave
7ffd00000000-7ffd00001000 rw-p 00000000 00:00 0  [stack]
"""


@pytest.fixture
def holder():
    """A child process holding a secret built at run time (so it exists only in its heap)."""
    secret = "SANCTUM-" + uuid.uuid4().hex
    code = (
        "import sys\n"
        "secret = ''.join(reversed(sys.stdin.readline().strip()))\n"
        "print('ready', flush=True)\n"
        "sys.stdin.readline()\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.write(secret[::-1] + "\n")
    process.stdin.flush()
    assert process.stdout.readline().strip() == "ready"
    yield process.pid, secret
    process.stdin.write("done\n")
    process.stdin.flush()
    process.wait(timeout=10)


def test_parse_maps():
    regions = parse_maps(MAPS)
    assert regions[0] == Region(0x400000, 0x401000, "r-xp", "/usr/bin/app")
    assert regions[1].path == ""
    assert not regions[2].readable
    assert regions[3].enclave
    assert regions[4].path == "[stack]"
    with pytest.raises(UsageError):
        parse_maps("garbage\n")


def test_scan_finds_text_across_chunk_edges_and_reports_enclave_pages():
    regions = parse_maps(MAPS)
    memory = {
        0x400000: bytes(0x1000),
        0x7F0000000000: b"\0" * 0x1FFC + b"PASS",
        0x7F2000000000: b"\xff" * 0x2000,
        0x7FFD00000000: "xxPASSWORD".encode("utf-16-le") + bytes(0x1000 - 20),
    }

    def read(address: int, size: int) -> bytes:
        for start, data in memory.items():
            if start <= address < start + len(data):
                return data[address - start : address - start + size]
        raise OSError(5, "EIO")

    scan = scan_memory(regions, read, "PASS")
    assert scan.found
    assert {(m.address, m.encoding) for m in scan.matches} == {
        (0x7F0000001FFC, "utf-8"),
        (0x7FFD00000004, "utf-16-le"),
    }
    assert scan.enclave_regions == 1
    assert scan.enclave_bytes == 0x2000
    assert scan.enclave_all_ff
    head, explanation = verdict(scan)
    assert head.startswith("FOUND")
    assert "0xFF" in explanation


def test_simulated_verdict_says_there_is_no_memory_encryption():
    scan = scan_memory([Region(0, 16, "rw-p", "")], lambda _address, size: bytes(size), "absent")
    head, explanation = verdict(scan)
    assert head.startswith("NOT FOUND")
    assert "Simulation gives no memory encryption" in explanation


def test_a_secret_in_a_live_process_is_found(holder):
    pid, secret = holder
    scan = read_process(pid, secret)
    assert scan.found
    assert scan.enclave_regions == 0
    absent = read_process(pid, "NEVER-" + uuid.uuid4().hex)
    assert not absent.found
    assert absent.bytes_scanned > 1_000_000


def test_cli_json_and_text(holder):
    pid, secret = holder
    runner = CliRunner()
    result = runner.invoke(
        cli, ["inspect", "memory", "--pid", str(pid), "--find", secret, "--json"]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["found"] is True
    assert doc["matches"][0]["address"].startswith("0x")
    assert "no memory encryption" in doc["explanation"]
    text = runner.invoke(cli, ["inspect", "memory", "--pid", str(pid), "--find", secret])
    assert text.exit_code == 0
    assert "FOUND" in text.output


def test_missing_process():
    with pytest.raises(NotFoundError):
        read_process(2**22 + os.getpid() % 1000, "x")
