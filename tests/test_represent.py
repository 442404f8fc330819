import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from largelr.analyses.represent import (
    class_separation,
    compressibility,
    pq_index,
    selectivity_index,
    selectivity_per_neuron,
    sparsity,
    summarize,
)

D = 10
scales = st.floats(min_value=1e-3, max_value=1e3, allow_nan=False, allow_infinity=False)
seeds = st.integers(min_value=0, max_value=2**16)


def one_hot_row(d: int = D) -> torch.Tensor:
    row = torch.zeros(1, d)
    row[0, 3] = 2.5
    return row


def random_features(seed: int, n: int = 12, d: int = 8) -> torch.Tensor:
    return torch.rand(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_one_hot_row_is_fully_compressible_and_maximally_sparse():
    row = one_hot_row()
    assert compressibility(row) == pytest.approx(1.0)
    assert sparsity(row) == pytest.approx((D - 1) / D)
    assert pq_index(row, p=1.0, q=2.0) == pytest.approx(1 - D ** (1 / 2 - 1))


def test_constant_row_keeping_one_of_ten_entries():
    # kappa * d = 1 entry kept; residual norm sqrt(9), total norm sqrt(10)
    assert compressibility(torch.ones(1, 10), q=2.0, kappa=0.1) == pytest.approx(1 - math.sqrt(9 / 10))
    assert pq_index(torch.ones(1, 10)) == pytest.approx(0.0)
    assert sparsity(torch.ones(1, 10)) == pytest.approx(0.0, abs=1e-12)


def test_zero_rows_are_left_out_of_row_means():
    z = torch.cat([one_hot_row(), torch.zeros(1, D)])
    assert compressibility(z) == pytest.approx(1.0)
    assert pq_index(z) == pytest.approx(1 - D ** (1 / 2 - 1))
    assert math.isnan(compressibility(torch.zeros(3, D)))


def test_sparsity_counts_entries_within_tolerance_as_zero():
    assert sparsity(torch.tensor([[0.05, -0.05, 1.0, 2.0]]), tol=0.1) == pytest.approx(0.5)


def test_pq_index_rejects_p_not_below_q():
    with pytest.raises(ValueError):
        pq_index(torch.ones(1, 3), p=2.0, q=2.0)


@settings(max_examples=25, deadline=None)
@given(seed=seeds, scale=scales)
def test_compressibility_pq_and_separation_ignore_positive_scaling(seed, scale):
    z = random_features(seed)
    labels = torch.arange(len(z)) % 3
    assert compressibility(scale * z) == pytest.approx(compressibility(z))
    assert pq_index(scale * z) == pytest.approx(pq_index(z))
    assert class_separation(scale * z, labels) == pytest.approx(class_separation(z, labels), abs=1e-9)


def test_neuron_firing_on_half_of_one_class_has_csi_one_half():
    # class 0: 4 samples of which 2 fire with v = 3; class 1 never fires
    z = torch.tensor([[3.0], [3.0], [0.0], [0.0], [0.0], [0.0]])
    labels = torch.tensor([0, 0, 0, 0, 1, 1])
    # pi_max = 1.5, pi_-max = 0, rho_max = 0.5
    assert selectivity_index(z, labels) == pytest.approx(0.5)


def test_neuron_with_equal_class_means_has_csi_zero():
    z = torch.tensor([[1.0], [3.0], [2.0], [2.0]])
    labels = torch.tensor([0, 0, 1, 1])
    assert selectivity_index(z, labels) == pytest.approx(0.0)


def test_selectivity_per_neuron_and_absent_classes():
    # neuron 0 as in the one-half case, neuron 1 constant; class 2 of num_labels=3 never occurs
    z = torch.tensor([[3.0, 1.0], [3.0, 1.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 0, 0, 1, 1])
    per_neuron = selectivity_per_neuron(z, labels, num_labels=3)
    assert per_neuron.tolist() == pytest.approx([0.5, 0.0])


def test_orthogonal_identical_classes_are_perfectly_separated():
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1, 1])
    # within distance 0, total (0 + 0 + 1 + 1) / 4 = 0.5 -> R^2 = 1
    assert class_separation(z, labels) == pytest.approx(1.0)


