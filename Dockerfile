# sipfront container: build in the Rust image, run on slim Debian.
#   docker build -t sipfront .
#   docker run --rm -p 5060:5060/udp -p 5060:5060/tcp -p 8080:8080 \
#       -e SIPFRONT_PUBLIC_ADDRESS=203.0.113.7 -v sipfront-data:/var/lib/sipfront/data sipfront
# SIPFRONT_PUBLIC_ADDRESS is the address peers reach (written in Via and
# Contact); the other SIPFRONT_* variables (README, "Container") set config
# keys the same way, so no file needs mounting. To use your own file, mount
# it at /var/lib/sipfront/config/sipfront.toml (variables still win over it).
# The first start logs a generated API key once: `docker logs <container>`.

FROM rust:1-bookworm AS build
WORKDIR /src
# Dependencies first, in a layer of their own: it is rebuilt only when a
# manifest or the lock file changes, not on every source change. Stub
# sources let cargo build the dependency graph; benches are declared
# targets, so their (small) files come along.
COPY Cargo.toml Cargo.lock ./
COPY crates/sipfront-core/Cargo.toml crates/sipfront-core/Cargo.toml
COPY benches benches
COPY crates/sipfront-core/benches crates/sipfront-core/benches
RUN mkdir -p src crates/sipfront-core/src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs crates/sipfront-core/src/lib.rs \
 && cargo build --release --locked --bin sipfront \
 && rm -rf src crates/sipfront-core/src
COPY . .
# The stubs' outputs are older than the real sources, so cargo rebuilds
# exactly the two workspace crates.
RUN touch src/main.rs src/lib.rs crates/sipfront-core/src/lib.rs \
 && cargo build --release --locked --bin sipfront

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home-dir /var/lib/sipfront --shell /usr/sbin/nologin sipfront \
 && mkdir -p /var/lib/sipfront/config /var/lib/sipfront/data \
 && chown -R sipfront:sipfront /var/lib/sipfront
WORKDIR /var/lib/sipfront
COPY --from=build /src/target/release/sipfront /usr/local/bin/sipfront
COPY --chown=sipfront:sipfront config/rates.csv config/rates.csv
COPY --chown=sipfront:sipfront config/sipfront.toml config/sipfront.toml
# Listen on every interface of the container (the shipped file says
# loopback); keep the store in the volume.
ENV SIPFRONT_LISTEN="udp:0.0.0.0:5060,tcp:0.0.0.0:5060" \
    SIPFRONT_HTTP_ADDRESS="0.0.0.0:8080" \
    SIPFRONT_STORE_PATH="/var/lib/sipfront/data/sipfront.db" \
    RUST_LOG=info
# Trunks, DIDs, registrations, CDRs and API key hashes: keep them.
VOLUME ["/var/lib/sipfront/data"]
USER sipfront
EXPOSE 5060/udp 5060/tcp 8080/tcp
# /healthz needs no key. (Change the port here if SIPFRONT_HTTP_ADDRESS does.)
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
STOPSIGNAL SIGTERM
ENTRYPOINT ["sipfront"]
CMD ["run"]
