#!/usr/bin/env python3
"""Static checks of canard's deployment files, for CI machines without a Docker engine.

Run by scripts/check-deploy.sh (`make check-deploy`, part of `make test`), which installs
the tools this needs into .deps/deploy-tools/ and builds the two binaries whose --help
output is the reference for flags and environment variables. Checks:

  schema     docker-compose.yml and deploy/compose.gpus.yml against the Compose
             Specification's JSON schema (deploy/compose-spec.json)
  compose    the real Compose loader (`docker compose config`, no engine needed) accepts
             them for each profile, with no variable set and with every documented one
             set; profiles start what the README says they start
  dockerfile hadolint, plus the rules that matter here: multi-stage, CUDA 13 devel ->
             CUDA 13 runtime + cuDNN 9, `cuda` features, onnxruntime-gpu at setup-ort.sh's
             version beside canard-serve, non-root numeric USER, no build tools at run time,
             COPY sources present and not excluded by .dockerignore
  paths      every file and folder the compose files name exists (or is an output folder
             ignored by git, or comes from a documented variable)
  env        every CANARD_* variable given to a container (compose files and Dockerfile
             ENV) is one its binary knows (from its --help), with a valid value where the
             binary lists the possible ones; every variable the compose files read from
             the operator's environment is documented in README.md
  commands   every command and flag the compose files run exists: the workspace's
             binaries (flags checked against --help), the health check script in the
             image, a route of canard-serve for the health check
  ports      one port from canard-serve's CANARD_BIND through the image's EXPOSE, the
             service's expose and health check, to the proxy's upstream; one from nginx's
             listen to the proxy's published port and health check; nothing else
             publishes a port, so `--scale serve=N` works
  nginx      `nginx -t` on deploy/nginx.conf, and the settings that load balancing over
             replicas and caching depend on
  smoke      (--smoke) nginx with deploy/nginx.conf in front of a real canard-serve:
             cache MISS then HIT, 304, no-store not cached, CORS kept apart, health check

`--self-test` breaks the files on purpose, one way at a time, in a copy of the project
(an unknown key, a missing path, an unknown variable, mismatched ports, ...) and fails
unless the right check fails for each, so the checks cannot quietly stop checking.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema
import yaml

COMPOSE = "docker-compose.yml"
GPUS = "deploy/compose.gpus.yml"
SCHEMA = "deploy/compose-spec.json"
NGINX_CONF = "deploy/nginx.conf"
HADOLINT_CONF = "deploy/hadolint.yaml"
HEALTHCHECK_SCRIPT = "deploy/canard-healthcheck"
SETUP_ORT = "scripts/setup-ort.sh"
ROUTES = "serve/src/routes/mod.rs"
ORT_VERSION_WANTED = "1.31.1"  # the onnxruntime-gpu==1.31.1

# What the compose file's services are: the ones running canard-serve must all be
# reachable through the proxy under this network alias.
SERVE_ALIAS = "canard-serve"
# Images from elsewhere: the commands the compose file relies on in them. (The official
# nginx Alpine image has BusyBox, whose wget the proxy's health check uses.)
THIRD_PARTY_COMMANDS = {"nginx:*-alpine": {"nginx", "wget", "sh"}}
# Packages that make a runtime image a build image.
BUILD_TOOLS = re.compile(
    r"\b(build-essential|gcc|g\+\+|clang|make|cmake|cargo|rustc|rustup|cuda-toolkit|cuda-nvcc|"
    r"python3-pip|python3-dev|pkg-config|libc6-dev)\b"
)
DEFAULT_PATH = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]


# --------------------------------------------------------------------------------------
# YAML with Compose's merge tags


class ComposeLoader(yaml.SafeLoader):
    """SafeLoader that accepts Compose's `!reset` and `!override` tags (value as is)."""


def _tagged(loader, node):
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)


ComposeLoader.add_constructor("!reset", _tagged)
ComposeLoader.add_constructor("!override", _tagged)


def load_yaml(path: Path):
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=ComposeLoader)  # noqa: S506 (a SafeLoader)


# --------------------------------------------------------------------------------------
# Compose variables

VAR_RE = re.compile(r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?+])?(?P<arg>[^}]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")


def variables_in(value) -> list[tuple[str, str | None, str | None]]:
    """(name, operator, argument) of every ${...} / $NAME in the strings of `value`;
    `$$` is a literal dollar, not a variable."""
    out = []
    if isinstance(value, dict):
        for v in value.values():
            out += variables_in(v)
    elif isinstance(value, list):
        for v in value:
            out += variables_in(v)
    elif isinstance(value, str):
        text = value.replace("$$", "")
        for m in VAR_RE.finditer(text):
            if m.group("braced"):
                out.append((m.group("braced"), m.group("op"), m.group("arg")))
            else:
                out.append((m.group("bare"), None, None))
    return out


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's interpolation for the forms used here ($$, ${V}, ${V:-d}, ${V-d})."""

    def sub(m):
        name = m.group("braced") or m.group("bare")
        op, arg = m.group("op"), m.group("arg") or ""
        val = env.get(name)
        if op == ":-":
            return val if val else arg
        if op == "-":
            return val if val is not None else arg
        if op in (":?", "?"):
            if (op == ":?" and not val) or val is None:
                raise ValueError(f"required variable {name}: {arg}")
            return val
        if op in (":+", "+"):
            return arg if ((op == ":+" and val) or (op == "+" and val is not None)) else ""
        return val or ""

    parts = text.split("$$")
    return "$".join(VAR_RE.sub(sub, p) for p in parts)


# --------------------------------------------------------------------------------------
# Binaries' --help


@dataclass
class Option:
    name: str
    takes_value: bool = False
    optional_value: bool = False
    env: str | None = None
    values: list[str] = field(default_factory=list)


def parse_help(text: str) -> dict[str, Option]:
    """Long options of a clap --help (the long form): value, env var, possible values."""
    opts: dict[str, Option] = {}
    cur = None
    in_values = False
    for line in text.splitlines():
        m = re.match(r"^\s{2,}(?:-\w, )?--([a-z0-9][a-z0-9-]*)(.*)$", line)
        if m:
            rest = m.group(2)
            cur = Option(m.group(1), takes_value="<" in rest, optional_value="[<" in rest)
            opts[cur.name] = cur
            in_values = False
            continue
        if cur is None:
            continue
        if "Possible values:" in line:
            in_values = True
            continue
        pv = re.search(r"\[possible values: ([^\]]+)\]", line)
        if pv:
            cur.values += [v.strip() for v in pv.group(1).split(",")]
        if in_values:
            vm = re.match(r"^\s+- ([A-Za-z0-9_-]+)(:|$)", line)
            if vm:
                cur.values.append(vm.group(1))
                continue
            if line.strip():
                in_values = False
        em = re.search(r"\[env: ([A-Z0-9_]+)=", line)
        if em:
            cur.env = em.group(1)
    return opts


@dataclass
class Binaries:
    serve: dict[str, Option]
    train: dict[str, Option]
    # Variables canard-serve reads besides its CANARD_* ones (named in its --help).
    serve_extra_env: set[str]

    @classmethod
    def load(cls, bin_dir: Path) -> "Binaries":
        def run(*args):
            r = subprocess.run(args, capture_output=True, text=True, timeout=60)
            if r.returncode != 0:
                raise SystemExit(f"check-deploy: {' '.join(map(str, args))} failed:\n{r.stderr}")
            return r.stdout

        serve_help = run(bin_dir / "canard-serve", "--help")
        train_help = run(bin_dir / "canard-train", "train", "--help")
        extra = {v for v in ("ORT_DYLIB_PATH", "RUST_LOG") if v in serve_help}
        return cls(parse_help(serve_help), parse_help(train_help), extra)

    def env_of(self, binary: str) -> dict[str, Option]:
        opts = {"canard-serve": self.serve, "canard-train": self.train}.get(binary, {})
        return {o.env: o for o in opts.values() if o.env}

    def options_of(self, binary: str) -> dict[str, Option] | None:
        return {"canard-serve": self.serve, "canard-train": self.train}.get(binary)


