import math

import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from largelr.analyses.prune import METHODS, accuracy, prunability, retention_curve
from largelr.analyses.prune_masks import (
    WEIGHT_METHODS,
    column_mask,
    column_scores,
    global_magnitude_masks,
    layer_masks,
    magnitude_mask,
    masks_for_kappas,
    model_masks,
    pruned,
    structured_column_mask,
    structured_column_scores,
    unit_scores,
)
from largelr.models import Units, build_model, neuron_chain


class TinyMLP(nn.Module):
    """2-layer no-bias MLP: 4 inputs -> 3 hidden -> 2 classes."""

    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(4, 3, bias=False)
        self.head = nn.Linear(3, 2, bias=False)
        with torch.no_grad():
            # hidden units read s = x . (1, 2, 3, 4) as relu(s) and relu(-s); the third is dead.
            # Column norms are sqrt(2) * (1, 2, 3, 4); 4 weights are zero from the start.
            self.hidden.weight.copy_(torch.tensor([[1.0, 2.0, 3.0, 4.0], [-1.0, -2.0, -3.0, -4.0], [0.0] * 4]))
            # class 0 iff s > 0; column norms sqrt(2), sqrt(2), 0; 2 weights are zero from the start
            self.head.weight.copy_(torch.tensor([[1.0, -1.0, 0.0], [-1.0, 1.0, 0.0]]))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.hidden(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def prunable(self) -> list[nn.Parameter]:
        return [self.hidden.weight, self.head.weight]

    def prunable_units(self) -> list[Units]:
        return neuron_chain([self.hidden, self.head])  # the 3 hidden neurons (row norms sqrt(30), sqrt(30), 0)


class TinyConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 2, bias=False)
        self.head = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            # kernel (o, i) is constant k with k = 1 + 2o + i -> norm 2k
            for o in range(2):
                for i in range(2):
                    self.conv.weight[o, i] = 1 + 2 * o + i
            self.head.weight.copy_(torch.eye(2))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x)).amax(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def prunable(self) -> list[nn.Parameter]:
        return [self.conv.weight, self.head.weight]

    def prunable_units(self) -> list[Units]:
        return [Units.kernels(self.conv)]  # the head reads conv channels: no neurons of its own


def toy_data() -> tuple[torch.Tensor, torch.Tensor]:
    # s = x . (1, 2, 3, 4) is 10, 4.5, -10, -4, so TinyMLP classifies all 4 samples correctly
    x = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.5, 0.0, 0.0, 1.0], [-1.0, -1.0, -1.0, -1.0], [0.0, -2.0, 0.0, 0.0]])
    return x, torch.tensor([0, 0, 1, 1])


def test_structured_column_scores_are_column_norms_for_linear_and_kernel_norms_for_conv():
    column_norms = [2**0.5 * k for k in (1, 2, 3, 4)]
    assert structured_column_scores(TinyMLP().hidden.weight).tolist() == pytest.approx(column_norms)
    torch.testing.assert_close(
        structured_column_scores(TinyConvNet().conv.weight), torch.tensor([[2.0, 4.0], [6.0, 8.0]]), rtol=1e-6, atol=0
    )  # float32 norms


def test_unit_scores_are_incoming_row_norms_for_neurons_and_kernel_norms_for_conv():
    assert unit_scores(TinyMLP().prunable_units()[0]).tolist() == pytest.approx([30**0.5, 30**0.5, 0.0])
    torch.testing.assert_close(
        unit_scores(TinyConvNet().prunable_units()[0]), torch.tensor([[2.0, 4.0], [6.0, 8.0]]), rtol=1e-6, atol=0
    )  # float32 norms


def test_structured_column_mask_on_linear_zeros_the_weakest_columns():
    weight = torch.tensor([[3.0, 0.0, 1.0, 0.0], [4.0, 1.0, 0.0, 0.5]])  # column norms 5, 1, 1, 0.5
    mask = structured_column_mask(weight, kappa=0.5)  # floor(0.5 * 4) = 2 columns: 0.5 then the first 1
    assert mask.shape == weight.shape
    assert mask.all(dim=0).tolist() == [True, False, True, False]
    assert (mask.all(dim=0) == mask.any(dim=0)).all()


def test_structured_column_mask_on_conv_zeros_the_weakest_kernels():
    weight = TinyConvNet().conv.weight
    mask = structured_column_mask(weight, kappa=0.5)  # floor(0.5 * 4) = 2 kernels: norms 2 and 4
    assert mask.shape == weight.shape
    assert mask.flatten(2).all(dim=2).tolist() == [[False, False], [True, True]]
    assert (mask.flatten(2).all(dim=2) == mask.flatten(2).any(dim=2)).all()


