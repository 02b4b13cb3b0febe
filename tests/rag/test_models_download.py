"""Pulls from a stand-in hub on 127.0.0.1 that speaks huggingface_hub's download protocol
(tests/hub.py), serving the bundled GGUF under a made-up repository; through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from collections import namedtuple

import pytest

from rag.cli import main
from rag.llm.bundled import DEFAULT_MODEL_SHA256, default_model_path
from rag.models.download import DownloadCancelled
from rag.models.store import ModelStore
from tests.hub import BUNDLED_FILE, COMMIT, TEST_REPO, hub, no_policy  # noqa: F401 (fixtures)
from tests.servers import free_port


def cli(capsys, *argv) -> tuple[int, object, str]:
    code = main([*argv, "--json"])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else None), err


def models_folder(data_dir):
    return data_dir / "models"


def leftovers(data_dir) -> list[str]:
    folder = models_folder(data_dir)
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_pull_downloads_verifies_records_and_can_be_used(hub, data_dir, capsys):
    code, out, err = cli(capsys, "models", "pull", "smol-test")
    assert code == 0, err
    path = models_folder(data_dir) / BUNDLED_FILE
    assert out["path"] == str(path) and out["sha256"] == DEFAULT_MODEL_SHA256 and out["revision"] == COMMIT
    assert path.read_bytes() == default_model_path().read_bytes()
    lock = tomllib.loads((models_folder(data_dir) / "models.lock").read_text())["model"]
    assert lock == [{"name": "smol-test", "file": BUNDLED_FILE, "size": path.stat().st_size,
                     "sha256": DEFAULT_MODEL_SHA256, "repo": TEST_REPO, "revision": COMMIT, "source": "hub"}]
    # HEAD on resolve, then one GET of the whole file from the "CDN" the hub redirected to.
    assert [(m, p.split("/")[1]) for m, p, _ in hub.requests] == [("HEAD", "enclave-test"), ("GET", "cdn")]
    assert not (models_folder(data_dir) / ".partial").exists() or not any((models_folder(data_dir) / ".partial").iterdir())

    code, listed, _ = cli(capsys, "models", "list")
    row = next(m for m in listed["models"] if m["name"] == "smol-test")
    assert row["installed"] and row["path"] == str(path) and row["label"]

    code, used, err = cli(capsys, "models", "use", "smol-test")
    assert code == 0, err
    from rag.config import Settings

    assert Settings.load(data_dir).llm_model == str(path) and used["model"] == str(path)


def test_a_transfer_cut_mid_file_is_resumed_with_a_range(hub, data_dir, capsys):
    hub.cut_at = 25_000_000  # the server drops the connection a quarter of the way in
    code, out, err = cli(capsys, "models", "pull", "smol-test")
    assert code == 0, err
    assert out["sha256"] == DEFAULT_MODEL_SHA256
    ranges = hub.ranges()
    assert len(ranges) == 1 and ranges[0].startswith("bytes=") and int(ranges[0][6:-1]) > 0, hub.requests


def test_a_cancelled_pull_keeps_its_part_and_the_next_one_resumes(hub, data_dir):
    store = ModelStore(data_dir)
    seen = []

    def cancelled() -> bool:
        return bool(seen) and seen[-1].done > 0  # after the first chunk lands

    with pytest.raises(DownloadCancelled, match="resumes"):
        store.pull("smol-test", on_progress=seen.append, cancelled=cancelled)
    parts = list((models_folder(data_dir) / ".partial").glob("*.part"))
    assert len(parts) == 1 and 0 < parts[0].stat().st_size < default_model_path().stat().st_size
    kept = parts[0].stat().st_size
    assert not (models_folder(data_dir) / BUNDLED_FILE).exists()

    pulled = ModelStore(data_dir).pull("smol-test")  # as after a restart: a new store
    assert pulled.resumed_from == kept and pulled.sha256 == DEFAULT_MODEL_SHA256
    assert hub.ranges() == [f"bytes={kept}-"]
    assert (models_folder(data_dir) / BUNDLED_FILE).read_bytes() == default_model_path().read_bytes()


def test_a_file_whose_hash_differs_is_refused_and_removed(hub, data_dir, capsys):
    hub.corrupt = True  # the bytes change on the way; the hub still advertises the right hash
    code, _, err = cli(capsys, "models", "pull", "smol-test")
    assert code == 1
    assert "SHA-256" in err and "has been removed" in err and "Traceback" not in err
    assert leftovers(data_dir) == []


def test_an_it_lock_is_enforced(hub, data_dir, capsys, no_policy, tmp_path):
    pinned = "ab" * 32
    it_lock = tmp_path / "it-models.lock"
    it_lock.write_text(f'[[model]]\nname = "smol-test"\nfile = "{BUNDLED_FILE}"\nsize = 1\n'
                       f'sha256 = "{pinned}"\nrepo = "{TEST_REPO}"\n')
    no_policy.write_text(f'lock_file = "{it_lock}"\n')
    # The mirror serves the real bytes under IT's hash: downloaded, found to differ, removed.
    hub.add(TEST_REPO, BUNDLED_FILE, default_model_path(), pinned)
    code, _, err = cli(capsys, "models", "pull", "smol-test")
    assert code == 1 and str(it_lock) in err and "removed" in err
    assert leftovers(data_dir) == []

    # A hub that says outright that its file is another one: refused before a byte moves.
    hub.add(TEST_REPO, BUNDLED_FILE, default_model_path(), DEFAULT_MODEL_SHA256)
    before = len(hub.ranges()), len([r for r in hub.requests if r[0] == "GET"])
    code, _, err = cli(capsys, "models", "pull", "smol-test")
    assert code == 1 and "was not downloaded" in err and str(it_lock) in err
    assert len([r for r in hub.requests if r[0] == "GET"]) == before[1]


def test_an_unreachable_hub_says_so_and_names_the_import_route(hub, data_dir, capsys, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    code, _, err = cli(capsys, "models", "pull", "smol-test")
    assert code == 1 and "could not reach the model hub" in err and "models import" in err
    assert leftovers(data_dir) == []


def test_offline_says_so_and_names_the_import_route(hub, data_dir, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = cli(capsys, "models", "pull", "smol-test")
    assert code == 1 and "offline" in err and "models import" in err
    assert hub.requests == []


def test_too_little_disk_space_is_found_before_downloading(hub, data_dir, capsys, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr("rag.models.download.shutil.disk_usage", lambda path: usage(10**9, 10**9 - 5_000_000, 5_000_000))
    code, _, err = cli(capsys, "models", "pull", "smol-test")
    assert code == 1 and "GB more" in err and "0.01 GB free" in err
    assert [m for m, _, _ in hub.requests] == ["HEAD"]  # the size is read, nothing is fetched
    assert leftovers(data_dir) == []


def test_a_disk_that_fills_up_mid_download_says_so(hub, data_dir, capsys, monkeypatch):
    import errno

    import huggingface_hub.file_download as fd

    real = fd.http_get

    def full_disk(url, temp_file, **kwargs):
        real(url, _Full(temp_file), **kwargs)

    class _Full:
        def __init__(self, handle):
            self.handle, self.written = handle, 0

        def write(self, data):
            if self.written > 15_000_000:
                raise OSError(errno.ENOSPC, "No space left on device")
            self.written += len(data)
            return self.handle.write(data)

        def __getattr__(self, name):
            return getattr(self.handle, name)

    monkeypatch.setattr(fd, "http_get", full_disk)
    code, _, err = cli(capsys, "models", "pull", "smol-test")
    assert code == 1 and "disk filled up" in err and "Traceback" not in err
    assert not (models_folder(data_dir) / BUNDLED_FILE).exists()


def test_a_policy_that_forbids_downloads_or_a_model_refuses_and_names_itself(hub, data_dir, capsys, no_policy):
    no_policy.write_text("allow_downloads = false\n")
    code, _, err = cli(capsys, "models", "pull", "smol-test")
    assert code == 1 and "Downloads are turned off" in err and str(no_policy) in err and "models import" in err

    no_policy.write_text(f'allowed_sha256 = ["{"cd" * 32}"]\n')
    code, _, err = cli(capsys, "models", "pull", "smol-test")
    assert code == 1 and "not on the list of models your administrator allows" in err and str(no_policy) in err
    assert hub.requests == []  # neither contacted the hub

    code, listed, _ = cli(capsys, "models", "list")
    assert next(m for m in listed["models"] if m["name"] == "smol-test")["allowed"] is False


def test_the_real_cli_pulls_in_its_own_process(hub, data_dir, tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="0")
    done = subprocess.run([sys.executable, "-m", "rag.cli", "models", "pull", "smol-test", "--json"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["sha256"] == DEFAULT_MODEL_SHA256
    assert "of 98.4 MB (100%)" in done.stderr  # progress lines on stderr when it is not a terminal
