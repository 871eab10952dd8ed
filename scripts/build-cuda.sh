#!/usr/bin/env bash
# Build the GPU (CUDA) variants of the STT and LLM workers.
#
# The machine that builds needs no GPU and no system CUDA install: a CUDA 13
# toolkit is assembled from NVIDIA's pip wheels (nvcc, runtime, cuBLAS, CCCL,
# NVVM, CRT headers) into a directory of its own, shaped like /usr/local/cuda
# so that CMake's FindCUDAToolkit, whisper-rs-sys and llama-cpp-sys-2 find it.
# The workers link the CUDA runtime and cuBLAS dynamically (libcudart.so.13,
# libcublas.so.13, libcublasLt.so.13) and the driver (libcuda.so.1) through a
# stub: at run time they use the target machine's own libraries (driver >= 580
# for CUDA 13). See docs/gpu.md.
#
#   CUDA_PIP_DIR=/opt/cuda-pip scripts/build-cuda.sh          # toolkit + build
#   CUDA_PIP_DIR=/opt/cuda-pip scripts/build-cuda.sh toolkit  # toolkit only
#
# Environment:
#   CUDA_PIP_DIR     (required) where the wheels and the toolkit go; keep it
#                    outside the repository (about 1.6 GB once unpacked).
#   CUDA_ARCHS       CMake CUDA architectures (default 90-real: H100/H200).
#                    E.g. "89-real" for L4/L40S, "80-real;90-real" for both.
#   CUDA_TARGET_DIR  cargo target directory (default target/cuda, so the CPU
#                    build in target/ is not touched).
#   CUDA_CPU         -C target-cpu for the CPU parts (default x86-64-v3: AVX2,
#                    FMA, F16C; every x86 server CPU of the last decade).
#   CUDA_*_VERSION   wheel versions, below; keep them at or below the CUDA
#                    version of the target machine's driver and libraries.
#   CARGO_BUILD_JOBS / CMAKE_BUILD_PARALLEL_LEVEL as usual (default: nproc).
set -euo pipefail

: "${CUDA_PIP_DIR:?set CUDA_PIP_DIR to a directory outside the repository, e.g. /opt/cuda-pip}"
NVCC_VERSION=${CUDA_NVCC_VERSION:-13.0.88}
RUNTIME_VERSION=${CUDA_RUNTIME_VERSION:-13.0.96}
CUBLAS_VERSION=${CUDA_CUBLAS_VERSION:-13.0.2.14}
CCCL_VERSION=${CUDA_CCCL_VERSION:-13.0.85}
NVVM_VERSION=${CUDA_NVVM_VERSION:-13.0.88}
CRT_VERSION=${CUDA_CRT_VERSION:-13.0.88}
ARCHS=${CUDA_ARCHS:-90-real}
CPU=${CUDA_CPU:-x86-64-v3}

repo=$(cd "$(dirname "$0")/.." && pwd)
wheels=$CUDA_PIP_DIR/wheels
tk=$CUDA_PIP_DIR/toolkit
# Empty stand-ins for static libraries (below) go beside the real ones: the
# -sys crates bundle their static libraries into their rlibs, and search only
# the toolkit's lib directory when they do.
shims=$tk/lib
log() { echo "build-cuda: $*" >&2; }

