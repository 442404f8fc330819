# Datasets are built once and shared by every cell that trains on them; the same job writes
# the dataset's card (sizes, group counts, realized rho, a grid of samples per group).


rule data:
    output:
        data="results/data/{dataset}.pt",
        card_json="results/data/{dataset}.json",
        card_png=report(
            "results/data/{dataset}.png", category=FIGURE_CATEGORIES["datasets"]
        ),
    log:
        "results/logs/data/{dataset}.log",
    benchmark:
        "results/benchmarks/data/{dataset}.tsv"
    conda:
        "../../envs/largelr.yaml"
    params:
        kind=lambda wc: study_config.dataset_kind(config, wc.dataset),
        construction=lambda wc: json.dumps(
            study_config.dataset_params(config, wc.dataset), sort_keys=True
        ),
        seed=lambda wc: study_config.dataset_seed(config, wc.dataset),
    # data_root is not a param: moving the raw data rebuilds nothing (the files are the same).
    shell:
        "largelr data --name {wildcards.dataset} --kind {params.kind} --params {params.construction:q}"
        f" --seed {{params.seed}} --data-root {shlex.quote(DATA_ROOT).replace('{', '{{').replace('}', '}}')} --out {{output.data}}"
        " --card-json {output.card_json} --card-png {output.card_png} > {log} 2>&1"
        + LOG_FAILURE