def test_kappa_zero_keeps_everything():
    weight = torch.randn(3, 5)
    assert structured_column_mask(weight, 0.0).all()
    assert magnitude_mask(weight, 0.0).all()
    for method in METHODS:
        assert all(bool(m.all()) for m in model_masks(TinyMLP(), 0.0, method))


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    conv=st.booleans(),
    kappas=st.tuples(st.floats(0.0, 1.0), st.floats(0.0, 1.0)).map(sorted),
)
def test_masks_are_nested_in_kappa(seed, conv, kappas):
    generator = torch.Generator().manual_seed(seed)
    shape = (3, 4, 2, 2) if conv else (5, 6)
    # rounding creates ties, which must still be broken consistently
    weight = torch.randn(shape, generator=generator).round()
    smaller, larger = kappas
    for make_mask in (structured_column_mask, magnitude_mask):
        assert not (make_mask(weight, larger) & ~make_mask(weight, smaller)).any()


@pytest.mark.parametrize("kappa, dropped", [(0.0, 0), (0.1, 1), (0.25, 3), (0.5, 6), (0.99, 11), (1.0, 12)])
def test_magnitude_mask_drops_exactly_floor_kappa_numel_entries(kappa, dropped):
    weight = torch.arange(1.0, 13.0).view(3, 4)
    mask = magnitude_mask(weight, kappa)
    assert int((~mask).sum()) == dropped
    assert weight[~mask].tolist() == list(range(1, dropped + 1))


def test_pruned_restores_weights_exactly_and_reports_the_zero_fraction():
    model = TinyMLP()
    before = [w.detach().clone() for w in model.prunable()]
    with pruned(model, kappa=0.5, method="structured_columns") as fraction:
        # hidden: floor(0.5 * 4) = 2 weakest columns (0, 1) -> 4 new zeros; head: column 2 (already zero)
        assert model.hidden.weight[:2].tolist() == [[0.0, 0.0, 3.0, 4.0], [0.0, 0.0, -3.0, -4.0]]
        assert fraction == pytest.approx((4 + 4 + 2) / (12 + 6))
    for weight, original in zip(model.prunable(), before):
        assert torch.equal(weight, original)


def test_pruned_restores_weights_after_an_exception():
    model = TinyConvNet()
    before = [w.detach().clone() for w in model.prunable()]
    with pytest.raises(RuntimeError):
        with pruned(model, kappa=0.9, method="magnitude"):
            assert (model.conv.weight == 0).any()
            raise RuntimeError("boom")
    for weight, original in zip(model.prunable(), before):
        assert torch.equal(weight, original)


def test_retention_curve_starts_at_full_retention():
    model = TinyMLP().train()
    x, y = toy_data()
    curve = retention_curve(model, x, y, kappas=(0.0, 0.5, 0.9), batch_size=3)
    assert list(curve.columns) == ["kappa", "accuracy", "retention", "pruned_fraction"]
    assert curve["kappa"].tolist() == [0.0, 0.5, 0.9]
    assert curve.loc[0, "accuracy"] == pytest.approx(1.0, abs=1e-12)
    assert curve.loc[0, "retention"] == pytest.approx(1.0, abs=1e-12)
    assert curve["pruned_fraction"].is_monotonic_increasing
    assert model.training  # training flag restored after evaluation


def test_retention_curve_hand_counted_fractions():
    model = TinyMLP()
    x, y = toy_data()
    curve = retention_curve(model, x, y, kappas=(0.0, 0.5), method="structured_columns")
    # kappa 0: only the 4 + 2 weights that are zero to begin with; kappa 0.5: 4 more (see above)
    assert curve["pruned_fraction"].tolist() == pytest.approx([6 / 18, 10 / 18])
    # pruning columns 0, 1 leaves s = 0 on the last sample, a tie resolved to class 0
    assert curve["accuracy"].tolist() == pytest.approx([1.0, 0.75], abs=1e-12)
    # neurons: floor(0.5 * 3) = 1 hidden neuron, the dead third one (row and head column already zero)
    neurons = retention_curve(model, x, y, kappas=(0.0, 0.5, 0.7), method="structured")
    # kappa 0.7: floor(2.1) = 2 neurons, the dead one and the first of the tied two (row 0, head column 0)
    assert neurons["pruned_fraction"].tolist() == pytest.approx([6 / 18, 6 / 18, (6 + 4 + 2) / 18])
    # relu(-s) alone still separates: class 1 wins where s < 0 and the tie at s > 0 goes to class 0
    assert neurons["accuracy"].tolist() == pytest.approx([1.0, 1.0, 1.0], abs=1e-12)


