#!/usr/bin/env bash
# `make test` stage: every libFuzzer target, briefly (replay of the kept
# crashes and seeds, then FUZZ_SECONDS each, 20 by default). `make fuzz`
# runs the same script for five minutes a target.
set -u
cd "$(dirname "$0")/../.."
FUZZ_SECONDS=${FUZZ_SECONDS:-20} exec bash tests/fuzz/run.sh
