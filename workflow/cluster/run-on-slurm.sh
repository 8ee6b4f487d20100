#!/usr/bin/env bash
# Run Snakemake targets through SLURM from a fresh clone of this repository's HEAD, then check with
# sacct that every submitted job ran as a SLURM job and COMPLETED, and (with --compare DIR) that each
# target is byte-identical to the same file under DIR (e.g. a local `snakemake --cores 2` run).
#
#   workflow/cluster/local-slurm.sh up                                  # a one-node cluster (root)
#   workflow/cluster/run-on-slurm.sh results/table2.csv                 # the whole Table 2 (default)
#   workflow/cluster/run-on-slurm.sh --compare . data/smoke/shards/delivered/sd_tiny/natural-0000.parquet
#
# Environment: SLURM_PROFILE (default workflow/profiles/slurm-smoke), WORKDIR (default a new temp dir),
# PYTHON_BIN_DIR (default: the directory of the `snakemake` on PATH).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
COMPARE=""
if [ "${1:-}" = "--compare" ]; then COMPARE=$(cd "$2" && pwd); shift 2; fi
TARGETS=("$@"); [ ${#TARGETS[@]} -gt 0 ] || TARGETS=(results/table2.csv)
PROFILE=${SLURM_PROFILE:-workflow/profiles/slurm-smoke}
WORKDIR=${WORKDIR:-$(mktemp -d /tmp/attribench-slurm.XXXXXX)}

git clone -q "$REPO" "$WORKDIR/repo"
cd "$WORKDIR/repo"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
since=$(date +%FT%T); start=$(date +%s)
snakemake --profile "$PROFILE" "${TARGETS[@]}" 2>&1 | tee "$WORKDIR/snakemake.log"
wall=$(( $(date +%s) - start ))

# Every job Snakemake submitted, by SLURM job id, and what sacct says about it.
grep -oE "submitted with SLURM jobid [0-9]+" "$WORKDIR/snakemake.log" | awk '{print $NF}' | sort -n > "$WORKDIR/submitted.txt"
sleep 2
sacct -X -n -P -S "$since" -o JobID,JobName,Partition,AllocCPUS,ReqMem,State,ExitCode,Elapsed > "$WORKDIR/sacct.txt"
n_sub=$(wc -l < "$WORKDIR/submitted.txt")
n_ok=$(awk -F'|' 'NR==FNR {want[$1]=1; next} ($1 in want) && $6=="COMPLETED" && $7=="0:0"' \
       "$WORKDIR/submitted.txt" "$WORKDIR/sacct.txt" | wc -l)
local_jobs=$(grep -cE "^localrule " "$WORKDIR/snakemake.log" || true)
echo "run-on-slurm: ${wall}s wall; $n_sub jobs submitted through sbatch, $n_ok COMPLETED (exit 0:0) in sacct; $local_jobs local-rule jobs"
awk -F'|' '{print $3, $6}' "$WORKDIR/sacct.txt" | sort | uniq -c
[ "$n_sub" -gt 0 ] && [ "$n_sub" -eq "$n_ok" ] || { echo "run-on-slurm: not every submitted job COMPLETED" >&2; cat "$WORKDIR/sacct.txt" >&2; exit 1; }
grep -q "steps (100%) done\|Nothing to be done" "$WORKDIR/snakemake.log" || { echo "run-on-slurm: workflow incomplete" >&2; exit 1; }
if [ -n "$COMPARE" ]; then
    for t in "${TARGETS[@]}"; do
        cmp "$t" "$COMPARE/$t" || { echo "run-on-slurm: $t differs from $COMPARE/$t" >&2; exit 1; }
        echo "run-on-slurm: $t byte-identical to $COMPARE/$t ($(sha256sum < "$t" | cut -c1-16))"
    done
fi
echo "run-on-slurm: workdir $WORKDIR"