# --------------------------------------------------------------------------------------
# Dockerfiles


@dataclass
class Instr:
    op: str
    args: str
    line: int


@dataclass
class Stage:
    base: str
    name: str | None
    instrs: list[Instr]
    line: int

    def all(self, op):
        return [i for i in self.instrs if i.op == op]

    def env(self) -> dict[str, str]:
        out = {}
        for i in self.all("ENV"):
            toks = shlex.split(i.args)
            if toks and "=" not in toks[0]:
                out[toks[0]] = " ".join(toks[1:])
            else:
                for t in toks:
                    k, _, v = t.partition("=")
                    out[k] = v
        return out


def parse_dockerfile(path: Path) -> tuple[dict[str, str], list[Stage]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    instrs: list[Instr] = []
    buf, start = "", 0
    for n, raw in enumerate(lines, 1):
        s = raw.strip()
        if not buf and (not s or s.startswith("#")):
            continue
        if buf and s.startswith("#"):
            continue
        if not buf:
            start = n
        if s.endswith("\\"):
            buf += s[:-1] + " "
            continue
        buf += s
        op, _, args = buf.partition(" ")
        instrs.append(Instr(op.upper(), args.strip(), start))
        buf = ""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for i in instrs:
        if i.op == "ARG" and not stages:
            k, _, v = i.args.partition("=")
            global_args[k.strip()] = v.strip()
        elif i.op == "FROM":
            toks = i.args.split()
            toks = [t for t in toks if not t.startswith("--")]
            base = re.sub(r"\$\{?(\w+)\}?", lambda m: global_args.get(m.group(1), m.group(0)), toks[0])
            name = toks[2] if len(toks) >= 3 and toks[1].upper() == "AS" else None
            stages.append(Stage(base, name, [], i.line))
        elif stages:
            stages[-1].instrs.append(i)
    return global_args, stages


@dataclass
class Copy:
    sources: list[str]
    dest: str
    from_stage: str | None
    line: int

    def installed(self) -> dict[str, str]:
        """File name -> full path in the image, for the files this COPY puts there."""
        out = {}
        if self.dest.endswith("/") or len(self.sources) > 1:
            for s in self.sources:
                if not s.endswith("/") and s != ".":
                    out[Path(s).name] = self.dest.rstrip("/") + "/" + Path(s).name
        else:
            out[Path(self.dest).name] = self.dest
        return out


def copies(stage: Stage) -> list[Copy]:
    out = []
    for i in stage.all("COPY") + stage.all("ADD"):
        toks = shlex.split(i.args)
        flags = [t for t in toks if t.startswith("--")]
        rest = [t for t in toks if not t.startswith("--")]
        frm = next((f.split("=", 1)[1] for f in flags if f.startswith("--from=")), None)
        out.append(Copy(rest[:-1], rest[-1], frm, i.line))
    return out


def dockerignore_excludes(root: Path, rel: str) -> bool:
    f = root / ".dockerignore"
    if not f.exists():
        return False
    excluded = False
    parts = Path(rel).parts
    for pat in f.read_text().splitlines():
        pat = pat.strip()
        if not pat or pat.startswith("#"):
            continue
        neg = pat.startswith("!")
        pat = pat.lstrip("!").strip("/")
        hit = any(fnmatch.fnmatch("/".join(parts[: k + 1]), pat) for k in range(len(parts)))
        if hit:
            excluded = not neg
    return excluded


def image_layout(root: Path, dockerfile: Path):
    """What the final stage of `dockerfile` provides: {command name: path}, the PATH,
    its ENV, EXPOSEd ports, USER, and the stage objects."""
    _, stages = parse_dockerfile(dockerfile)
    final = stages[-1]
    env = final.env()
    path_dirs = DEFAULT_PATH
    if "PATH" in env:
        path_dirs = [p for p in env["PATH"].split(":") if not p.startswith("$")] + DEFAULT_PATH
    files = {}
    for c in copies(final):
        files.update(c.installed())
    commands = {name: p for name, p in files.items() if str(Path(p).parent) in path_dirs}
    expose = [t.split("/")[0] for i in final.all("EXPOSE") for t in i.args.split()]
    return {"stages": stages, "final": final, "env": env, "files": files, "commands": commands,
            "expose": expose}


# --------------------------------------------------------------------------------------
# Checks


class Context:
    def __init__(self, root: Path, bins: Binaries, compose_bin: str | None, hadolint: str | None,
                 nginx: str | None):
        self.root = root
        self.bins = bins
        self.compose_bin = compose_bin
        self.hadolint = hadolint
        self.nginx = nginx
        self.raw = {f: load_yaml(root / f) for f in (COMPOSE, GPUS)}
        self.readme = (root / "README.md").read_text(encoding="utf-8")
        self._models: dict = {}

    def compose(self, args: list[str], env: dict[str, str] | None = None, files=(COMPOSE,)):
        cmd = [self.compose_bin]
        for f in files:
            cmd += ["-f", str(self.root / f)]
        # --env-file /dev/null: a developer's own .env must not change what is checked.
        cmd += ["--project-directory", str(self.root), "--env-file", os.devnull] + args
        base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}
        return subprocess.run(cmd, capture_output=True, text=True, env={**base, **(env or {})}, timeout=120)

    def model(self, profiles=("gpu", "cpu", "train"), files=(COMPOSE,), env=None):
        """The normalised project from the real Compose loader, as JSON."""
        key = (tuple(profiles), tuple(files), tuple(sorted((env or {}).items())))
        if key not in self._models:
            args = [a for p in profiles for a in ("--profile", p)] + ["config", "--format", "json"]
            r = self.compose(args, env, files)
            if r.returncode != 0:
                raise CheckError(f"docker compose {' '.join(args)} failed: {r.stderr.strip()}")
            self._models[key] = json.loads(r.stdout)
        return self._models[key]

    def services(self, files=(COMPOSE,)) -> dict:
        return self.model(files=files)["services"]

    def dockerfile_of(self, svc: dict) -> Path | None:
        b = svc.get("build")
        if not b:
            return None
        return Path(b["context"]) / b.get("dockerfile", "Dockerfile")

    def binary_of(self, svc: dict) -> str | None:
        cmd = svc.get("command") or []
        return cmd[0] if cmd else None


class CheckError(Exception):
    pass


def documented_variables(readme: str) -> set[str]:
    """Variables named in backquotes in README.md's "Docker" section (the operator guide)."""
    m = re.search(r"^## Docker\n(.*?)(?=^## |\Z)", readme, re.S | re.M)
    return set(re.findall(r"`([A-Z][A-Z0-9_]*)(?:=[^`]*)?`", m.group(1) if m else ""))


def check_schema(ctx: Context) -> list[str]:
    errors = []
    schema = json.loads((ctx.root / SCHEMA).read_text())
    validator = jsonschema.Draft7Validator(schema)
    for f, doc in ctx.raw.items():
        for e in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
            where = "/".join(str(p) for p in e.absolute_path) or "(top)"
            errors.append(f"{f}: {where}: {e.message}")
    return errors


