import pytest
import torch
from torch import nn

import mpq
from mpq.exceptions import InvalidParameterError, NoQuantizableLayerError


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(100, 16)
        self.conv = nn.Conv1d(16, 8, kernel_size=3, padding=1, groups=2)
        self.head = nn.Linear(8, 4, bias=False)
        self.unused = nn.Linear(4, 4)  # exists, never runs

    def forward(self, ids, scale):
        x = self.embed(ids).transpose(1, 2) * scale  # (B, 16, T)
        x = self.conv(x).transpose(1, 2)  # (B, T, 8)
        return self.head(x)


def test_macs_match_hand_counts_for_conv2d_and_linear():
    model = nn.Sequential(nn.Conv2d(3, 8, kernel_size=3, stride=2, padding=1), nn.Flatten(), nn.Linear(8 * 5 * 5, 10))
    table = mpq.layers(model, torch.randn(4, 3, 10, 10))
    conv, linear = table.to_dict("records")
    # conv: output 8 x 5 x 5 = 200 elements, each 3 * 3 * 3 = 27 MACs
    assert conv == {
        "layer": "0",
        "kind": "conv2d",
        "weight_params": 216,
        "bias_params": 8,
        "macs": 200 * 27,
        "in_elems": 300,
        "out_elems": 200,
        "weight_shape": (8, 3, 3, 3),
        "groups": 1,
    }
    # linear: 10 outputs x 200 inputs
    assert linear["macs"] == 2000 and linear["in_elems"] == 200 and linear["out_elems"] == 10
    assert linear["kind"] == "linear" and linear["weight_shape"] == (10, 200)


def test_grouped_conv1d_embedding_broadcast_inputs_and_unused_layers():
    model = TwoInputs()
    ids = torch.randint(0, 100, (2, 7))
    table = mpq.layers(model, (ids, torch.tensor(1.0))).set_index("layer")
    assert list(table.index) == ["embed", "conv", "head"]  # execution order, the unused layer left out
    assert table.loc["embed", "macs"] == 0 and table.loc["embed", "out_elems"] == 7 * 16
    # grouped conv: each of 8 x 7 outputs reads 16 / 2 channels x 3 taps
    assert table.loc["conv", "macs"] == 8 * 7 * 8 * 3 and table.loc["conv", "groups"] == 2
    assert table.loc["head", "macs"] == 7 * 8 * 4 and table.loc["head", "bias_params"] == 0


def test_layer_called_twice_counts_both_calls():
    shared = nn.Linear(4, 4)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    table = mpq.layers(model, torch.randn(3, 4))
    assert len(table) == 1 and table.loc[0, "macs"] == 2 * 16


def test_dict_inputs_are_passed_as_keywords():
    class Keyword(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(5, 2)

        def forward(self, features):
            return self.fc(features)

    table = mpq.layers(Keyword(), {"features": torch.randn(6, 5)})
    assert table.loc[0, "macs"] == 10


def test_no_quantizable_layer_is_one_line_error():
    with pytest.raises(NoQuantizableLayerError, match=r"^Sequential: no Linear, Conv1d, Conv2d or Embedding layer ran"):
        mpq.layers(nn.Sequential(nn.ReLU()), torch.randn(2, 3))


def test_model_must_be_a_module():
    with pytest.raises(InvalidParameterError, match="The 'model' parameter of layers must be a torch.nn.Module"):
        mpq.layers("resnet", torch.randn(1))
