#!/usr/bin/env bash
# Prepares .gpu/ for bench/device/gpu-run.sh (see bench/device/README.md): builds the unclip
# binary and the Vulkan test binary here (the GPU machine has no Go), copies the Vulkan loader
# debs and vulkan-env.sh from ../shared/device and the tiny fixture from ../shared/fixtures,
# records what was built, and checks that .gpu/ fits in what one device call carries (64 MiB,
# together with the rest of the working tree).
#
#   bash bench/device/prepare.sh            # from anywhere inside the checkout
#
# Environment: UNCLIP_SHARED (default: ../shared beside the checkout), GO (default: go).
# Without ../shared/device/debs (CI, a user's own machine) the debs are left out and
# gpu-run.sh uses the system's Vulkan loader; without the fixture the verify steps skip.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
shared=${UNCLIP_SHARED:-$root/../shared}
go=${GO:-go}
gpu=.gpu
limit_mib=64

say() { printf 'prepare: %s\n' "$*"; }

rm -rf "$gpu"
mkdir -p "$gpu"

# Keep .gpu/ and gpu-run.sh's default output folder out of git (and off the device calls).
for d in "$gpu" gpu-run-out; do
	if [ -d .git ] && ! git check-ignore -q "$d/" 2>/dev/null; then
		mkdir -p .git/info
		echo "/$d/" >>.git/info/exclude
		say "added /$d/ to .git/info/exclude"
	fi
done

# Static-ish, stripped binaries for x86-64 (the GPU machine's architecture).
if [ "$(uname -m)" != x86_64 ]; then
	say "warning: building on $(uname -m); the GPU machine is x86-64 (set GOARCH=amd64 and a cgo cross compiler)"
fi
ldflags='-s -w'
say "building $gpu/unclip"
"$go" build -trimpath -ldflags="$ldflags" -o "$gpu/unclip" ./cmd/unclip
say "building $gpu/vulkan.test"
"$go" test -c -trimpath -ldflags="$ldflags" -o "$gpu/vulkan.test" ./kernels/vulkan

# The Vulkan loader and GL dispatch libraries the NVIDIA driver needs (../shared/device/README.md).
if [ -d "$shared/device/debs" ] && [ -f "$shared/device/vulkan-env.sh" ]; then
	cp -r "$shared/device/debs" "$shared/device/vulkan-env.sh" "$gpu/"
	say "copied the Vulkan loader debs and vulkan-env.sh from $shared/device"
else
	say "no $shared/device/debs: gpu-run.sh will use the system's Vulkan loader"
fi

# The tiny fixture, for the conformance tests (UNCLIP_FIXTURES) and `unclip verify`.
if [ -d "$shared/fixtures/unclip-tiny" ]; then
	mkdir -p "$gpu/fixtures"
	cp -r "$shared/fixtures/unclip-tiny" "$gpu/fixtures/"
	say "copied the tiny fixture from $shared/fixtures/unclip-tiny"
else
	say "no $shared/fixtures/unclip-tiny: the fixture tests and the verify steps will skip"
fi

# What was built, for gpu-run.json (the GPU machine's copy of the checkout has no .git).
commit=unknown dirty=null
if git rev-parse HEAD >/dev/null 2>&1; then
	commit=$(git rev-parse HEAD)
	if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then dirty=true; else dirty=false; fi
fi
sha() { sha256sum "$1" | cut -d' ' -f1; }
cat >"$gpu/build-info.json" <<EOF
{"commit": "$commit", "dirty": $dirty, "built_at": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
 "go": "$("$go" env GOVERSION)", "goarch": "$("$go" env GOARCH)", "host": "$(uname -srm)",
 "unclip_sha256": "$(sha "$gpu/unclip")", "vulkan_test_sha256": "$(sha "$gpu/vulkan.test")"}
EOF

# Size: .gpu/ plus what else travels (tracked and untracked, not ignored, files).
gpu_bytes=$(du -sb "$gpu" | cut -f1)
tree_bytes=0
if git rev-parse HEAD >/dev/null 2>&1; then
	tree_bytes=$(git ls-files -z --cached --others --exclude-standard | xargs -0 -r stat -c %s 2>/dev/null |
		awk '{s += $1} END {print s + 0}')
fi
mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }
total=$((gpu_bytes + tree_bytes))
du -sh "$gpu"/* | sed 's/^/prepare:   /'
say "$gpu is $(mib "$gpu_bytes"); with the working tree ($(mib "$tree_bytes")) a call carries $(mib "$total") of $limit_mib MiB"
if [ "$total" -ge $((limit_mib * 1048576)) ]; then
	say "error: over the $limit_mib MiB a device call carries"
	exit 1
fi
say "ready: run 'bash bench/device/gpu-run.sh' on the GPU machine (device tool: carry [\".gpu\"]), or '--quick' here"
