#!/usr/bin/env bash
# Login node: download every hub model the chosen data profile renders or transforms with into the
# Hugging Face cache (HF_HOME on a shared filesystem), so compute-node jobs run with HF_HUB_OFFLINE=1.
#   workflow/cluster/fetch-weights.sh [profile]      (default: paper)   --list: print the ids only
set -euo pipefail
cd "$(dirname "$0")/../.."
LIST=""; [ "${1:-}" = "--list" ] && { LIST=1; shift; }
ids=$(PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" python - "${1:-paper}" <<'PY'
import sys, yaml
from pathlib import Path
from attribench import config
from attribench.studies import all_study_generators
raw = yaml.safe_load(open("params.yaml")); raw["profile"] = sys.argv[1]
P = config.resolve(raw)
ids = set()
def walk(x):
    if isinstance(x, dict):
        m = x.get("model")
        if isinstance(m, str) and m.count("/") == 1 and not m.startswith((".", "/", "~", "models/", "data/")) and not Path(m).exists():
            ids.add(m)
        for v in x.values(): walk(v)
    elif isinstance(x, list):
        for v in x: walk(v)
specs = {**P["generators"], **all_study_generators(P)}
walk({g: s for g, s in specs.items() if s["backend"] == "diffusers"})
walk({k: P.get(k) for k in ("post_editing", "robustness", "experiments", "attributors")})
print("\n".join(sorted(ids)))
PY
)
if [ -n "$LIST" ]; then echo "$ids"; exit 0; fi
for id in $ids; do echo "fetch-weights: $id"; hf download "$id" >/dev/null; done