def sample_environment(ctx: Context) -> dict[str, str]:
    """A value for every variable the compose files read, as an operator might set them."""
    samples = {"CANARD_DATA": str(ctx.root / "models"), "CANARD_NAME": "bikes",
               "CANARD_TRAIN_ARGS": "--image-size 128 --epochs 50 --arch wgan-gp --mirror",
               "CANARD_UID": "1234", "CANARD_GID": "1234", "CANARD_PORT": "9000",
               "CANARD_DEVICE": "auto", "CUDA_COMPUTE_CAP": "80"}
    env = {}
    for name, _, _ in variables_in(ctx.raw[COMPOSE]) + variables_in(ctx.raw[GPUS]):
        env[name] = samples.get(name, "1")
    return env


def check_compose(ctx: Context) -> list[str]:
    errors = []
    sample = sample_environment(ctx)
    runs = [((COMPOSE,), p) for p in (["gpu"], ["cpu"], ["train"], [])] + [((COMPOSE, GPUS), ["gpu"])]
    for files, profiles in runs:
        for env in ({}, sample):
            args = [a for p in profiles for a in ("--profile", p)] + ["config", "--quiet"]
            r = ctx.compose(args, env, files)
            if r.returncode != 0:
                errors.append(f"docker compose -f {' -f '.join(files)} {' '.join(args)}"
                              f"{' (every variable set)' if env else ''}: {r.stderr.strip()}")
    if errors:
        return errors

    def services(files, profiles):
        args = [a for p in profiles for a in ("--profile", p)] + ["config", "--services"]
        return set(ctx.compose(args, {}, files).stdout.split())

    # What `up` starts in each profile: the README's promises.
    gpu, cpu, none = services((COMPOSE,), ["gpu"]), services((COMPOSE,), ["cpu"]), services((COMPOSE,), [])
    if gpu != {"serve", "proxy"}:
        errors.append(f"--profile gpu should start serve and proxy, starts {sorted(gpu)}")
    if cpu != {"serve-cpu", "proxy"}:
        errors.append(f"--profile cpu should start serve-cpu and proxy, starts {sorted(cpu)}")
    if none:
        errors.append(f"without a profile nothing should start (GPU and CPU machines differ), starts {sorted(none)}")
    for name in ("train", "train-cpu"):
        if name in gpu | cpu:
            errors.append(f"{name} is a one-shot job (`docker compose run`) but `up` would start it")
    trains = services((COMPOSE,), ["train"])
    if not {"train", "train-cpu"} <= trains:
        errors.append(f"the train profile should hold train and train-cpu, holds {sorted(trains)}")
    gpus = services((COMPOSE, GPUS), ["gpu"])
    if not {"serve", "proxy"} < gpus:
        errors.append(f"with {GPUS}: expected serve, proxy and more replicas, got {sorted(gpus)}")
    return errors


def check_gpus(ctx: Context) -> list[str]:
    """GPU reservations: GPU services reserve one NVIDIA GPU, CPU services none; with
    deploy/compose.gpus.yml every replica has its own GPU and is reachable by the proxy."""
    errors = []

    def devices(svc):
        return (((svc.get("deploy") or {}).get("resources") or {}).get("reservations") or {}).get("devices") or []

    for name, svc in ctx.services().items():
        devs = devices(svc)
        gpu_image = "Dockerfile.cuda" in str(ctx.dockerfile_of(svc) or "")
        if name.endswith("-cpu") or name == "proxy":
            if devs:
                errors.append(f"{name}: reserves a GPU but runs without one")
            continue
        if not gpu_image:
            errors.append(f"{name}: a GPU service built from {ctx.dockerfile_of(svc)}, not deploy/Dockerfile.cuda")
        if not any(d.get("driver") == "nvidia" and "gpu" in (d.get("capabilities") or [])
                   and (d.get("count") == 1 or len(d.get("device_ids") or []) == 1) for d in devs) or len(devs) != 1:
            errors.append(f"{name}: should reserve exactly one NVIDIA GPU, reserves {devs}")
    for name, svc in ctx.services().items():
        if name.endswith("-cpu") and "Dockerfile.cuda" in str(ctx.dockerfile_of(svc)):
            errors.append(f"{name}: a CPU service built from the CUDA image")
    seen: dict[str, str] = {}
    multi = ctx.model(profiles=("gpu",), files=(COMPOSE, GPUS))["services"]
    proxy_deps = set((multi.get("proxy") or {}).get("depends_on") or {})
    for name, svc in multi.items():
        if ctx.binary_of(svc) != "canard-serve":
            continue
        devs = devices(svc)
        ids = [i for d in devs for i in (d.get("device_ids") or [])]
        if len(devs) != 1 or len(ids) != 1:
            errors.append(f"{GPUS}: {name} should name exactly one GPU by device_ids, has {devs}")
            continue
        if ids[0] in seen:
            errors.append(f"{GPUS}: {name} and {seen[ids[0]]} share GPU {ids[0]}")
        seen[ids[0]] = name
        if name not in proxy_deps:
            errors.append(f"{GPUS}: the proxy does not wait for {name} (depends_on)")
    return errors