def test_retention_is_nan_when_the_unpruned_model_is_always_wrong():
    model = TinyMLP()
    x, y = toy_data()
    curve = retention_curve(model, x, 1 - y, kappas=(0.0,))
    assert curve["retention"].isna().all()


def test_prunability_is_the_mean_retention():
    curve = pd.DataFrame(
        {
            "kappa": [0.0, 0.5, 0.9],
            "accuracy": [0.8, 0.6, 0.2],
            "retention": [1.0, 0.75, 0.25],
            "pruned_fraction": [0.0, 0.5, 0.9],
        }
    )
    assert prunability(curve, "ratio") == pytest.approx((1.0 + 0.75 + 0.25) / 3)


def test_column_mask_on_linear_equals_structured_column_mask():
    weight = torch.tensor([[3.0, 0.0, 1.0, 0.0], [4.0, 1.0, 0.0, 0.5]])
    for kappa in (0.0, 0.25, 0.5, 1.0):
        assert torch.equal(column_mask(weight, kappa), structured_column_mask(weight, kappa))


def test_column_mask_on_conv_zeros_whole_input_channels():
    weight = TinyConvNet().conv.weight
    # input channel i holds kernels of constants 1 + i and 3 + i -> norms sqrt(40), sqrt(80)
    assert column_scores(weight).tolist() == pytest.approx([40**0.5, 80**0.5])
    mask = column_mask(weight, kappa=0.5)  # floor(0.5 * 2) = 1 channel: input channel 0
    assert mask.shape == weight.shape
    assert not mask[:, 0].any() and mask[:, 1].all()


def test_global_magnitude_masks_use_one_threshold_across_layers():
    weights = [torch.tensor([[3.0, -1.0], [0.5, 4.0]]), torch.tensor([[2.0, -0.25, 6.0]])]
    # floor(0.5 * 7) = 3 smallest |w| overall: 0.25 (layer 2), 0.5 and 1 (layer 1)
    masks = global_magnitude_masks(weights, kappa=0.5)
    assert masks[0].tolist() == [[True, False], [False, True]]
    assert masks[1].tolist() == [[True, False, True]]


def test_global_magnitude_ties_are_broken_by_layer_order():
    weights = [torch.tensor([2.0, 1.0]), torch.tensor([1.0, 2.0])]
    masks = global_magnitude_masks(weights, kappa=0.25)  # drop 1 of the two tied 1.0s: the first layer's
    assert [m.tolist() for m in masks] == [[True, False], [True, True]]


def test_unknown_method_is_rejected():
    with pytest.raises(ValueError, match="not known"):
        layer_masks([torch.ones(2, 2)], 0.5, "random")
    with pytest.raises(ValueError, match="not known"):
        model_masks(TinyMLP(), 0.5, "random")
    with pytest.raises(ValueError, match="units"):
        layer_masks([torch.ones(2, 2)], 0.5, "structured")  # neurons need the model, not bare weights


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    kappas=st.tuples(st.floats(0.0, 1.0), st.floats(0.0, 1.0)).map(sorted),
)
def test_all_weight_methods_are_nested_in_kappa_and_deterministic(seed, kappas):
    generator = torch.Generator().manual_seed(seed)
    # a conv and a linear layer; rounding creates ties, also across layers
    weights = [torch.randn(3, 4, 2, 2, generator=generator).round(), torch.randn(5, 6, generator=generator).round()]
    smaller, larger = kappas
    for method in WEIGHT_METHODS:
        small_masks = layer_masks(weights, smaller, method)
        large_masks = layer_masks(weights, larger, method)
        for small, large, again in zip(small_masks, large_masks, layer_masks(weights, larger, method)):
            assert not (large & ~small).any()
            assert torch.equal(large, again)


