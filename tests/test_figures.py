"""Figures: files written in every format asked for, and the numbers they state (study, seeds,
raw min/max behind each normalized curve, Pearson r) checked against values worked out here."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from largelr import figures

PNG = b"\x89PNG\r\n\x1a\n"


def fake_cells(study="s", knob="lr", values=(0.01, 0.1, 1.0), seeds=(0, 1), in_range=None) -> pd.DataFrame:
    rows = []
    for i, value in enumerate(values):
        for seed in seeds:
            rows.append(
                {
                    "study": study,
                    "dataset": "d",
                    "model": "m",
                    "knob": knob,
                    "value": value,
                    "seed": seed,
                    "test_acc": 0.5 + 0.1 * i + 0.02 * seed,
                    "prunability": 0.3 + 0.05 * i,
                    "csi": 0.2,
                    "class_sep": 0.1 * (i + 1),
                    "compressibility": 0.4,
                    "max_bc_loss_ratio": 0.1 * i + 0.01 * seed,
                    "in_range": True if in_range is None else in_range[i],
                }
            )
    cells = pd.DataFrame(rows)
    return cells.assign(included=cells["in_range"], left_out=np.where(cells["in_range"], "", "past the usable range"))


def legend_texts(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def assert_written(tmp_path, stem: str) -> None:
    assert (tmp_path / f"{stem}.png").read_bytes()[:8] == PNG
    assert (tmp_path / f"{stem}.pdf").read_bytes()[:5] == b"%PDF-"


def test_normalization_uses_min_and_max_of_the_seed_means():
    long = pd.DataFrame(
        {"variable": ["a"] * 4 + ["flat"] * 2, "value": [1, 1, 2, 2, 1, 2], "raw": [0.1, 0.3, 0.5, 0.7, 3.0, 3.0]}
    )
    scaled, bounds = figures.normalize_per_variable(long)
    # seed means 0.2 (value 1) and 0.6 (value 2)
    assert bounds["a"] == pytest.approx((0.2, 0.6)) and bounds["flat"] == pytest.approx((3.0, 3.0), rel=1e-12)
    assert scaled["normalized"].tolist() == pytest.approx([-0.25, 0.25, 0.75, 1.25, 0.5, 0.5])


def test_normalized_figure_states_study_seeds_and_raw_ranges_and_leaves_out_past_range_cells(tmp_path):
    cells = fake_cells(in_range=[True, True, False])
    fig = figures.pair_figure(cells, "d", "m", [tmp_path / "f.png", tmp_path / "f.pdf"])
    assert_written(tmp_path, "f")
    ax = fig.axes[0]
    assert ax.get_title().startswith("s: d × m") and "2 seeds, 4 of 6 cells" in ax.get_title()
    assert "left out: 2 past the usable range" in ax.get_title()
    texts = legend_texts(ax)
    # test_acc seed means over the usable values: 0.51 and 0.61
    assert "unbiased test acc.  [0.51, 0.61]" in texts
    assert "class separation R²  [0.1, 0.2]" in texts
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.01", "0.1"]


def test_intervention_grid_puts_lr_first_and_normalizes_each_panel(tmp_path):
    lr = fake_cells(study="lr_grid")
    momentum = fake_cells(study="momentum_study", knob="momentum", values=(0.5, 0.9))
    momentum["test_acc"] = [0.4, 0.4, 0.8, 0.8]
    fig = figures.intervention_grid(pd.concat([momentum, lr]), "d", "m", [tmp_path / "g.png", tmp_path / "g.pdf"])
    assert_written(tmp_path, "g")
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["lr_grid (lr), 2 seeds", "momentum_study (momentum), 2 seeds"]
    assert "unbiased test acc.  [0.4, 0.8]" in legend_texts(fig.axes[1])
    assert "unbiased test acc.  [0.51, 0.71]" in legend_texts(fig.axes[0])


def test_pruning_figure_draws_one_line_per_usable_value_and_panel_per_method(tmp_path):
    cells = fake_cells(in_range=[True, True, False])
    curves = pd.DataFrame(
        [
            {
                "study": "s",
                "dataset": "d",
                "model": "m",
                "knob": "lr",
                "value": v,
                "seed": s,
                "method": method,
                "kappa": k,
                "retention": 1 - k * v,
            }
            for v in (0.01, 0.1, 1.0)
            for s in (0, 1)
            for method in ("structured", "magnitude")
            for k in (0.0, 0.5)
        ]
    )
    fig = figures.pruning_figure(curves, cells, "d", "m", [tmp_path / "p.png", tmp_path / "p.pdf"])
    assert_written(tmp_path, "p")
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == [
        "structured: neurons / kernels (the paper's)",
        "magnitude: weights, per layer",
    ]
    # lr 1.0 is past the usable range; each value names the seed-mean accuracy its retention is relative to
    assert legend_texts(panels[0]) == ["0.01 (acc 0.51)", "0.1 (acc 0.61)"]
    assert "2 seeds" in fig._suptitle.get_text() and "2 past the usable range" in fig._suptitle.get_text()


def test_dynamics_figure_adds_the_spurious_share_panel_only_when_recorded(tmp_path):
    cells = fake_cells()
    history = pd.DataFrame(
        [
            {
                "study": "s",
                "dataset": "d",
                "model": "m",
                "knob": "lr",
                "value": v,
                "seed": s,
                "step": step,
                "bc_loss_ratio": 0.1 * step * v,
            }
            for v in (0.01, 0.1, 1.0)
            for s in (0, 1)
            for step in range(1, 6)
        ]
    )
    fig = figures.dynamics_figure(history, cells, "d", "m", [tmp_path / "h.png"])
    assert len([ax for ax in fig.axes if ax.get_ylabel()]) == 1
    fig = figures.dynamics_figure(history.assign(spurious_share=0.3), cells, "d", "m", [tmp_path / "h.png"])
    assert [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()] == [
        "BC loss ratio (share of batch CE)",
        "spurious attribution share",
    ]
    assert "mean over seeds" in fig._suptitle.get_text() and "2 seeds, 6 of 6 cells" in fig._suptitle.get_text()


def test_mechanism_figure_prints_the_pearson_r_of_the_cells(tmp_path):
    from largelr.aggregate import mechanism_table

    cells = fake_cells()
    cells["max_bc_loss_ratio"] = [0.1, 0.3, 0.2, 0.6, 0.5, 0.4]
    r = np.corrcoef(cells["max_bc_loss_ratio"], cells["test_acc"])[0, 1]
    fig = figures.mechanism_figure(cells, mechanism_table(cells), [tmp_path / "x.png", tmp_path / "x.pdf"])
    assert_written(tmp_path, "x")
    assert fig.axes[0].get_title() == f"d × m: r = {r:.2f} (n = 6)"


def write_hilo(path, n: int, shape=(3, 8, 8)) -> None:
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(n, *shape)).astype(np.float32)
    np.savez(
        path,
        images=rng.random((n, *shape), dtype=np.float32),
        labels=np.arange(n, dtype=np.int64),
        indices=np.arange(n, dtype=np.int64) + 100,
        maps_low=maps,
        maps_high=2 * maps,
        correct_low=np.full(n, 0.1, np.float32),
        correct_high=np.full(n, 0.9, np.float32),
        lr_low=np.float64(0.01),
        lr_high=np.float64(0.5),
    )


def test_hilo_figure_shows_image_and_both_maps_per_sample(tmp_path):
    write_hilo(tmp_path / "h.npz", 3)
    fig = figures.hilo_figure(tmp_path / "h.npz", "lr_cifar10", "d", "m", 10, [tmp_path / "a.png", tmp_path / "a.pdf"])
    assert_written(tmp_path, "a")
    assert len(fig.axes) == 9
    with np.load(tmp_path / "h.npz") as data:
        peak = float(np.abs(data["maps_low"][0]).sum(0).max())
    assert fig.axes[0].get_title() == "test #100, label 0"
    assert fig.axes[1].get_title() == f"lr 0.01: 10% right, max |IG| {peak:.2g}"
    assert fig.axes[2].get_title() == f"lr 0.5: 90% right, max |IG| {2 * peak:.2g}"
    assert "10 seeds per lr" in fig._suptitle.get_text()


def test_hilo_figure_without_samples_says_so_and_rejects_incomplete_files(tmp_path):
    write_hilo(tmp_path / "empty.npz", 0)
    fig = figures.hilo_figure(tmp_path / "empty.npz", "s", "d", "m", 10, [tmp_path / "e.png"])
    assert "no test sample" in fig.axes[0].texts[0].get_text()
    np.savez(tmp_path / "bad.npz", images=np.zeros((1, 1, 2, 2)))
    with pytest.raises(ValueError, match="maps_high"):
        figures.hilo_figure(tmp_path / "bad.npz", "s", "d", "m", 10, [tmp_path / "b.png"])


def test_unknown_figure_format_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"\.png, \.pdf"):
        figures.placeholder_figure("x", [tmp_path / "f.jpeg"])


def test_hilo_figure_draws_flat_inputs_as_one_row_of_pixels(tmp_path):
    write_hilo(tmp_path / "flat.npz", 2, shape=(14,))  # parity: a vector of +-1 bits per sample
    fig = figures.hilo_figure(tmp_path / "flat.npz", "s", "parity", "fcn", 3, [tmp_path / "f.png"])
    with np.load(tmp_path / "flat.npz") as data:
        peak = float(np.abs(data["maps_high"][1]).max())
    assert fig.axes[5].get_images()[0].get_array().shape == (1, 14)
    assert fig.axes[5].get_title() == f"lr 0.5: 90% right, max |IG| {peak:.2g}"


def test_compressibility_figure_puts_every_prunability_and_activation_statistic_side_by_side(tmp_path):
    cells = fake_cells(in_range=[True, True, False])
    cells["prunability_structured"] = cells["prunability"]
    cells["prunability_magnitude"] = 0.9 - 0.1 * cells["value"]
    cells["sparsity"], cells["pq_index"] = 0.5 + 0.1 * cells["value"], 0.3
    fig = figures.compressibility_figure(cells, "d", "m", [tmp_path / "c.png", tmp_path / "c.pdf"])
    assert_written(tmp_path, "c")
    texts = legend_texts(fig.axes[0])
    # seed means over the two included values: prunability 0.3 and 0.35; sparsity 0.501 and 0.51
    assert "prunability (structured)  [0.3, 0.35]" in texts and "act. sparsity  [0.501, 0.51]" in texts
    assert any(t.startswith("prunability (magnitude)") for t in texts) and any(
        t.startswith("act. PQ-index") for t in texts
    )
    assert "2 past the usable range" in fig.axes[0].get_title()


def test_csi_core_figure_draws_one_point_per_included_cell_with_its_correlation(tmp_path):
    cells = fake_cells(in_range=[True, True, False])
    cells["core_share"] = [0.2, 0.3, 0.5, 0.6, 0.9, 0.9]
    cells["csi"] = [0.1, 0.2, 0.3, 0.5, 0.0, 0.0]
    fig = figures.csi_core_figure(cells, [tmp_path / "k.png", tmp_path / "k.pdf"])
    assert_written(tmp_path, "k")
    included = cells[cells["included"]]
    r = np.corrcoef(included["core_share"], included["csi"])[0, 1]
    assert fig.axes[0].get_title() == f"d × m: r = {r:.2f} (n = 4)"
    assert len(fig.axes[0].collections[0].get_offsets()) == 4
    fig = figures.csi_core_figure(cells.drop(columns="core_share"), [tmp_path / "none.png"])
    assert "no included cell" in fig.axes[0].texts[0].get_text()


def test_batch_size_sweeps_are_drawn_against_one_over_b(tmp_path):
    cells = fake_cells(knob="batch_size", values=(10, 50, 100))
    fig = figures.pair_figure(cells, "d", "m", [tmp_path / "b.png"])
    ax = fig.axes[0]
    assert ax.get_xlabel() == "1 / batch size"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.01", "0.02", "0.1"]


def test_study_figures_draw_the_families_asked_for_in_parallel_processes(tmp_path):
    # Only the normalized family: no pruning curves or dynamics are needed. Two worker processes
    # write the same files as one process.
    cells = pd.concat([fake_cells(), fake_cells().assign(dataset="e")], ignore_index=True)
    cells.to_parquet(tmp_path / "cells.parquet")
    for workers in (1, 2):
        out = tmp_path / f"workers{workers}"
        figures.draw_study_figures(
            ["normalized", "compressibility"], out, str(tmp_path / "cells.parquet"), formats=("png",), workers=workers
        )
        assert sorted(p.name for p in out.iterdir()) == [
            "d-m.compressibility.png",
            "d-m.png",
            "e-m.compressibility.png",
            "e-m.png",
        ]
        assert all(p.read_bytes()[:8] == PNG for p in out.iterdir())
    with pytest.raises(SystemExit, match="--curves is required"):
        figures.draw_study_figures(["pruning"], tmp_path / "none", str(tmp_path / "cells.parquet"))


def test_legend_colours_do_not_repeat_with_more_than_ten_variables(tmp_path):
    cells = fake_cells().assign(
        sparsity=0.3,
        pq_index=0.2,
        spurious_share=0.4,
        core_share=0.5,
        noise_share=0.1,
        attribution_entropy=2.0,
        test_worst_group_acc=0.45,
        background_share=0.2,
    )
    fig = figures.pair_figure(cells, "d", "m", [tmp_path / "f.png"])
    handles = fig.axes[0].get_legend().legend_handles
    colours = [tuple(h.get_color()) if hasattr(h, "get_color") else None for h in handles]
    assert len(colours) > 10 and len(set(colours)) == len(colours)
