# One training cell: study x dataset x model x knob value x seed.


rule train:
    input:
        data=dataset_input,
    output:
        **cell_outputs(TRAIN_FILES),
    log:
        f"results/logs/train/{CELL_ID}.log",
    benchmark:
        f"results/benchmarks/train/{CELL_ID}.tsv"
    # Cells before analyses: the long jobs start first, and the study ends on short ones.
    priority: 1
    conda:
        "../../envs/largelr.yaml"
    threads: 1
    resources:
        gpu=1 if GPU_JOBS else 0,
    params:
        spec=train_spec,
        cell_dir=CELL_DIR,
        device=device_identity(),
    shell:
        GPU_SLOT
        + "largelr train --spec {params.spec:q} --data {input.data} --out-dir {params.cell_dir}"
        f" --device {DEVICE} --threads {{threads}} > {{log}} 2>&1" + LOG_FAILURE
