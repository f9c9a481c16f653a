#!/usr/bin/env bash
# Installs the ONNX Runtime CPU library that canard-serve loads at run time into
# .deps/onnxruntime/ (git-ignored). The library comes from the official PyPI wheel
# because ort's own download host is not reachable from every machine; PyPI is.
# Safe to run again: it returns at once when the library is already there.
set -euo pipefail

ORT_VERSION=1.31.1
LIB_NAME="libonnxruntime.so.${ORT_VERSION}"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${root}/.deps/onnxruntime"

if [[ -f "${dest}/${LIB_NAME}" ]]; then
    ln -sfn "${LIB_NAME}" "${dest}/libonnxruntime.so"
    echo "ONNX Runtime ${ORT_VERSION} already installed: ${dest}/libonnxruntime.so"
    exit 0
fi

python="${PYTHON:-python3}"
if ! command -v "${python}" >/dev/null 2>&1; then
    echo "error: ${python} not found; it is needed to download the onnxruntime wheel from PyPI" >&2
    exit 1
fi

tmp="$(mktemp -d)"
trap 'rm -rf "${tmp}"' EXIT

pip_download() {
    "${python}" -m pip download --quiet --disable-pip-version-check --no-deps \
        --only-binary=:all: "onnxruntime==${ORT_VERSION}" -d "${tmp}" "$@"
}

echo "Downloading onnxruntime==${ORT_VERSION} from PyPI..."
# The wheel is chosen for the running interpreter; when no wheel exists for it (a
# too-new or too-old CPython) the library inside is the same, so ask for 3.11's.
if ! pip_download 2>"${tmp}/pip.log"; then
    echo "(no wheel for this Python; fetching the CPython 3.11 manylinux wheel instead)"
    if ! pip_download --python-version 3.11 --implementation cp --abi cp311 \
        --platform manylinux_2_27_x86_64 --platform manylinux_2_28_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 2>>"${tmp}/pip.log"; then
        cat "${tmp}/pip.log" >&2
        echo "error: could not download onnxruntime==${ORT_VERSION} from PyPI" >&2
        exit 1
    fi
fi

wheel="$(ls "${tmp}"/onnxruntime-"${ORT_VERSION}"-*.whl 2>/dev/null | head -n 1)"
if [[ -z "${wheel}" ]]; then
    echo "error: pip reported success but no onnxruntime wheel is in ${tmp}" >&2
    exit 1
fi

mkdir -p "${dest}"
# Written under a temporary name and renamed, so an interrupted run never leaves a
# truncated library that the check above would take for a finished install.
"${python}" - "${wheel}" "onnxruntime/capi/${LIB_NAME}" "${dest}/${LIB_NAME}" <<'EOF'
import os, shutil, sys, zipfile
wheel, member, target = sys.argv[1:4]
part = target + ".part"
with zipfile.ZipFile(wheel) as zf, zf.open(member) as src, open(part, "wb") as dst:
    shutil.copyfileobj(src, dst)
os.chmod(part, 0o755)
os.replace(part, target)
EOF

ln -sfn "${LIB_NAME}" "${dest}/libonnxruntime.so"
echo "Installed ONNX Runtime ${ORT_VERSION}: ${dest}/libonnxruntime.so -> ${LIB_NAME}"
