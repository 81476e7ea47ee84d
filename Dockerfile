# syntax=docker/dockerfile:1
#
# One image with every Tailor server and the `tailor` command; a container
# runs one server, named as its command:
#
#   docker build -t tailor:0.1.0 .
#   docker run --rm tailor:0.1.0 tailor-catalog --help
#
# The build stage compiles the release binaries (the contracts are
# compiled by build.rs with protox: no protoc, no Node.js). The runtime
# stage is distroless: glibc, CA certificates and the binaries, no shell,
# no package manager, running as the unprivileged user 65532.
# docs/deployment.md says how the Kubernetes manifests run it.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# The cargo registry and target directory live in build caches, so a
# rebuild compiles only what changed; the binaries are copied out of them.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
        --bin tailor-catalog --bin tailor-inventory --bin tailor-reviews --bin tailor-orders \
        --bin tailor-web-bff --bin tailor-mobile-bff --bin tailor-partner-bff --bin tailor \
 && mkdir -p /out/bin /out/data \
 && cp target/release/tailor-catalog target/release/tailor-inventory \
       target/release/tailor-reviews target/release/tailor-orders \
       target/release/tailor-web-bff target/release/tailor-mobile-bff \
       target/release/tailor-partner-bff target/release/tailor /out/bin/

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=build /out/bin/ /usr/local/bin/
# The data directory (SQLite stores when no TAILOR_DATABASE_URL is given,
# logs when --log-file is): the only place the servers write, owned by
# the user they run as. Kubernetes mounts a volume here, the root
# filesystem being read-only.
COPY --from=build --chown=65532:65532 /out/data /var/lib/tailor
# Every server listens on all interfaces of the container, on its usual
# port; plaintext health, /metrics and /livez on 9000.
ENV TAILOR_DATA_DIR=/var/lib/tailor \
    TAILOR_ADMIN_LISTEN=0.0.0.0:9000 \
    TAILOR_WEB_LISTEN=0.0.0.0:8081 \
    TAILOR_MOBILE_LISTEN=0.0.0.0:8082 \
    TAILOR_PARTNER_LISTEN=0.0.0.0:8083 \
    TAILOR_CATALOG_LISTEN=0.0.0.0:50051 \
    TAILOR_INVENTORY_LISTEN=0.0.0.0:50052 \
    TAILOR_REVIEWS_LISTEN=0.0.0.0:50053 \
    TAILOR_ORDERS_LISTEN=0.0.0.0:50054
EXPOSE 8081 8082 8083 50051 50052 50053 50054 9000
USER 65532:65532
# grpc.health.v1 Check on the admin port (TAILOR_ADMIN_LISTEN): healthy
# while the server reports SERVING; a BFF also stops being healthy while
# a downstream service it cannot work without is unreachable.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["tailor", "probe"]
CMD ["tailor", "--help"]
