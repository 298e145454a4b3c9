#!/usr/bin/env bash
# Check that PlayCanvas's splat-transform (an independent reader) opens every file `pcf-gs export` writes.
#
#   tools/check_formats_splat_transform.sh [SEGMENT_EXPORT_DIR]
#
# Without an argument a small labelled export of random splats is made first. Every written
# .ply / .compressed.ply / .splat / .spz / .sog file is read by `splat-transform FILE -m null`
# (splat-transform 2.x has no --info; -m prints per-column statistics) and must decode with the
# Gaussian count objects.json / the source says. splat-transform needs node >= 22: when the node on
# PATH is older, node@22 and @playcanvas/splat-transform are installed from the npm registry into
# $PCF_GS_NODE_DIR (default /tmp/pcf-gs-node22). The same check as a test (values compared, not just
# counts): PATH=$PCF_GS_NODE_DIR/node_modules/.bin:$PATH python -m pytest -m slow tests/splats/test_formats.py
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
node_dir="${PCF_GS_NODE_DIR:-/tmp/pcf-gs-node22}"
major() { node --version 2>/dev/null | sed 's/^v\([0-9]*\).*/\1/'; }
if [[ "$(major || echo 0)" -lt 22 ]] || ! command -v splat-transform >/dev/null; then
  if [[ ! -x "$node_dir/node_modules/.bin/splat-transform" ]]; then
    mkdir -p "$node_dir"
    (cd "$node_dir" && npm i --no-audit --no-fund node@22 @playcanvas/splat-transform >/dev/null)
  fi
  export PATH="$node_dir/node_modules/.bin:$PATH"
fi
echo "node $(node --version), $(splat-transform --version 2>/dev/null | head -1)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
src="${1:-}"
if [[ -z "$src" ]]; then
  src="$work/seg"
  PYTHONPATH="$here" python - "$src" <<'PY'
import sys
import numpy as np
from pcf_gs.splats.export import export_objects
from pcf_gs.splats.ply import Splats
rng = np.random.default_rng(0); n = 2000
s = Splats(rng.normal(size=(n, 3)).astype("f4"), rng.normal(-4, .5, (n, 3)).astype("f4"), rng.normal(size=(n, 4)).astype("f4"),
           rng.normal(2, 1, n).astype("f4"), rng.normal(0, .5, (n, 1, 3)).astype("f4"), rng.normal(0, .05, (n, 15, 3)).astype("f4"))
inst = rng.integers(0, 5, n)
export_objects(sys.argv[1], s, inst, np.where(inst > 0, 1, 0), ["wall", "thing"], np.array([False, True]))
PY
fi
PYTHONPATH="$here" python -m pcf_gs -q export "$src" --format ply-compressed,splat,spz,sog,glb --out "$work/out"
fail=0
while IFS= read -r -d '' f; do
  rel="${f#$work/out/}"
  if out="$(splat-transform "$f" -m null 2>&1)"; then
    rows="$(printf '%s\n' "$out" | sed -n 's/^\*\*Row Count:\*\* \([0-9]*\).*/\1/p' | head -1)"
    echo "ok   $rel ($rows Gaussians)"
  else
    echo "FAIL $rel"; printf '%s\n' "$out" | tail -3; fail=1
  fi
done < <(find "$work/out" -type f \( -name '*.ply' -o -name '*.splat' -o -name '*.spz' -o -name '*.sog' \) -print0 | sort -z)
# splat-transform 2.7 reads no .glb: the .glb files go through the Khronos glTF validator (npm gltf-validator)
# instead. It does not know KHR_gaussian_splatting, so that extension's own attribute semantics
# ("KHR_gaussian_splatting:ROTATION", ...) are reported as invalid names and allowed here; any other error fails.
[[ -d "$node_dir/node_modules/gltf-validator" ]] || (cd "$node_dir" && npm i --no-audit --no-fund gltf-validator >/dev/null)
cat > "$work/gltf_check.js" <<'JS'
const fs = require('fs'); const v = require(process.argv[2]);
v.validateBytes(new Uint8Array(fs.readFileSync(process.argv[3]))).then(r => {
  const bad = r.issues.messages.filter(m => m.severity === 0 &&
    !(m.code === 'MESH_PRIMITIVE_INVALID_ATTRIBUTE' && /attributes\/KHR_gaussian_splatting:/.test(m.pointer)));
  bad.forEach(m => console.log(`${m.code} ${m.pointer || ''} ${m.message}`));
  process.exit(bad.length ? 1 : 0);
}).catch(e => { console.log(String(e)); process.exit(2); });
JS
while IFS= read -r -d '' f; do
  rel="${f#$work/out/}"
  if out="$(node "$work/gltf_check.js" "$node_dir/node_modules/gltf-validator" "$f" 2>&1)"; then
    echo "ok   $rel (glTF validator)"
  else
    echo "FAIL $rel (glTF validator)"; printf '%s\n' "$out" | tail -5; fail=1
  fi
done < <(find "$work/out" -type f -name '*.glb' -print0 | sort -z)
exit $fail
