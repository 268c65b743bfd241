"""``sanctum convert`` tunes its own process for a conversion (ADR 0125), and only its own."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap


def test_the_process_settings_freeze_the_imported_objects_and_keep_freed_memory() -> None:
    # In a child process: the settings are process-wide, and this test's process is shared.
    code = textwrap.dedent(
        """
        import ctypes, gc
        from sanctum.cli.convert import _tune_process
        assert gc.get_freeze_count() == 0
        _tune_process()
        assert gc.get_freeze_count() > 10_000, gc.get_freeze_count()
        # Freed 1 MiB buffers stay with the process: allocating them again faults no page in.
        libc = ctypes.CDLL(None)
        for _ in range(3):
            buffers = [bytearray(1 << 20) for _ in range(64)]
            del buffers
        import resource
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(20):
            buffers = [bytes(1 << 20) for _ in range(32)]
            del buffers
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
        assert faults < 2_000, faults  # glibc's defaults fault about 20,000 pages in here.
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    assert gc.isenabled()
