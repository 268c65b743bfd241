"""The CLI's stored login: the token file is private even when it existed before."""

from __future__ import annotations

from sanctum.manager.client import ClientConfig, save_login


def test_existing_token_file_is_made_private(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    path = tmp_path / "sanctum" / "manager.json"
    path.parent.mkdir(mode=0o700)
    path.write_text("{}")
    path.chmod(0o644)
    saved = save_login(ClientConfig(url="https://127.0.0.1:8443", token="secret-token"), None)
    assert saved == path
    assert path.stat().st_mode & 0o777 == 0o600
    assert "secret-token" in path.read_text()
