# Analyses of one trained cell: structured pruning, representation statistics and
# attributions. One job writes all three tables: each job pays a fixed start-up
# (interpreter, torch, dataset, model) that is larger than the demo-sized analyses
# themselves, so one job per cell instead of three (docs/performance.md).
# Then, per (study, dataset, model), the hi/lo learning-rate attribution maps.


rule analyze:
    input:
        data=dataset_input,
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
        device=device_identity(),
    shell:
        GPU_SLOT + "largelr analyze --cell-dir {params.cell_dir} --data {input.data}"
        " --settings {params.settings:q}"
        f" --device {DEVICE} --threads {{threads}} > {{log}} 2>&1" + LOG_FAILURE


rule hilo:
    input:
        data=dataset_input,
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
        device=device_identity(),
    shell:
        GPU_SLOT
        + "largelr hilo --data {input.data} --models-low {input.low} --models-high {input.high}"
        " --lr-low {params.lr_low} --lr-high {params.lr_high} --settings {params.settings:q}"
        f" --device {DEVICE} --threads {{threads}} --out {{output}} > {{log}} 2>&1"
        + LOG_FAILURE


# Figs 13 (maps over training) and 28 (one neuron over training): the first seed at the pair's low
# and high value, replayed and observed at training_map_steps (largelr.over_training).
rule training_maps:
    input:
        data=dataset_input,
        low_model=lambda wc: training_map_cell(wc, 0).file("model"),
        low_summary=lambda wc: training_map_cell(wc, 0).file("summary"),
        high_model=lambda wc: training_map_cell(wc, 1).file("model"),
        high_summary=lambda wc: training_map_cell(wc, 1).file("summary"),
    output:
        "results/{study}/training_maps/{dataset}-{model}.npz",
    log:
        "results/logs/training_maps/{study}/{dataset}-{model}.log",
    benchmark:
        "results/benchmarks/training_maps/{study}/{dataset}-{model}.tsv"
    conda:
        "../../envs/largelr.yaml"
    threads: 1
    resources:
        gpu=1 if GPU_JOBS else 0,
    params:
        settings=analysis_settings,
        spec_low=lambda wc: training_map_spec(wc, 0),
        spec_high=lambda wc: training_map_spec(wc, 1),
        device=device_identity(),
    shell:
        GPU_SLOT
        + "largelr training-maps --data {input.data} --spec-low {params.spec_low:q} --spec-high {params.spec_high:q}"
        " --model-low {input.low_model} --model-high {input.high_model} --summary-low {input.low_summary}"
        " --summary-high {input.high_summary} --settings {params.settings:q}"
        f" --device {DEVICE} --threads {{threads}} --out {{output}} > {{log}} 2>&1"
        + LOG_FAILURE
