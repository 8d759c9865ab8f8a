# syntax=docker/dockerfile:1
# Image of freezer-worker, the backup engine and its CLI.
# Build from the repository root:  docker build -f docker/worker.Dockerfile -t freezer-worker .

FROM rust:1.95-bookworm AS build
WORKDIR /src
# The whole workspace is needed: cargo resolves every member's manifest (see
# worker.Dockerfile.dockerignore for what is left out of the context).
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p freezer-worker \
 && install -m 0755 target/release/freezer-worker /usr/local/bin/freezer-worker

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tini \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/freezer-worker /usr/local/bin/freezer-worker
# The worker runs as root on purpose: a backup must read every file of its source, and a restore must
# set owners and xattrs as they were backed up. Run it with `--user` for trees that do not need that.
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/freezer-worker"]
CMD ["--help"]
