#!/usr/bin/env bash
# Build the wheel, install it into a clean venv and run every stage from a folder outside the checkout:
# the presets (--config cpu_fast) and the demo scene must come from the installed package.
#   bash tools/check_wheel.sh            (CI runs it after the tests)
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
WORK=$(mktemp -d /tmp/pcf_gs_wheel.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

"$PY" -m pip wheel -q --no-deps -w "$WORK/dist" "$REPO"
"$PY" -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install -q torch==2.13.0   # the CPU build first, as the README says
"$WORK/venv/bin/pip" install -q "$WORK"/dist/pcf_gs-*.whl

cd "$WORK"  # nothing of the checkout is reachable from here
export PATH="$WORK/venv/bin:$PATH"
TINY=(--config cpu_fast --set train.iterations=40 --set train.warmup_iterations=10
      --set train.cross_view_start=30 --set train.densify_from=10 --set train.densify_until=30
      --set model.init_points=500 --set train.log_every=10)
set -x
pcf-gs --version
pcf-gs -q synth scene --objects 4 --frames 8 --size 32 --seed 1
pcf-gs -q info scene
pcf-gs -q synth capture --objects 4 --frames 8 --size 32 --seed 1 --layout colmap
pcf-gs -q info capture
pcf-gs predict --help >/dev/null
pcf-gs -q train scene --out run --device cpu "${TINY[@]}"
pcf-gs -q segment run --out seg --export-ply
pcf-gs -q eval run --data scene --pred seg
pcf-gs -q render run --out renders
pcf-gs -q edit seg/scene_labeled.ply --out edited.ply --box=-1,-1,-1,1,1,1 \
  --remove "$(python -c 'import json;print(json.load(open("seg/objects.json"))["objects"][0]["id"])' 2>/dev/null || echo box)"
pcf-gs -q demo --out demo "${TINY[@]}" --set data.max_size=32
test -f demo/segment/metrics.json
set +x
echo "wheel check: the installed wheel ran synth (Messy Rooms and COLMAP), info, train, segment, eval, render, edit and demo outside the checkout"
