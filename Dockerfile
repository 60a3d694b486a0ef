# coldpath for Azure Batch (container tasks) and Data Factory custom activities.
# Build:  docker build --build-arg COLDPATH_GIT_COMMIT=$(git rev-parse --short=12 HEAD) -t <registry>/coldpath:<version> .
# Run:    docker run --rm <image> coldpath run --job jobs/nightly.toml --date 2024-03-11
# Credentials come from the pool's managed identity (IMDS); nothing secret is baked in.
# Under docker run, coldpath runs under tini (ENTRYPOINT), so signals reach it: a
# container's PID 1 gets no default signal handling. Where a Batch task's command
# line takes the ENTRYPOINT's place, coldpath is PID 1 and handles SIGTERM itself.

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, so a source change does not rebuild polars and deltalake.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src tests/it && echo 'fn main() {}' > src/main.rs && touch src/lib.rs tests/it/main.rs \
    && cargo build --release --locked \
    && rm -rf src tests
# The build has no .git (.dockerignore): build.rs takes the commit from here.
ARG COLDPATH_GIT_COMMIT=unknown
ENV COLDPATH_GIT_COMMIT=${COLDPATH_GIT_COMMIT}
COPY build.rs build.rs
COPY src src
COPY schemas schemas
COPY tests/it tests/it
# The release profile strips the binary (Cargo.toml).
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin coldpath

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates tini \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin coldpath
COPY --from=build /src/target/release/coldpath /usr/local/bin/coldpath
COPY jobs /opt/coldpath/jobs
COPY schemas /opt/coldpath/schemas
WORKDIR /opt/coldpath
USER 10001
ENV COLDPATH_LOG_FORMAT=json
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["coldpath", "--help"]
