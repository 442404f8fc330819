# Cells -> the study's tables and figures.


rule aggregate:
    input:
        summaries=lambda wc: cell_files(wc.study, "train.json"),
        analyses=lambda wc: [
            path
            for table in ("prune", "represent", "attribute")
            for path in cell_files(wc.study, f"{table}.parquet")
        ],
    output:
        cells="results/{study}/cells.parquet",
        table1="results/tables/{study}_table1.parquet",
    log:
        "results/logs/aggregate/{study}.log",
    benchmark:
        "results/benchmarks/aggregate/{study}.tsv"
    shell:
        "largelr aggregate --train-json {input.summaries} --out-cells {output.cells}"
        " --out-table1 {output.table1} > {log} 2>&1"


rule figure:
    input:
        cells=rules.aggregate.output.cells,
    output:
        report(
            "results/figures/{study}/{dataset}-{model}.png",
            caption="../report/normalized.rst",
            category="{study}",
        ),
    log:
        "results/logs/figure/{study}/{dataset}-{model}.log",
    benchmark:
        "results/benchmarks/figure/{study}/{dataset}-{model}.tsv"
    shell:
        "largelr figure --cells {input.cells} --dataset {wildcards.dataset} --model {wildcards.model}"
        " --out {output} > {log} 2>&1"


localrules:
    aggregate,
    figure,
