import datetime as dt
import json

import pytest

from sanctum.platforms.simulated import (
    SimulationPki,
    SimulationPkiError,
    load_or_create_simulation_pki,
    read_simulation_root,
)
from sanctum.platforms.simulated.pki import SIMULATION_PKI_FILENAME

NOW = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


def test_returns_the_root_without_touching_keys(tmp_path):
    pki = SimulationPki.create(now=NOW)
    # Wrapped with a key the reader does not have: reading the root must not need it.
    (tmp_path / SIMULATION_PKI_FILENAME).write_bytes(pki.to_json(wrap=lambda key: key[::-1]))
    assert read_simulation_root(tmp_path) == pki.root_der()


def test_matches_the_platform_side_pki(tmp_path):
    pki = load_or_create_simulation_pki(tmp_path, now=NOW)
    assert read_simulation_root(tmp_path) == pki.root_der()


def test_missing_pki_is_a_clear_error_and_creates_nothing(tmp_path):
    with pytest.raises(SimulationPkiError) as caught:
        read_simulation_root(tmp_path / "nowhere")
    assert caught.value.code == "simulation_pki.missing"
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize(
    "content",
    [b"", b"{}", b"[]", b'{"format": "x", "version": 1}', b"\xff\xfe"],
    ids=["empty", "no-fields", "list", "wrong-format", "not-utf8"],
)
def test_malformed_documents_are_refused(tmp_path, content):
    (tmp_path / SIMULATION_PKI_FILENAME).write_bytes(content)
    with pytest.raises(SimulationPkiError) as caught:
        read_simulation_root(tmp_path)
    assert caught.value.code == "simulation_pki.malformed"


def test_a_broken_root_certificate_is_refused(tmp_path):
    document = json.loads(SimulationPki.create(now=NOW).to_json())
    document["certificates"]["root"] = document["certificates"]["root"].replace("MII", "XII", 1)
    (tmp_path / SIMULATION_PKI_FILENAME).write_text(json.dumps(document))
    with pytest.raises(SimulationPkiError) as caught:
        read_simulation_root(tmp_path)
    assert caught.value.code == "simulation_pki.malformed"
