# syntax=docker/dockerfile:1
# Build stage: compile a release binary with the locked dependencies.
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY bench ./bench
RUN cargo build --release --locked && strip target/release/llm-router

# Final stage: a small Debian image with CA roots, running as a non-root user.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /app --create-home router \
 && mkdir -p /app/data && chown router:router /app/data
COPY --from=build /src/target/release/llm-router /usr/local/bin/llm-router
USER router
EXPOSE 8080
ENV LLM_ROUTER_CONFIG=/app/config.yaml
# The default store (sqlite://llm-router.db, relative to the working
# directory) lands in the data volume, not in the container's layer.
WORKDIR /app/data
VOLUME ["/app/data"]
# The image has no curl: the binary probes itself.
HEALTHCHECK --interval=10s --timeout=4s --start-period=5s --retries=3 \
  CMD ["llm-router", "healthcheck"]
ENTRYPOINT ["llm-router"]
