# Datasets are built once and shared by every cell that trains on them.


rule data:
    output:
        "results/data/{dataset}.pt",
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
        data_root=config.get("data_root", "data"),
    shell:
        "largelr data --name {wildcards.dataset} --kind {params.kind} --params {params.construction:q}"
        " --seed {params.seed} --data-root {params.data_root:q} --out {output} > {log} 2>&1"


rule card:
    input:
        rules.data.output[0],
    output:
        json="results/data/{dataset}.json",
        png=report("results/data/{dataset}.png", category="datasets"),
    log:
        "results/logs/card/{dataset}.log",
    benchmark:
        "results/benchmarks/card/{dataset}.tsv"
    conda:
        "../../envs/largelr.yaml"
    shell:
        "largelr card --data {input} --json {output.json} --png {output.png} > {log} 2>&1"


localrules:
    card,
