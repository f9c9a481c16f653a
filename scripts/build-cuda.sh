#!/usr/bin/env bash
# Builds the CUDA binary of canard-train: target/cuda/release/canard-train.
#
# A machine with a CUDA toolkit (nvcc on PATH, and CUDA_HOME or /usr/local/cuda) builds
# with it directly. Anywhere else (no toolkit, no GPU needed) the toolkit comes from
# NVIDIA's CUDA 13.0 wheels on PyPI, installed into .deps/cuda/ (git-ignored), and a
# stub libcuda.so stands in for the driver at link time only.
#
# The build goes to its own target dir (target/cuda), so the CPU build in target/ is
# not invalidated by the feature flip. Safe to run again: installed pieces are kept.
#
# Environment:
#   CUDA_COMPUTE_CAP  GPU generation to compile the kernels for: 90 (H100/H200, the
#                     default), 80 (A100), 89 (L4/RTX 40xx), 120 (RTX 50xx), ...
#   PYTHON            interpreter whose pip fetches the wheels (default python3)
#   CARGO             cargo to run (default cargo)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${root}"

cargo="${CARGO:-cargo}"
python="${PYTHON:-python3}"
target_dir="target/cuda"
bin="${target_dir}/release/canard-train"
build=("${cargo}" build --release -p canard-train --features cuda --target-dir "${target_dir}")

# nvcc 13.0 exactly: a GPU driver of the 580 series (CUDA 13.0) cannot JIT the PTX of a
# newer nvcc (13.2 emits PTX ISA 9.2). The libraries are the matching 13.0 releases.
wheels=(
    nvidia-cuda-nvcc==13.0.88
    nvidia-cuda-crt==13.0.88
    nvidia-nvvm==13.0.88
    nvidia-cuda-runtime==13.0.96
    nvidia-cuda-cccl==13.0.85
    nvidia-cuda-nvrtc==13.0.88
    nvidia-curand==10.4.0.35
    nvidia-cublas==13.0.2.14
)
# Linked by candle (cudarc with `dynamic-linking`, and candle-kernels); the wheels ship only libNAME.so.N.
libs=(cudart cublas cublasLt curand nvrtc)

deps="${root}/.deps/cuda"
site="${deps}/site"
cu="${site}/nvidia/cu13"   # the toolkit root: bin/nvcc, include, lib
lib64="${cu}/lib64"        # unversioned symlinks, what the linker looks for
stubs="${lib64}/stubs"     # libcuda.so stub (link time only; never put it on LD_LIBRARY_PATH)

say() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
elapsed() { local s=$((SECONDS - $1)); printf '%dm%02ds' $((s / 60)) $((s % 60)); }

finish() {
    local size cap
    size="$(du -h "${bin}" | cut -f1)"
    cap="${CUDA_COMPUTE_CAP:-the GPU found by nvidia-smi}"
    cat <<EOF

Built ${root}/${bin} (${size}).
Its kernels are compiled for CUDA_COMPUTE_CAP=${cap} only (90 means sm_90a:
H100/H200); for another GPU, rebuild with its compute capability, e.g. CUDA_COMPUTE_CAP=80 for an A100.

To run it on a GPU machine, it needs at run time:
  - libcuda.so.1 from the NVIDIA driver (a 580+ driver for CUDA 13.0; usually already
    on the library path where the driver is installed), and
  - the CUDA 13 libraries libcudart.so.13, libcublas.so.13, libcublasLt.so.13,
    libcurand.so.10 and libnvrtc.so.13, e.g. from a CUDA 13 toolkit, from PyTorch's
    site-packages/nvidia/cu13/lib, or from the wheels this script installed
    (${cu}/lib):

  LD_LIBRARY_PATH=/path/to/site-packages/nvidia/cu13/lib:\$LD_LIBRARY_PATH \\
      ./canard-train --device cuda --data ~/pictures/bikes --name bikes

Without libcuda.so.1 the binary does not start at all: keep the CPU build
(target/release/canard-train) for machines without a GPU.
EOF
}

# --- A real toolkit: use it as it is. -------------------------------------------------
if command -v nvcc >/dev/null 2>&1 && { [[ -n "${CUDA_HOME:-}" ]] || [[ -d /usr/local/cuda ]]; }; then
    say "CUDA toolkit found: $(command -v nvcc) ($(nvcc --version | grep -o 'release [0-9.]*'))"
    # Without a GPU to ask (nvidia-smi), candle-kernels needs the compute capability.
    if [[ -z "${CUDA_COMPUTE_CAP:-}" ]] && ! nvidia-smi --query-gpu=compute_cap --format=csv >/dev/null 2>&1; then
        export CUDA_COMPUTE_CAP=90
        say "no GPU visible: compiling the kernels for CUDA_COMPUTE_CAP=90 (set it to change)"
    fi
    say "${build[*]}"
    t0=${SECONDS}
    "${build[@]}"
    say "cargo build took $(elapsed "${t0}")"
    finish
    exit 0
fi

# --- No toolkit: NVIDIA's wheels from PyPI. -------------------------------------------
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
say "no CUDA toolkit here (nvcc with CUDA_HOME or /usr/local/cuda): using CUDA 13.0 from PyPI in ${deps}"

# 1. The wheels. The stamp names exactly what was installed, so a changed pin reinstalls.
stamp="${deps}/wheels.txt"
if [[ -x "${cu}/bin/nvcc" && -f "${stamp}" ]] && [[ "$(cat "${stamp}")" == "${wheels[*]}" ]]; then
    say "wheels already installed: ${site}"