def check_dockerfiles(ctx: Context) -> list[str]:
    errors = []
    ort = re.search(r'^ORT_VERSION=(\S+)', (ctx.root / SETUP_ORT).read_text(), re.M)
    ort_version = ort.group(1) if ort else None
    if ort_version != ORT_VERSION_WANTED:
        errors.append(f"{SETUP_ORT}: ORT_VERSION={ort_version}, the images need {ORT_VERSION_WANTED}")
    dockerfiles = sorted({ctx.dockerfile_of(s) for s in ctx.services().values() if ctx.dockerfile_of(s)})
    if ctx.hadolint:
        r = subprocess.run([ctx.hadolint, "--no-color", "--config", str(ctx.root / HADOLINT_CONF)]
                           + [str(d) for d in dockerfiles], capture_output=True, text=True)
        if r.returncode != 0:
            errors += [f"hadolint: {line}" for line in (r.stdout + r.stderr).strip().splitlines()]
    for df in dockerfiles:
        rel = df.relative_to(ctx.root)
        lay = image_layout(ctx.root, df)
        stages, final = lay["stages"], lay["final"]
        cuda = rel.name == "Dockerfile.cuda"
        if len(stages) < 2:
            errors.append(f"{rel}: not multi-stage")
            continue
        build_stages = [s for s in stages[:-1] if any("cargo build" in i.args for i in s.all("RUN"))]
        if not build_stages:
            errors.append(f"{rel}: no stage runs cargo build")
            continue
        build = build_stages[0]
        build_text = "\n".join(i.args for i in build.instrs)
        if not re.search(r"-p canard-train\b", build_text) or not re.search(r"-p canard-serve\b", build_text):
            errors.append(f"{rel}: the build does not build both canard-train and canard-serve")
        if "--locked" not in build_text:
            errors.append(f"{rel}: cargo build without --locked (Cargo.lock is committed)")
        users = final.all("USER")
        if not users:
            errors.append(f"{rel}: the runtime stage runs as root (no USER)")
        else:
            u = users[-1].args.split(":")[0]
            if not u.isdigit() or int(u) == 0:
                errors.append(f"{rel}:{users[-1].line}: USER {users[-1].args}: want a numeric non-root user")
        for i in final.all("RUN"):
            m = BUILD_TOOLS.search(i.args) if re.search(r"\b(apt-get|apt|apk|pip3?|dnf|yum)\b.*\binstall\b", i.args) else None
            if m:
                errors.append(f"{rel}:{i.line}: the runtime stage installs the build tool {m.group(0)}")
        for c in copies(final):
            if c.from_stage and c.from_stage not in {s.name for s in stages} and c.from_stage != build.name:
                errors.append(f"{rel}:{c.line}: copies from {c.from_stage}, not one of its stages")
            src_stage = next((s for s in stages if c.from_stage and s.name == c.from_stage), None)
            if src_stage is not None and src_stage is not build:
                errors.append(f"{rel}:{c.line}: the runtime stage copies from {c.from_stage} (a toolchain?)")
        # Files taken from the build context must be there and not excluded.
        for st in stages:
            for c in copies(st):
                if c.from_stage:
                    continue
                for s in c.sources:
                    if s == ".":
                        continue
                    if not (ctx.root / s).exists():
                        errors.append(f"{rel}:{c.line}: COPY {s}: no such file in the project")
                    elif dockerignore_excludes(ctx.root, s):
                        errors.append(f"{rel}:{c.line}: COPY {s}: excluded by .dockerignore")
        # Runtime layout: both binaries on PATH, ONNX Runtime beside canard-serve.
        cmds, files = lay["commands"], lay["files"]
        for b in ("canard-serve", "canard-train"):
            if b not in cmds:
                errors.append(f"{rel}: {b} is not installed on the runtime image's PATH")
        serve_dir = str(Path(files.get("canard-serve", "/nowhere/x")).parent)
        ort_libs = ["libonnxruntime.so"] + (["libonnxruntime_providers_shared.so",
                                             "libonnxruntime_providers_cuda.so"] if cuda else [])
        for lib in ort_libs:
            if str(Path(files.get(lib, "/nowhere/x")).parent) != serve_dir:
                errors.append(f"{rel}: {lib} is not beside canard-serve ({serve_dir}) in the runtime image")
        if ort_version and f"libonnxruntime.so.{ort_version}" not in "\n".join(
                i.args for s in stages for i in s.instrs):
            errors.append(f"{rel}: does not install libonnxruntime.so.{ort_version} ({SETUP_ORT}'s version)")
        ort_setup = [i.args for i in build.all("RUN") if "setup-ort.sh" in i.args]
        if cuda != any("--gpu" in a for a in ort_setup) or not ort_setup:
            errors.append(f"{rel}: should install ONNX Runtime with {SETUP_ORT}{' --gpu' if cuda else ''}")
        if cuda:
            m = re.fullmatch(r"nvidia/cuda:(\d+)\.\d+\.\d+-devel-ubuntu[\d.]+", build.base)
            if not m or m.group(1) != "13":
                errors.append(f"{rel}: build stage on {build.base}, want a CUDA 13 devel image")
            m = re.fullmatch(r"nvidia/cuda:(\d+)\.\d+\.\d+-cudnn-runtime-ubuntu[\d.]+", final.base)
            if not m or m.group(1) != "13":
                errors.append(f"{rel}: runtime stage on {final.base}, want a CUDA 13 runtime image with cuDNN")
            if not re.search(r"--features\s+\S*canard-train/cuda", build_text) or \
                    not re.search(r"--features\s+\S*canard-serve/cuda", build_text):
                errors.append(f"{rel}: cargo build without the cuda features of both binaries")
            if "CUDA_COMPUTE_CAP" not in build_text:
                errors.append(f"{rel}: CUDA_COMPUTE_CAP is not set for the build (no GPU to ask at build time)")
        elif "/cuda" in build_text or "cuda" in final.base:
            errors.append(f"{rel}: the CPU image uses CUDA")
    return errors


def check_paths(ctx: Context) -> list[str]:
    errors = []
    ignored = (ctx.root / ".gitignore").read_text().split()
    documented = documented_variables(ctx.readme)

    def output_dir(rel: str) -> bool:
        return any(fnmatch.fnmatch("/" + rel.strip("/"), p.rstrip("/")) or fnmatch.fnmatch(rel.strip("/"), p.strip("/"))
                   for p in ignored)

    def check(where: str, value: str, kind: str):
        names = [v[0] for v in variables_in(value)]
        if names:
            for n in names:
                msg = f"{where.split(': ')[0]}: {value}: the variable {n} is not documented in README.md"
                if n not in documented and msg not in errors:
                    errors.append(msg)
            return
        p = value
        if not p.startswith((".", "/")) and kind != "bind":
            p = "./" + p
        if p.startswith("/"):
            errors.append(f"{where}: {value}: an absolute host path (not portable)")
            return
        rel = os.path.normpath(p)
        if not (ctx.root / rel).exists() and not output_dir(rel):
            errors.append(f"{where}: {value}: no such {kind} in the project (and not an ignored output folder)")

    for f, doc in ctx.raw.items():
        for name, svc in (doc.get("services") or {}).items():
            w = f"{f}: {name}"
            b = svc.get("build")
            if isinstance(b, dict):
                check(f"{w}: build.context", b.get("context", "."), "folder")
                ctx_dir = ctx.root / b.get("context", ".")
                if not (ctx_dir / b.get("dockerfile", "Dockerfile")).is_file():
                    errors.append(f"{w}: build.dockerfile {b.get('dockerfile')}: no such file")
            elif isinstance(b, str):
                check(f"{w}: build", b, "folder")
            ext = svc.get("extends")
            if isinstance(ext, dict) and "file" in ext:
                if not (ctx.root / ext["file"]).is_file():
                    errors.append(f"{w}: extends.file {ext['file']}: no such file (relative to the project folder)")
            for v in svc.get("volumes") or []:
                if isinstance(v, str):
                    src = v.split(":")[0]
                    if src.startswith((".", "/", "$", "~")):
                        check(f"{w}: volume", src, "bind")
                    elif src not in (doc.get("volumes") or {}):
                        errors.append(f"{w}: volume {src}: not declared under the top-level volumes")
                elif isinstance(v, dict) and v.get("type") == "bind":
                    check(f"{w}: volume", v["source"], "bind")
                elif isinstance(v, dict) and v.get("type") == "volume" and v.get("source") not in (doc.get("volumes") or {}):
                    errors.append(f"{w}: volume {v.get('source')}: not declared under the top-level volumes")
            for e in svc.get("env_file") or []:
                check(f"{w}: env_file", e if isinstance(e, str) else e["path"], "file")
    # Inside the containers: the folders the binaries are told to use are mounts.
    for name, svc in ctx.services().items():
        mounts = {v.get("target"): v for v in svc.get("volumes") or []}
        binary = ctx.binary_of(svc)
        wanted = {}  # container path -> (what, must be read-only)
        if binary == "canard-serve":
            models = (svc.get("environment") or {}).get("CANARD_MODELS")
            if not models:
                errors.append(f"{name}: CANARD_MODELS is not set: canard-serve would look in models/ of its working folder")
            else:
                wanted[models] = ("CANARD_MODELS", True)
        elif binary == "canard-train":
            cmd = svc.get("command") or []
            for flag, ro in (("--data", True), ("--models-dir", False), ("--runs-dir", False)):
                if flag in cmd[:-1]:
                    wanted[cmd[cmd.index(flag) + 1]] = (flag, ro)
                else:
                    errors.append(f"{name}: canard-train without {flag}: it would write inside the container")
        for path, (what, ro) in wanted.items():
            m = mounts.get(path)
            if m is None:
                errors.append(f"{name}: {what} {path} is not a mounted volume (targets: {sorted(mounts)})")
            elif bool(m.get("read_only")) != ro:
                errors.append(f"{name}: {what} {path} is mounted {'read-write' if not ro else 'read-only'}"
                              f", should be {'read-only' if ro else 'read-write'}")
    return errors


