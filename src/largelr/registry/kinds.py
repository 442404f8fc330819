from largelr.datasets import KINDS  # noqa: F401  (replaced at merge by the torch-free records)