def tied_models(seed: int) -> list[nn.Module]:
    """A small FCN and CNN whose weights are rounded to quarters, so that units tie."""
    torch.manual_seed(seed)
    models = [build_model("fcn", [6], 3, {"depth": 2, "width": 5}), build_model("cnn", [2, 4, 4], 3, {"width": 0.03})]
    with torch.no_grad():
        for model in models:
            for weight in model.prunable():
                weight.copy_((weight * 4).round() / 4)
    return models


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), kappas=st.tuples(st.floats(0.0, 1.0), st.floats(0.0, 1.0)).map(sorted))
def test_every_method_on_a_model_is_nested_in_kappa_and_ranked_once(seed, kappas):
    smaller, larger = kappas
    for model in tied_models(seed):
        for method in METHODS:
            small, large = model_masks(model, smaller, method), model_masks(model, larger, method)
            assert all(not (lg & ~sm).any() for sm, lg in zip(small, large)), method
            # ranked once for all kappas (ranks) equals ranked per kappa (a sort each time)
            for fast, slow in zip(masks_for_kappas(model, [smaller, larger], method)[1], large):
                assert torch.equal(fast, slow), method


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("model_class", [TinyMLP, TinyConvNet])
def test_kappa_zero_leaves_accuracy_unchanged(method, model_class):
    model = model_class()
    generator = torch.Generator().manual_seed(0)
    x = (
        torch.randn(16, 4, generator=generator)
        if model_class is TinyMLP
        else torch.randn(16, 2, 3, 3, generator=generator)
    )
    y = torch.randint(0, 2, (16,), generator=generator)
    curve = retention_curve(model, x, y, kappas=(0.0,), method=method)
    assert curve.loc[0, "accuracy"] == pytest.approx(accuracy(model, x, y), abs=1e-12)  # a torch mean vs int / len


def test_magnitude_global_hand_counted_fraction():
    model = TinyMLP()
    # 18 weights, |w| = 0 six times and 1 six times; floor(0.5 * 18) = 9 drops the zeros and the first
    # three 1s in layer order: hidden[0, 0], hidden[1, 0], head[0, 0]
    with pruned(model, kappa=0.5, method="magnitude_global") as fraction:
        assert fraction == pytest.approx(9 / 18, abs=1e-12)
        assert model.hidden.weight[:, 0].tolist() == [0.0, 0.0, 0.0]
        assert model.head.weight.tolist() == [[0.0, -1.0, 0.0], [-1.0, 1.0, 0.0]]


def test_column_hand_counted_fraction_on_conv():
    model = TinyConvNet()
    # conv: input channel 0 (8 of 16 weights); head eye(2): column 0 (tie, first) adds 1 zero to its 2
    curve = retention_curve(model, torch.randn(2, 2, 3, 3), torch.tensor([0, 1]), kappas=(0.5,), method="column")
    assert curve.loc[0, "pruned_fraction"] == pytest.approx((8 + 1 + 2) / 20, abs=1e-12)


def hand_curve(accuracies: list[float], chance: float) -> pd.DataFrame:
    """A curve built by hand: retention columns of both readings from the accuracies (base first)."""
    base = accuracies[0]
    return pd.DataFrame(
        {
            "kappa": [round(0.1 * i, 1) for i in range(len(accuracies))],
            "accuracy": accuracies,
            "retention": [a / base for a in accuracies],
            "retention_chance": [(a - chance) / (base - chance) for a in accuracies],
        }
    )


def test_both_prunability_readings_on_a_curve_that_falls_to_chance():
    # binary task (c = 1/2), base 0.8, pruned models at chance from kappa 0.4 on
    curve = hand_curve([0.8, 0.8, 0.7, 0.6, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5], chance=0.5)
    # ratio: 1, 1, 7/8, 6/8, then 5/8 six times -> (2 + 0.875 + 0.75 + 3.75) / 10 = 0.7375, the floor's side:
    # (1 + 9 * 0.5 / 0.8) / 10 = 0.6625 even if all nine pruned models were at chance
    assert prunability(curve, "ratio") == pytest.approx(0.7375)
    # chance: 1, 1, 2/3, 1/3, then 0 six times -> 3 / 10
    assert prunability(curve, "chance") == pytest.approx(0.3)
    with pytest.raises(ValueError, match="allowed"):
        prunability(curve, "percent")


def test_both_prunability_readings_on_a_curve_above_its_base():
    # ten classes (c = 0.1), base 0.5; kappa 0.1 scores 0.6 (above the base), kappa 0.2 falls to chance
    curve = hand_curve([0.5, 0.6, 0.1], chance=0.1)
    assert prunability(curve, "ratio") == pytest.approx((1 + 1.2 + 0.2) / 3)  # 0.8
    assert prunability(curve, "chance") == pytest.approx((1 + 0.5 / 0.4 + 0.0) / 3)  # 0.75


