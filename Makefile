# canard: `make demo` trains, exports and serves; `make test` runs every test.
# Both install what they need first (the ONNX Runtime library, from PyPI).

CARGO ?= cargo
ORT_LIB := .deps/onnxruntime/libonnxruntime.so
export ORT_DYLIB_PATH ?= $(CURDIR)/$(ORT_LIB)

# The demo: the built-in shapes at 32×32 with the default recipe (fastgan), one model of their five
# kinds (--classes subfolders), a few minutes of training on two CPU cores. It writes runs/my-demo and models/my-demo (ignored by git), never the committed
# models/demo, which was made with `make demo-model DEMO_NAME=demo DEMO_EPOCHS=40` before --classes.
DEMO_EPOCHS ?= 20
DEMO_NAME ?= my-demo
DEMO_ARGS := --data builtin:shapes --classes subfolders --image-size 32 --epochs $(DEMO_EPOCHS) --seed 0
BIND ?= 127.0.0.1:8080

.PHONY: demo test check-deploy check-fuzz setup setup-gpu setup-browser build build-cuda demo-model serve clean

## demo: install ONNX Runtime, build, train models/demo on builtin:shapes, then serve it
demo: setup build demo-model serve

## test: install ONNX Runtime and Chromium, then run every test (unit, end-to-end, parity, data loader, browser)
## and the deployment checks
test: setup setup-browser check-deploy check-fuzz
	$(CARGO) test --workspace

## check-fuzz: compile every fuzz target (fuzz/ is its own workspace, which `cargo test --workspace`
## never builds; running them needs nightly and cargo-fuzz: scripts/fuzz.sh)
check-fuzz:
	cd fuzz && $(CARGO) check --quiet --locked --bins --examples

## check-deploy: check docker-compose.yml, the Dockerfiles and deploy/ without a Docker engine (schema,
## Compose itself, hadolint, nginx -t, paths, ports, commands and CANARD_* variables against the binaries,
## nginx in front of a real canard-serve, and a self-test that each check catches deliberate mistakes)
check-deploy: setup
	CARGO=$(CARGO) scripts/check-deploy.sh

## setup: install the ONNX Runtime library into .deps/ (once)
setup: $(ORT_LIB)

$(ORT_LIB):
	scripts/setup-ort.sh

## setup-gpu: install the GPU build of ONNX Runtime (onnxruntime-gpu, 255 MB) into .deps/onnxruntime-gpu/
## and report which CUDA 13 / cuDNN 9 libraries this machine has; for canard-serve built with --features cuda
setup-gpu:
	scripts/setup-ort.sh --gpu

## setup-browser: install Debian's chromium (headless browser for the gallery test) when missing
setup-browser:
	@if [ ! -x /usr/bin/chromium ]; then \
		if [ "$$(id -u)" -eq 0 ]; then sudo=; elif command -v sudo >/dev/null; then sudo=sudo; \
		else echo "setup-browser: need root or sudo to apt-get install chromium" >&2; exit 1; fi; \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	fi

build:
	$(CARGO) build --release -p canard-train -p canard-serve

## build-cuda: build target/cuda/release/canard-train with CUDA (no GPU or toolkit needed; CUDA_COMPUTE_CAP=90 by default)
build-cuda:
	CARGO=$(CARGO) scripts/build-cuda.sh

## demo-model: train models/$(DEMO_NAME) (resumes runs/$(DEMO_NAME) if it exists)
demo-model: build
	./target/release/canard-train --name $(DEMO_NAME) $(DEMO_ARGS)

## serve: serve models/ on $(BIND), models/$(DEMO_NAME) by default when it exists
serve: setup build
	./target/release/canard-serve --models models --bind $(BIND) \
		$$(test -f models/$(DEMO_NAME)/model.json && echo --model $(DEMO_NAME))

clean:
	rm -rf target .deps runs
