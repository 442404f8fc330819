"""Declarations: one torch-free record per extension point.

Validation, the rules' outputs, Slurm resources and CLI choices are derived from these records;
each record names its implementation by import path, imported only on use, so that Snakemake's
parse (which imports :mod:`largelr.config`) never imports torch.

- ``MODELS`` (:mod:`largelr.registry.models`): a model's parameters, class, traits and cost;
- ``ANALYSES``, ``STUDY_STEPS`` (:mod:`largelr.registry.analyses`): an analysis' settings and columns;
- ``KINDS`` (:mod:`largelr.registry.kinds`): a dataset kind's parameters and traits;
- ``FIGURE_FAMILIES``, ``STUDY_TABLES`` (:mod:`largelr.registry.figures`, ``.tables``): to be wired below.
"""

from largelr.registry.analyses import ANALYSES, ANALYSIS_KEYS, STUDY_STEPS, AnalysisRecord
from largelr.registry.models import MODELS, ModelRecord

# --- records of the other extension points (wired at merge) ------------------------------------
# KINDS: largelr.registry.kinds (torch-free dataset kind records; here still re-exported from
# largelr.datasets). FIGURE_FAMILIES: largelr.registry.figures. STUDY_TABLES: largelr.registry.tables.
from largelr.registry.kinds import KINDS

__all__ = ["ANALYSES", "ANALYSIS_KEYS", "KINDS", "MODELS", "STUDY_STEPS", "AnalysisRecord", "ModelRecord"]
# --- end of the records wired at merge ----------------------------------------------------------
