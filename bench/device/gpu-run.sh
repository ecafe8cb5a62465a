#!/usr/bin/env bash
# One GPU run in one call (bench/device/README.md): the Vulkan devices, the Vulkan conformance
# tests, `unclip verify --device vulkan` on the tiny fixture (fp32, fp16), the kernel tile
# sweep of bench/device/tiles.txt (writes the tuned table), the Karlo pipeline with random
# weights (fp32, fp16; few steps, per-step times) and PyTorch on the sweep's shapes when it has
# CUDA, all in one JSON file. Every step has its own time limit inside an overall budget (the
# full run stays under 8 minutes) and a failing step never stops the run.
#
#   bash bench/device/prepare.sh              # here: builds .gpu/ (binaries, loader debs, fixture)
#   bash bench/device/gpu-run.sh              # on the GPU machine (device tool: carry [".gpu"])
#   bash bench/device/gpu-run.sh --quick      # rehearsal on lavapipe: tiny shapes, a small pipeline
#
# Options: --quick; --out DIR (default $OUT when set, else ./gpu-run-out); --budget SECONDS
# (default 450, --quick 600); --loader auto|carried|system (default auto: the system's Vulkan
# loader when it lists a device, else .gpu/vulkan-env.sh).
# Writes DIR/gpu-run.json, DIR/vk-tuning.json (the tuned table) and DIR/gpu-run-logs.tar.gz.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root" || exit 2
devdir=bench/device

quick=0 out="" budget="" loader=auto
while [ $# -gt 0 ]; do
	case $1 in
	--quick) quick=1 ;;
	--out) out=${2:?--out needs a folder}; shift ;;
	--out=*) out=${1#--out=} ;;
	--budget) budget=${2:?--budget needs seconds}; shift ;;
	--budget=*) budget=${1#--budget=} ;;
	--loader) loader=${2:?--loader needs auto, carried or system}; shift ;;
	--loader=*) loader=${1#--loader=} ;;
	-h | --help) awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0"; exit 0 ;;
	*) echo "gpu-run: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
	shift
done
out=${out:-${OUT:-$root/gpu-run-out}}
mkdir -p "$out" || exit 2
out=$(cd "$out" && pwd)
rm -f "$out/gpu-run.json" "$out/vk-tuning.json" "$out/gpu-run-logs.tar.gz" # no stale results
work=$(mktemp -d "${TMPDIR:-/tmp}/unclip-gpu-run.XXXXXX") || exit 2
bin=$root/.gpu/unclip
tbin=$root/.gpu/vulkan.test
fixture=$root/.gpu/fixtures/unclip-tiny
started=$(date +%s)
log() { printf '== %s\n' "$*"; }

if [ "$quick" = 1 ]; then
	set_name=quick reps=2 budget=${budget:-600}
	# name:nominal seconds, in order; a step's limit is what is left of the budget less the
	# nominal seconds of the steps after it (so time a fast step saves goes to the next ones).
	plan="devices:20 conformance:90 verify_fp32:150 verify_fp16:60 sweep:60 table_check:20 pipeline_fp32:60 pipeline_fp16:60 torch:10"
	test_run='^(TestDevices|TestConformance)$'
	pipe_args=(--scale 20 --size-div 8 --prior-steps 2 --decoder-steps 2 --sr-steps 2)
else
	set_name=full reps=3 budget=${budget:-450}
	plan="devices:15 conformance:70 verify_fp32:35 verify_fp16:35 sweep:120 table_check:10 pipeline_fp32:75 pipeline_fp16:50 torch:40"
	test_run=.
	pipe_args=(--prior-steps 3 --decoder-steps 3 --sr-steps 2)
