# canard: `make demo` trains, exports and serves; `make test` runs every test.
# Both install what they need first (the ONNX Runtime library, from PyPI).

CARGO ?= cargo
ORT_LIB := .deps/onnxruntime/libonnxruntime.so
export ORT_DYLIB_PATH ?= $(CURDIR)/$(ORT_LIB)

# The demo: the built-in shapes at 32×32, a narrow DCGAN, about two minutes on two CPU cores.
DEMO_ARGS := --data builtin:shapes --name demo --image-size 32 --epochs 5 --ngf 32 --ndf 32 --seed 0
BIND ?= 127.0.0.1:8080

.PHONY: demo test setup build demo-model serve clean

## demo: install ONNX Runtime, build, train models/demo on builtin:shapes, then serve it
demo: setup build demo-model serve

## test: install ONNX Runtime and run every test (unit, end-to-end, parity, data loader)
test: setup
	$(CARGO) test --workspace

## setup: install the ONNX Runtime library into .deps/ (once)
setup: $(ORT_LIB)

$(ORT_LIB):
	scripts/setup-ort.sh

build:
	$(CARGO) build --release -p canard-train -p canard-serve

## demo-model: retrain models/demo (the committed demo model is made by exactly this)
demo-model: build
	./target/release/canard-train $(DEMO_ARGS)

## serve: serve models/ on $(BIND)
serve: setup build
	./target/release/canard-serve --models models --bind $(BIND)

clean:
	rm -rf target .deps runs
