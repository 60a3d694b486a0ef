# coldpath for Azure Batch (container tasks) and Data Factory custom activities.
# Build:  docker build -t <registry>/coldpath:<version> .
# Run:    docker run --rm <image> coldpath run --job jobs/nightly.toml --date 2024-03-11
# Credentials come from the pool's managed identity (IMDS); nothing secret is baked in.

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, so a source change does not rebuild polars and deltalake.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src tests/it && echo 'fn main() {}' > src/main.rs && touch src/lib.rs tests/it/main.rs \
    && cargo build --release --locked \
    && rm -rf src tests
COPY src src
COPY schemas schemas
COPY tests/it tests/it
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin coldpath \
    && strip target/release/coldpath

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin coldpath
COPY --from=build /src/target/release/coldpath /usr/local/bin/coldpath
COPY jobs /opt/coldpath/jobs
COPY schemas /opt/coldpath/schemas
WORKDIR /opt/coldpath
USER 10001
ENV COLDPATH_LOG_FORMAT=json
CMD ["coldpath", "--help"]