toolkit() {
    if [[ -x $tk/bin/nvcc && -e $tk/lib64/stubs/libcuda.so && -e $shims/libculibos.a ]]; then
        log "toolkit already in $tk"
        return
    fi
    for tool in unzip cc ar; do
        command -v $tool >/dev/null || { log "needs $tool"; exit 1; }
    done
    mkdir -p "$wheels"
    local specs=(
        "nvidia-cuda-nvcc==$NVCC_VERSION" "nvidia-cuda-runtime==$RUNTIME_VERSION"
        "nvidia-cublas==$CUBLAS_VERSION" "nvidia-cuda-cccl==$CCCL_VERSION"
        "nvidia-nvvm==$NVVM_VERSION" "nvidia-cuda-crt==$CRT_VERSION"
    )
    log "fetching ${specs[*]}"
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform manylinux_2_12_x86_64 --platform manylinux2010_x86_64 \
        -d "$wheels" "${specs[@]}"

    # Every CUDA 13 wheel keeps its files under nvidia/cu13/{bin,include,lib,nvvm}:
    # merged, they are a toolkit tree.
    rm -rf "$tk.tmp" && mkdir -p "$tk.tmp"
    local stage=$CUDA_PIP_DIR/unpack
    for spec in "${specs[@]}"; do
        local name=${spec%%==*} version=${spec##*==}
        local whl
        whl=$(ls "$wheels"/"${name//-/_}"-"$version"-*.whl)
        rm -rf "$stage" && mkdir -p "$stage"
        unzip -q -o "$whl" 'nvidia/cu13/*' -d "$stage"
        cp -a "$stage"/nvidia/cu13/. "$tk.tmp"/
    done
    rm -rf "$stage" "$tk.tmp/.metadata"
    chmod +x "$tk.tmp"/bin/* "$tk.tmp"/nvvm/bin/*
    # nvcc.profile and CMake look in lib64; the wheels use lib.
    ln -s lib "$tk.tmp/lib64"
    # Unversioned names for the linker.
    for so in "$tk.tmp"/lib/*.so.*; do
        local base=${so%%.so.*}.so
        [[ -e $base ]] || ln -s "$(basename "$so")" "$base"
    done

    # libcuda.so (the driver) comes with the driver, not with the toolkit: a
    # stub that defines every entry point of cuda.h is enough to link against
    # it (as the toolkit's own lib64/stubs/libcuda.so is); libcuda.so.1 of the
    # target machine is used at run time.
    mkdir -p "$tk.tmp/lib/stubs"
    echo '#include <cuda.h>' | cc -E -P -I"$tk.tmp/include" -x c - |
        grep -oE '\bcu[A-Z][A-Za-z0-9_]*[[:space:]]*\(' | tr -d ' (\t' | sort -u |
        sed 's/.*/void &(void) {}/' > "$CUDA_PIP_DIR/libcuda-stub.c"
    cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$tk.tmp/lib/stubs/libcuda.so" \
        "$CUDA_PIP_DIR/libcuda-stub.c"
    rm -rf "$tk" && mv "$tk.tmp" "$tk"

    # llama-cpp-sys-2 links cuBLAS statically on Linux (cublas_static,
    # cublasLt_static, culibos), and whisper-rs-sys asks for culibos: the
    # wheels ship only the shared cuBLAS (the static one would put ~600 MB into
    # every binary). Empty archives satisfy those names; the LLM worker is then
    # linked against the shared libcublas/libcublasLt (see build_workers).
    for lib in cublas_static cublasLt_static culibos; do
        ar rcs "$shims/lib$lib.a"
    done

    # Smoke test: compile a kernel for the chosen architectures.
    printf '__global__ void k(float *x) { x[threadIdx.x] *= 2.0f; }\n' > "$CUDA_PIP_DIR/smoke.cu"
    "$tk/bin/nvcc" -c -o "$CUDA_PIP_DIR/smoke.o" "$CUDA_PIP_DIR/smoke.cu"
    log "toolkit ready: $("$tk/bin/nvcc" --version | tail -2 | head -1)"
}

build_workers() {
    local target_dir=${CUDA_TARGET_DIR:-$repo/target/cuda}
    export PATH=$tk/bin:$PATH
    export CUDA_PATH=$tk CUDAToolkit_ROOT=$tk CUDA_LIBRARY_PATH=$tk CUDACXX=$tk/bin/nvcc
    # Forwarded to CMake by whisper-rs-sys and llama-cpp-sys-2 (CMAKE_*, GGML_*).
    export CMAKE_CUDA_COMPILER=$tk/bin/nvcc CMAKE_CUDA_ARCHITECTURES=$ARCHS
    export GGML_NATIVE=OFF
    # The CPU code (ggml's CPU backend, used with --gpu-layers 0 and for
    # Silero) is built for a baseline CPU, not for this build machine.
    export RUSTFLAGS="-C target-cpu=$CPU ${RUSTFLAGS:-}"
    export CARGO_TARGET_DIR=$target_dir
    local link=(-L "native=$tk/lib64" -L "native=$tk/lib64/stubs")
    cd "$repo"
    log "building understudy-stt (cuda, archs $ARCHS) into $target_dir"
    cargo rustc --release --locked -p understudy-stt --features cuda --bin understudy-stt -- "${link[@]}"
    log "building understudy-llm (cuda, archs $ARCHS) into $target_dir"
    cargo rustc --release --locked -p understudy-llm --features cuda --bin understudy-llm -- \
        "${link[@]}" -l dylib=cublas -l dylib=cublasLt
    for bin in understudy-stt understudy-llm; do
        log "$target_dir/release/$bin needs: $(readelf -d "$target_dir/release/$bin" |
            sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | tr '\n' ' ')"
    done
    log "run with LD_LIBRARY_PATH holding the target machine's libcudart.so.13 and libcublas.so.13 (docs/gpu.md)"
}

case ${1:-all} in
    toolkit) toolkit ;;
    workers) build_workers ;;
    all) toolkit; build_workers ;;
    *) echo "usage: $0 [all|toolkit|workers]" >&2; exit 2 ;;
esac
