# syntax=docker/dockerfile:1
# canard on the CPU: both binaries on a slim runtime image. docker-compose.yml's `cpu`
# profile uses it; the GPU image is deploy/Dockerfile.cuda.
#
#   docker build -t canard:cpu .
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends python3-pip && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# ONNX Runtime first, so changing the sources does not download it again.
COPY scripts/setup-ort.sh scripts/
RUN scripts/setup-ort.sh
COPY . .
RUN cargo build --release --locked -p canard-train -p canard-serve

FROM debian:bookworm-slim
RUN useradd --create-home --uid 10001 --user-group canard
COPY --from=build /src/target/release/canard-train /src/target/release/canard-serve /usr/local/bin/
# canard-serve finds libonnxruntime.so beside its executable.
COPY --from=build /src/.deps/onnxruntime/libonnxruntime.so.1.31.1 /usr/local/bin/libonnxruntime.so
COPY --chmod=0755 deploy/canard-healthcheck /usr/local/bin/canard-healthcheck
ENV CANARD_MODELS=/work/models \
    CANARD_BIND=0.0.0.0:8080
USER 10001:10001
WORKDIR /work
EXPOSE 8080
CMD ["canard-serve"]
