#!/usr/bin/env bash
# What the portable llama.cpp build costs on this CPU: llama-bench prompt (pp512) and decode
# (tg128) speed of the build `make install` makes (the Makefile's LLAMA_PORTABLE_ARGS) against
# a -march=native build with AMX switched off at the compiler (-mno-amx-*), i.e. everything
# native gives this CPU (AVX-512, VNNI, BF16...) except AMX. Both are built from the llama.cpp
# that llama-cpp-python vendors, and run alternately (ABBA order) in one run, so a busy machine
# slows both alike. A third, plain -march=native build (AMX on) is tried on a 64-token prompt
# in a child process with a timeout: on a VM that advertises AMX its OS does not give, it dies.
#
#   benchmarks/portable_build.sh [--work DIR] [--model GGUF] [--out JSON] [--rounds N]
#                                [--jobs N] [--threads 2,1] [--python PY] [--no-crash-check]
#
# WORK (default ~/.cache/enclave/portable-bench, never inside the repository) receives the
# sdist, the three build folders (reused when their CMake arguments are unchanged), the logs and
# the raw llama-bench output; OUT (default benchmarks/results/portable_build.json) the summary.
# Needs: cmake, a C/C++ compiler, pip (for `pip download`), the project's venv (for the
# bundled model's path and llama_print_system_info through llama-cpp-python).
# --threads: the llama-bench -t values, each run in every round (default 2, then 1: on a busy
# 2-core machine two threads spend decode waiting at ggml's barriers for a descheduled peer).
# Each build takes 13-15 minutes on 2 busy cores; one -t 2 llama-bench call up to 12 minutes.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)

version=0.3.36
work=${HOME}/.cache/enclave/portable-bench
out=$here/benchmarks/results/portable_build.json
model=
rounds=4
jobs=2
threads=2,1
py=$here/.venv/bin/python
crash_check=1
while [ $# -gt 0 ]; do
    case $1 in
    --work) work=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --python) py=$2; shift 2 ;;
    --no-crash-check) crash_check=0; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