def test_prunability_defaults_to_the_configured_reading():
    from largelr.analyses.prune import DEFAULT_READING
    from largelr.config import ANALYSIS_KEYS

    curve = hand_curve([0.5, 0.6, 0.1], chance=0.1)
    assert DEFAULT_READING == ANALYSIS_KEYS["prunability"].default == "chance"
    assert prunability(curve) == prunability(curve, DEFAULT_READING) == pytest.approx((1 + 0.5 / 0.4 + 0.0) / 3)


def test_the_methods_are_the_structured_units_and_the_weight_masks():
    assert METHODS == ("structured", *WEIGHT_METHODS)
    with pytest.raises(
        ValueError,
        match=r"allowed: \['structured', 'structured_columns', 'column', 'magnitude', "
        r"'magnitude_global'\]",
    ):
        layer_masks([torch.ones(2, 2)], 0.5, "random")


def test_chance_level_and_chance_retention():
    from largelr.analyses.prune import chance_level, chance_retention

    assert chance_level("accuracy", 10) == pytest.approx(0.1)
    assert chance_level("accuracy", 2) == pytest.approx(0.5)
    assert chance_level("worst_group_acc", 2) == 0.0  # a constant prediction scores 0 on the other class's groups
    assert chance_retention(0.5, 0.8, 0.5) == pytest.approx(0.0)
    assert chance_retention(0.9, 0.8, 0.5) == pytest.approx(4 / 3)
    assert math.isnan(chance_retention(0.6, 0.5, 0.5))  # no headroom above chance: undefined


def test_retention_curves_record_the_chance_corrected_retention():
    from largelr.analyses.prune import retention_curves, tensor_batches

    x, y = toy_data()
    curve = retention_curves(
        TinyMLP(), tensor_batches(x, y, None, 3), kappas=(0.0, 0.5), methods=["structured_columns"], chance=0.5
    )
    # accuracies 1 and 0.75 (test_retention_curve_hand_counted_fractions): chance-corrected 1 and 0.25 / 0.5
    assert curve["retention_chance"].tolist() == pytest.approx([1.0, 0.5], abs=1e-12)
    assert curve["retention"].tolist() == pytest.approx([1.0, 0.75], abs=1e-12)
    assert (curve["chance"] == 0.5).all()


def test_cell_columns_hold_both_readings_per_method():
    from largelr.analyses.prune import cell_columns

    table = pd.DataFrame(
        {
            "method": ["structured", "structured", "magnitude", "magnitude"],
            "kappa": [0.0, 0.5] * 2,
            "retention": [1.0, 0.8, 1.0, 0.9],
            "retention_chance": [1.0, 0.6, 1.0, 0.7],
        }
    )
    row = cell_columns(table)
    assert row["prunability_ratio"] == pytest.approx(0.9) and row["prunability_chance"] == pytest.approx(0.8)
    assert row["prunability_ratio_magnitude"] == pytest.approx(0.95)
    assert row["prunability_chance_magnitude"] == pytest.approx(0.85)
    assert row["prunability"] == pytest.approx(0.8) and row["prunability_reading"] == "chance"  # the default
    assert cell_columns(table, "ratio")["prunability_magnitude"] == pytest.approx(0.95)


def test_worst_group_metric_by_hand():
    from largelr.analyses.prune import retention_curves, tensor_batches

    x, y = toy_data()
    b = torch.tensor([0, 1, 1, 0])  # four groups (y, b), one sample each
    batches = tensor_batches(x, y, b, batch_size=3)
    curve = retention_curves(
        TinyMLP(), batches, kappas=(0.0, 0.5), methods=["structured_columns"], metric="worst_group_acc"
    )
    # kappa 0.5 gets only sample 3 wrong (see test_retention_curve_hand_counted_fractions): its group (1, 0) drops to 0
    assert curve["accuracy"].tolist() == pytest.approx([1.0, 0.75], abs=1e-12)
    assert curve["worst_group_acc"].tolist() == pytest.approx([1.0, 0.0], abs=1e-12)
    assert curve["retention"].tolist() == pytest.approx([1.0, 0.0], abs=1e-12)
    assert (curve["metric"] == "worst_group_acc").all()
    assert curve["pruned_fraction"].tolist() == pytest.approx([6 / 18, 10 / 18])
    with pytest.raises(ValueError, match="allowed"):
        retention_curves(TinyMLP(), batches, metric="auc")


