# syntax=docker/dockerfile:1
# Image of freezer-dispatcher (a skeleton for now: its subcommands report "not implemented yet").
# Build from the repository root:  docker build -f docker/dispatcher.Dockerfile -t freezer-dispatcher .

FROM rust:1.95-bookworm AS build
WORKDIR /src
# The whole workspace is needed: cargo resolves every member's manifest (see
# dispatcher.Dockerfile.dockerignore for what is left out of the context).
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p freezer-dispatcher \
 && install -m 0755 target/release/freezer-dispatcher /usr/local/bin/freezer-dispatcher

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin freezer
COPY --from=build /usr/local/bin/freezer-dispatcher /usr/local/bin/freezer-dispatcher
# The dispatcher touches no files it does not own: it only talks to RabbitMQ and Redis.
USER freezer
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/freezer-dispatcher"]
CMD ["--help"]
