# canard: both binaries on a slim runtime image (CPU build; the CUDA images come with the GPU issues).
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends python3-pip && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN scripts/setup-ort.sh && cargo build --release -p canard-train -p canard-serve

FROM debian:bookworm-slim
RUN useradd --create-home --uid 10001 canard
COPY --from=build /src/target/release/canard-train /src/target/release/canard-serve /usr/local/bin/
# canard-serve finds libonnxruntime.so beside its executable.
COPY --from=build /src/.deps/onnxruntime/libonnxruntime.so.1.31.1 /usr/local/bin/libonnxruntime.so
USER canard
WORKDIR /work
