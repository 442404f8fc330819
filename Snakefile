# largelr: study grids -> cells -> analyses -> tables and figures.
# Read top-down: config and its validation, the rules by stage, the targets.
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/analyze.smk"
include: "workflow/rules/aggregate.smk"


rule all:
    default_target: True
    input:
        study_targets(DEFAULT_STUDIES),
        paper_targets(),


# One target rule per study: `snakemake --cores all demo`.
for _study in config["studies"]:

    rule:
        name:
            _study
        input:
            study_targets([_study]),
