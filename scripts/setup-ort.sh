#!/usr/bin/env bash
# Installs the ONNX Runtime library that canard-serve loads at run time, from the
# official PyPI wheels (ort's own download host is not reachable from every
# machine; PyPI is). Everything goes under .deps/ (git-ignored).
#
#   scripts/setup-ort.sh           CPU build, wheel onnxruntime     -> .deps/onnxruntime/
#   scripts/setup-ort.sh --gpu     CUDA build, wheel onnxruntime-gpu -> .deps/onnxruntime-gpu/
#                                  then reports which CUDA 13 / cuDNN 9 libraries this
#                                  machine has (the CUDA provider needs them at run time)
#   scripts/setup-ort.sh --gpu --check   only that report (installs nothing)
#
# Safe to run again: a library already installed is not downloaded again.
set -euo pipefail

ORT_VERSION=1.31.1
LIB_NAME="libonnxruntime.so.${ORT_VERSION}"

gpu=0
check_only=0
for arg in "$@"; do
    case "${arg}" in
        --gpu) gpu=1 ;;
        --check) check_only=1 ;;
        -h | --help)
            sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "error: unknown argument ${arg} (expected --gpu, --check)" >&2
            exit 2
            ;;
    esac
done
if [[ ${check_only} -eq 1 && ${gpu} -eq 0 ]]; then
    echo "error: --check goes with --gpu (the CPU library needs nothing else)" >&2
    exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"

if [[ ${gpu} -eq 1 ]]; then
    package=onnxruntime-gpu
    dest="${root}/.deps/onnxruntime-gpu"
    # All three must sit in ONE directory: libonnxruntime loads the providers
    # from its own directory.
    members=("${LIB_NAME}" libonnxruntime_providers_shared.so libonnxruntime_providers_cuda.so)
else
    package=onnxruntime
    dest="${root}/.deps/onnxruntime"
    members=("${LIB_NAME}")
fi

installed() {
    local m
    for m in "${members[@]}"; do
        [[ -f "${dest}/${m}" ]] || return 1
    done
}

