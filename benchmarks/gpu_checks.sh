#!/usr/bin/env bash
# The models issue's GPU checks as one run on a machine with a CUDA GPU: the CUDA variants of the model tests
# (`pytest -m cuda`), then benchmarks/bench_gpu.py (step throughput beside one CPU core, device memory
# against the provisioner's estimate). Logs go to $OUT (default /tmp/gpu-checks).
# Where the machine's Python lacks this project's packages, put their wheels in .whl/ first: they install
# into /tmp/site without touching the machine's own torch.
set -u
OUT=${OUT:-/tmp/gpu-checks}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
PYTHON=${PYTHON:-python3}
if compgen -G ".whl/*.whl" >/dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || exit 1
    export PYTHONPATH=/tmp/site
fi
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
"$PYTHON" -c "import torch, torch_geometric, polars, dagster; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'pyg', torch_geometric.__version__, 'polars', polars.__version__, 'dagster', dagster.__version__)" \
    || exit 1
status=0
timeout "${TEST_TIMEOUT:-240}" "$PYTHON" -m pytest -q -m cuda -p no:cacheprovider \
    tests/test_heads.py tests/test_trainer.py tests/test_gnn.py tests/test_link_gnn.py 2>&1 | tee "$OUT/cuda_tests.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
timeout "${BENCH_TIMEOUT:-300}" "$PYTHON" benchmarks/bench_gpu.py --json "$OUT/bench_gpu.jsonl" ${BENCH_ARGS:-} 2>&1 \
    | tee "$OUT/bench_gpu.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
exit $status
