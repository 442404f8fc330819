# Notices at parse time, once, in the main Snakemake process (not in the jobs it starts on a
# cluster), for the studies this run builds: missing data, absent segmenter weights, damaged
# dataset files (rebuilt without retraining a cell).
from largelr.seals import repair_dataset
from largelr.weights import background_notice


def command_line_targets():
    """Targets of this run. Snakemake sets its DAG targets only after the Snakefile is parsed, so
    they are read from the `snakemake` command line (largelr.targets); Snakemake's Python API: none.
    """
    settings = getattr(workflow, "dag_settings", None)
    if settings is not None and settings.targets:
        return [str(target) for target in settings.targets]
    return target_helpers.command_line_targets(sys.argv)


def requested_studies(targets):
    """Studies the given targets build (largelr.targets.requested_studies)."""
    return target_helpers.requested_studies(targets, config["studies"], DEFAULT_STUDIES)


def report_missing_data(studies):
    """One block, before anything is scheduled: each study that cannot run (fully or in
    part) because data is missing, then each missing dataset with the files it needs."""
    notice = target_helpers.missing_data_report(
        {study: study_config.study_datasets(config, study) for study in studies},
        missing_reason,
        DATA_ROOT,
        DRY_RUN,
    )
    if notice:
        print(notice, file=sys.stderr)


def report_background(studies):
    """One notice at parse time when `background: auto` would want a segmenter whose weights file
    is absent: which studies' outputs will lack the background share, and which file goes where.
    """
    notice = background_notice(
        {
            study: {
                "analysis": study_config.AnalysisSettings(
                    study_config.analysis_settings(config, study)
                ),
                "datasets": {d: dataset_facts(d) for d, _ in study_pairs(study)},
            }
            for study in studies
        }
    )
    if notice:
        print(f"largelr: {notice}", file=sys.stderr)


def dataset_facts(dataset):
    kind = KINDS[study_config.dataset_kind(config, dataset)]
    return {**kind.traits, "image": not kind.flat_inputs}


def repair_datasets(studies):
    """Damaged or deleted dataset files of the studies: rebuilt by this run, no cell retrained."""
    for dataset in dict.fromkeys(
        d for s in studies for d in study_config.study_datasets(config, s)
    ):
        if dataset_unchanged(dataset):
            notice = repair_dataset(
                DATASET_FILE.format(dataset=dataset),
                DATASET_CARD.format(dataset=dataset),
            )
            if notice:
                print(f"largelr: {notice}", file=sys.stderr)


if workflow.is_main_process:
    _requested = requested_studies(command_line_targets())
    report_missing_data(_requested)
    report_background(_requested)
    repair_datasets(_requested)
