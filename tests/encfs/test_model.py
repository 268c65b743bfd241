"""Random write/truncate/flush/reopen sequences behave like an in-memory byte array."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sanctum.encfs import EncryptedDirectory

KEY = bytes(range(32))

_write = st.tuples(st.just("write"), st.integers(0, 700), st.binary(min_size=1, max_size=300))
_truncate = st.tuples(st.just("truncate"), st.integers(0, 700), st.just(b""))
_other = st.tuples(
    st.sampled_from(["flush", "reopen", "release", "read"]), st.just(0), st.just(b"")
)
_ops = st.lists(st.one_of(_write, _write, _truncate, _other), max_size=25)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=_ops, cache_chunks=st.integers(1, 4))
def test_random_operations_match_a_model(ops, cache_chunks: int) -> None:
    with tempfile.TemporaryDirectory() as temp:
        host = Path(temp) / "h"

        def reopen() -> EncryptedDirectory:
            return EncryptedDirectory.open(
                host, KEY, create=True, chunk_size=64, durable=False, cache_chunks=cache_chunks
            )

        model = bytearray()
        ed = reopen()
        ed.create("f")
        for op, number, data in ops:
            if op == "write":
                ed.write("f", number, data)
                if number > len(model):
                    model.extend(bytes(number - len(model)))
                model[number : number + len(data)] = data
            elif op == "truncate":
                ed.truncate("f", number)
                del model[number:]
                model.extend(bytes(number - len(model)))
            elif op == "flush":
                ed.flush()
            elif op == "reopen":
                ed.close()
                ed = reopen()
            elif op == "release":
                ed.flush()
                ed.release("f")
            else:
                assert ed.read("f", 50, 200) == bytes(model[50:250])
            assert ed.stat("f").size == len(model)
        assert ed.read_file("f") == bytes(model)
        ed.close()
        with reopen() as again:
            assert again.read_file("f") == bytes(model)
            assert again.verify() == 1
        for name in [p.name for p in host.iterdir()]:
            assert not name.endswith(".tmp")


_NAMES = st.sampled_from(["a", "b", "d/c"])
_tree_ops = st.lists(
    st.one_of(
        st.tuples(st.just("write"), _NAMES, st.integers(0, 300), st.binary(max_size=200)),
        st.tuples(st.just("truncate"), _NAMES, st.integers(0, 300), st.just(b"")),
        st.tuples(st.just("delete"), _NAMES, st.just(0), st.just(b"")),
        st.tuples(st.just("rename"), _NAMES, st.sampled_from([0, 1, 2]), st.just(b"")),
        st.tuples(st.just("reopen"), _NAMES, st.just(0), st.just(b"")),
    ),
    max_size=20,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=_tree_ops)
def test_random_tree_operations_match_a_model(ops) -> None:
    targets = ["a", "b", "d/c"]
    with tempfile.TemporaryDirectory() as temp:
        host = Path(temp) / "h"

        def reopen() -> EncryptedDirectory:
            return EncryptedDirectory.open(
                host, KEY, create=True, chunk_size=64, durable=False, cache_chunks=2
            )

        model: dict[str, bytearray] = {}
        ed = reopen()
        ed.mkdir("d")
        for op, name, number, data in ops:
            if op == "write":
                ed.create(name, exist_ok=True)
                ed.write(name, number, data)
                content = model.setdefault(name, bytearray())
                if data:
                    content.extend(bytes(max(0, number - len(content))))
                    content[number : number + len(data)] = data
            elif op == "truncate" and name in model:
                ed.truncate(name, number)
                del model[name][number:]
                model[name].extend(bytes(number - len(model[name])))
            elif op == "delete" and name in model:
                ed.delete(name)
                del model[name]
            elif op == "rename" and name in model:
                target = targets[number]
                ed.rename(name, target)
                model[target] = model.pop(name)
            elif op == "reopen":
                ed.close()
                ed = reopen()
            assert sorted(e.path for e in ed.walk() if e.kind == "file") == sorted(model)
        ed.close()
        with reopen() as again:
            for name, content in model.items():
                assert again.read_file(name) == bytes(content)
            assert again.verify() == len(model)
        expected_files = {"sanctum-encfs.json", "index"}
        with reopen() as again:
            for item in again.walk():
                if item.kind == "file":
                    expected_files.add(f"{item.file_id}.m")
        host_files = {p.name for p in host.iterdir()}
        assert {n for n in host_files if not n.endswith((".0", ".1"))} == expected_files
