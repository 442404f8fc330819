# Analyses of one trained cell: structured pruning, representation statistics and
# attributions. One job writes all three tables: each job pays a fixed start-up
# (interpreter, torch, dataset, model) that is larger than the demo-sized analyses
# themselves, so one job per cell instead of three (see README, "Measured").
# Then, per (study, dataset, model), the hi/lo learning-rate attribution maps.


rule analyze:
    input:
        data=rules.data.output.data,
        model=rules.train.output.model,
        summary=rules.train.output.summary,
    output:
        **cell_outputs(ANALYSIS_FILES),
    log:
        f"results/logs/analyze/{CELL_ID}.log",
    benchmark:
        f"results/benchmarks/analyze/{CELL_ID}.tsv"
    conda:
        "../../envs/largelr.yaml"
    threads: 1
    resources:
        gpu=1 if GPU_JOBS else 0,
    params:
        settings=analysis_settings,
        cell_dir=CELL_DIR,
        device=DEVICE,
    shell:
        GPU_SLOT + "largelr analyze --cell-dir {params.cell_dir} --data {input.data}"
        " --settings {params.settings:q} --device {params.device} --threads {threads} > {log} 2>&1"


rule hilo:
    input:
        data=rules.data.output.data,
        low=lambda wc: hilo_model_files(wc, 0),
        high=lambda wc: hilo_model_files(wc, 1),
    output:
        "results/{study}/hilo/{dataset}-{model}.npz",
    log:
        "results/logs/hilo/{study}/{dataset}-{model}.log",
    benchmark:
        "results/benchmarks/hilo/{study}/{dataset}-{model}.tsv"
    conda:
        "../../envs/largelr.yaml"
    threads: 1
    resources:
        gpu=1 if GPU_JOBS else 0,
    params:
        settings=analysis_settings,
        lr_low=lambda wc: hilo_values(wc)[0],
        lr_high=lambda wc: hilo_values(wc)[1],
        device=DEVICE,
    shell:
        GPU_SLOT + "largelr hilo --data {input.data} --models-low {input.low} --models-high {input.high}"
        " --lr-low {params.lr_low} --lr-high {params.lr_high} --settings {params.settings:q}"
        " --device {params.device} --threads {threads} --out {output} > {log} 2>&1"
