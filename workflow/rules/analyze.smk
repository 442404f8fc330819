# Analyses of one trained cell: structured pruning, representation statistics and
# attributions. One job writes all three tables: each job pays a fixed start-up
# (interpreter, torch, dataset, model) that is larger than the demo-sized analyses
# themselves, so one job per cell instead of three (see README, "Measured").


rule analyze:
    input:
        data=rules.data.output[0],
        model=rules.train.output.model,
        summary=rules.train.output.summary,
    output:
        prune=f"{CELL}/prune.parquet",
        represent=f"{CELL}/represent.parquet",
        attribute=f"{CELL}/attribute.parquet",
    log:
        f"results/logs/analyze/{CELL_ID}.log",
    benchmark:
        f"results/benchmarks/analyze/{CELL_ID}.tsv"
    threads: 1
    resources:
        gpu=1 if DEVICE.startswith("cuda") else 0,
    params:
        settings=analysis_settings,
        cell_dir=lambda wc, input: os.path.dirname(input.summary),
        device=DEVICE,
    shell:
        "largelr analyze --cell-dir {params.cell_dir} --data {input.data}"
        " --settings {params.settings:q} --device {params.device} --threads {threads} > {log} 2>&1"