def check_env(ctx: Context) -> list[str]:
    errors = []
    documented = documented_variables(ctx.readme)
    for f, doc in ctx.raw.items():
        for name in sorted({v[0] for v in variables_in(doc)}):
            if name not in documented:
                errors.append(f"{f}: ${{{name}}} is read from the operator's environment but not documented in README.md")
    sample = sample_environment(ctx)
    for env_set in ({}, sample):
        for sname, svc in ctx.model(env=env_set)["services"].items():
            binary = ctx.binary_of(svc)
            known = ctx.bins.env_of(binary) if binary else {}
            extra = ctx.bins.serve_extra_env if binary == "canard-serve" else set()
            for var, value in (svc.get("environment") or {}).items():
                if var.startswith("CANARD_") or var in ("ORT_DYLIB_PATH", "RUST_LOG"):
                    if var not in known and var not in extra:
                        errors.append(f"{sname}: environment {var}: {binary or 'its command'} knows no such variable"
                                      f" (it knows {', '.join(sorted(known)) or 'none'})")
                        continue
                    opt = known.get(var)
                    if opt and opt.values and value is not None and value not in opt.values:
                        errors.append(f"{sname}: {var}={value}: not one of {', '.join(opt.values)}")
    # Variables the compose file passes through from the shell must be the binary's.
    for sname, svc in ctx.services().items():
        binary = ctx.binary_of(svc)
        for var, value in (svc.get("environment") or {}).items():
            if value is None and var not in ctx.bins.env_of(binary or ""):
                errors.append(f"{sname}: passes {var} through from the shell, but {binary} does not read it")
    # Dockerfile ENV: read by canard-serve (CMD) in both images.
    for df in sorted({ctx.dockerfile_of(s) for s in ctx.services().values() if ctx.dockerfile_of(s)}):
        env = image_layout(ctx.root, df)["env"]
        known = ctx.bins.env_of("canard-serve")
        for var, value in env.items():
            if var.startswith("CANARD_") and var not in known:
                errors.append(f"{df.relative_to(ctx.root)}: ENV {var}: canard-serve knows no such variable")
    # Graceful shutdown: Docker's stop grace must outlast canard-serve's own.
    for sname, svc in ctx.services().items():
        if ctx.binary_of(svc) != "canard-serve":
            continue
        grace = parse_duration(svc.get("stop_grace_period") or "10s")
        shutdown = float((svc.get("environment") or {}).get("CANARD_SHUTDOWN_TIMEOUT") or 30)
        if grace <= shutdown:
            errors.append(f"{sname}: stop_grace_period {grace:g}s is not longer than CANARD_SHUTDOWN_TIMEOUT "
                          f"{shutdown:g}s: `docker compose stop` would kill requests still running")
    return errors


def parse_duration(s) -> float:
    if isinstance(s, (int, float)):
        return float(s) / 1e9  # nanoseconds in Compose's JSON
    total = 0.0
    for num, unit in re.findall(r"([\d.]+)(h|ms|m|s|us)", str(s)):
        total += float(num) * {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6}[unit]
    return total


def check_args(binary: str, args: list[str], opts: dict[str, Option], where: str) -> list[str]:
    errors = []
    i = 0
    while i < len(args):
        a = args[i]
        i += 1
        if not a.startswith("--"):
            errors.append(f"{where}: stray argument {a!r} for {binary}")
            continue
        name, eq, val = a[2:].partition("=")
        opt = opts.get(name)
        if opt is None:
            errors.append(f"{where}: {binary} has no option --{name}")
            continue
        if opt.takes_value and not eq:
            if i < len(args) and not (opt.optional_value and args[i].startswith("--")):
                val = args[i]
                i += 1
            elif not opt.optional_value:
                errors.append(f"{where}: --{name} needs a value")
                continue
        if val and opt.values and val not in opt.values:
            errors.append(f"{where}: --{name} {val}: not one of {', '.join(opt.values)}")
    return errors


def check_commands(ctx: Context) -> list[str]:
    errors = []
    routes = (ctx.root / ROUTES).read_text() if (ctx.root / ROUTES).exists() else ""
    hc = ctx.root / HEALTHCHECK_SCRIPT
    if not hc.is_file() or not os.access(hc, os.X_OK):
        errors.append(f"{HEALTHCHECK_SCRIPT}: missing or not executable")
    for env_set in ({}, sample_environment(ctx)):
        for sname, svc in ctx.model(env=env_set)["services"].items():
            df = ctx.dockerfile_of(svc)
            if df:
                provided = set(image_layout(ctx.root, df)["commands"]) | {"bash", "sh"}
            else:
                image = svc.get("image", "")
                provided = next((c for pat, c in THIRD_PARTY_COMMANDS.items() if fnmatch.fnmatch(image, pat)), None)
            cmd = svc.get("command") or []
            if df and not cmd:
                errors.append(f"{sname}: no command (runs the image's CMD implicitly): name it")
            entry = svc.get("entrypoint")
            if entry:
                errors.append(f"{sname}: entrypoint {entry} replaces the image's")
            if cmd:
                if provided is not None and cmd[0] not in provided:
                    errors.append(f"{sname}: command {cmd[0]} is not installed in its image")
                opts = ctx.bins.options_of(cmd[0])
                if opts is not None:
                    errors += check_args(cmd[0], cmd[1:], opts, f"{sname}: command")
                elif df:
                    errors.append(f"{sname}: command {cmd[0]} is not one of the workspace's binaries")
            test = (svc.get("healthcheck") or {}).get("test") or []
            if test and test[0] == "CMD" and provided is not None and test[1] not in provided:
                errors.append(f"{sname}: health check command {test[1]} is not installed in its image")
            if ctx.binary_of(svc) == "canard-serve":
                url = next((t for t in test if t.startswith("http://")), "")
                path = re.sub(r"^http://[^/]+", "", url) or "/"
                if path != "/readyz":
                    errors.append(f"{sname}: the health check asks {path}, not /readyz")
                if f'("{path}",' not in routes:
                    errors.append(f"{sname}: the health check's {path} is not a route of canard-serve ({ROUTES})")
                if test[:2] != ["CMD", "canard-healthcheck"]:
                    errors.append(f"{sname}: the health check should run canard-healthcheck, runs {test}")
                if svc.get("restart") not in ("unless-stopped", "always", "on-failure"):
                    errors.append(f"{sname}: no restart policy")
    # The health check script copied into both images is the project's.
    for df in sorted({ctx.dockerfile_of(s) for s in ctx.services().values() if ctx.dockerfile_of(s)}):
        _, stages = parse_dockerfile(df)
        if not any(HEALTHCHECK_SCRIPT in c.sources for c in copies(stages[-1])):
            errors.append(f"{df.relative_to(ctx.root)}: does not install {HEALTHCHECK_SCRIPT}")
    return errors


def port_of(addr: str) -> str:
    return addr.rsplit(":", 1)[-1]


def url_port(url: str) -> str | None:
    m = re.match(r"^http://[^/:]+(?::(\d+))?", url)
    return (m.group(1) or "80") if m else None


def nginx_settings(ctx: Context) -> dict:
    text = re.sub(r"#[^\n]*", "", (ctx.root / NGINX_CONF).read_text())
    return {
        "text": text,
        "listen": re.findall(r"\blisten\s+(?:[\d.]+:)?(\d+)", text),
        "upstream": re.findall(r"\bset\s+\$\w+\s+([\w.-]+):(\d+)\s*;", text),
        "proxy_pass": re.findall(r"\bproxy_pass\s+([^;]+);", text),
    }


