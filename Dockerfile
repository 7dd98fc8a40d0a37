# sipfront container: build in the Rust image, run on slim Debian.
#   docker build -t sipfront .
#   docker run --rm -p 5060:5060/udp -p 5060:5060/tcp -p 8080:8080 sipfront
# Mount your own config at /var/lib/sipfront/config/sipfront.toml (set
# server.public_address to the address peers reach).

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin sipfront

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home-dir /var/lib/sipfront --shell /usr/sbin/nologin sipfront \
 && mkdir -p /var/lib/sipfront/config /var/lib/sipfront/data
WORKDIR /var/lib/sipfront
COPY --from=build /src/target/release/sipfront /usr/local/bin/sipfront
COPY config/rates.csv config/rates.csv
# The shipped config, listening on all interfaces instead of loopback.
COPY config/sipfront.toml config/sipfront.toml
RUN sed -i 's/^address = "127\.0\.0\.1:/address = "0.0.0.0:/' config/sipfront.toml \
 && chown -R sipfront:sipfront /var/lib/sipfront
USER sipfront
EXPOSE 5060/udp 5060/tcp 8080/tcp
STOPSIGNAL SIGTERM
ENTRYPOINT ["sipfront"]
CMD ["run"]