def test_pruning_metric_is_worst_group_where_the_dataset_file_says_so():
    from largelr.analyses.prune import pruning_metric
    from largelr.datasets import KINDS

    def dataset_of(kind: str) -> dict:
        return {"name": kind, "traits": KINDS[kind].traits}

    assert pruning_metric(dataset_of("celeba")) == "worst_group_acc"
    assert pruning_metric(dataset_of("waterbirds")) == "worst_group_acc"
    assert pruning_metric({"traits": {"worst_group": True, "oracle_background": False}}) == "worst_group_acc"
    assert pruning_metric(dataset_of("colored_mnist")) == "accuracy"
    with pytest.raises(ValueError, match="carries no traits.*--forcerun data"):
        pruning_metric({"name": "old"})


def test_coinciding_masks_are_evaluated_once():
    from largelr.analyses.prune import retention_curves, tensor_batches

    model = TinyMLP()
    calls = []
    model.register_forward_hook(lambda *args: calls.append(1))
    x, y = toy_data()
    curve = retention_curves(
        model,
        tensor_batches(x, y, None, 2),
        kappas=(0.0, 0.5),
        methods=["structured", "structured_columns", "column", "magnitude"],
    )
    # on linear layers column == structured_columns; every kappa 0 is the unpruned model; the neurons differ:
    # unpruned, structured, structured_columns (= column), magnitude: 4 variants x 2 batches
    assert len(calls) == 4 * 2
    by_method = {m: c.drop(columns="method").reset_index(drop=True) for m, c in curve.groupby("method")}
    pd.testing.assert_frame_equal(by_method["structured_columns"], by_method["column"])
    assert curve["method"].tolist() == (
        ["structured"] * 2 + ["structured_columns"] * 2 + ["column"] * 2 + ["magnitude"] * 2
    )


def zero_kernels(weight: torch.Tensor) -> torch.Tensor:
    """[out, in] bool: the (out, in) kernels of a conv weight that are entirely zero."""
    return (weight.flatten(2) == 0).all(2)


def test_structured_pruning_of_a_resnet_zeroes_whole_kernels_and_keeps_residual_shapes():
    torch.manual_seed(0)
    model = build_model("resnet18", [3, 16, 16], 4, {})
    x = torch.randn(4, 3, 16, 16)
    head = model.head.weight.detach().clone()
    with torch.no_grad():
        before = model.eval()(x)
    with pruned(model, 0.5) as fraction:
        convs = [w for w in model.prunable() if w.dim() == 4]
        assert len(convs) == len(model.prunable()) - 1  # every weight but the head's is a conv
        for weight in convs:  # exactly floor(kappa * n_kernels) kernels are dropped, each entirely
            assert int(zero_kernels(weight).sum()) == zero_kernels(weight).numel() // 2
        assert torch.equal(model.head.weight, head)  # the head reads conv channels: not a unit
        with torch.no_grad():
            assert model(x).shape == (4, 4)  # residual additions still line up
        head_share = head.numel() / sum(w.numel() for w in model.prunable())
        assert 0.5 * (1 - head_share) - 1e-3 <= fraction <= 0.5
    with pruned(model, 0.5, method="structured_columns") as fraction:
        for weight in model.prunable():
            units = weight.flatten(2) if weight.dim() == 4 else weight.T  # (out, in) kernels or input columns
            zero_units = (units == 0).flatten(1).all(1) if weight.dim() == 2 else (units == 0).all(2)
            assert int(zero_units.sum()) == zero_units.numel() // 2
        assert 0.5 <= fraction < 0.51
    with torch.no_grad():
        assert torch.equal(model(x), before)


def signal_network() -> nn.Module:
    """FCN 2 -> 10 -> 2 where hidden neuron 3 alone carries the label: it reads 2 * (x0 - x1), and
    logit 1 - logit 0 = its output. The other nine neurons feed both logits equally (argmax-neutral).
    Row norms: neuron j has norm j + 1 for j != 3 and sqrt(8) ~ 2.83 for neuron 3, so it is the third
    weakest: floor(kappa * 10) reaches 3 at kappa = 0.3."""
    model = build_model("fcn", [2], 2, {"depth": 1, "width": 10})
    hidden = model.body[1]
    with torch.no_grad():
        for j in range(10):
            hidden.weight[j] = torch.tensor([j + 1.0, 0.0])
            model.head.weight[:, j] = 1.0
        hidden.weight[3] = torch.tensor([2.0, -2.0])
        model.head.weight[:, 3] = torch.tensor([0.0, 1.0])
    return model