mkdir -p "$work"
work=$(cd "$work" && pwd -P)
case $work/ in
"$(cd "$here" && pwd -P)"/*) echo "the work folder must be outside the repository: $work" >&2; exit 2 ;;
esac
[ -n "$model" ] || model=$("$py" -c "from rag.llm.bundled import default_model_path as d; print(d())")
[ -f "$model" ] || { echo "no model at $model" >&2; exit 2; }
model=$(cd "$(dirname "$model")" && pwd -P)/$(basename "$model")
mkdir -p "$(dirname "$out")" "$work/logs" "$work/raw"
out=$(cd "$(dirname "$out")" && pwd -P)/$(basename "$out")

# --- the vendored llama.cpp, from the sdist pip would build ---------------------------------
src=$work/llama_cpp_python-$version
if [ ! -f "$src/vendor/llama.cpp/CMakeLists.txt" ]; then
    mkdir -p "$work/dl"
    "$py" -m pip download --quiet --no-deps --no-binary :all: -d "$work/dl" \
        "llama-cpp-python==$version"
    rm -rf "$src"
    tar xzf "$work/dl/llama_cpp_python-$version.tar.gz" -C "$work"
fi
llama=$src/vendor/llama.cpp

# --- CMake arguments -------------------------------------------------------------------------
# The portable flags are the Makefile's own, so this measures what `make install` builds.
portable_args=$(make -s -C "$here" --no-print-directory \
    --eval 'print-portable-args: ; @echo $(LLAMA_PORTABLE_ARGS)' print-portable-args)
[ -n "$portable_args" ] || { echo "no LLAMA_PORTABLE_ARGS in the Makefile" >&2; exit 1; }
# Shared libraries (as the wheel ships them) and llama-bench; nothing else.
common_args="-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON -DLLAMA_BUILD_COMMON=ON
    -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF
    -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF
    -DGGML_BACKEND_DL=OFF"
noamx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"

build() {  # name, extra CMake arguments (a bash array's elements)
    local name=$1; shift
    local dir=$work/build-$name
    local stamp
    stamp=$(printf '%s\n' $common_args "$@")
    if [ -x "$dir/bin/llama-bench" ] && [ "$(cat "$dir/enclave-cmake-args" 2>/dev/null)" = "$stamp" ]; then
        echo "$name: reusing $dir"
        return
    fi
    rm -rf "$dir"
    echo "$name: configuring and building (-j$jobs), log in $work/logs/build-$name.log"
    local start=$SECONDS
    # shellcheck disable=SC2086
    cmake -S "$llama" -B "$dir" -G Ninja $common_args "$@" >"$work/logs/build-$name.log" 2>&1 \
        && cmake --build "$dir" -j"$jobs" --target llama-bench >>"$work/logs/build-$name.log" 2>&1 \
        || { tail -40 "$work/logs/build-$name.log"; exit 1; }
    printf '%s\n' "$stamp" >"$dir/enclave-cmake-args"
    echo "$name: built in $((SECONDS - start)) s"
}

# One build at a time: the machine is small and shared.
# shellcheck disable=SC2086
build portable $portable_args
build native-noamx -DGGML_NATIVE=ON "-DCMAKE_C_FLAGS=$noamx" "-DCMAKE_CXX_FLAGS=$noamx"
if [ "$crash_check" = 1 ]; then
    build native -DGGML_NATIVE=ON
fi

# --- measure ---------------------------------------------------------------------------------
"$py" - "$work" "$model" "$out" "$rounds" "$threads" "$crash_check" "$version" "$py" <<'EOF'
import json, os, platform, re, signal, statistics, subprocess, sys, time
from pathlib import Path

work, model, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
rounds, crash_check = int(sys.argv[4]), sys.argv[6] == "1"
thread_counts = [int(t) for t in sys.argv[5].split(",")]
version, py = sys.argv[7], sys.argv[8]
names = ["portable", "native-noamx"] + (["native"] if crash_check else [])
bins = {n: work / f"build-{n}" / "bin" for n in names}


def amx_os():
    # Linux hands out AMX state per process on request (arch_prctl ARCH_REQ_XCOMP_PERM);
    # XFEATURE 17/18 in ARCH_GET_XCOMP_SUPP say whether the kernel (and its VM) offer it.
    if platform.machine() != "x86_64" or not sys.platform.startswith("linux"):
        return None
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    mask = ctypes.c_uint64()
    if libc.syscall(158, 0x1021, ctypes.byref(mask)):
        return {"xcomp_supp": None}
    return {"xcomp_supp": hex(mask.value), "amx_tiledata_offered": bool(mask.value >> 18 & 1),
            "amx_permission_granted": libc.syscall(158, 0x1023, 18) == 0}


def cpu():
    info = Path("/proc/cpuinfo").read_text()
    model_name = re.search(r"^model name\s*:\s*(.*)$", info, re.M).group(1)
    flags = re.search(r"^flags\s*:\s*(.*)$", info, re.M).group(1).split()
    simd = sorted(f for f in flags if re.match(r"(sse|ssse|avx|amx|fma|f16c|bmi|vnni|vaes|vpclmul|gfni)", f))
    return {"model": model_name, "logical_cpus": os.cpu_count(), "simd_flags": simd,
            "hypervisor": "hypervisor" in flags, "flags": " ".join(flags),
            "kernel": platform.release(), "amx_os": amx_os()}


SYSINFO = r"""
import json, llama_cpp
info = llama_cpp.llama_print_system_info().decode()
libs = sorted({l.split()[-1] for l in open("/proc/self/maps") if "libggml-cpu" in l or "libllama" in l})
print(json.dumps({"system_info": info.strip(), "loaded": libs}))
"""


def system_info(lib_dir):
    # llama_print_system_info of this build, through llama-cpp-python (LLAMA_CPP_LIB_PATH),
    # and which libraries the process actually mapped.
    env = dict(os.environ)
    env.pop("LLAMA_CPP_LIB_PATH", None)
    if lib_dir:
        env["LLAMA_CPP_LIB_PATH"] = str(lib_dir)
    proc = subprocess.run([py, "-c", SYSINFO], env=env, capture_output=True, text=True, timeout=120)
    if proc.returncode:
        return {"error": proc.stderr[-1000:]}
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    cpu_part = got["system_info"].split("CPU :", 1)[-1].split("|")
    got["features"] = sorted(p.strip().split(" = ")[0] for p in cpu_part if p.strip().endswith("= 1"))
    got["loaded"] = [p.replace(str(work), "WORK") for p in got["loaded"]]
    return got


def instructions(lib_dir):
    # What the compiler actually put in the CPU backend: AMX tile and AVX-512 (zmm) instructions.
    try:
        asm = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(lib_dir / "libggml-cpu.so")],
                             capture_output=True, text=True, timeout=300).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return {"amx_instructions": len(re.findall(r"\b(ldtilecfg|tileloadd|tdpbssd|tdpbf16ps)\b", asm)),
            "zmm_instructions": asm.count("%zmm")}


def signame(rc):
    if rc is not None and rc < 0:
        try:
            return signal.Signals(-rc).name
        except ValueError:
            return f"signal {-rc}"
    return None


PROMPT64 = r"""
import sys, llama_cpp
llm = llama_cpp.Llama(sys.argv[1], n_ctx=512, n_threads=int(sys.argv[2]), verbose=False)
tokens = llm.tokenize((" word" * 64).encode())
assert len(tokens) >= 64, len(tokens)
out = llm.create_completion(tokens, max_tokens=8, temperature=0)
print("decoded", len(tokens), out["usage"]["completion_tokens"])
"""


def crash_check_one(name, threads):
    # Both ways the app could meet the fault: llama.cpp's own tool, and llama-cpp-python
    # (the app's path) loading this build's libllama. Each in a child, with a timeout.
    result = {}
    cmds = {
        "llama_bench_p64": [str(bins[name] / "llama-bench"), "-m", model, "-p", "64", "-n", "0",
                            "-r", "1", "-t", str(threads), "-o", "json"],
        "llama_cpp_python_prompt64": [py, "-c", PROMPT64, model, str(threads)],
    }
    for key, cmd in cmds.items():
        env = dict(os.environ, LLAMA_CPP_LIB_PATH=str(bins[name]))
        start = time.monotonic()
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
            rc, err, timed_out = proc.returncode, proc.stderr, False
        except subprocess.TimeoutExpired as e:
            rc, err, timed_out = None, (e.stderr or b"").decode(errors="replace"), True
        result[key] = {"returncode": rc, "signal": signame(rc), "timed_out": timed_out,
                       "crashed": timed_out or rc != 0, "seconds": round(time.monotonic() - start, 1),
                       "stderr_tail": err[-600:]}
    return result


def bench(name, round_no, threads):
    cmd = [str(bins[name] / "llama-bench"), "-m", model, "-p", "512", "-n", "128", "-r", "5",
           "-t", str(threads), "-o", "json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    (work / "raw" / f"{name}-t{threads}-round{round_no}.json").write_text(proc.stdout)
    if proc.returncode:
        raise SystemExit(f"{name} llama-bench failed ({proc.returncode}): {proc.stderr[-2000:]}")
    rows = json.loads(proc.stdout)
    got = {}
    for row in rows:
        key = f'pp{row["n_prompt"]}' if row["n_prompt"] else f'tg{row["n_gen"]}'
        got[key] = {"avg_ts": row["avg_ts"], "stddev_ts": row["stddev_ts"], "samples_ts": row["samples_ts"]}
    return got, rows[0]


result = {
    "what": "llama-bench pp512/tg128 tokens/s: portable build (Makefile LLAMA_PORTABLE_ARGS) "
            "against -march=native without AMX, alternated ABBA in one run",
    "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    "host": cpu(),
    "loadavg_before": os.getloadavg(),
    "llama_cpp_python": version,
    "model": {"file": os.path.basename(model), "bytes": os.path.getsize(model)},
    "bench_command": "llama-bench -m MODEL -p 512 -n 128 -r 5 -t T -o json",
    "threads": thread_counts,
    "rounds": rounds,
    "builds": {},
}
for n in names:
    args = (work / f"build-{n}" / "enclave-cmake-args").read_text().split("\n")
    result["builds"][n] = {"cmake_args": [a for a in args if a],
                           **system_info(bins[n]), "compiled": instructions(bins[n])}
installed = system_info(None)
result["installed_wheel"] = {
    "system_info": installed.get("system_info"), "features": installed.get("features"),
    "same_features_as_portable": installed.get("features") == result["builds"]["portable"].get("features"),
}

# Crash check before the benchmark: a plain native build that survives joins the rotation.
rotation = names[:2]
if crash_check:
    checks = result["crash_check"] = {"threads": thread_counts[0]}
    for n in names:
        checks[n] = crash_check_one(n, thread_counts[0])
        print(f"crash check {n}: " + ", ".join(
            f'{k}: {"CRASH " + str(v["signal"] or v["returncode"]) if v["crashed"] else "ok"}'
            for k, v in checks[n].items()), flush=True)
    if not any(v["crashed"] for v in checks["native"].values()):
        rotation = names

per_round = {(t, n): [] for t in thread_counts for n in rotation}
result["order"] = []
for r in range(rounds):
    for t in thread_counts:
        order = rotation if r % 2 == 0 else rotation[::-1]  # ABBA: drift hits both alike
        result["order"].append([f"{n} -t {t}" for n in order])
        for n in order:
            got, row = bench(n, r, t)
            per_round[t, n].append(got)
            print(f"round {r + 1}/{rounds} -t {t} {n}: pp512 {got['pp512']['avg_ts']:.1f} "
                  f"tg128 {got['tg128']['avg_ts']:.1f} tokens/s", flush=True)
    result.setdefault("llama_cpp_build_commit", row.get("build_commit"))
    result["model"].setdefault("type", row.get("model_type"))
    result.setdefault("llama_bench_cpu_info", row.get("cpu_info"))
result["loadavg_after"] = os.getloadavg()

med = statistics.median
speed = result["tokens_per_s"] = {}
ratios = result["ratios"] = {}
for t in thread_counts:
    speed[f"t{t}"] = {}
    for n in rotation:
        speed[f"t{t}"][n] = {}
        for test in ("pp512", "tg128"):
            avgs = [g[test]["avg_ts"] for g in per_round[t, n]]
            samples = [s for g in per_round[t, n] for s in g[test]["samples_ts"]]
            speed[f"t{t}"][n][test] = {
                "median": round(med(samples), 1), "median_of_round_averages": round(med(avgs), 1),
                "min": round(min(samples), 1), "max": round(max(samples), 1),
                "round_averages": [round(a, 1) for a in avgs]}
    ratios[f"t{t}"] = {}
    for n in rotation[1:]:
        ratios[f"t{t}"][f"{n}/portable"] = {}
        for test in ("pp512", "tg128"):
            paired = [a[test]["avg_ts"] / p[test]["avg_ts"]
                      for a, p in zip(per_round[t, n], per_round[t, "portable"])]
            ratios[f"t{t}"][f"{n}/portable"][test] = {
                "of_medians": round(speed[f"t{t}"][n][test]["median"]
                                    / speed[f"t{t}"]["portable"][test]["median"], 3),
                "median_of_paired_rounds": round(med(paired), 3),
                "paired_rounds": [round(x, 3) for x in paired]}
out.write_text(json.dumps(result, indent=2) + "\n")

for t in thread_counts:
    for n in rotation:
        s = speed[f"t{t}"][n]
        print(f'-t {t} {n}: pp512 {s["pp512"]["median"]} tg128 {s["tg128"]["median"]} tokens/s (median)')
    for k, v in ratios[f"t{t}"].items():
        print(f'-t {t} {k}: pp512 x{v["pp512"]["of_medians"]} tg128 x{v["tg128"]["of_medians"]}')
print(f"wrote {out}")
EOF
