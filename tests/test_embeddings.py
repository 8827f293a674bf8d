"""The offline default model: resolved and verified by our code, and meaningful (the real model)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from proxy import embeddings
from proxy.embeddings import DEFAULT_MODEL_FILE, EmbeddingError, prepare_default_model, sha256_file

pytestmark = pytest.mark.model


def test_default_model_is_laid_out_and_verified(tmp_path):
    target = prepare_default_model(tmp_path / "m")
    assert sha256_file(target / "model.onnx") == DEFAULT_MODEL_FILE.sha256
    assert (target / "tokenizer_config.json").read_text() == '{"model_max_length": 256}'


def test_a_corrupted_prepared_copy_is_replaced(tmp_path):
    target = prepare_default_model(tmp_path / "m")
    (target / "model.onnx").write_bytes(b"not a model")
    prepare_default_model(target)
    assert sha256_file(target / "model.onnx") == DEFAULT_MODEL_FILE.sha256


def test_a_package_file_with_another_digest_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(embeddings, "DEFAULT_MODEL_FILE", dataclasses.replace(DEFAULT_MODEL_FILE, sha256="0" * 64))
    with pytest.raises(EmbeddingError, match="does not match the pinned"):
        prepare_default_model(tmp_path / "m")


def test_missing_local_model_directory_is_a_config_error(tmp_path):
    from proxy.errors import ConfigError
    from proxy.settings import EmbeddingSettings

    with pytest.raises(ConfigError, match="holds no model.onnx"):
        embeddings.load_embedder(EmbeddingSettings(model_path=str(tmp_path)), tmp_path)


def test_local_model_directory_loads_under_its_own_name(tmp_path, real_embedder):
    from proxy.settings import EmbeddingSettings

    local = prepare_default_model(tmp_path / "copy")
    embedder = embeddings.load_embedder(EmbeddingSettings(model_path=str(local)), tmp_path)
    assert embedder.name.startswith("deja/local-") and embedder.dim == 384
    assert np.allclose(embedder.embed(["hello"]), real_embedder.embed(["hello"]), atol=1e-5)


def test_real_model_separates_paraphrases_from_unrelated(real_embedder):
    v = real_embedder.embed(["What is the capital of France?", "What is the capital city of France?",
                             "How do I bake sourdough bread?"])
    assert v.shape == (3, 384) and np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert float(v[0] @ v[1]) >= 0.96
    assert float(v[0] @ v[2]) < 0.3


def test_the_model_threads_stop_spinning_when_a_run_ends_and_embed_the_same(real_embedder):
    import onnxruntime as ort

    session = real_embedder._model.model.model
    options = session.get_session_options()
    assert options.get_session_config_entry("session.force_spinning_stop") == "1"
    spinning = ort.InferenceSession(session._model_path, providers=session.get_providers())
    texts = ["How do I reset my password?", "What is the capital of France?"]
    quiet = real_embedder.embed(texts)
    real_embedder._model.model.model = spinning
    try:
        assert np.allclose(real_embedder.embed(texts), quiet, atol=1e-6)
    finally:
        real_embedder._model.model.model = session
