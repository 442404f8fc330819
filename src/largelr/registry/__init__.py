"""Declarations: one torch-free record per extension point.

Validation, the rules' outputs, Slurm resources and CLI choices are derived from these records;
each record names its implementation by import path, imported only on use, so that Snakemake's
parse (which imports :mod:`largelr.config`) never imports torch.

- ``MODELS`` (:mod:`largelr.registry.models`): a model's parameters, class, traits and cost;
- ``ANALYSES``, ``STUDY_STEPS`` (:mod:`largelr.registry.analyses`): an analysis' settings and columns;
- ``KINDS`` (:mod:`largelr.registry.kinds`): a dataset kind's parameters and traits;
- ``FIGURE_FAMILIES``, ``STUDY_TABLES`` (:mod:`largelr.registry.figures`, ``.tables``): a figure
  family's files, inputs and caption; a study table's file and writer.
"""

from largelr.registry.analyses import ANALYSES, ANALYSIS_KEYS, STUDY_STEPS, AnalysisRecord
from largelr.registry.figures import FIGURE_FAMILIES, FigureFamily
from largelr.registry.kinds import KINDS, Kind
from largelr.registry.models import MODELS, ModelRecord
from largelr.registry.tables import STUDY_TABLES, StudyTable

__all__ = [
    "ANALYSES",
    "ANALYSIS_KEYS",
    "FIGURE_FAMILIES",
    "KINDS",
    "MODELS",
    "STUDY_STEPS",
    "STUDY_TABLES",
    "AnalysisRecord",
    "FigureFamily",
    "Kind",
    "ModelRecord",
    "StudyTable",
]
