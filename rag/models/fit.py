"""Will a model run here? This machine's memory and GPUs against what a model needs.

What a model needs at a context size: its weights (the GGUF's tensor data, memory-mapped and
all touched by the first answer), the KV cache (layers x context x KV heads x head size x 2
for keys and values x 2 bytes of f16), and the runtime (Python, llama.cpp, its compute
buffers). The runtime figure is measured, not derived: loading the bundled model at 4,096
tokens and reading its peak RSS (README, "Choosing a model") left 70 MB beside weights and
cache, plus a share that grows with the model.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import asdict, dataclass, field

RUNTIME_BYTES = 70 * 1024**2
RUNTIME_SHARE = 0.05  # of the weights: llama.cpp's compute buffers grow with the model
KV_BYTES = 2  # f16 keys and values, llama.cpp's default cache type
GPU_RESERVE = 300 * 1024**2  # the CUDA context and scratch that llama.cpp allocates per GPU
USABLE = 0.9  # never plan on the last tenth of free memory
# Above this much weight a CPU decodes fewer than ~5 tokens a second (memory bandwidth
# bound: each token reads every weight once), which is what "slowly" means to a reader.
CPU_COMFORTABLE_BYTES = 2_500_000_000

FITS_GPU, FITS_CPU, SLOW, WONT_FIT = "gpu", "cpu", "slow", "no"
LABELS = {
    FITS_GPU: "fits on the GPU",
    FITS_CPU: "fits on this machine (CPU)",
    SLOW: "runs on the CPU, slowly",
    WONT_FIT: "will not fit",
}


@dataclass(frozen=True)
class Gpu:
    name: str
    total: int
    free: int


@dataclass(frozen=True)
class Machine:
    ram_total: int
    ram_available: int
    cpus: int
    gpus: tuple[Gpu, ...] = ()
    repacks: bool = True  # llama.cpp copies Q4_0/Q4_K/IQ4_NL weights into a faster layout here

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Geometry:
    """What the estimate reads from a GGUF header (or, before download, the catalog)."""

    weights: int  # bytes
    layers: int
    kv_heads: int
    head_dim: int
    trained_context: int = 0
    repackable: int = 0  # bytes of weights held twice where the CPU backend repacks them


@dataclass(frozen=True)
class Fit:
    code: str
    need: int  # bytes at the context asked for
    gpu_layers: int  # -1: all, 0: none, n: the first n layers
    reason: str
    kv_cache: int = 0
    context: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return LABELS[self.code]

    def to_json(self) -> dict:
        return {"fit": self.code, "label": self.label, "need_bytes": self.need,
                "kv_cache_bytes": self.kv_cache, "context": self.context,
                "gpu_layers": self.gpu_layers, "reason": self.reason}


def kv_cache_bytes(geometry: Geometry, n_ctx: int) -> int:
    return geometry.layers * n_ctx * geometry.kv_heads * geometry.head_dim * 2 * KV_BYTES


def memory_needed(geometry: Geometry, n_ctx: int, repacks: bool = False) -> tuple[int, int, int]:
    """(total bytes, KV-cache bytes, context used): the context is capped by the trained one,
    as the model host caps it. `repacks`: all on a CPU whose backend repacks weights, which
    holds those weights twice (measured: the evaluation model's peak RSS was 2,029 MB against
    1,358 MB estimated without its 626 MB of repacked weights)."""
    ctx = min(n_ctx, geometry.trained_context) if geometry.trained_context else n_ctx
    kv = kv_cache_bytes(geometry, ctx)
    total = geometry.weights + kv + RUNTIME_BYTES + int(geometry.weights * RUNTIME_SHARE)
    return total + (geometry.repackable if repacks else 0), kv, ctx


def geometry_from_gguf(info) -> Geometry:
    """Geometry from `rag.llm.gguf.check_gguf`'s header: block count, KV heads, head size."""
    meta, arch = info.metadata, info.architecture or ""

    def num(key: str, default: int = 0) -> int:
        value = meta.get(f"{arch}.{key}", default)
        return value if isinstance(value, int) else default

    heads = num("attention.head_count", 1) or 1
    head_dim = num("attention.key_length") or (num("embedding_length") // heads)
    weights = max(info.data_end - info.data_offset, 0) or info.file_size
    return Geometry(weights=weights, layers=num("block_count"), kv_heads=num("attention.head_count_kv", heads),
                    head_dim=head_dim, trained_context=info.context_length or 0,
                    repackable=getattr(info, "repackable_bytes", 0))


def judge(geometry: Geometry, machine: Machine, n_ctx: int) -> Fit:
    gpu = max(machine.gpus, key=lambda g: g.free, default=None)
    need, kv, ctx = memory_needed(geometry, n_ctx, repacks=gpu is None and machine.repacks)
    repack = geometry.repackable if machine.repacks else 0
    gib = 1024**3
    usable_ram = int(machine.ram_available * USABLE)
    common = {"need": need, "kv_cache": kv, "context": ctx}
    if gpu is not None:
        room = int(gpu.free * USABLE) - GPU_RESERVE
        if need <= room:
            return Fit(FITS_GPU, gpu_layers=-1, reason=(
                f"needs {need / gib:.1f} GB at {ctx:,} tokens; {gpu.name} has {gpu.free / gib:.1f} GB free"),
                **common)
        per_layer = (geometry.weights + kv) / max(geometry.layers, 1)
        layers = max(int(room // per_layer), 0) if per_layer else 0
        on_cpu = max(geometry.layers - layers, 0) / max(geometry.layers, 1)
        if need - layers * per_layer + int(repack * on_cpu) <= usable_ram:
            return Fit(SLOW, gpu_layers=min(layers, geometry.layers), reason=(
                f"needs {need / gib:.1f} GB at {ctx:,} tokens; {layers} of {geometry.layers} layers fit "
                f"on {gpu.name}, the rest runs on the CPU"), **common)
    elif need <= usable_ram:
        code = FITS_CPU if geometry.weights <= CPU_COMFORTABLE_BYTES else SLOW
        return Fit(code, gpu_layers=0, reason=(
            f"needs {need / gib:.1f} GB at {ctx:,} tokens; {machine.ram_available / gib:.1f} GB of memory "
            f"is free and there is no GPU Enclave can use"), **common)
    return Fit(WONT_FIT, gpu_layers=0, reason=(
        f"needs {need / gib:.1f} GB at {ctx:,} tokens but only {machine.ram_available / gib:.1f} GB of "
        f"memory is free{'' if gpu is None else f' and {gpu.free / gib:.1f} GB on {gpu.name}'}; "
        "choose a smaller model or a smaller context size"), **common)


def detect_machine() -> Machine:
    """Free memory from /proc/meminfo (MemAvailable: what can be had without swapping),
    NVIDIA GPUs from nvidia-smi when it is installed. Takes milliseconds; nothing is cached,
    because free memory changes."""
    total = available = 0
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            values = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in handle if line.strip()}
        total, available = values.get("MemTotal", 0), values.get("MemAvailable", values.get("MemFree", 0))
    except (OSError, ValueError, IndexError):
        pass
    if not total:
        try:
            total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            available = total // 2  # no better figure without /proc: assume half is in use
        except (ValueError, OSError, AttributeError):
            total = available = 0
    gpus = _nvidia_gpus() if llama_cpp_has_cuda() else ()
    return Machine(ram_total=total, ram_available=available, cpus=os.cpu_count() or 1, gpus=gpus,
                   repacks=_cpu_repacks())


def _cpu_repacks() -> bool:
    """Whether llama.cpp's CPU backend repacks weights here: AVX2 on x86 (the portable build
    picks its kernels at run time), NEON on ARM."""
    import platform

    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64", "i686"):
        try:
            with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
                return any(line.startswith("flags") and " avx2" in line for line in handle)
        except OSError:
            return True  # unknown: count the copy, an estimate should not come out short
    return machine.startswith(("aarch64", "arm64"))


def llama_cpp_has_cuda() -> bool:
    """Whether the installed llama.cpp can use an NVIDIA GPU: a CUDA build ships its backend
    as `libggml-cuda` beside `libggml-cpu` (the default build is CPU-only, README "On a GPU
    workstation"). Read from the package's files, so this process never loads llama.cpp; a
    GPU the build cannot use must not be promised."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("llama_cpp")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        lib = Path(folder) / "lib"
        if any(lib.glob("*ggml-cuda*")):
            return True
    return False


def _nvidia_gpus() -> tuple[Gpu, ...]:
    smi = shutil.which("nvidia-smi")
    if not smi:
        return ()
    try:
        out = subprocess.run([smi, "--query-gpu=name,memory.total,memory.free", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    gpus = []
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            gpus.append(Gpu(parts[0], int(parts[1]) * 1024**2, int(parts[2]) * 1024**2))
    return tuple(gpus)