else
    command -v "${python}" >/dev/null 2>&1 || die "${python} not found; it is needed to fetch the CUDA wheels from PyPI"
    say "installing ${wheels[*]}"
    say "  into ${site} (about 1 GB to download)"
    mkdir -p "${deps}"
    rm -rf "${site}.part"
    t0=${SECONDS}
    # Into a temporary dir, renamed when complete: an interrupted install is never taken
    # for a finished one. --no-deps: the pins above are the whole set.
    PIP_ROOT_USER_ACTION=ignore "${python}" -m pip install --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
        --target "${site}.part" "${wheels[@]}"
    rm -rf "${site}" "${lib64}"
    mv "${site}.part" "${site}"
    printf '%s\n' "${wheels[*]}" >"${stamp}"
    say "wheels installed in $(elapsed "${t0}") ($(du -sh "${site}" | cut -f1))"
fi

# 2. Check the layout this script relies on.
for f in bin/nvcc bin/nvcc.profile nvvm/bin/cicc nvvm/libdevice/libdevice.10.bc include/cuda_runtime.h \
    include/cuda_fp16.h include/cuda_bf16.h include/cccl/cub/cub.cuh include/curand.h include/cublas_v2.h \
    include/nvrtc.h; do
    [[ -e "${cu}/${f}" ]] || die "the wheels' layout changed: ${cu}/${f} is missing"
done
nvcc_release="$("${cu}/bin/nvcc" --version | grep -o 'release [0-9.]*' || true)"
[[ "${nvcc_release}" == "release 13.0" ]] || die "${cu}/bin/nvcc is '${nvcc_release}', expected release 13.0"
say "toolkit root ${cu}: nvcc ${nvcc_release}"

# 3. Unversioned library names for the linker (the wheels ship only libfoo.so.N).
mkdir -p "${lib64}"
for name in "${libs[@]}"; do
    versioned="$(cd "${cu}/lib" && ls "lib${name}.so."* 2>/dev/null | sort | head -n 1 || true)"
    [[ -n "${versioned}" ]] || die "lib${name}.so.* not found in ${cu}/lib"
    ln -sfn "../lib/${versioned}" "${lib64}/lib${name}.so"
done
say "linker names in ${lib64}: $(cd "${lib64}" && ls -1 ./*.so | sed 's|^\./||' | tr '\n' ' ')"

# 4. A stub libcuda.so (SONAME libcuda.so.1) with every cu* function of cudarc's driver
#    bindings, each returning 0. It only satisfies the linker; at run time the driver's
#    real libcuda.so.1 is loaded instead. Rebuilt when Cargo.lock moves to another cudarc.
cudarc_locked="$(awk '$0 == "name = \"cudarc\"" { getline; print $3 }' Cargo.lock | tr -d '"' | sort -u | tr '\n' ' ')"
stub_stamp="${deps}/libcuda-stub.cudarc"
if [[ -f "${stubs}/libcuda.so" && -f "${stub_stamp}" ]] && [[ "$(cat "${stub_stamp}")" == "${cudarc_locked}" ]]; then
    say "stub libcuda already built: ${stubs}/libcuda.so (cudarc ${cudarc_locked% })"
else
    command -v gcc >/dev/null 2>&1 || die "gcc is needed to build the stub libcuda.so"
    say "locating cudarc's sources (cargo metadata)"
    cudarc_dir="$("${cargo}" metadata --format-version 1 --features canard-train/cuda --manifest-path "${root}/Cargo.toml" |
        "${python}" -c 'import json, os, sys
pkgs = [p for p in json.load(sys.stdin)["packages"] if p["name"] == "cudarc"]
print(os.path.dirname(pkgs[0]["manifest_path"]) if pkgs else "")')"
    bindings="${cudarc_dir}/src/driver/sys/mod.rs"
    [[ -f "${bindings}" ]] || die "cudarc's driver bindings not found (looked for ${bindings:-cudarc in cargo metadata})"
    mkdir -p "${stubs}"
    src="${deps}/libcuda-stub.c"
    {
        echo "/* Link-time stand-in for the NVIDIA driver's libcuda.so.1, generated by scripts/build-cuda.sh"
        echo "   from ${bindings#"${HOME}/"}. Every function returns 0 (CUDA_SUCCESS). */"
        grep -oE '^pub unsafe fn cu[A-Za-z0-9_]+' "${bindings}" | sed 's/^pub unsafe fn //' | sort -u |
            sed 's/.*/int &(void) { return 0; }/'
    } >"${src}.part"
    mv "${src}.part" "${src}"
    gcc -shared -fPIC -O0 -Wl,-soname,libcuda.so.1 -o "${stubs}/libcuda.so.part" "${src}"
    mv "${stubs}/libcuda.so.part" "${stubs}/libcuda.so"
    printf '%s\n' "${cudarc_locked}" >"${stub_stamp}"
    say "stub libcuda built: ${stubs}/libcuda.so ($(grep -c '^int ' "${src}") functions, from $(basename "${cudarc_dir}"))"
fi

# 5. Build. CUDA_ROOT (cudarc's link paths: lib, lib64, lib64/stubs) is the only CUDA path
#    variable set, so no other toolkit's libraries get mixed in.
say "CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP} NVCC=${cu}/bin/nvcc CUDA_ROOT=${cu}"
say "${build[*]}"
t0=${SECONDS}
env -u CUDA_HOME -u CUDA_PATH -u CUDA_TOOLKIT_ROOT_DIR -u CUDNN_LIB \
    PATH="${cu}/bin:${PATH}" NVCC="${cu}/bin/nvcc" CUDA_ROOT="${cu}" \
    "${build[@]}"
say "cargo build took $(elapsed "${t0}")"
finish
