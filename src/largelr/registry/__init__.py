"""Declarations: one torch-free record per extension point.

Validation, the rules' outputs, Slurm resources and CLI choices are derived from these records;
each record names its implementation by import path, imported only on use, so that Snakemake's
parse (which imports :mod:`largelr.config`) never imports torch.

- ``MODELS`` (:mod:`largelr.registry.models`): a model's parameters, class, traits and cost;
- ``ANALYSES``, ``STUDY_STEPS`` (:mod:`largelr.registry.analyses`): an analysis' settings and columns;
- ``KINDS`` (:mod:`largelr.registry.kinds`): a dataset kind's parameters and traits.
"""

from largelr.registry.analyses import ANALYSES, ANALYSIS_KEYS, STUDY_STEPS, AnalysisRecord
from largelr.registry.kinds import KINDS
from largelr.registry.models import MODELS, ModelRecord

# Figure families and study tables: their records (largelr.registry.figures, .tables) are added here.

__all__ = ["ANALYSES", "ANALYSIS_KEYS", "KINDS", "MODELS", "STUDY_STEPS", "AnalysisRecord", "ModelRecord"]
