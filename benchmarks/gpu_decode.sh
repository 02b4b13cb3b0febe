#!/usr/bin/env bash
# Decode speed on a CUDA machine: Enclave's streaming loop against llama.cpp's own
# llama-bench, both on one CUDA build of the llama.cpp that llama-cpp-python vendors.
#
#   benchmarks/gpu_decode.sh build SRC.tar.xz WORK   # unpack the stripped sdist, build with CUDA
#   benchmarks/gpu_decode.sh bench MODEL.gguf WORK OUT  # llama-bench, then generation_speed.py
#
# SRC.tar.xz is llama-cpp-python's sdist with docs, vocab files and other backends removed
# (see ../shared/GPU.md); WORK is a scratch folder; OUT receives the JSON files. The Python
# side needs numpy, jinja2, typing-extensions and diskcache (a diskcache wheel in WORK is
# installed with --target if present). Prints figures; passes or fails on nothing but errors.
set -euo pipefail
stage=$1
here=$(cd "$(dirname "$0")/.." && pwd)

case $stage in
build)
    src=$2 work=$3
    mkdir -p "$work" && cd "$work"
    tar xJf "$src"
    cd llama_cpp_python-*/vendor/llama.cpp
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    nvcc --version | tail -1
    cmake -B build -G Ninja -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
        -DBUILD_SHARED_LIBS=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
        -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF >"$work/cmake.log"
    start=$(date +%s)
    cmake --build build -j"$(nproc)" --target llama-bench >"$work/build.log" 2>&1 \
        || { tail -40 "$work/build.log"; exit 1; }
    echo "built in $(($(date +%s) - start)) s:"; ls build/bin
    ;;
bench)
    model=$2 work=$3 out=$4
    mkdir -p "$out"
    llama=$(echo "$work"/llama_cpp_python-*/vendor/llama.cpp)
    bin=$llama/build/bin
    # llama.cpp's own speed: prompt 512, generate 128, at depth 0 and at a grounded
    # prompt's depth (our answers start after about 450 prompt tokens).
    "$bin/llama-bench" -m "$model" -ngl 99 -p 512 -n 128 -d 0,512 -r 5 -o json \
        >"$out/llama_bench.json"
    python3 - "$out/llama_bench.json" <<'EOF'
import json, sys
for row in json.load(open(sys.argv[1])):
    kind = "pp" if row["n_prompt"] else "tg"
    print(f'llama-bench {kind}{row["n_prompt"] or row["n_gen"]} depth {row["n_depth"]}: '
          f'{row["avg_ts"]:.0f} tokens/s (sd {row["stddev_ts"]:.0f})')
EOF
    site=$work/site
    if ls "$work"/diskcache-*.whl >/dev/null 2>&1; then
        python3 -m pip install -q --no-index --no-deps --target "$site" "$work"/diskcache-*.whl
    fi
    PYTHONPATH="$here:$(echo "$work"/llama_cpp_python-*):$site" LLAMA_CPP_LIB_PATH=$bin \
        python3 "$here/benchmarks/generation_speed.py" --model "$model" --gpu-layers 99 \
        -n 7 --max-tokens 128 --out "$out/generation_gpu.json" >/dev/null
    # The same with llama-bench's context size for its depth-512 test (512 + 128 + 512):
    # a 4096-token context (Enclave's default) makes each decode step slower by itself.
    PYTHONPATH="$here:$(echo "$work"/llama_cpp_python-*):$site" LLAMA_CPP_LIB_PATH=$bin \
        python3 "$here/benchmarks/generation_speed.py" --model "$model" --gpu-layers 99 \
        -n 7 --max-tokens 128 --n-ctx 1152 --out "$out/generation_gpu_ctx1152.json" >/dev/null
    python3 - "$out/llama_bench.json" "$out/generation_gpu.json" "$out/generation_gpu_ctx1152.json" <<'EOF' | tee "$out/gpu_summary.json"
import json, sys
bench, ours, small = (json.load(open(p)) for p in sys.argv[1:4])
tg = {row["n_depth"]: row["avg_ts"] for row in bench if row["n_gen"]}
lean = ours["lean"]["decode_tokens_per_s"]
ref = ours["create_chat_completion_stream"]["decode_tokens_per_s"]
summary = {
    "llama_bench_tg128_tokens_per_s": {str(d): round(v, 1) for d, v in tg.items()},
    "enclave_stream_tokens_per_s": lean,
    "llama_cpp_python_stream_tokens_per_s": ref,
    "enclave_over_llama_bench_depth0": round(lean / tg[0], 3),
    "enclave_over_llama_bench_depth512": round(lean / tg[512], 3),
    "llama_cpp_python_over_llama_bench_depth0": round(ref / tg[0], 3),
    "enclave_stream_tokens_per_s_ctx1152": small["lean"]["decode_tokens_per_s"],
    "enclave_over_llama_bench_depth512_same_ctx": round(small["lean"]["decode_tokens_per_s"] / tg[512], 3),
    "ttft_cold_s": ours["lean"]["ttft_cold_s"],
    "ttft_warm_s": ours["lean"]["ttft_warm_s"],
    "python_overhead_us_per_token": ours["per_token_breakdown"]["lean"]["python_overhead_us_per_token"],
}
print(json.dumps(summary, indent=2))
EOF
    ;;
*)
    echo "usage: $0 build SRC.tar.xz WORK | bench MODEL.gguf WORK OUT" >&2
    exit 2
    ;;
esac
