# syntax=docker/dockerfile:1
#
# Shoal's image: the one `shoal` binary on Debian slim, as a non-root user.
#
#   docker build -t shoal .
#   docker run --rm -p 6379:6379 -p 8080:8080 shoal server --requirepass change-me
#
# The image listens on every address (SHOAL_BIND=0.0.0.0), so a client from outside the
# container is not on the loopback interface: give a password (--requirepass), or
# --protected-mode no on a network you trust. In a cluster, add --cluster-announce-ip (and
# --cluster-announce-port/--cluster-announce-bus-port behind a port mapping): see
# docs/deployment.md.

# --- build -----------------------------------------------------------------------------------
FROM rust:1-bookworm AS builder
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates crates
# The registry and the target directory live in BuildKit cache mounts: a rebuild after a
# source change downloads nothing and recompiles only the workspace's own crates. The binary
# is copied out of the cache mount, which is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p shoal \
    && install -m 0755 target/release/shoal /usr/local/bin/shoal

# --- run -------------------------------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 shoal \
    && useradd --system --uid 10001 --gid shoal --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin shoal \
    && mkdir -p /data \
    && chown shoal:shoal /data
COPY --from=builder /usr/local/bin/shoal /usr/local/bin/shoal

# The node's directory (--dir): its id, the controller's Raft state and the last map, so a
# restarted container comes back as the same node. Keys are never written to it.
VOLUME ["/data"]
WORKDIR /data
ENV SHOAL_BIND=0.0.0.0 \
    SHOAL_DIR=/data

# RESP, the HTTP API (/health, /metrics, keys), the cluster bus (RESP + 10000).
EXPOSE 6379 8080 16379

USER 10001:10001

# No curl in the image: bash's /dev/tcp asks /health (200 while the node serves; 503 while a
# cluster node has not joined, or is a primary without a lease). With --http-tls yes or
# --http-port 0 replace or disable this check.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${SHOAL_HTTP_PORT:-8080} && printf 'GET /health HTTP/1.0\\r\\nHost: 127.0.0.1\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]

# SIGTERM (docker stop) makes a primary hand its shard to a replica before it exits: give it
# time (docker stop --time 30, or stop_grace_period in compose).
STOPSIGNAL SIGTERM
ENTRYPOINT ["shoal"]
CMD ["server"]