def check_ports(ctx: Context) -> list[str]:
    errors = []
    ng = nginx_settings(ctx)
    upstreams = ng["upstream"]
    if len(upstreams) != 1:
        return [f"{NGINX_CONF}: expected one `set $var {SERVE_ALIAS}:PORT;` upstream, found {upstreams}"]
    up_host, up_port = upstreams[0]
    if up_host != SERVE_ALIAS:
        errors.append(f"{NGINX_CONF}: proxies to {up_host}, but the replicas are reachable as {SERVE_ALIAS}")
    for files in ((COMPOSE,), (COMPOSE, GPUS)):
        profiles = ("gpu", "cpu", "train") if files == (COMPOSE,) else ("gpu",)
        for sname, svc in ctx.model(profiles=profiles, files=files)["services"].items():
            where = f"{'+'.join(files)}: {sname}"
            binary = ctx.binary_of(svc)
            if sname != "proxy" and svc.get("ports"):
                errors.append(f"{where}: publishes {svc['ports']}: only the proxy publishes a port "
                              "(a fixed host port breaks --scale)")
            if svc.get("container_name"):
                errors.append(f"{where}: container_name breaks --scale")
            if binary != "canard-serve":
                continue
            env = svc.get("environment") or {}
            bind = env.get("CANARD_BIND")
            df = ctx.dockerfile_of(svc)
            lay = image_layout(ctx.root, df) if df else {"env": {}, "expose": []}
            bind = bind or lay["env"].get("CANARD_BIND") or "127.0.0.1:8080"
            if not bind.startswith(("0.0.0.0:", "[::]:")):
                errors.append(f"{where}: CANARD_BIND={bind}: not reachable from other containers")
            port = port_of(bind)
            if up_port != port:
                errors.append(f"{where}: listens on {port} (CANARD_BIND) but {NGINX_CONF} proxies to port {up_port}")
            if [str(p) for p in svc.get("expose") or []] != [port]:
                errors.append(f"{where}: expose {svc.get('expose')} is not [{port}] (CANARD_BIND)")
            if df and port not in lay["expose"]:
                errors.append(f"{where}: {df.relative_to(ctx.root)} EXPOSEs {lay['expose']}, not {port}")
            if df and lay["env"].get("CANARD_BIND") and port_of(lay["env"]["CANARD_BIND"]) != port:
                errors.append(f"{where}: the image's CANARD_BIND {lay['env']['CANARD_BIND']} differs from {bind}")
            test = (svc.get("healthcheck") or {}).get("test") or []
            hc_ports = [url_port(t) for t in test if t.startswith("http://")]
            if hc_ports != [port]:
                errors.append(f"{where}: the health check asks port {hc_ports}, the server listens on {port}")
            aliases = ((svc.get("networks") or {}).get("default") or {}).get("aliases") or []
            if SERVE_ALIAS not in aliases:
                errors.append(f"{where}: no network alias {SERVE_ALIAS}: the proxy would not reach it")
        proxy = ctx.model(profiles=profiles, files=files)["services"].get("proxy")
        if not proxy:
            errors.append(f"{'+'.join(files)}: no proxy service")
            continue
        listen = ng["listen"]
        targets = [str(p.get("target")) for p in proxy.get("ports") or []]
        if len(listen) != 1 or targets != listen:
            errors.append(f"{'+'.join(files)}: proxy publishes container ports {targets}, nginx listens on {listen}")
        test = (proxy.get("healthcheck") or {}).get("test") or []
        hc_ports = [url_port(t) for t in test if t.startswith("http://")]
        if hc_ports != listen:
            errors.append(f"{'+'.join(files)}: proxy health check asks port {hc_ports}, nginx listens on {listen}")
        if not any(m.get("target") == "/etc/nginx/conf.d/default.conf" and m.get("source", "").endswith(NGINX_CONF)
                   for m in proxy.get("volumes") or []):
            errors.append(f"{'+'.join(files)}: the proxy does not mount {NGINX_CONF} as conf.d/default.conf")
    return errors


