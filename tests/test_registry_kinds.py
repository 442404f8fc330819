"""The dataset-kind records: torch-free to read, their implementation paths resolve, and the
builders behind them behave as before (the dataset tests check what they build)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from largelr.checks import defaults
from largelr.registry.kinds import KINDS, RECORDS, Kind, implementation


def test_reading_the_records_imports_neither_torch_nor_a_builder_module():
    code = (
        "import sys, largelr.registry.kinds as kinds; kinds.KINDS['parity'].check_params({}, 'x'); "
        "loaded = [name for name in sys.modules if name == 'torch' or name.startswith('largelr.datasets')]; "
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_config_reads_its_kinds_from_the_registry():
    import largelr.config_validate
    import largelr.datasets

    assert largelr.config_validate.KINDS is KINDS
    assert largelr.datasets.KINDS is KINDS  # re-exported for existing callers
    assert largelr.datasets.Kind is Kind


@pytest.mark.parametrize("kind", RECORDS, ids=[kind.name for kind in RECORDS])
def test_every_implementation_path_resolves_to_a_function(kind):
    assert callable(implementation(kind.builder)), kind.builder
    if kind.missing_check is not None:
        assert callable(implementation(kind.missing_check)), kind.missing_check


def test_names_are_unique_and_every_kind_has_a_files_check_unless_it_needs_no_files():
    assert list(KINDS) == [kind.name for kind in RECORDS]
    assert {name for name, kind in KINDS.items() if kind.missing_check is None} == {"parity", "moon_star"}


def test_a_malformed_path_is_a_clear_error():
    with pytest.raises(ValueError, match="package.module:function"):
        implementation("largelr.datasets.synthetic.build_parity")


def test_the_palette_choices_are_the_palettes_the_builder_has():
    from largelr.datasets.constructions import PALETTES
    from largelr.registry.kinds import PALETTE_NAMES

    assert tuple(PALETTES) == PALETTE_NAMES
    assert KINDS["colored_mnist"].params["palette"].choices == PALETTE_NAMES


def test_the_gray_bases_are_one_tuple():
    from largelr.datasets import bases_by_name as bases
    from largelr.registry.kinds import GRAY_BASES

    assert bases.GRAY_BASES is GRAY_BASES


@pytest.mark.parametrize("name", ["colored_digits", "double_digits"])
def test_the_shared_builders_name_the_set_after_its_base(name):
    dataset = KINDS[name].build({**defaults(KINDS[name].params), "n_train": 50, "n_test": 20}, None, 0)
    assert dataset["name"] == name


def test_build_and_missing_call_the_named_functions(tmp_path):
    parity = KINDS["parity"]
    params = parity.merged_params({"n_train": 20, "n_test": 10})
    built = parity.build(params, tmp_path, 0)
    direct = implementation("largelr.datasets.synthetic:build_parity")(params, tmp_path, 0)
    assert (built["train"]["x"] == direct["train"]["x"]).all()
    assert parity.missing(params, tmp_path) is None
    assert KINDS["celeba"].missing(KINDS["celeba"].merged_params({}), tmp_path) is not None
