"""The catalog, the fit estimate, imports and the policy, without any network."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from rag.cli import main
from rag.errors import EnclaveError, ModelInvalid
from rag.llm.bundled import DEFAULT_MODEL_SHA256, default_model_path
from rag.llm.gguf import check_gguf
from rag.models.catalog import load_catalog
from rag.models.fit import (
    FITS_CPU, FITS_GPU, SLOW, USABLE, WONT_FIT, Geometry, Gpu, Machine, geometry_from_gguf, judge,
)
from rag.models.policy import PolicyRefused, load_policy
from rag.models.store import ModelStore, ModelWontFit
from tests.hub import no_policy  # noqa: F401 (fixture)

GB = 1024**3
pytestmark = pytest.mark.usefixtures("no_policy")


def cli(capsys, *argv):
    code = main([*argv, "--json"])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else None), err


# --- the catalog ----------------------------------------------------------------------

def test_the_catalog_offers_instruct_models_from_half_a_billion_to_eight_billion_in_four_families():
    entries = load_catalog()
    downloadable = [e for e in entries if not e.bundled]
    assert len(downloadable) >= 8
    assert len({e.family for e in downloadable}) >= 4
    assert min(e.params_b for e in downloadable) <= 0.5 and max(e.params_b for e in downloadable) >= 8.0
    for e in downloadable:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+", e.repo) and e.file.endswith(".gguf"), e.name
        assert e.sha256 == "" or re.fullmatch(r"[0-9a-f]{64}", e.sha256), e.name
        assert e.license and e.context >= 2048 and e.layers and e.kv_heads and e.head_dim, e.name
    assert any(e.name == "qwen2.5-coder-1.5b" and e.eval_f1 for e in entries)  # the evaluation model


def test_the_bundled_entry_agrees_with_the_bundled_file_header():
    entry = next(e for e in load_catalog() if e.bundled)
    info = check_gguf(default_model_path())
    geometry = geometry_from_gguf(info)
    assert entry.sha256 == DEFAULT_MODEL_SHA256
    assert (entry.layers, entry.kv_heads, entry.head_dim, entry.context) == (
        geometry.layers, geometry.kv_heads, geometry.head_dim, geometry.trained_context)
    assert abs(entry.size_bytes - info.file_size) / info.file_size < 0.01


def test_a_broken_catalog_is_an_error_that_names_it(tmp_path):
    bad = tmp_path / "catalog.toml"
    bad.write_text('[[model]]\nname = "x"\n')
    with pytest.raises(EnclaveError, match="lacks title"):
        load_catalog(bad)


# --- the fit ----------------------------------------------------------------------------

SMALL = Geometry(weights=1 * GB, layers=28, kv_heads=2, head_dim=128, trained_context=32768)
LARGE = Geometry(weights=5 * GB, layers=32, kv_heads=8, head_dim=128, trained_context=131072)


def test_the_kv_cache_is_layers_by_context_by_heads_by_head_size_by_two_by_two_bytes():
    fit = judge(SMALL, Machine(64 * GB, 64 * GB, 8), 4096)
    assert fit.kv_cache == 28 * 4096 * 2 * 128 * 2 * 2
    assert fit.need > SMALL.weights + fit.kv_cache  # and the runtime on top
    capped = judge(Geometry(1 * GB, 28, 2, 128, trained_context=2048), Machine(64 * GB, 64 * GB, 8), 8192)
    assert capped.context == 2048  # as the model host caps it


def test_labels_follow_the_machine():
    cpu_only = Machine(ram_total=16 * GB, ram_available=12 * GB, cpus=8)
    assert judge(SMALL, cpu_only, 4096).code == FITS_CPU
    assert judge(LARGE, cpu_only, 4096).code == SLOW
    assert judge(LARGE, Machine(8 * GB, 3 * GB, 4), 4096).code == WONT_FIT
    assert "only 3.0 GB of memory is free" in judge(LARGE, Machine(8 * GB, 3 * GB, 4), 4096).reason

    big_gpu = Machine(16 * GB, 12 * GB, 8, (Gpu("RTX 4090", 24 * GB, 22 * GB),))
    fit = judge(LARGE, big_gpu, 4096)
    assert (fit.code, fit.gpu_layers, fit.label) == (FITS_GPU, -1, "fits on the GPU")

    small_gpu = Machine(16 * GB, 12 * GB, 8, (Gpu("MX450", 2 * GB, 2 * GB),))
    partial = judge(LARGE, small_gpu, 4096)
    assert partial.code == SLOW and 0 < partial.gpu_layers < LARGE.layers  # as many layers as fit


def test_weights_the_cpu_backend_repacks_count_twice_on_the_cpu_only():
    # The evaluation model (Q4_K_M) peaked at 2,029 MB on the CPU against 1,358 MB estimated
    # without its repacked copy; with it, 1,983 MB.
    repacked = Geometry(weights=1 * GB, layers=28, kv_heads=2, head_dim=128, trained_context=32768,
                        repackable=GB // 2)
    plain = judge(SMALL, Machine(64 * GB, 64 * GB, 8), 4096)
    assert judge(repacked, Machine(64 * GB, 64 * GB, 8), 4096).need == plain.need + GB // 2
    assert judge(repacked, Machine(64 * GB, 64 * GB, 8, repacks=False), 4096).need == plain.need
    on_gpu = judge(repacked, Machine(16 * GB, 12 * GB, 8, (Gpu("RTX 4090", 24 * GB, 22 * GB),)), 4096)
    assert on_gpu.need == plain.need  # offloaded weights are not repacked
    tight = Machine(4 * GB, int((plain.need + GB // 4) / USABLE), 4)  # room for the plain need only
    assert judge(SMALL, tight, 4096).code == FITS_CPU and judge(repacked, tight, 4096).code == WONT_FIT
    # The bundled model is Q4_1, which the backend does not repack.
    assert geometry_from_gguf(check_gguf(default_model_path())).repackable == 0


def test_the_estimate_reads_the_real_header():
    geometry = geometry_from_gguf(check_gguf(default_model_path()))
    assert (geometry.layers, geometry.kv_heads, geometry.head_dim) == (30, 3, 64)
    assert 90e6 < geometry.weights < 99e6


def test_models_list_labels_every_entry(capsys):
    code, out, _ = cli(capsys, "models", "list")
    assert code == 0
    names = {m["name"] for m in out["models"]}
    assert names >= {e.name for e in load_catalog()}
    for model in out["models"]:
        assert model["label"] in {"fits on the GPU", "fits on this machine (CPU)", "runs on the CPU, slowly",
                                  "will not fit"}
        assert model["need_bytes"] > 0
    bundled = next(m for m in out["models"] if m["source"] == "bundled")
    assert bundled["installed"] and bundled["sha256"] == DEFAULT_MODEL_SHA256
    assert out["machine"]["ram_total"] > 0


def test_a_model_that_will_not_fit_is_refused_with_the_reason(capsys, monkeypatch, data_dir):
    monkeypatch.setattr("rag.models.store.detect_machine", lambda: Machine(1 * GB, 150 * 1024**2, 2))
    code, _, err = cli(capsys, "models", "use", "smollm2-135m")
    assert code == 1 and "will not fit on this machine" in err and "choose a smaller model" in err
    assert not (data_dir / "settings.toml").exists()


# --- imports ------------------------------------------------------------------------------

def test_importing_a_valid_gguf_copies_hashes_and_lists_it(capsys, tmp_path, data_dir):
    source = tmp_path / "usb" / "my-model.gguf"
    source.parent.mkdir()
    shutil.copy(default_model_path(), source)
    code, out, err = cli(capsys, "models", "import", str(source))
    assert code == 0, err
    assert out["sha256"] == DEFAULT_MODEL_SHA256 and out["source"] == "import" and out["name"] == "my-model"
    assert (data_dir / "models" / "my-model.gguf").read_bytes() == source.read_bytes()
    code, listed, _ = cli(capsys, "models", "list")
    row = next(m for m in listed["models"] if m["name"] == "my-model")
    assert row["source"] == "import" and row["installed"] and row["label"]
    from rag.config import Settings

    Settings(model_refusal_probability=0.07).save(data_dir)  # as a measured model's cut leaves it
    code, used, err = cli(capsys, "models", "use", "my-model")
    assert code == 0 and used["model"] == str(data_dir / "models" / "my-model.gguf")
    assert Settings.load(data_dir).model_refusal_probability == Settings().model_refusal_probability


def test_importing_a_truncated_or_a_renamed_file_is_a_clear_refusal(capsys, tmp_path, data_dir):
    truncated = tmp_path / "cut.gguf"
    truncated.write_bytes(default_model_path().read_bytes()[:5_000_000])
    code, _, err = cli(capsys, "models", "import", str(truncated))
    assert code == 1 and "is truncated" in err and "Traceback" not in err

    renamed = tmp_path / "notes.gguf"
    renamed.write_text("These are meeting notes, not a model.\n" * 10)
    code, _, err = cli(capsys, "models", "import", str(renamed))
    assert code == 1 and "is not a GGUF model file" in err

    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    with pytest.raises(ModelInvalid, match="only 0 bytes"):
        ModelStore(data_dir).import_file(empty)
    missing = tmp_path / "nowhere.gguf"
    code, _, err = cli(capsys, "models", "import", str(missing))
    assert code == 1 and "does not exist" in err
    assert not (data_dir / "models").exists() or not any((data_dir / "models").glob("*.gguf"))


# --- the policy -----------------------------------------------------------------------------

def test_a_policy_limits_imports_and_use_to_allowed_hashes(capsys, tmp_path, data_dir, no_policy):
    no_policy.write_text(f'allowed_sha256 = ["{"ef" * 32}"]\n')
    source = tmp_path / "smol.gguf"
    shutil.copy(default_model_path(), source)
    code, _, err = cli(capsys, "models", "import", str(source))
    assert code == 1 and "not on the list of models your administrator allows" in err and str(no_policy) in err
    assert not (data_dir / "models" / "smol.gguf").exists()
    code, _, err = cli(capsys, "models", "use", str(source))
    assert code == 1 and str(no_policy) in err

    no_policy.write_text(f'allowed_sha256 = ["{DEFAULT_MODEL_SHA256}"]\nallow_remote_server = false\n')
    code, out, err = cli(capsys, "models", "import", str(source))
    assert code == 0, err
    policy = load_policy()
    with pytest.raises(PolicyRefused, match="model server"):
        policy.check_remote_server()


def test_a_policy_file_that_does_not_parse_stops_rather_than_lapses(no_policy):
    no_policy.write_text("allow_downloads = maybe\n")
    with pytest.raises(EnclaveError, match="cannot be read"):
        load_policy()
    no_policy.write_text('allowed_sha256 = ["short"]\n')
    with pytest.raises(EnclaveError, match="64-character"):
        load_policy()


def test_use_refuses_what_is_not_there(capsys, data_dir):
    code, _, err = cli(capsys, "models", "use", "llama3.1-8b")
    assert code == 1 and "not downloaded yet" in err and "models pull llama3.1-8b" in err
    with pytest.raises(ModelWontFit):
        store = ModelStore(data_dir, machine=Machine(GB, 10 * 1024**2, 1))
        store.check_usable(default_model_path(), 4096, "SmolLM2")


def test_the_engine_enforces_the_policy_before_it_opens_a_model(data_dir, no_policy):
    from rag.config import Settings
    from rag.engine import Engine
    from tests.fakes import HashEmbedder

    no_policy.write_text(f'allowed_sha256 = ["{"ef" * 32}"]\nallow_remote_server = false\n')
    engine = Engine(data_dir, settings=Settings(), embedder=HashEmbedder())
    try:
        with pytest.raises(PolicyRefused, match="not on the list"):
            engine.chat_model  # noqa: B018 - the bundled model's hash is not allowed
        engine.settings = Settings(llm_endpoint="http://127.0.0.1:9")
        with pytest.raises(PolicyRefused, match="model server"):
            engine.chat_model  # noqa: B018
        no_policy.write_text(f'allowed_sha256 = ["{DEFAULT_MODEL_SHA256}"]\n')
        engine.settings = Settings()
        assert engine.chat_model is not None  # allowed: opened (loaded lazily, not here)
    finally:
        engine.close()


def test_the_policys_default_model_is_used_where_settings_name_none(data_dir, no_policy, tmp_path):
    from rag.config import Settings
    from rag.engine import Engine
    from tests.fakes import HashEmbedder

    source = tmp_path / "company.gguf"
    shutil.copy(default_model_path(), source)
    ModelStore(data_dir).import_file(source)
    no_policy.write_text('default_model = "company"\n')
    engine = Engine(data_dir, settings=Settings(), embedder=HashEmbedder())
    try:
        assert engine.chat_model.model_path == data_dir / "models" / "company.gguf"
        engine.use_model(default_model_path())  # a file the person chose wins
        assert engine.chat_model.model_path == default_model_path()
    finally:
        engine.close()


def test_a_gpu_that_the_llama_cpp_build_cannot_use_is_not_promised(monkeypatch):
    from rag.models import fit

    monkeypatch.setattr(fit, "_nvidia_gpus", lambda: (Gpu("RTX 4090", 24 * GB, 22 * GB),))
    monkeypatch.setattr(fit, "llama_cpp_has_cuda", lambda: False)
    assert fit.detect_machine().gpus == ()
    monkeypatch.setattr(fit, "llama_cpp_has_cuda", lambda: True)
    assert fit.detect_machine().gpus[0].name == "RTX 4090"


def test_the_engine_refuses_a_model_that_will_not_fit_before_loading_it(data_dir, monkeypatch):
    from rag.config import Settings
    from rag.engine import Engine
    from rag.models import fit
    from tests.fakes import HashEmbedder

    monkeypatch.setattr(fit, "detect_machine", lambda: Machine(GB, 100 * 1024**2, 2))
    monkeypatch.setattr("rag.models.store.detect_machine", fit.detect_machine)
    engine = Engine(data_dir, settings=Settings(), embedder=HashEmbedder())
    try:
        with pytest.raises(ModelWontFit, match="will not fit on this machine: needs 0.3 GB"):
            engine.chat_model  # noqa: B018
    finally:
        engine.close()
