"""ProbeSettings: versioned JSON, stable hash, and one-line errors for bad values."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import probe_cases
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mpq._probes import PROBES, ProbeSettings, probe, settings_from_json, settings_hash, settings_to_json
from mpq._quantizer import LEGACY_QUANTIZER, QuantizerSettings
from mpq.exceptions import InvalidParameterError, UnknownNameError

settings_strategy = st.builds(
    ProbeSettings,
    probes=st.lists(st.sampled_from(sorted(PROBES)), min_size=1, unique=True).map(tuple),
    tolerance=st.floats(0.001, 0.5),
    min_samples=st.integers(2, 20),
    max_samples=st.integers(20, 10_000),
    seed=st.integers(0, 2**63 - 1),
    batches_per_sample=st.none() | st.integers(1, 64),
    micro_batch_size=st.none() | st.integers(1, 512),
    estimator=st.sampled_from(["split", "hutchinson"]),
    fisher_sampler=st.sampled_from(["gauss_newton", "categorical"]),
    candidates=st.lists(st.sampled_from(["w4a8", "w8a8", "wfp8afp8", "w4a16"]), unique=True).map(tuple),
    exact_max_params=st.integers(0, 4096),
    quantizer=st.builds(
        QuantizerSettings,
        ranges=st.sampled_from(["max", "mse", "percentile"]),
        bias_correction=st.booleans(),
        act_grid=st.sampled_from(["asymmetric", "unsigned", "symmetric"]),
        weight_grid=st.sampled_from(["full", "narrow"]),
    ),
    stop=st.sampled_from(["tolerance", "decision"]),
)


@given(settings_strategy)
def test_json_round_trip_and_hash_agree_with_equality(settings):
    text = settings_to_json(settings)
    doc = json.loads(text)
    assert (
        doc["type"] == "ProbeSettings"
        and doc["version"] == 1
        and set(doc["data"]) | {"quantizer", "stop"} == {f.name for f in dataclasses.fields(ProbeSettings)}
    )
    assert ("quantizer" in doc["data"]) == (settings.quantizer != LEGACY_QUANTIZER)
    assert ("stop" in doc["data"]) == (settings.stop != "tolerance")
    assert settings_from_json(text) == settings
    assert settings_hash(settings_from_json(text)) == settings_hash(settings)
    other = dataclasses.replace(settings, seed=(settings.seed + 1) % 2**63)
    assert settings_hash(other) != settings_hash(settings)


def test_default_settings_have_a_pinned_json_and_hash():
    # The store keys probe results by this hash: a change of defaults must be deliberate (update both).
    assert settings_to_json(ProbeSettings()) == (
        '{"data":{"batches_per_sample":null,"candidates":[],"estimator":"split","exact_max_params":256,'
        '"fisher_sampler":"gauss_newton",'
        '"max_samples":200,"micro_batch_size":null,"min_samples":10,"noise_draws":2,'
        '"probes":["hessian_w","hessian_a"],"quantizer":{"act_grid":"asymmetric","bias_correction":true,'
        '"percentile":99.99,"ranges":"mse","weight_grid":"full"},"seed":0,"tolerance":0.05},'
        '"type":"ProbeSettings","version":1}'
    )
    assert settings_hash(ProbeSettings()) == hashlib.sha256(settings_to_json(ProbeSettings()).encode()).hexdigest()


def test_a_document_from_before_the_quantizer_reads_as_the_legacy_quantizer_with_its_old_hash():
    # Written by mpq before QuantizerSettings existed: runs stored with it resume and export as measured.
    old = (
        '{"data":{"batches_per_sample":null,"candidates":[],"estimator":"split","exact_max_params":256,'
        '"fisher_sampler":"gauss_newton",'
        '"max_samples":200,"micro_batch_size":null,"min_samples":10,"noise_draws":2,'
        '"probes":["hessian_w","hessian_a"],"seed":0,"tolerance":0.05},"type":"ProbeSettings","version":1}'
    )
    settings = settings_from_json(old)
    assert settings == dataclasses.replace(ProbeSettings(), quantizer=LEGACY_QUANTIZER)
    assert settings_to_json(settings) == old  # the same probe key: its stored probe is found
    with pytest.raises(InvalidParameterError, match="quantizer .* is not a QuantizerSettings"):
        settings_from_json(old.replace('"seed":0', '"quantizer":{"rm":1},"seed":0'))


def test_the_stop_rule_is_in_the_key_and_a_document_without_it_keeps_its_hash():
    # Every document written before the decision rule stopped per layer: it reads as 'tolerance'
    # and writes back byte for byte (the same probe key: its stored probe is found).
    old = settings_to_json(ProbeSettings())
    assert "stop" not in old and settings_from_json(old).stop == "tolerance"
    assert settings_to_json(settings_from_json(old)) == old
    decision = ProbeSettings(stop="decision")
    assert json.loads(settings_to_json(decision))["data"]["stop"] == "decision"
    assert settings_hash(decision) != settings_hash(ProbeSettings())
    assert settings_from_json(settings_to_json(decision)) == decision


def test_from_json_accepts_only_probe_settings():
    with pytest.raises(InvalidParameterError, match="expected type 'ProbeSettings' version 1"):
        settings_from_json('{"type": "os.system", "version": 1, "data": {}}')
    with pytest.raises(InvalidParameterError, match="unknown fields \\['command'\\]"):
        settings_from_json('{"type": "ProbeSettings", "version": 1, "data": {"command": "rm"}}')
    with pytest.raises(InvalidParameterError, match="not valid JSON"):
        settings_from_json("{")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tolerance": 0}, "The 'tolerance' parameter of probe must be a float in the range (0, 1). Got 0 instead."),
        ({"min_samples": 1}, "The 'min_samples' parameter of probe must be an int in the range [2, inf). Got 1 "),
        ({"max_samples": 5}, "The 'max_samples' parameter of probe must be an int in the range [10, inf). Got 5 "),
        ({"batches_per_sample": 0}, "The 'batches_per_sample' parameter of probe must be an int in the range [1, "),
        ({"noise_draws": 0}, "The 'noise_draws' parameter of probe must be an int in the range [1, inf). Got 0 "),
        ({"exact_max_params": -1}, "The 'exact_max_params' parameter of probe must be an int in the range [0, inf)."),
        ({"estimator": "hutch"}, "The 'estimator' parameter of probe must be one of 'split', 'hutchinson'."),
        ({"probes": "hessian_w"}, "The 'probes' parameter of probe must be a list of names. Got 'hessian_w' instead."),
        ({"probes": ()}, "The 'probes' parameter of probe must name at least one probe."),
        ({"probes": ("measured",)}, "probe: the 'measured' probe needs candidates to quantize to, got none;"),
        ({"stop": "frontier"}, "The 'stop' parameter of probe must be one of 'tolerance', 'decision'."),
        ({"stop": "decision"}, "probe: the 'decision' stop rule stops when the search's frontier is resolved"),
    ],
)
def test_bad_settings_raise_the_template_message(mlp_task, change, message):
    with pytest.raises(InvalidParameterError) as error:
        probe(mlp_task, settings=dataclasses.replace(ProbeSettings(), **change))
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


def test_unknown_names_list_the_known_ones_and_suggest(mlp_task):
    suggestion = r"unknown probe 'hesian_w'; choose one of .*\(did you mean 'hessian_w'\?\)"
    with pytest.raises(UnknownNameError, match=suggestion):
        probe(mlp_task, ["hesian_w"])
    with pytest.raises(UnknownNameError, match="w5a8"):
        probe(mlp_task, ["measured"], settings=ProbeSettings(candidates=("w5a8",)))


def test_bad_arguments(mlp_task):
    with pytest.raises(InvalidParameterError, match="The 'task' parameter of probe must be an mpq.Task. Got Seq"):
        probe(mlp_task.model)
    with pytest.raises(InvalidParameterError, match="The 'settings' parameter of probe must be a ProbeSettings"):
        probe(mlp_task, settings={"tolerance": 0.1})
    with pytest.raises(InvalidParameterError, match="The 'progress' parameter of probe must be a callable"):
        probe(mlp_task, progress=3)
    with pytest.raises(
        InvalidParameterError, match="The 'checkpoint' parameter of probe must have load_probe_checkpoint"
    ):
        probe(mlp_task, checkpoint="dir/")


def test_probes_argument_replaces_the_settings_probes():
    task = probe_cases.tanh_mlp_task()
    table = probe(task, ["fisher_a"], settings=ProbeSettings(probes=("hessian_w",), max_samples=10, tolerance=0.5))
    assert set(table["probe"]) == {"fisher_a"}
