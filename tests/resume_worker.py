"""Child process of test_resume: train_run(index parquet, spec JSON) into a folder, nothing else."""

import json
import sys

import pandas as pd

import attribench.plugins  # noqa: F401  the attributor registry, as in a run
from attribench.training.loop import train_run

if __name__ == "__main__":
    index_path, spec_json, out_dir = sys.argv[1:4]
    train_run(pd.read_parquet(index_path), json.loads(spec_json), out_dir)
