# Analyses of one trained cell. The three steps share one shape, so they are
# declared in a loop: `prune`, `represent` and `attribute` are ordinary rules.

for _step in ("prune", "represent", "attribute"):

    rule:
        name:
            _step
        input:
            data=rules.data.output[0],
            model=rules.train.output.model,
            summary=rules.train.output.summary,
        output:
            f"{CELL}/{_step}.parquet",
        params:
            step=_step,
            settings=analysis_settings,
            cell_dir=CELL,
            device=DEVICE,
        log:
            f"results/logs/{_step}/{CELL_ID}.log",
        benchmark:
            f"results/benchmarks/{_step}/{CELL_ID}.tsv"
        threads: 1
        shell:
            "largelr {params.step} --cell-dir {params.cell_dir} --data {input.data}"
            " --settings {params.settings:q} --device {params.device} --threads {threads}"
            " --out {output} > {log} 2>&1"
