# Cells -> each study's tables, then one job per study draws all of its figures; then the
# paper's cross-study tables and the intervention grids.


# A failed aggregation keeps the previous tables: its outputs are flagged update(), so
# Snakemake neither deletes them before the job nor after a failure, and restores the
# previous version of each when the job fails (the job itself writes every file atomically).
# Each cell is checked against its train.json seal first (largelr.aggregate.read_cell); a
# damaged cell fails the job, naming it, and is removed so that the next run retrains it.
rule aggregate:
    input:
        summaries=lambda wc: cell_files(wc.study, "summary"),
        histories=lambda wc: cell_files(wc.study, "history"),
        predictions=lambda wc: cell_files(wc.study, "predictions"),
        analyses=lambda wc: [
            p for name in ANALYSIS_FILES for p in cell_files(wc.study, name)
        ],
    output:
        # cells, figure inputs, then every study table (largelr.registry.tables) with its renderings
        **{name: update(path) for name, path in aggregate_outputs().items()},
    log:
        "results/logs/aggregate/{study}.log",
    benchmark:
        "results/benchmarks/aggregate/{study}.tsv"
    conda:
        "../../envs/largelr.yaml"
    params:
        settings=analysis_settings,
    shell:
        "largelr aggregate --train-json {input.summaries} "
        + aggregate_arguments()
        + " --settings {params.settings:q} > {log} 2>&1"
        + LOG_FAILURE


# One figures job per study (rule figures_<study>): every family, every pair, one process.
for _study in config["studies"]:
    if not study_pairs(_study):
        continue

    rule:
        name:
            f"figures_{_study}"
        input:
            cells=f"results/{_study}/cells.parquet",
            curves=f"results/{_study}/prune_curves.parquet",
            dynamics=f"results/{_study}/dynamics.parquet",
            mechanism=f"results/tables/{_study}_mechanism.parquet",
            hilo=[f"results/{_study}/hilo/{d}-{m}.npz" for d, m in hilo_pairs(_study)],
            training_maps=[
                f"results/{_study}/training_maps/{d}-{m}.npz"
                for d, m in training_map_pairs(_study)
            ],
        output:
            study_figures(_study),
            summary=report(
                study_summary(_study),
                caption="../report/summary.rst",
                category=FIGURE_CATEGORIES["summary"],
                subcategory=_study,
            ),
        log:
            f"results/logs/figures/{_study}.log",
        benchmark:
            f"results/benchmarks/figures/{_study}.tsv"
        localrule: True
        conda:
            "../../envs/largelr.yaml"
        threads: 2  # figures are saved in parallel processes (the study's last job)
        params:
            families=" ".join(study_families(_study)),
            out_dir=f"results/figures/{_study}",
            # relative: a checkout moved elsewhere keeps its params (they trigger reruns)
            captions=os.path.relpath(Path(workflow.basedir) / "workflow/report"),
        shell:
            "largelr figures --families {params.families} --out-dir {params.out_dir} --cells {input.cells}"
            " --curves {input.curves} --dynamics {input.dynamics} --mechanism {input.mechanism}"
            " --hilo {input.hilo} --training-maps {input.training_maps} --workers {threads}"
            " --summary-html {output.summary} --caption-dir {params.captions:q} > {log} 2>&1"
            + LOG_FAILURE


rule paper_table1:
    input:
        cells=cells_tables(studies_of("table1")),
    output:
        table="results/tables/table1.parquet",
        table_md="results/tables/table1.md",
        table_tex="results/tables/table1.tex",
        compare="results/compare_paper.parquet",
        compare_md="results/compare_paper.md",
        compare_tex="results/compare_paper.tex",
    log:
        "results/logs/paper_tables/table1.log",
    benchmark:
        "results/benchmarks/paper_tables/table1.tsv"
    conda:
        "../../envs/largelr.yaml"
    shell:
        "largelr paper-tables --table1-cells {input.cells} --out-table1 {output.table}"
        " --out-compare {output.compare} > {log} 2>&1" + LOG_FAILURE


rule paper_table2:
    input:
        interventions=cells_tables(studies_of("table2")),
        lr_grids=cells_tables(studies_of("table1")),
    output:
        table="results/tables/table2.parquet",
        table_md="results/tables/table2.md",
        table_tex="results/tables/table2.tex",
    log:
        "results/logs/paper_tables/table2.log",
    benchmark:
        "results/benchmarks/paper_tables/table2.tsv"
    conda:
        "../../envs/largelr.yaml"
    shell:
        "largelr paper-tables --table2-cells {input.interventions} --table1-cells {input.lr_grids}"
        " --out-table2 {output.table} > {log} 2>&1" + LOG_FAILURE


rule intervention_figure:
    input:
        interventions=cells_tables(studies_of("table2")),
        lr_grids=cells_tables(studies_of("table1")),
    output:
        png=report(
            "results/figures/interventions-{dataset}-{model}.png",
            caption="../report/interventions.rst",
            category=FIGURE_CATEGORIES["interventions"],
        ),
        pdf="results/figures/interventions-{dataset}-{model}.pdf",
    log:
        "results/logs/figure/interventions-{dataset}-{model}.log",
    benchmark:
        "results/benchmarks/figure/interventions-{dataset}-{model}.tsv"
    conda:
        "../../envs/largelr.yaml"
    shell:
        "largelr intervention-figure --cells {input.interventions} {input.lr_grids}"
        " --dataset {wildcards.dataset} --model {wildcards.model} --out {output} > {log} 2>&1"
        + LOG_FAILURE


# Fig. 9: a landscape's studies side by side, one row per study (its `axis` value).
rule landscape_figure:
    input:
        cells=lambda wc: cells_tables(landscapes(config)[wc.landscape]["studies"]),
    output:
        png=report(
            "results/figures/landscape-{landscape}-{dataset}-{model}.png",
            caption="../report/landscape.rst",
            category=FIGURE_CATEGORIES["landscape"],
        ),
        pdf="results/figures/landscape-{landscape}-{dataset}-{model}.pdf",
    log:
        "results/logs/figure/landscape-{landscape}-{dataset}-{model}.log",
    benchmark:
        "results/benchmarks/figure/landscape-{landscape}-{dataset}-{model}.tsv"
    conda:
        "../../envs/largelr.yaml"
    params:
        rows=landscape_row_args,
        axis=lambda wc: landscapes(config)[wc.landscape]["axis"],
        spurious=lambda wc: landscapes(config)[wc.landscape]["spurious"],
    shell:
        "largelr landscape-figure --cells {input.cells} --rows {params.rows} --axis {params.axis}"
        " --spurious {params.spurious} --name {wildcards.landscape} --dataset {wildcards.dataset}"
        " --model {wildcards.model} --out {output} > {log} 2>&1"


localrules:
    aggregate,
    paper_table1,
    paper_table2,
    intervention_figure,
    landscape_figure,