def test_identical_vectors_everywhere_give_zero_separation():
    # dbar_total = 0, documented to return 0.0 rather than 0 / 0 (the literal of that branch: exact)
    assert class_separation(torch.ones(4, 3), torch.tensor([0, 0, 1, 1])) == 0.0


def slow_class_separation(z: torch.Tensor, labels: torch.Tensor) -> float:
    def distance(a: torch.Tensor, b: torch.Tensor) -> float:
        return 1 - float(a @ b) / (float(a.norm()) * float(b.norm()))

    classes = sorted(set(labels.tolist()))
    members = {c: [z[i] for i in range(len(z)) if labels[i] == c] for c in classes}

    def mean_distance(j: int, k: int) -> float:
        pairs = [distance(a, b) for a in members[j] for b in members[k]]
        return sum(pairs) / len(pairs)

    within = sum(mean_distance(k, k) for k in classes) / len(classes)
    total = sum(mean_distance(j, k) for j in classes for k in classes) / len(classes) ** 2
    return 1 - within / total


def test_class_separation_matches_explicit_double_loop():
    z = torch.randn(30, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    labels = torch.arange(30) % 3
    assert class_separation(z, labels) == pytest.approx(slow_class_separation(z, labels))


def test_class_separation_is_fast_on_realistic_sizes():
    z = torch.rand(1000, 512)
    labels = torch.arange(1000) % 10
    assert -1.0 <= class_separation(z, labels) <= 1.0


def test_summarize_reports_every_statistic():
    z = random_features(0)
    y = torch.arange(len(z)) % 2
    b = torch.arange(len(z)) % 3
    stats = summarize(z, y, b)
    assert set(stats) == {
        "compressibility",
        "sparsity",
        "pq_index",
        "csi",
        "bsi",
        "class_sep",
        "bias_sep",
        "csi_active",
        "csi_all",
        "bsi_active",
        "bsi_all",
        "active_fraction",
    }
    assert stats["bias_sep"] == pytest.approx(class_separation(z, b))
    assert all(isinstance(value, float) for value in stats.values())


def test_bsi_with_a_single_bias_group_raises_a_clear_error():
    z = random_features(0)
    y = torch.arange(len(z)) % 2
    one_group = torch.full((len(z),), 3)
    with pytest.raises(ValueError, match=r"at least two bias groups.*all 12 samples are in bias group \[3\]"):
        summarize(z, y, one_group)
    with pytest.raises(ValueError, match="at least two class groups"):
        summarize(z, one_group, y)


@settings(max_examples=25, deadline=None)
@given(seed=seeds, scale=scales)
def test_selectivity_and_sparsity_ignore_positive_scaling(seed, scale):
    z = random_features(seed) - 0.3  # some inactive entries
    labels = torch.arange(len(z)) % 3
    assert selectivity_index(scale * z, labels, eps=0.0) == pytest.approx(selectivity_index(z, labels, eps=0.0))
    assert sparsity(scale * z) == sparsity(z)  # exact: the same count of non-positive entries, the same mean


@settings(max_examples=50, deadline=None)
@given(seed=seeds, scale=scales, zero_fraction=st.floats(0.0, 0.9))
def test_csi_of_non_negative_values_lies_in_zero_one(seed, scale, zero_fraction):
    # the bound proved in selectivity_per_neuron's docstring, on values with many exact zeros
    generator = torch.Generator().manual_seed(seed)
    z = scale * torch.rand(30, 6, generator=generator, dtype=torch.float64)
    z[torch.rand(30, 6, generator=generator) < zero_fraction] = 0.0
    per_neuron = selectivity_per_neuron(z, torch.arange(30) % 3)
    assert ((per_neuron >= 0) & (per_neuron <= 1)).all()


def test_signed_values_can_push_csi_far_above_one():
    # class means 1 and -0.9: (1 - (-0.9)) / (1 + (-0.9)) = 19, rho_max = 1 (class 0 is always > 0)
    z = torch.tensor([[1.0], [1.0], [-0.9], [-0.9]], dtype=torch.float64)
    assert selectivity_index(z, torch.tensor([0, 0, 1, 1]), eps=0.0) == pytest.approx(19.0)


MODELS = [
    ("fcn", [3, 8, 8], {"depth": 2, "width": 32}),
    ("cnn", [3, 8, 8], {"width": 0.125}),
    ("resnet18", [3, 8, 8], {}),
    ("resnet50", [3, 8, 8], {}),
    ("wrn101_2", [3, 8, 8], {}),
    ("swin_t", [3, 8, 8], {"pretrained": False}),
]


@pytest.mark.parametrize("name, shape, params", MODELS, ids=[m[0] for m in MODELS])
def test_every_model_gives_non_negative_activations_with_bounded_csi_and_some_sparsity(name, shape, params):
    from largelr.analyses.represent import penultimate_activations
    from largelr.models import build_model

    torch.manual_seed(0)
    model = build_model(name, shape, 4, params)
    x = torch.randn(40, *shape, generator=torch.Generator().manual_seed(1))
    z = penultimate_activations(model, x, batch_size=16)
    assert z.dim() == 2 and len(z) == 40 and (z >= 0).all()
    per_neuron = selectivity_per_neuron(z, torch.arange(40) % 4)
    assert ((per_neuron >= 0) & (per_neuron <= 1)).all()
    # 8x8 inputs leave a 1x1 last map (conv nets) or one token (Swin): the pooled values are the
    # post-ReLU (positive-part) values themselves, and ReLU zeroes some of them
    assert 0.0 < sparsity(z) < 1.0


class SignedHeadInput(torch.nn.Module):
    """features (the head's input): the raw (signed) inputs; activations: their positive part."""

    def __init__(self):
        super().__init__()
        self.head = torch.nn.Linear(6, 2)

    def features(self, x):
        return x

    def activations(self, x):
        return x.clamp_min(0)


def test_run_reads_the_layer_and_sign_the_settings_name(toy_dataset):
    from largelr.analyses.represent import run
    from largelr.config import AnalysisSettings
    from largelr.evaluate import test_sample

    x, y, b = test_sample(toy_dataset, 20, "cpu", seed=0)
    readings = {("last_activation", False): x.clamp_min(0), ("head_input", True): x.abs(), ("head_input", False): x}
    for (layer, absolute), z in readings.items():
        settings = AnalysisSettings(
            {
                "represent_samples": 20,
                "represent_layer": layer,
                "represent_abs": absolute,
                "represent_sample_seed": "fixed",
            }
        )
        table = run(SignedHeadInput(), toy_dataset, settings, torch.device("cpu"), seed=5)
        assert table.iloc[0].to_dict() == pytest.approx(summarize(z, y, b), nan_ok=True), (layer, absolute)


def test_csi_over_active_neurons_is_the_all_neuron_mean_over_the_active_fraction():
    # neuron 0 fires only on class 0 (csi 2 / (2 + eps) ~ 1, rho_max 1); neuron 1 fires on both classes alike
    # (csi 0); neuron 2 is dead (csi 0 / eps = 0). All: (1 + 0 + 0) / 3; active: (1 + 0) / 2; active fraction 2/3.
    z = torch.tensor([[2.0, 1.0, 0.0], [2.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 1])
    assert selectivity_index(z, labels, neurons="all") == pytest.approx(1 / 3, abs=1e-6)
    assert selectivity_index(z, labels, neurons="active") == pytest.approx(1 / 2, abs=1e-6)
    stats = summarize(z, labels, 1 - labels)
    assert stats["active_fraction"] == pytest.approx(2 / 3)
    assert stats["csi"] == stats["csi_active"] == pytest.approx(stats["csi_all"] / stats["active_fraction"])
    assert stats["bsi_active"] == pytest.approx(stats["bsi_all"] * 3 / 2)
    assert summarize(z, labels, 1 - labels, neurons="all")["csi"] == pytest.approx(1 / 3, abs=1e-6)
    with pytest.raises(ValueError, match="csi_neurons = 'some'"):
        selectivity_index(z, labels, neurons="some")


def test_representation_width_is_the_head_input_of_the_cnn_and_of_swin():
    from largelr.analyses.represent import penultimate_activations
    from largelr.models import build_model

    torch.manual_seed(0)
    cnn = build_model("cnn", [3, 16, 16], 4, {"width": 0.125})  # last conv: round(512 * 0.125) = 64 channels
    x = torch.rand(5, 3, 16, 16)
    z = penultimate_activations(cnn, x, 5, layer="head_input")
    assert z.shape == (5, 64) == (5, cnn.head.in_features)
    # global average pool (default pool = avg) of the last post-ReLU map: its mean over positions
    last_map = cnn.body[:-2](x)
    torch.testing.assert_close(z, last_map.mean(dim=(2, 3)))
    max_cnn = build_model("cnn", [3, 16, 16], 4, {"width": 0.125, "pool": "max"})
    max_cnn.load_state_dict(cnn.state_dict())
    torch.testing.assert_close(penultimate_activations(max_cnn, x, 5, layer="head_input"), last_map.amax(dim=(2, 3)))
    swin = build_model("swin_t", [3, 32, 32], 4, {"pretrained": False})
    assert penultimate_activations(swin, torch.rand(2, 3, 32, 32), 2, layer="head_input").shape == (2, 768)


def test_batch_mode_batchnorm_differs_from_eval_and_leaves_the_buffers_unchanged():
    from largelr.analyses.represent import penultimate_activations
    from largelr.models import build_model

    torch.manual_seed(0)
    model = build_model("resnet18", [3, 8, 8], 4, {})
    before = {name: buffer.clone() for name, buffer in model.named_buffers()}
    x = torch.rand(8, 3, 8, 8) + 2.0  # far from the running mean 0 / variance 1 of a fresh model
    evaluated = penultimate_activations(model, x, 4, layer="head_input", bn="eval")
    batched = penultimate_activations(model, x, 4, layer="head_input", bn="batch")
    assert (evaluated - batched).abs().max() > 1e-3
    after = dict(model.named_buffers())
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert not model.training and not any(m.training for m in model.modules())
    # batch mode normalises each batch on its own: the first half alone gives the same values
    torch.testing.assert_close(penultimate_activations(model, x[:4], 4, layer="head_input", bn="batch"), batched[:4])


def test_representation_samples_follow_the_cell_seed_or_one_fixed_set(toy_dataset):
    from largelr.analyses.represent import run
    from largelr.config import AnalysisSettings
    from largelr.evaluate import sample_indices, test_sample

    def table(seed_reading, seed):
        settings = AnalysisSettings({"represent_samples": 10, "represent_sample_seed": seed_reading})
        return run(SignedHeadInput(), toy_dataset, settings, torch.device("cpu"), seed=seed).iloc[0].to_dict()

    assert not torch.equal(sample_indices(32, 10, 0), sample_indices(32, 10, 3))  # the draws differ
    x3, y3, b3 = test_sample(toy_dataset, 10, "cpu", seed=3)
    assert table("cell", 3) == pytest.approx(summarize(x3.abs(), y3, b3), nan_ok=True)
    assert table("fixed", 3) == pytest.approx(table("fixed", 7), nan_ok=True)
    assert table("fixed", 3) == pytest.approx(table("cell", 0), nan_ok=True)
    assert table("cell", 3) != pytest.approx(table("fixed", 3), nan_ok=True)


def test_batches_never_leave_a_single_input_alone():
    from largelr.analyses.represent import _batches

    assert _batches(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert _batches(9, 4) == [(0, 4), (4, 9)]  # 8..9 would be a batch of one
    assert _batches(1, 4) == [(0, 1)]


def test_summarize_takes_the_pq_pair_and_config_requires_p_below_q():
    from largelr.analyses.represent import summarize
    from largelr.config import ConfigError, read_config_file, validate_config

    z = torch.tensor([[1.0, 1.0, 0.0, 0.0]] * 2)  # d = 4, two equal rows (selectivity needs two classes)
    y = b = torch.tensor([0, 1])
    # p = 1, q = 2: 1 - 4^(1/2 - 1) * 2 / sqrt(2) = 1 - sqrt(2) / 2
    assert summarize(z, y, b)["pq_index"] == pytest.approx(1 - 2**0.5 / 2, abs=1e-6)
    # p = 0.5, q = 1: 1 - 4^(1 - 2) * (sqrt(1) + sqrt(1))^2 / 2 = 1 - 1 / 2
    assert summarize(z, y, b, pq=(0.5, 1.0))["pq_index"] == pytest.approx(0.5, abs=1e-6)
    config = read_config_file(Path(__file__).parents[1] / "config.yaml")
    config["studies"]["demo"]["analysis"] = {"pq_p": 2.0, "pq_q": 1.0}  # Fig 25's caption, taken literally
    with pytest.raises(ConfigError, match="pq_p = 2.0 and pq_q = 1.0.*needs p < q"):
        validate_config(config)
