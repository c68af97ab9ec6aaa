# The bundled naxos server (examples/server) in a small image.
#   docker build -t naxos .
#   docker run -p 8080:8080 -e NAXOS_SERVER_HOST=0.0.0.0 naxos
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --example server \
 && cp target/release/examples/server /naxos-server

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 naxos
COPY --from=build /naxos-server /usr/local/bin/naxos-server
USER naxos
ENV NAXOS_SERVER_HOST=0.0.0.0 NAXOS_SERVER_PORT=8080
EXPOSE 8080
HEALTHCHECK --interval=5s --timeout=3s --retries=5 CMD curl -fsS http://127.0.0.1:8080/health || exit 1
ENTRYPOINT ["/usr/local/bin/naxos-server"]