def test_a_network_loses_accuracy_exactly_when_its_signal_neuron_is_pruned():
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(200, 2, generator=generator)
    y = (x[:, 0] > x[:, 1]).long()
    model = signal_network()
    kappas = [round(0.1 * k, 1) for k in range(10)]
    curve = retention_curve(model, x, y, kappas=kappas, method="structured")
    # kappa < 0.3 prunes at most the two weakest neurons (norms 1 and 2), which feed both logits alike:
    # still all right; from 0.3 on the signal neuron is gone, the logits tie and everything is class 0
    expected = [1.0, 1.0, 1.0] + [float((y == 0).double().mean())] * 7
    assert curve["accuracy"].tolist() == pytest.approx(expected)
    with pruned(model, 0.3):  # the pruned neuron loses all its weights: its row and its head column
        assert model.body[1].weight[3].tolist() == [0.0, 0.0] and model.head.weight[:, 3].tolist() == [0.0, 0.0]


def test_neuron_units_never_mask_an_input_feature():
    torch.manual_seed(0)
    model = build_model("fcn", [14], 2, {"depth": 3, "width": 20})  # 14 inputs, as parity's bits
    first = model.body[1].weight
    for kappa in [0.1 * k for k in range(10)]:
        mask = model_masks(model, kappa, "structured")[0]  # the first layer's mask
        assert torch.equal(mask, mask[:, :1].expand_as(mask))  # whole rows (neurons), same in every column
        assert mask.any(dim=0).all()  # every input column keeps the weights of the unpruned neurons
        assert int((~mask.all(dim=1)).sum()) == int(kappa * 20 + 1e-9)
    # the former unit: kappa 0.1 removes floor(1.4) = 1 whole input column
    columns = model_masks(model, 0.1, "structured_columns")[0]
    assert int((~columns.any(dim=0)).sum()) == 1 and columns.shape == first.shape


def test_neuron_masks_of_a_two_layer_fcn_by_hand():
    model = build_model("fcn", [3], 2, {"depth": 2, "width": 4})
    first, second = model.body[1], model.body[3]
    with torch.no_grad():
        first.weight.copy_(torch.tensor([1.0, 3.0, 2.0, 4.0])[:, None].expand(4, 3))  # row norms ~ 1, 3, 2, 4
        second.weight.copy_(torch.tensor([2.0, 1.0, 4.0, 3.0])[:, None].expand(4, 4))  # row norms ~ 2, 1, 4, 3
        model.head.weight.fill_(1.0)
    with pruned(model, 0.5) as fraction:  # floor(0.5 * 4) = 2 neurons per hidden layer
        # layer 1 prunes neurons 0, 2: its rows 0, 2 (6 weights) and columns 0, 2 of layer 2
        assert (first.weight != 0).all(dim=1).tolist() == [False, True, False, True]
        # layer 2 prunes neurons 1, 0: its rows 1, 0, and head columns 1, 0; kept: rows {2, 3} x columns {1, 3}
        assert (second.weight != 0).nonzero().tolist() == [[2, 1], [2, 3], [3, 1], [3, 3]]
        assert model.head.weight.tolist() == [[0.0, 0.0, 1.0, 1.0]] * 2  # both logits keep their rows
        assert fraction == pytest.approx((6 + 12 + 4) / (12 + 16 + 8))
    with pruned(model, 0.9):  # floor(3.6) = 3 neurons per layer; the logits are never units
        assert (model.head.weight != 0).sum(dim=1).tolist() == [1, 1]


def test_kernel_masks_of_a_conv_net_by_hand():
    model = TinyConvNet()
    # kernels of norms 2, 4 (output channel 0) go: 8 of the conv's 16 weights; the head (eye, 2 zeros) stays
    with pruned(model, 0.5) as fraction:
        assert zero_kernels(model.conv.weight).tolist() == [[True, True], [False, False]]
        assert model.head.weight.tolist() == [[1.0, 0.0], [0.0, 1.0]]
        assert fraction == pytest.approx((8 + 2) / 20, abs=1e-12)


