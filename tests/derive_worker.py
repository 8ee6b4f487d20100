"""Child process of test_derive_resume: build one derived shard (derived_view), optionally SIGKILL-ing
itself right after its k-th resumable part is on disk; prints how many parts this process wrote."""

import json
import os
import signal
import sys

import pandas as pd

import attribench.transforms.parts as parts
from attribench.transforms.derived import derived_view

if __name__ == "__main__":
    cfg_json, index_path, spec_json, out, kill_after = sys.argv[1:6]
    written = 0
    original = parts.write_shard

    def write_and_maybe_die(rows, path):
        global written
        result = original(rows, path)
        if ".parts-" in str(path):
            written += 1
            if written == int(kill_after):
                os.kill(os.getpid(), signal.SIGKILL)  # as an OOM killer or a preempted job would: no cleanup
        return result

    parts.write_shard = write_and_maybe_die
    import torch

    torch.set_num_threads(1)
    derived_view(json.loads(cfg_json), pd.read_parquet(index_path), json.loads(spec_json), shard=out)
    print(json.dumps({"parts_written": written}))
