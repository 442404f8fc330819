# Cells -> each study's tables and figures, then the paper's cross-study tables.


rule aggregate:
    input:
        summaries=lambda wc: cell_files(wc.study, "train.json"),
        histories=lambda wc: cell_files(wc.study, "history.parquet"),
        analyses=lambda wc: [
            path
            for table in ("prune", "represent", "attribute")
            for path in cell_files(wc.study, f"{table}.parquet")
        ],
    output:
        cells="results/{study}/cells.parquet",
        curves="results/{study}/prune_curves.parquet",
        dynamics="results/{study}/dynamics.parquet",
        table1="results/tables/{study}_table1.parquet",
        table1_md="results/tables/{study}_table1.md",
        stats="results/tables/{study}_stats.parquet",
        stats_md="results/tables/{study}_stats.md",
        mechanism="results/tables/{study}_mechanism.parquet",
        mechanism_md="results/tables/{study}_mechanism.md",
    log:
        "results/logs/aggregate/{study}.log",
    benchmark:
        "results/benchmarks/aggregate/{study}.tsv"
    conda:
        "../../envs/largelr.yaml"
    shell:
        "largelr aggregate --train-json {input.summaries} --out-cells {output.cells}"
        " --out-table1 {output.table1} --out-stats {output.stats} --out-mechanism {output.mechanism}"
        " --out-curves {output.curves} --out-dynamics {output.dynamics} > {log} 2>&1"


rule figure:
    input:
        cells=rules.aggregate.output.cells,
    output:
        png=report(
            "results/figures/{study}/{dataset}-{model}.png",
            caption="../report/normalized.rst",
            category="{study}",
            subcategory="normalized",
        ),
        pdf="results/figures/{study}/{dataset}-{model}.pdf",
    log:
        "results/logs/figure/{study}/{dataset}-{model}.log",
    benchmark:
        "results/benchmarks/figure/{study}/{dataset}-{model}.tsv"
    conda:
        "../../envs/largelr.yaml"
    shell:
        "largelr figure --kind normalized --cells {input.cells} --dataset {wildcards.dataset}"
        " --model {wildcards.model} --out {output} > {log} 2>&1"


rule pruning_figure:
    input:
        cells=rules.aggregate.output.cells,
        curves=rules.aggregate.output.curves,
    output:
        png=report(
            "results/figures/{study}/{dataset}-{model}.pruning.png",
            caption="../report/pruning.rst",
            category="{study}",
            subcategory="pruning curves",
        ),
        pdf="results/figures/{study}/{dataset}-{model}.pruning.pdf",
    log:
        "results/logs/figure/{study}/{dataset}-{model}.pruning.log",
    conda:
        "../../envs/largelr.yaml"
    shell:
        "largelr figure --kind pruning --cells {input.cells} --curves {input.curves}"
        " --dataset {wildcards.dataset} --model {wildcards.model} --out {output} > {log} 2>&1"


rule dynamics_figure:
    input:
        cells=rules.aggregate.output.cells,
        history=rules.aggregate.output.dynamics,
    output:
        png=report(
            "results/figures/{study}/{dataset}-{model}.dynamics.png",
            caption="../report/dynamics.rst",
            category="{study}",
            subcategory="training dynamics",
        ),
        pdf="results/figures/{study}/{dataset}-{model}.dynamics.pdf",
    log:
        "results/logs/figure/{study}/{dataset}-{model}.dynamics.log",
    conda:
        "../../envs/largelr.yaml"
    shell:
        "largelr figure --kind dynamics --cells {input.cells} --history {input.history}"
        " --dataset {wildcards.dataset} --model {wildcards.model} --out {output} > {log} 2>&1"


rule mechanism_figure:
    input:
        cells=rules.aggregate.output.cells,
        mechanism=rules.aggregate.output.mechanism,
    output:
        png=report(
            "results/figures/{study}/mechanism.png",
            caption="../report/mechanism.rst",
            category="{study}",
            subcategory="mechanism",
        ),
        pdf="results/figures/{study}/mechanism.pdf",
    log:
        "results/logs/figure/{study}/mechanism.log",
    conda:
        "../../envs/largelr.yaml"
    shell:
        "largelr figure --kind mechanism --cells {input.cells} --mechanism {input.mechanism}"
        " --out {output} > {log} 2>&1"


rule hilo_figure:
    input:
        hilo="results/{study}/hilo/{dataset}-{model}.npz",
    output:
        png=report(
            "results/figures/{study}/{dataset}-{model}.hilo.png",
            caption="../report/hilo.rst",
            category="{study}",
            subcategory="attribution maps",
        ),
        pdf="results/figures/{study}/{dataset}-{model}.hilo.pdf",
    log:
        "results/logs/figure/{study}/{dataset}-{model}.hilo.log",
    conda:
        "../../envs/largelr.yaml"
    params:
        n_seeds=lambda wc: len(config["studies"][wc.study]["seeds"]),
    shell:
        "largelr figure --kind hilo --hilo {input.hilo} --study {wildcards.study}"
        " --n-seeds {params.n_seeds} --dataset {wildcards.dataset} --model {wildcards.model}"
        " --out {output} > {log} 2>&1"


rule paper_table1:
    input:
        cells=cells_tables(studies_of("table1")),
    output:
        table="results/tables/table1.parquet",
        table_md="results/tables/table1.md",
        compare="results/compare_paper.parquet",
        compare_md="results/compare_paper.md",
    log:
        "results/logs/paper_tables/table1.log",
    conda:
        "../../envs/largelr.yaml"
    shell:
        "largelr paper-tables --table1-cells {input.cells} --out-table1 {output.table}"
        " --out-compare {output.compare} > {log} 2>&1"


rule paper_table2:
    input:
        interventions=cells_tables(studies_of("table2")),
        lr_grids=cells_tables(studies_of("table1")),
    output:
        table="results/tables/table2.parquet",
        table_md="results/tables/table2.md",
    log:
        "results/logs/paper_tables/table2.log",
    conda:
        "../../envs/largelr.yaml"
    shell:
        "largelr paper-tables --table2-cells {input.interventions} --table1-cells {input.lr_grids}"
        " --out-table2 {output.table} > {log} 2>&1"


rule intervention_figure:
    input:
        interventions=cells_tables(studies_of("table2")),
        lr_grids=cells_tables(studies_of("table1")),
    output:
        png=report(
            "results/figures/interventions-{dataset}-{model}.png",
            caption="../report/interventions.rst",
            category="interventions",
        ),
        pdf="results/figures/interventions-{dataset}-{model}.pdf",
    log:
        "results/logs/figure/interventions-{dataset}-{model}.log",
    conda:
        "../../envs/largelr.yaml"
    shell:
        "largelr figure --kind interventions --cells {input.interventions} {input.lr_grids}"
        " --dataset {wildcards.dataset} --model {wildcards.model} --out {output} > {log} 2>&1"


localrules:
    aggregate,
    figure,
    pruning_figure,
    dynamics_figure,
    mechanism_figure,
    hilo_figure,
    paper_table1,
    paper_table2,
    intervention_figure,