install() {
    if installed; then
        ln -sfn "${LIB_NAME}" "${dest}/libonnxruntime.so"
        echo "ONNX Runtime ${ORT_VERSION} (${package}) already installed: ${dest}/libonnxruntime.so"
        return
    fi
    if ! command -v "${python}" >/dev/null 2>&1; then
        echo "error: ${python} not found; it is needed to download the ${package} wheel from PyPI" >&2
        exit 1
    fi

    tmp="$(mktemp -d)"
    trap 'rm -rf "${tmp}"' EXIT

    pip_download() {
        "${python}" -m pip download --quiet --disable-pip-version-check --no-deps \
            --only-binary=:all: "${package}==${ORT_VERSION}" -d "${tmp}" "$@"
    }

    echo "Downloading ${package}==${ORT_VERSION} from PyPI..."
    # The wheel is chosen for the running interpreter; when no wheel exists for it (a
    # too-new or too-old CPython) the libraries inside are the same, so ask for 3.11's.
    if ! pip_download 2>"${tmp}/pip.log"; then
        echo "(no wheel for this Python; fetching the CPython 3.11 manylinux wheel instead)"
        if ! pip_download --python-version 3.11 --implementation cp --abi cp311 \
            --platform manylinux_2_27_x86_64 --platform manylinux_2_28_x86_64 \
            --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 2>>"${tmp}/pip.log"; then
            cat "${tmp}/pip.log" >&2
            echo "error: could not download ${package}==${ORT_VERSION} from PyPI" >&2
            exit 1
        fi
    fi

    # Wheel file names use underscores: onnxruntime_gpu-1.31.1-...whl.
    wheel="$(ls "${tmp}/${package//-/_}-${ORT_VERSION}"-*.whl 2>/dev/null | head -n 1)"
    if [[ -z "${wheel}" ]]; then
        echo "error: pip reported success but no ${package} wheel is in ${tmp}" >&2
        exit 1
    fi

    mkdir -p "${dest}"
    # Each file is written under a temporary name and renamed, so an interrupted run
    # never leaves a truncated library that the check above would take for a
    # finished install. The versioned library is written last: it marks the install.
    "${python}" - "${wheel}" "${dest}" "${members[@]}" <<'EOF'
import os, shutil, sys, zipfile
wheel, dest, members = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(wheel) as zf:
    names = set(zf.namelist())
    for member in members[1:] + members[:1]:
        src_name = "onnxruntime/capi/" + member
        if src_name not in names:
            sys.exit(f"error: {os.path.basename(wheel)} holds no {src_name}")
        target = os.path.join(dest, member)
        part = target + ".part"
        with zf.open(src_name) as src, open(part, "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.chmod(part, 0o755)
        os.replace(part, target)
EOF

    ln -sfn "${LIB_NAME}" "${dest}/libonnxruntime.so"
    echo "Installed ONNX Runtime ${ORT_VERSION} (${package}): ${dest}/libonnxruntime.so -> ${LIB_NAME}"
    if [[ ${gpu} -eq 1 ]]; then
        echo "  with ${members[1]} and ${members[2]} beside it"
    fi
}

# The libraries the CUDA provider of onnxruntime-gpu 1.31 needs at run time: the
# CUDA 13 ones it links to (plus the driver's libcuda), and cuDNN 9, which it loads
# itself. Looked up where the dynamic loader looks (LD_LIBRARY_PATH, then the
# ldconfig cache) and in the nvidia-* wheels of the active Python (PyTorch for
# CUDA 13 brings them), which the loader only searches when LD_LIBRARY_PATH says so.
CUDA_LIBS=(libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libcufft.so.12)
DRIVER_LIBS=(libcuda.so.1)
CUDNN_LIBS=(libcudnn.so.9 libcudnn_graph.so.9 libcudnn_ops.so.9 libcudnn_cnn.so.9
    libcudnn_adv.so.9 libcudnn_heuristic.so.9 libcudnn_engines_precompiled.so.9
    libcudnn_engines_runtime_compiled.so.9)

report() {
    local wheel_dirs=() dirs=() d
    if command -v "${python}" >/dev/null 2>&1; then
        # site-packages of the active Python (virtual environment included), user site too.
        while IFS= read -r d; do
            [[ -n "${d}" ]] && wheel_dirs+=("${d}")
        done < <("${python}" - <<'EOF' 2>/dev/null || true
import site, sys, os
roots = list(getattr(site, "getsitepackages", lambda: [])()) + [site.getusersitepackages()]
roots += [p for p in sys.path if p.endswith("site-packages")]
seen = set()
for r in roots:
    for sub in ("nvidia/cu13/lib", "nvidia/cudnn/lib"):
        d = os.path.join(r, sub)
        if os.path.isdir(d) and d not in seen:
            seen.add(d)
            print(d)
EOF
        )
    fi
    IFS=: read -r -a dirs <<<"${LD_LIBRARY_PATH:-}"

    local ldcache=""
    if command -v ldconfig >/dev/null 2>&1; then
        ldcache="$(ldconfig -p 2>/dev/null || true)"
    elif [[ -x /sbin/ldconfig ]]; then
        ldcache="$(/sbin/ldconfig -p 2>/dev/null || true)"
    fi

    # Prints where the loader would find $1 ("found at PATH"), else where a wheel has
    # it ("found at PATH (nvidia wheel: add its folder to LD_LIBRARY_PATH)"), else
    # "missing". Returns 0 found by the loader, 1 wheel only, 2 missing.
    local missing=0 wheel_only=0 need_dirs=()
    where() {
        local lib="$1" d p
        for d in "${dirs[@]}"; do
            if [[ -n "${d}" && -e "${d}/${lib}" ]]; then
                echo "  ${lib}: found at ${d}/${lib} (LD_LIBRARY_PATH)"
                return 0
            fi
        done
        p="$(awk -v lib="${lib}" '$1 == lib && /x86-64/ { print $NF; exit }' <<<"${ldcache}")"
        if [[ -n "${p}" ]]; then
            echo "  ${lib}: found at ${p} (ldconfig)"
            return 0
        fi
        for d in "${wheel_dirs[@]}"; do
            if [[ -e "${d}/${lib}" ]]; then
                echo "  ${lib}: found at ${d}/${lib} (nvidia wheel; not on the loader's path: add ${d} to LD_LIBRARY_PATH)"
                local n
                for n in "${need_dirs[@]}"; do [[ "${n}" == "${d}" ]] && return 1; done
                need_dirs+=("${d}")
                return 1
            fi
        done
        echo "  ${lib}: missing"
        return 2
    }
    section() {
        local title="$1" lib rc
        shift
        echo "${title}"
        for lib in "$@"; do
            rc=0
            where "${lib}" || rc=$?
            case ${rc} in
                1) wheel_only=$((wheel_only + 1)) ;;
                2) missing=$((missing + 1)) ;;
            esac
        done
    }

    echo
    echo "Libraries the CUDA execution provider needs at run time:"
    section "NVIDIA driver:" "${DRIVER_LIBS[@]}"
    section "CUDA 13:" "${CUDA_LIBS[@]}"
    section "cuDNN 9:" "${CUDNN_LIBS[@]}"
    if [[ ${#wheel_dirs[@]} -eq 0 ]]; then
        echo "(no nvidia/cu13/lib or nvidia/cudnn/lib in ${python}'s site-packages)"
    fi
    echo
    if [[ ${missing} -eq 0 && ${wheel_only} -eq 0 ]]; then
        echo "All found: canard-serve built with --features cuda can run with --device cuda."
    else
        if [[ ${#need_dirs[@]} -gt 0 ]]; then
            local joined
            joined="$(IFS=:; echo "${need_dirs[*]}")"
            echo "Some are only in Python wheels; before starting canard-serve:"
            echo "  export LD_LIBRARY_PATH=${joined}\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
        fi
        if [[ ${missing} -gt 0 ]]; then
            echo "${missing} missing: CUDA 13 and cuDNN 9 come with the NVIDIA CUDA toolkit and cuDNN packages,"
            echo "or with the PyPI wheels (pip install nvidia-cuda-runtime nvidia-cublas nvidia-curand"
            echo "nvidia-cufft nvidia-cudnn-cu13, or PyTorch for CUDA 13); libcuda.so.1 comes with the NVIDIA driver."
            echo "Without them canard-serve --device cuda refuses to start and --device auto runs on the CPU."
        fi
    fi
}

if [[ ${check_only} -eq 0 ]]; then
    install
fi
if [[ ${gpu} -eq 1 ]]; then
    report
    echo
    echo "Start the server with: canard-serve --ort-lib ${dest}/libonnxruntime.so --device cuda"
    echo "(canard-serve built with --features cuda also finds it there by itself)"
fi
