"""The figures across studies and from saved maps (Figs 9, 13, 14, 28): what each draws, checked
against values worked out here from small fabricated inputs."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from largelr import figures_extra
from largelr.config import (
    ConfigError,
    landscape_errors,
    landscape_pairs,
    landscape_rows,
    read_config_file,
    validate_config,
)

PNG = b"\x89PNG\r\n\x1a\n"


def landscape_cells() -> pd.DataFrame:
    """Two studies (lr 0.01 and 0.1) x focal gamma {0, 2} x seeds {0, 1}; one cell left out."""
    rows = []
    for study, lr in (("low", 0.01), ("high", 0.1)):
        for gamma in (0.0, 2.0):
            for seed in (0, 1):
                rows.append(
                    {
                        "study": study,
                        "dataset": "d",
                        "model": "m",
                        "knob": "focal_gamma",
                        "value": gamma,
                        "seed": seed,
                        "train_ce": lr * 10 + gamma + seed,
                        "test_acc": 0.5 + lr + 0.01 * seed,
                        "spurious_share": np.nan,
                        "bsi": 0.3 - lr + 0.1 * gamma + 0.02 * seed,
                        "test_acc_ba": 0.9,
                        "test_acc_bc": 0.4 + lr + 0.1 * seed,
                        "included": True,
                    }
                )
    cells = pd.DataFrame(rows)
    # left out: (high, gamma 2, seed 1)
    cells.loc[(cells["study"] == "high") & (cells["value"] == 2.0) & (cells["seed"] == 1), "included"] = False
    return cells


ROWS = {"low": 0.01, "high": 0.1}


def test_landscape_grid_is_the_seed_mean_of_included_cells_per_study_and_knob_value():
    means, counts = figures_extra.landscape_grid(landscape_cells(), ROWS, "train_ce")
    assert list(means.index) == [0.01, 0.1] and list(means.columns) == [0.0, 2.0]
    # low: 0.1 + gamma + seed -> means 0.6 (gamma 0), 2.6 (gamma 2); high: 1 + gamma + seed -> 1.5, and 3.0 (seed 0 only)
    assert means.to_numpy() == pytest.approx(np.array([[0.6, 2.6], [1.5, 3.0]]))
    assert counts.to_numpy().tolist() == [[2, 2], [2, 1]]


def test_landscape_grid_marks_a_square_without_included_cells_as_missing():
    cells = landscape_cells()
    cells.loc[(cells["study"] == "high") & (cells["value"] == 2.0), "included"] = False
    means, counts = figures_extra.landscape_grid(cells, ROWS, "test_acc")
    assert np.isnan(means.loc[0.1, 2.0]) and counts.loc[0.1, 2.0] == 0
    assert means.loc[0.01, 0.0] == pytest.approx(0.515)


def panel_arrays(fig) -> list[np.ndarray]:
    return [np.ma.filled(ax.images[0].get_array().astype(float), np.nan) for ax in fig.axes if ax.images]


def test_landscape_figure_heatmaps_hold_the_seed_means_and_auto_reads_bsi_without_a_spurious_region(tmp_path):
    paths = [tmp_path / "l.png", tmp_path / "l.pdf"]
    fig = figures_extra.landscape_figure(landscape_cells(), ROWS, "d", "m", "auto", paths, name="t")
    assert paths[0].read_bytes()[:8] == PNG and paths[1].read_bytes()[:5] == b"%PDF-"
    loss, acc, spurious = panel_arrays(fig)
    assert loss == pytest.approx(np.array([[0.6, 2.6], [1.5, 3.0]]))
    assert acc == pytest.approx(np.array([[0.515, 0.515], [0.605, 0.6]]))
    # bsi = 0.3 - lr + 0.1 gamma + 0.02 seed: low 0.3, 0.5; high 0.21, 0.4 (seed 0 only)
    assert spurious == pytest.approx(np.array([[0.30, 0.50], [0.21, 0.40]]))
    titles = [ax.get_title() for ax in fig.axes if ax.images]
    assert "bias selectivity" in titles[2] and "1 of 8 cells left out" in fig._suptitle.get_text()
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["0.01", "0.1"]


def test_landscape_spurious_panel_follows_the_choice():
    cells = landscape_cells()
    with_gap, column = figures_extra.spurious_measure(cells, "bias_gap")
    assert column == "bias_gap"
    assert with_gap["bias_gap"].to_numpy() == pytest.approx(0.9 - cells["test_acc_bc"].to_numpy())
    shares = cells.assign(spurious_share=0.25)
    assert figures_extra.spurious_measure(shares, "auto")[1] == "spurious_share"
    assert figures_extra.spurious_measure(shares, "bsi")[1] == "bsi"


def test_config_landscapes_join_one_knob_studies_by_their_learning_rate():
    config = read_config_file("config.yaml")
    assert landscape_pairs(config, "fig9") == [("colored_mnist", "resnet18")]
    rows = landscape_rows(config, "fig9", "colored_mnist", "resnet18")
    assert sorted(rows.values()) == [0.001, 0.01, 0.05, 0.1, 0.25]
    assert {config["studies"][s]["knob"] for s in rows} == {"focal_gamma"}
    assert landscape_rows(config, "tiny", "tiny_parity", "fcn") == {
        "tiny_landscape_lr005": 0.05,
        "tiny_landscape_lr05": 0.5,
    }


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c["landscapes"]["tiny"].update(studies=["tiny_landscape_lr005", "nope"]), "'nope' is not a study"),
        (lambda c: c["landscapes"]["tiny"].update(axis="focal_gamma"), "is the studies' knob"),
        (lambda c: c["landscapes"]["tiny"].update(axis="colour"), "not a training setting"),
        (lambda c: c["landscapes"]["tiny"].update(spurious="pixels"), "landscapes.tiny.spurious = 'pixels'"),
        (lambda c: c["studies"]["tiny_landscape_lr05"]["train"].update(lr=0.05), "a different lr per study"),
        (lambda c: c["landscapes"]["tiny"].update(studies=["tiny_landscape_lr005", "smoke"]), "different knobs"),
    ],
)
def test_bad_landscapes_fail_at_parse_time_naming_the_key(change, message):
    config = copy.deepcopy(read_config_file("config.yaml"))
    assert landscape_errors(config) == []
    change(config)
    with pytest.raises(ConfigError, match=message):
        validate_config(config)


def hilo_npz(path, n=2, deeplift=True):
    rng = np.random.default_rng(0)
    arrays = {
        "images": rng.random((n, 3, 4, 4), dtype=np.float32),
        "labels": np.arange(n),
        "indices": np.arange(10, 10 + n),
        "lr_low": np.float64(0.01),
        "lr_high": np.float64(0.5),
        "correct_low": np.zeros(n, np.float32),
        "correct_high": np.ones(n, np.float32),
    }
    for group in ("low", "high"):
        arrays[f"maps_{group}"] = rng.normal(size=(n, 3, 4, 4)).astype(np.float32)
        if deeplift:
            arrays[f"maps_{group}_deeplift"] = rng.normal(size=(n, 3, 4, 4)).astype(np.float32)
    np.savez(path, **arrays)
    return arrays


def test_hilo_methods_figure_shows_ig_and_deeplift_maps_scaled_by_their_own_max(tmp_path):
    arrays = hilo_npz(tmp_path / "d-m.npz")
    fig = figures_extra.hilo_methods_figure(tmp_path / "d-m.npz", "s", "d", "m", 3, [tmp_path / "f.png"])
    assert (tmp_path / "f.png").read_bytes()[:8] == PNG
    axes = np.array(fig.axes).reshape(2, 5)
    for row in range(2):
        for column, key in enumerate(("maps_low", "maps_low_deeplift", "maps_high", "maps_high_deeplift"), start=1):
            heat = np.abs(arrays[key][row]).sum(0)  # channels summed, worked out here
            shown = axes[row, column].images[0].get_array()
            np.testing.assert_allclose(shown, heat / heat.max(), rtol=1e-6)
            method = "DeepLift" if key.endswith("deeplift") else "IG"
            lr = "0.01" if "low" in key else "0.5"
            assert axes[row, column].get_title() == f"{method}, lr {lr} (max {heat.max():.2g})"
    assert axes[1, 0].get_title() == "test #11, label 1"
    assert "3 seeds per lr" in fig._suptitle.get_text()


def test_hilo_methods_figure_names_the_missing_deeplift_maps(tmp_path):
    hilo_npz(tmp_path / "d-m.npz", deeplift=False)
    with pytest.raises(ValueError, match="maps_high_deeplift"):
        figures_extra.hilo_methods_figure(tmp_path / "d-m.npz", "s", "d", "m", 3, [tmp_path / "f.png"])


def training_npz(path):
    """Low run observed at steps 0, 10, 40 and high run at 0, 20; 2 samples of 1x3x3; 4 neurons."""
    rng = np.random.default_rng(1)
    arrays = {
        "images": rng.random((2, 1, 3, 3)),
        "labels": np.array([0, 1]),
        "indices": np.array([5, 9]),
        "knob": np.str_("lr"),
        "seed": np.int64(0),
        "value_low": np.float64(0.01),
        "value_high": np.float64(0.5),
        "steps_low": np.array([0, 10, 40]),
        "steps_high": np.array([0, 20]),
    }
    for group, steps in (("low", 3), ("high", 2)):
        arrays[f"maps_{group}"] = rng.normal(size=(steps, 2, 1, 3, 3))
        arrays[f"csi_{group}"] = rng.random((steps, 4))
    # BSI per step and neuron: low's largest at the end is neuron 2, high's is neuron 0
    arrays["bsi_low"] = np.array([[0.1, 0.2, 0.3, 0.0], [0.2, 0.1, 0.4, 0.1], [0.3, 0.1, 0.6, 0.2]])
    arrays["bsi_high"] = np.array([[0.2, 0.2, 0.1, 0.1], [0.5, 0.1, 0.0, 0.3]])
    np.savez(path, **arrays)
    return arrays


def test_training_maps_figure_shows_each_observed_step_of_each_run(tmp_path):
    arrays = training_npz(tmp_path / "d-m.npz")
    fig = figures_extra.training_maps_figure(tmp_path / "d-m.npz", "s", "d", "m", [tmp_path / "t.png"])
    assert (tmp_path / "t.png").read_bytes()[:8] == PNG
    axes = np.array(fig.axes).reshape(4, 4)  # rows: (sample 0 low, sample 0 high, sample 1 low, sample 1 high)
    heat = np.abs(arrays["maps_high"][1, 1]).sum(0)  # high run, step 20, sample 1
    np.testing.assert_allclose(axes[3, 2].images[0].get_array(), heat / heat.max(), rtol=1e-6)
    assert axes[3, 2].get_title() == f"step 20 (end), max {heat.max():.2g}"
    assert axes[0, 3].get_title().startswith("step 40 (end)") and axes[0, 2].get_title().startswith("step 10,")
    assert not axes[1, 3].axison and not axes[1, 3].images  # the high run has one step fewer
    assert axes[2, 0].get_title() == "#9, label 1; lr 0.01"


def test_neuron_figure_follows_the_neuron_with_the_largest_final_bsi(tmp_path):
    arrays = training_npz(tmp_path / "d-m.npz")
    assert figures_extra.chosen_neuron(arrays["bsi_low"]) == 2 and figures_extra.chosen_neuron(arrays["bsi_high"]) == 0
    fig = figures_extra.neuron_figure(tmp_path / "d-m.npz", "s", "d", "m", [tmp_path / "n.png"])
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    low = lines["lr 0.01, neuron 2: BSI"]
    assert low.get_xdata().tolist() == [0, 10, 40] and low.get_ydata() == pytest.approx([0.3, 0.4, 0.6])
    assert lines["lr 0.5, neuron 0: BSI"].get_ydata() == pytest.approx([0.2, 0.5])
    assert lines["lr 0.5, neuron 0: CSI"].get_ydata() == pytest.approx(arrays["csi_high"][:, 0])
    assert lines["lr 0.01: mean BSI of 4 neurons"].get_ydata() == pytest.approx([0.15, 0.2, 0.3])


def test_neuron_figure_says_so_when_a_run_ends_without_a_finite_bsi(tmp_path):
    arrays = training_npz(tmp_path / "d-m.npz")
    arrays["bsi_high"][-1] = np.nan  # a diverged high run
    np.savez(tmp_path / "d-m.npz", **arrays)
    assert figures_extra.chosen_neuron(arrays["bsi_high"]) is None
    fig = figures_extra.neuron_figure(tmp_path / "d-m.npz", "s", "d", "m", [tmp_path / "n.png"])
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert "lr 0.5: no finite BSI at the end" in labels and "lr 0.01, neuron 2: BSI" in labels
