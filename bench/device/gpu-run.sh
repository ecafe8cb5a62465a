#!/usr/bin/env bash
# One prepared run on the lent GPU machine (see ../shared/device/README.md): Vulkan devices,
# the Vulkan conformance tests and fixture verification, our kernels and PyTorch's on the same
# shapes, and the full-size Karlo pipeline with random weights in fp32 and fp16.
#
# Prepare here (x86-64), once:
#   echo /.gpu/ >> .git/info/exclude
#   mkdir -p .gpu && cp -r ../shared/device/debs ../shared/device/vulkan-env.sh .gpu/
#   mkdir -p .gpu/fixtures && cp -r ../shared/fixtures/unclip-tiny .gpu/fixtures/
#   go build -o .gpu/unclip ./cmd/unclip && go test -c -o .gpu/vulkan.test ./kernels/vulkan
# then run through the device tool with carry [".gpu"]:
#   bash bench/device/gpu-run.sh
set -uo pipefail
. .gpu/vulkan-env.sh
out=${OUT:-/tmp/unclip-gpu}
mkdir -p "$out"
export UNCLIP_FIXTURES=$PWD/.gpu/fixtures
log() { echo "== $*"; }
log devices;      .gpu/unclip devices | tee "$out/devices.txt"
log conformance;  (cd kernels/vulkan && ../../.gpu/vulkan.test -test.run 'Conformance|Verify' -test.v 2>&1 | tail -40) | tee "$out/conformance.txt"
log verify;       .gpu/unclip verify -m .gpu/fixtures/unclip-tiny/model --device vulkan | tail -5 | tee "$out/verify.txt"
log kernels;      .gpu/unclip bench kernels --device vulkan --json --reps 10 | tee "$out/kernels.jsonl"
log torch;        python3 bench/baselines/torch_gpu.py --reps 20 | tee "$out/torch.jsonl"
for p in fp32 fp16; do
	log "pipeline $p"
	.gpu/unclip bench pipeline --config karlo --random-weights --device vulkan --precision "$p" --json | tee "$out/pipeline-$p.json"
done