def test_swin_units_are_linear_output_units_with_their_biases():
    torch.manual_seed(0)
    model = build_model("swin_t", [3, 32, 32], 3, {"pretrained": False}).eval()
    linears = [m for m in model.body.modules() if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for layer in linears:
            if layer.bias is not None:
                layer.bias.fill_(1.0)  # torchvision starts biases at zero: make their zeroing visible
    originals = [t.detach().clone() for t in model.parameters()]
    head = model.head.weight.detach().clone()
    mlp = model.body.features[1][0].mlp
    with pruned(model, 0.5) as fraction:
        for layer in linears:  # floor(0.5 * out) rows gone, with exactly their biases
            gone = (layer.weight == 0).all(dim=1)
            assert int(gone.sum()) == layer.out_features // 2
            if layer.bias is not None:
                assert torch.equal(layer.bias == 0, gone)
        # an MLP hidden neuron takes its fc2 column with it
        assert torch.equal((mlp[3].weight == 0).all(dim=0), (mlp[0].weight == 0).all(dim=1))
        assert torch.equal(model.head.weight, head)
        weights = model.prunable()  # the fraction counts prunable weights, not the zeroed biases
        assert fraction == pytest.approx(
            sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights), abs=1e-12
        )
        with torch.no_grad():
            assert model(torch.randn(2, 3, 32, 32)).shape == (2, 3)
    assert all(torch.equal(t, o) for t, o in zip(model.parameters(), originals))


def test_a_unit_reader_of_the_wrong_shape_is_rejected():
    layer, reader = nn.Linear(3, 4), nn.Linear(5, 2)
    model = TinyMLP()
    model.prunable_units = lambda: [Units.neurons(layer, [reader])]
    model.prunable = lambda: [layer.weight, reader.weight]
    with pytest.raises(ValueError, match="does not read"):
        model_masks(model, 0.5)


def test_lazy_test_set_is_read_through_a_dataloader(tmp_path):
    from PIL import Image

    from largelr.analyses.prune import retention_curves, tensor_batches
    from largelr.evaluate import Split

    generator = torch.Generator().manual_seed(0)
    names = []
    for i in range(5):
        pixels = (torch.rand(6, 6, 3, generator=generator) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(tmp_path / f"{i}.png")
        names.append(f"{i}.png")
    y = torch.tensor([0, 1, 0, 1, 1])
    dataset = {
        "lazy": True,
        "root": str(tmp_path),
        "image_size": 4,
        "input_shape": [3, 4, 4],
        "normalization": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
        "test": {"paths": names, "y": y, "b": 1 - y},
    }
    x, y_read, b_read = Split(dataset, "test", "cpu").samples(torch.arange(5))
    assert x.shape == (5, 3, 4, 4) and torch.equal(y_read, y) and torch.equal(b_read, 1 - y)
    torch.manual_seed(0)
    model = build_cnn_for(3, 4)
    lazy = retention_curves(
        model, Split(dataset, "test", "cpu").batches(2), (0.0, 0.5), ["structured"], metric="worst_group_acc"
    )
    in_memory = retention_curves(
        model, tensor_batches(x, y, 1 - y, 2), (0.0, 0.5), ["structured"], metric="worst_group_acc"
    )
    pd.testing.assert_frame_equal(lazy, in_memory)


def build_cnn_for(channels: int, size: int) -> nn.Module:
    return build_model("cnn", [channels, size, size], 2, {"width": 0.05})


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), method=st.sampled_from(METHODS))
def test_kappa_zero_leaves_accuracy_unchanged_for_random_networks(seed, method):
    torch.manual_seed(seed)
    model = build_model("fcn", [6], 3, {"depth": 2, "width": 8})
    generator = torch.Generator().manual_seed(seed)
    x, y = torch.randn(20, 6, generator=generator), torch.randint(0, 3, (20,), generator=generator)
    curve = retention_curve(model, x, y, kappas=(0.0, 0.3), method=method, batch_size=7)
    assert curve.loc[0, "accuracy"] == pytest.approx(accuracy(model, x, y), abs=1e-12)  # a torch mean vs int / len
    assert curve.loc[0, "retention"] == pytest.approx(1.0, abs=1e-12) or curve["retention"].isna().all()


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), kappas=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=4))
def test_masks_ranked_once_equal_masks_per_kappa(seed, kappas):
    from largelr.analyses.prune_masks import weight_masks_for_kappas

    generator = torch.Generator().manual_seed(seed)
    weights = [torch.randn(3, 4, 2, 2, generator=generator).round(), torch.randn(5, 6, generator=generator).round()]
    for method in WEIGHT_METHODS:
        for kappa, masks in zip(kappas, weight_masks_for_kappas(weights, kappas, method)):
            for fast, slow in zip(masks, layer_masks(weights, kappa, method)):
                assert torch.equal(fast, slow), (method, kappa)
