# largelr: study grids -> cells -> analyses -> tables and figures.
# Read top-down: config and its validation, the rules by stage, the targets.
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version

from largelr.config import ConfigError, read_config_file, validate_config

min_version("9.0")

# Read every config file ourselves first: a YAML syntax error or a key given twice is
# reported with its file, line and column (Snakemake says only "not valid YAML").
try:
    for _path in ("config.yaml", *workflow.overwrite_configfiles):
        if Path(_path).exists():
            read_config_file(_path)
except ConfigError as error:
    raise WorkflowError(str(error)) from None


configfile: "config.yaml"


# The report's landing page: what was run, each study's summary, the figures by the paper's numbers.
report: "workflow/report/workflow.rst"


# Structure (the JSON schema), then every name and value against its Setting: all
# problems at once, each with its key path, the value and what is allowed.
try:
    validate_config(
        config, schema=Path(workflow.basedir) / "workflow/schemas/config.schema.yaml"
    )
except ConfigError as error:
    raise WorkflowError(str(error)) from None


include: "workflow/rules/common.smk"
include: "workflow/rules/notices.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/analyze.smk"
include: "workflow/rules/aggregate.smk"


rule all:
    default_target: True
    input:
        lambda wildcards: study_targets(DEFAULT_STUDIES) + paper_targets(),


# One target rule per study: `snakemake --cores all demo`. Inputs are functions, evaluated only
# for the rules a run asks for: listing every study's files at parse time cost a second.
def study_rule_input(study):
    return lambda wildcards: study_targets([study])


for _study in config["studies"]:

    rule:
        name:
            _study
        input:
            study_rule_input(_study),