fi
deadline=$((started + budget))
planned=0
for item in $plan; do planned=$((planned + ${item#*:})); done
if [ "$planned" -gt "$budget" ]; then
	log "warning: the steps' nominal times add up to ${planned}s, over the ${budget}s budget: the first steps get less"
fi

# limit_for NAME: seconds for step NAME (see plan).
limit_for() {
	local after=0 seen=0 item
	for item in $plan; do
		if [ "$seen" = 1 ]; then after=$((after + ${item#*:})); fi
		if [ "${item%%:*}" = "$1" ]; then seen=1; fi
	done
	echo $((deadline - $(date +%s) - after))
}

# record NAME STATUS SECONDS RC NOTE
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" >>"$work/steps.tsv"; log "$1: $2 (${3}s)${5:+ - $5}"; }
skip() { record "$1" skipped 0 "" "$2"; }

# step NAME [--dir DIR] CMD...: runs CMD under its limit, output in $work/NAME.out and .err.
step() {
	local name=$1 dir=$root lim t0 rc note status
	shift
	if [ "${1:-}" = --dir ]; then dir=$2; shift 2; fi
	lim=$(limit_for "$name")
	if [ "$lim" -lt 5 ]; then
		skip "$name" "no time left in the ${budget}s budget"
		return 1
	fi
	log "$name (limit ${lim}s): $*"
	t0=$(date +%s.%N)
	(cd "$dir" && exec timeout -k 5 "$lim" "$@") >"$work/$name.out" 2>"$work/$name.err"
	rc=$?
	local secs
	secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
	case $rc in
	0) status=ok note="" ;;
	124 | 137) status=failed note="timeout after ${lim}s" ;;
	*) status=failed note="exit status $rc" ;;
	esac
	record "$name" "$status" "$secs" "$rc" "$note"
	return "$rc"
}

: >"$work/steps.tsv"
log "gpu-run ($set_name) in $root, output in $out, budget ${budget}s"

# Vulkan loader: the system's when it lists a device, else the carried debs (the GPU machine).
# (Capture, then grep: grep -q closing the pipe early would fail the probe under pipefail.)
loader_used=system
has_vulkan() {
	local text
	[ -x "$bin" ] || return 1
	text=$(timeout 60 "$bin" devices 2>&1)
	grep -q '^vulkan:0 ' <<<"$text"
}
# vulkan-env.sh sets variables of its own (here, f): keep them local to this function; what it
# exports (VK_DRIVER_FILES) stays exported.
source_env() {
	# shellcheck disable=SC2034
	local here f
	# shellcheck disable=SC1091
	. .gpu/vulkan-env.sh
}
if [ "$loader" = carried ] || { [ "$loader" = auto ] && ! has_vulkan; }; then
	if [ -f .gpu/vulkan-env.sh ]; then
		log "sourcing .gpu/vulkan-env.sh (carried Vulkan loader)"
		source_env >"$work/vulkan-env.log" 2>&1 || log "vulkan-env.sh failed (see its log)"
		loader_used=carried
	else
		loader_used="system (no .gpu/vulkan-env.sh)"
	fi
fi

if [ -d "$fixture" ]; then
	export UNCLIP_FIXTURES=$root/.gpu/fixtures
fi

# 1. Devices.
if [ -x "$bin" ]; then
	step devices "$bin" devices
	cp "$work/devices.out" "$work/devices.txt" 2>/dev/null
else
	skip devices "no .gpu/unclip: run bench/device/prepare.sh first"
fi
vk_ok=0
grep -q '^vulkan:0 ' "$work/devices.txt" 2>/dev/null && vk_ok=1
novk="no Vulkan device (see the devices step)"

# 2. Conformance tests (the whole kernels/vulkan package; --quick: two tests).
if [ ! -x "$tbin" ]; then
	skip conformance "no .gpu/vulkan.test: run bench/device/prepare.sh first"
elif [ "$vk_ok" = 0 ]; then
	skip conformance "$novk"
else
	lim=$(limit_for conformance)
	export UNCLIP_TEST_TILES=all
	[ "$quick" = 1 ] && unset UNCLIP_TEST_TILES
	step conformance --dir "$root/kernels/vulkan" "$tbin" -test.run "$test_run" -test.v \
		-test.timeout "$((lim > 20 ? lim - 10 : lim))s"
	unset UNCLIP_TEST_TILES
fi

# 3. Verify the tiny fixture on Vulkan, fp32 and fp16.
verify_help=$("$bin" verify -h 2>&1 || true)
for p in fp32 fp16; do
	if [ ! -x "$bin" ]; then
		skip "verify_$p" "no .gpu/unclip"
	elif [ ! -d "$fixture" ]; then
		skip "verify_$p" "no tiny fixture in .gpu/fixtures (prepare.sh copies it from ../shared/fixtures)"
	elif [ "$vk_ok" = 0 ]; then
		skip "verify_$p" "$novk"
	elif [ "$p" = fp32 ]; then
		step verify_fp32 "$bin" verify -m "$fixture/model" --device vulkan
	elif grep -q -- '-precision' <<<"$verify_help"; then
		step verify_fp16 "$bin" verify -m "$fixture/model" --device vulkan --precision fp16
	else
		skip verify_fp16 "unclip verify has no --precision flag (fp16 verification not implemented)"
	fi
done

# 4. Tile sweep: writes $out/vk-tuning.json.
if [ ! -x "$bin" ]; then
	skip sweep "no .gpu/unclip"
elif [ "$vk_ok" = 0 ]; then
	skip sweep "$novk"
elif ! "$bin" bench kernels -h 2>&1 | grep -q -- '-tile'; then
	skip sweep "this unclip has no 'bench kernels --tile'"
else
	lim=$(limit_for sweep)
	nominal=$(tr ' ' '\n' <<<"$plan" | sed -n 's/^sweep://p')
	sb=$((lim - 10 < nominal ? lim - 10 : nominal))
	step sweep python3 "$devdir/sweep.py" --unclip "$bin" --set "$set_name" --reps "$reps" \
		--budget "$sb" --per-call 60 --devices "$work/devices.txt" \
		--json "$work/sweep.json" --table "$out/vk-tuning.json"
	if [ -s "$out/vk-tuning.json" ]; then
		log "tuned table: $out/vk-tuning.json (use it with UNCLIP_VK_TUNING=/path/to/vk-tuning.json; see bench/device/README.md)"
	fi
fi

# 4b. The engine reads the table back (UNCLIP_VK_TUNING) and runs a kernel with it.
if [ ! -s "$out/vk-tuning.json" ]; then
	skip table_check "no tuned table was written"
else
	python3 "$devdir/sweep.py" --list-shapes --set "$set_name" >"$work/shapes.txt"
	read -r op shape <"$work/shapes.txt"
	UNCLIP_VK_TUNING=$out/vk-tuning.json step table_check "$bin" bench kernels --device vulkan \
		--op "$op" --shape "$shape" --reps 1 --json --no-peak
fi

# 5. The Karlo pipeline with random weights, fp32 and fp16 (few steps: per-step times).
for p in fp32 fp16; do
	if [ ! -x "$bin" ]; then
		skip "pipeline_$p" "no .gpu/unclip"
	elif [ "$vk_ok" = 0 ]; then
		skip "pipeline_$p" "$novk"
	else
		step "pipeline_$p" "$bin" bench pipeline --config karlo --random-weights --device vulkan \
			--precision "$p" "${pipe_args[@]}" --json
	fi
done

# 6. PyTorch on the sweep's shapes, when it has CUDA.
left=$((deadline - $(date +%s)))
if ! command -v python3 >/dev/null; then
	skip torch "no python3"
elif [ "$left" -lt 15 ]; then
	skip torch "no time left in the ${budget}s budget"
elif ! why=$(timeout $((left < 40 ? left - 5 : 35)) python3 -c 'import torch; assert torch.cuda.is_available(), "torch.cuda.is_available() is False"' 2>&1); then
	skip torch "no PyTorch with CUDA: $(tail -n1 <<<"$why")"
else
	python3 "$devdir/sweep.py" --list-shapes --set "$set_name" >"$work/shapes.txt"
	export PYTHONUNBUFFERED=1
	step torch python3 bench/baselines/torch_gpu.py --shapes "$work/shapes.txt" \
		--reps 10 --dtype fp32,fp16
fi

# 7. One JSON file.
python3 "$devdir/collect.py" --work "$work" --out "$out/gpu-run.json" --root "$root" \
	--set "$set_name" --started "$started" --budget "$budget" --loader "$loader_used" \
	--table "$out/vk-tuning.json"
rc=$?
tar -czf "$out/gpu-run-logs.tar.gz" -C "$work" . 2>/dev/null && rm -rf "$work"
log "wrote $out/gpu-run.json, the step logs in $out/gpu-run-logs.tar.gz ($(($(date +%s) - started))s)"
exit "$rc"