def nginx_test_tree(ctx: Context, tmp: Path, listen_port: str | None = None, upstream: str | None = None) -> Path:
    """A prefix directory with an nginx.conf that includes a copy of deploy/nginx.conf as
    the official image does (http context), with its paths moved under `tmp`."""
    conf = re.sub(r"#[^\n]*", "", (ctx.root / NGINX_CONF).read_text())

    def swap(pattern, repl, text, what):
        new, n = re.subn(pattern, repl, text)
        if n != 1:
            raise CheckError(f"{NGINX_CONF}: expected exactly one {what}, found {n}")
        return new

    conf = swap(r"proxy_cache_path\s+\S+", f"proxy_cache_path {tmp}/cache", conf, "proxy_cache_path")
    conf = swap(r"access_log\s+\S+", f"access_log {tmp}/access.log", conf, "access_log")
    if listen_port:
        conf = swap(r"\blisten\s+\d+\s*;", f"listen 127.0.0.1:{listen_port};", conf, "listen")
    if upstream:
        conf = swap(r"(\bset\s+\$\w+\s+)[\w.-]+:\d+\s*;", rf"\g<1>{upstream};", conf, "upstream")
    (tmp / "canard.conf").write_text(conf)
    temp_paths = "\n".join(f"    {d}_temp_path {tmp}/{d};" for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (tmp / "nginx.conf").write_text(f"""
daemon off;
pid {tmp}/nginx.pid;
error_log stderr notice;
{"user root;" if os.geteuid() == 0 else ""}
worker_processes 1;
events {{ worker_connections 64; }}
http {{
{temp_paths}
    include {tmp}/canard.conf;
}}
""")
    return tmp / "nginx.conf"


def check_nginx(ctx: Context) -> list[str]:
    errors = []
    ng = nginx_settings(ctx)
    text = ng["text"]
    if not re.search(r"\bresolver\s+127\.0\.0\.11\b", text):
        errors.append(f"{NGINX_CONF}: no `resolver 127.0.0.11` (Docker's DNS): replicas added later would never be found")
    if not ng["proxy_pass"] or any("$" not in p for p in ng["proxy_pass"]):
        errors.append(f"{NGINX_CONF}: proxy_pass {ng['proxy_pass']} without a variable: nginx would resolve the "
                      "replicas once at start and never see `--scale` changes")
    if re.search(r"\bupstream\s+\w+\s*\{", text):
        errors.append(f"{NGINX_CONF}: an upstream block resolves its servers once at start")
    for must in ("proxy_cache canard;", "proxy_cache_lock on;", "proxy_next_upstream "):
        if must not in text:
            errors.append(f"{NGINX_CONF}: missing `{must.strip()}`")
    if not re.search(r"proxy_cache_key\s+\"?\$request_uri", text) or "$canard_cors" not in text.split("proxy_cache_key", 1)[-1].split(";")[0]:
        errors.append(f"{NGINX_CONF}: the cache key must be the request URI and whether it is a CORS request")
    if re.search(r"\bproxy_ignore_headers\b[^;]*(Cache-Control|Expires)", text):
        errors.append(f"{NGINX_CONF}: ignores Cache-Control: random (no-store) pictures would be cached")
    if re.search(r"\bproxy_cache_valid\b", text):
        errors.append(f"{NGINX_CONF}: proxy_cache_valid would cache answers without caching headers (errors, /metrics)")
    if re.search(r"^\s*gzip\s+on", text, re.M):
        errors.append(f"{NGINX_CONF}: gzip on would turn the strong ETags weak")
    if ctx.nginx:
        with tempfile.TemporaryDirectory() as tmp:
            conf = nginx_test_tree(ctx, Path(tmp))
            r = subprocess.run([ctx.nginx, "-t", "-p", tmp, "-c", str(conf)], capture_output=True, text=True)
            if r.returncode != 0:
                errors += [f"nginx -t: {line}" for line in r.stderr.strip().splitlines()]
    return errors


# --------------------------------------------------------------------------------------
# Smoke test: nginx with deploy/nginx.conf in front of a real canard-serve


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(url: str, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def wait_for(url: str, proc: subprocess.Popen, what: str, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise CheckError(f"{what} exited: {proc.stderr.read().decode(errors='replace')[-2000:]}")
        try:
            if http(url)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise CheckError(f"{what} did not answer {url} within {seconds} s")


def check_smoke(ctx: Context, bin_dir: Path) -> list[str]:
    errors = []
    if not ctx.nginx:
        return ["no nginx binary (--nginx) for the smoke test"]
    procs = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            sport, pport = free_port(), free_port()
            serve = subprocess.Popen(
                [str(bin_dir / "canard-serve"), "--models", str(ctx.root / "models"), "--bind", f"127.0.0.1:{sport}",
                 "--workers", "1", "--intra-threads", "1", "--reload-interval", "0"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            procs.append(serve)
            wait_for(f"http://127.0.0.1:{sport}/readyz", serve, "canard-serve")
            conf = nginx_test_tree(ctx, Path(tmp), listen_port=str(pport), upstream=f"127.0.0.1:{sport}")
            nginx = subprocess.Popen([ctx.nginx, "-p", tmp, "-c", str(conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            procs.append(nginx)
            base = f"http://127.0.0.1:{pport}"
            wait_for(f"{base}/readyz", nginx, "nginx")

            # The health check script, as the container runs it.
            hc = str(ctx.root / HEALTHCHECK_SCRIPT)
            if subprocess.run([hc, f"http://127.0.0.1:{sport}/readyz"], capture_output=True).returncode != 0:
                errors.append("canard-healthcheck fails against a ready canard-serve")
            if subprocess.run([hc, f"http://127.0.0.1:{sport}/no-such-route"], capture_output=True).returncode == 0:
                errors.append("canard-healthcheck passes on a 404")
            if subprocess.run([hc, f"http://127.0.0.1:{free_port()}/readyz"], capture_output=True).returncode == 0:
                errors.append("canard-healthcheck passes with nothing listening")

            url = f"{base}/generate?seed=7"
            s1, h1, b1 = http(url)
            s2, h2, b2 = http(url)
            if (s1, s2) != (200, 200) or h1.get("x-cache-status") != "MISS" or h2.get("x-cache-status") != "HIT":
                errors.append(f"seed=7 twice: {s1} {h1.get('x-cache-status')}, {s2} {h2.get('x-cache-status')}; want MISS then HIT")
            if b1 != b2 or h1.get("etag") != h2.get("etag") or not h1.get("etag"):
                errors.append("the cached picture or its ETag differs from the server's")
            s3, h3, _ = http(url, {"If-None-Match": h1.get("etag", "")})
            if s3 != 304:
                errors.append(f"If-None-Match with the ETag: {s3}, want 304")
            for _ in range(2):
                s4, h4, _ = http(f"{base}/generate")
                if s4 != 200 or h4.get("x-cache-status") == "HIT" or "no-store" not in h4.get("cache-control", ""):
                    errors.append(f"a random picture came from the cache or lost no-store: {h4}")
            s5, h5, _ = http(url, {"Origin": "https://gallery.example"})
            if s5 != 200 or h5.get("access-control-allow-origin") != "*":
                errors.append(f"a cross-origin request got the non-CORS cached copy: {h5}")
            for path in ("/readyz", "/healthz", "/metrics"):
                http(base + path)
                s6, h6, _ = http(base + path)
                if s6 != 200 or h6.get("x-cache-status") == "HIT":
                    errors.append(f"{path} through the proxy: {s6} {h6.get('x-cache-status')} (must not be cached)")
            s7, h7, _ = http(f"{base}/generate?seed=abc")
            s7b, h7b, _ = http(f"{base}/generate?seed=abc")
            if s7b != 400 or h7b.get("x-cache-status") == "HIT":
                errors.append(f"an error answer was cached: {s7b} {h7b.get('x-cache-status')}")
        except CheckError as e:
            errors.append(str(e))
        finally:
            for p in reversed(procs):
                p.terminate()
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
    return errors


# --------------------------------------------------------------------------------------

CHECKS = {
    "schema": check_schema,
    "compose": check_compose,
    "gpus": check_gpus,
    "dockerfile": check_dockerfiles,
    "paths": check_paths,
    "env": check_env,
    "commands": check_commands,
    "ports": check_ports,
    "nginx": check_nginx,
}


def run_checks(ctx: Context, names=None, quiet=False) -> dict[str, list[str]]:
    results = {}
    for name, fn in CHECKS.items():
        if names and name not in names:
            continue
        try:
            errs = fn(ctx)
        except CheckError as e:
            errs = [str(e)]
        except Exception as e:  # a bug in the check itself, never a pass
            errs = [f"internal error: {type(e).__name__}: {e}"]
        errs = list(dict.fromkeys(errs))  # the same finding from two runs of Compose once
        results[name] = errs
        if not quiet:
            print(f"{'ok  ' if not errs else 'FAIL'} {name}")
            for e in errs:
                print(f"       {e}")
    return results


# Deliberate mistakes, one at a time, and the check that must catch each.
# (file, old text, new text, check that must fail)
MUTATIONS = [
    (COMPOSE, "  restart: unless-stopped\n  # More", "  restart_policy: unless-stopped\n  # More", "schema"),
    (COMPOSE, "      CANARD_DEVICE: cpu\n", "      CANARD_DEVICE: cpu\n    mem_limit: lots\n", "compose"),
    (COMPOSE, "    - ./models:/work/models:ro", "    - ./modelz:/work/models:ro", "paths"),
    (COMPOSE, "dockerfile: deploy/Dockerfile.cuda", "dockerfile: deploy/Dockerfile.gpu", "paths"),
    (COMPOSE, "--models-dir /work/models --runs-dir", "--models-dir /work/model --runs-dir", "paths"),
    (COMPOSE, "    CANARD_MODELS: /work/models\n", "    CANARD_MODELS: /models\n", "paths"),
    (COMPOSE, "      target: /data\n      read_only: true\n", "      target: /data\n", "paths"),
    (COMPOSE, "./deploy/nginx.conf:", "./deploy/proxy.conf:", "paths"),
    (COMPOSE, "    CANARD_QUEUE:\n", "    CANARD_QUEUE_SIZE:\n", "env"),
    (COMPOSE, "    CANARD_SHUTDOWN_TIMEOUT: \"30\"\n", "    CANARD_SHUTDOWN_TIMEOUT: \"30\"\n    CANARD_THREADS: \"4\"\n", "env"),
    (COMPOSE, "CANARD_DEVICE: ${CANARD_DEVICE:-cuda}", "CANARD_DEVICE: ${CANARD_DEVICE:-gpu}", "env"),
    (COMPOSE, "--name ${CANARD_NAME:-mine}", "--name ${CANARD_RUN:-mine}", "env"),
    (COMPOSE, "stop_grace_period: 40s", "stop_grace_period: 20s", "env"),
    ("Dockerfile", "CANARD_BIND=0.0.0.0:8080", "CANARD_ADDRESS=0.0.0.0:8080", "env"),
    (COMPOSE, "canard-train --device cuda --data", "canard-train --device cuda --dataset", "commands"),
    (COMPOSE, "canard-train --device cuda", "canard-train --device gpu", "commands"),
    (COMPOSE, '["CMD", "canard-healthcheck",', '["CMD", "canard-health",', "commands"),
    (COMPOSE, "http://127.0.0.1:8080/readyz", "http://127.0.0.1:8080/ready", "commands"),
    (COMPOSE, "http://127.0.0.1:8080/readyz", "http://127.0.0.1:8081/readyz", "ports"),
    (COMPOSE, "    CANARD_BIND: 0.0.0.0:8080", "    CANARD_BIND: 0.0.0.0:9090", "ports"),
    (COMPOSE, '      - "${CANARD_PORT:-8080}:80"', '      - "${CANARD_PORT:-8080}:8080"', "ports"),
    (COMPOSE, "http://127.0.0.1:80/readyz", "http://127.0.0.1:8080/readyz", "ports"),
    (COMPOSE, '  expose: ["8080"]', '  expose: ["8080"]\n  ports: ["8080:8080"]', "ports"),
    (COMPOSE, "aliases: [canard-serve]", "aliases: [serve]", "ports"),
    (NGINX_CONF, "canard-serve:8080;", "canard-serve:8081;", "ports"),
    (NGINX_CONF, "    listen 80;", "    listen 8080;", "ports"),
    (NGINX_CONF, "proxy_cache canard;", "proxy_cache canard", "nginx"),
    (NGINX_CONF, "proxy_pass http://$canard_upstream;", "proxy_pass http://canard-serve:8080;", "nginx"),
    (NGINX_CONF, "proxy_cache_lock on;", "proxy_cache_lock on;\n        proxy_ignore_headers Cache-Control;", "nginx"),
    (NGINX_CONF, "proxy_cache_key \"$request_uri|$canard_cors\";", "proxy_cache_key \"$request_uri\";", "nginx"),
    (COMPOSE, "  profiles: [train]\n", "", "compose"),
    (COMPOSE, "    profiles: [cpu]\n", "    profiles: [gpu]\n", "compose"),
    (GPUS, 'device_ids: ["1"]', 'device_ids: ["0"]', "gpus"),
    (COMPOSE, "    deploy: *one-gpu\n\n  serve-cpu:", "\n  serve-cpu:", "gpus"),
    ("deploy/Dockerfile.cuda", "USER 10001:10001", "USER root", "dockerfile"),
    ("deploy/Dockerfile.cuda", "-cudnn-runtime-ubuntu24.04", "-cudnn-devel-ubuntu24.04", "dockerfile"),
    ("deploy/Dockerfile.cuda", "ARG CUDA_VERSION=13.0.1", "ARG CUDA_VERSION=12.9.1", "dockerfile"),
    ("deploy/Dockerfile.cuda", "canard-train/cuda,canard-serve/cuda", "canard-train/cuda", "dockerfile"),
    ("deploy/Dockerfile.cuda", "RUN useradd", "RUN apt-get update && apt-get install -y --no-install-recommends gcc && rm -rf /var/lib/apt/lists/*\nRUN useradd", "dockerfile"),
    ("deploy/Dockerfile.cuda", "/out/libonnxruntime_providers_cuda.so /opt/canard/bin/", "/opt/canard/bin/\nCOPY --from=build /out/libonnxruntime_providers_cuda.so /opt/canard/lib/", "dockerfile"),
    ("deploy/Dockerfile.cuda", "FROM rust:${RUST_VERSION}-slim-bookworm AS rust", "FROM rust:latest AS rust", "dockerfile"),
    ("Dockerfile", "libonnxruntime.so.1.31.1", "libonnxruntime.so.1.30.0", "dockerfile"),
    ("Dockerfile", "COPY --chmod=0755 deploy/canard-healthcheck", "COPY --chmod=0755 deploy/healthcheck", "dockerfile"),
    ("README.md", "`CANARD_TRAIN_ARGS`", "`CANARD_TRAIN_FLAGS`", "env"),
    # Behaviour that only running nginx and canard-serve shows.
    (NGINX_CONF, "        proxy_cache canard;\n", "", "smoke"),
    (NGINX_CONF, "proxy_cache_key \"$request_uri|$canard_cors\";", "proxy_cache_key \"$request_uri\";", "smoke"),
    (NGINX_CONF, "proxy_cache_lock on;", "proxy_cache_lock on;\n        proxy_cache_valid any 1m;", "smoke"),
    (HEALTHCHECK_SCRIPT, '[[ "${code}" == 200 ]]', '[[ -n "${code}" ]]', "smoke"),
]

PROJECT_FILES = [COMPOSE, "Dockerfile", ".dockerignore", ".gitignore", "README.md", "deploy", "scripts", "models",
                 ROUTES]


def self_test(root: Path, bins: Binaries, bin_dir: Path, compose_bin, hadolint, nginx) -> int:
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "clean"
        for rel in PROJECT_FILES:
            src, dst = root / rel, base / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, dst, symlinks=True)
            else:
                shutil.copy2(src, dst)
        clean = run_checks(Context(base, bins, compose_bin, hadolint, nginx), quiet=True)
        bad = {k: v for k, v in clean.items() if v}
        if bad:
            print(f"FAIL self-test: the unchanged copy does not pass: {bad}")
            return 1
        for n, (rel, old, new, check) in enumerate(MUTATIONS):
            work = Path(tmp) / f"m{n}"
            shutil.copytree(base, work, symlinks=True)
            text = (work / rel).read_text()
            if text.count(old) < 1:
                print(f"FAIL self-test #{n}: {rel} no longer contains {old!r}: update the mutation")
                failures += 1
                continue
            (work / rel).write_text(text.replace(old, new))
            try:
                mctx = Context(work, bins, compose_bin, hadolint, nginx)
                if check == "smoke":
                    results = {"smoke": check_smoke(mctx, bin_dir)}
                else:
                    results = run_checks(mctx, quiet=True)
            except (yaml.YAMLError, CheckError) as e:
                results = {check: [f"(does not load: {e})"]}
            caught = [e for e in results.get(check) or [] if not e.startswith("internal error")]
            label = f"{rel}: {old.strip()[:50]!r} -> {new.strip()[:50]!r}"
            if caught:
                first = " ".join(caught[0].split())
                print(f"ok   self-test #{n:<2} {check:<10} catches {label}\n       ({first[:150]})")
            else:
                failures += 1
                others = [k for k, v in results.items() if v]
                print(f"FAIL self-test #{n:<2} {check:<10} misses {label} (failed instead: {others or 'nothing'})")
            shutil.rmtree(work)
    return failures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    ap.add_argument("--bin-dir", type=Path, required=True, help="where canard-serve and canard-train are built")
    ap.add_argument("--compose", required=True, help="the docker compose binary (standalone docker-compose)")
    ap.add_argument("--hadolint", required=True)
    ap.add_argument("--nginx", required=True)
    ap.add_argument("--smoke", action="store_true", help="also run nginx in front of a real canard-serve")
    ap.add_argument("--self-test", action="store_true", help="also prove that each check catches its mistakes")
    ap.add_argument("--only", nargs="*", help="run only these checks")
    a = ap.parse_args()

    root = a.root.resolve()
    bins = Binaries.load(a.bin_dir.resolve())
    if not bins.serve or not bins.train or not bins.env_of("canard-serve"):
        print("check-deploy: could not read the options from the binaries' --help", file=sys.stderr)
        return 1
    ctx = Context(root, bins, a.compose, a.hadolint, a.nginx)
    results = run_checks(ctx, a.only)
    if a.smoke:
        errs = check_smoke(ctx, a.bin_dir.resolve())
        results["smoke"] = errs
        print(f"{'ok  ' if not errs else 'FAIL'} smoke")
        for e in errs:
            print(f"       {e}")
    passed = sum(1 for v in results.values() if not v)
    failed = len(results) - passed
    if a.self_test:
        st_failed = self_test(root, bins, a.bin_dir.resolve(), a.compose, a.hadolint, a.nginx)
        st_passed = len(MUTATIONS) - st_failed
        print(f"check-deploy self-test: {st_passed} of {len(MUTATIONS)} deliberate mistakes caught")
        passed, failed = passed + st_passed, failed + st_failed
    print(f"check-deploy: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
