# syntax=docker/dockerfile:1
#
# Image for the prodaccess operator and its kubectl plugin.
#
#   docker build -t prodaccess-operator:0.1.0 .
#
# The development machines and CI have no container engine, so this file is not built
# by the project's tests; build and push it from a machine or pipeline that has one
# (for example to Amazon ECR) and set image.repository in the Helm chart.

# ---------------------------------------------------------------- build
FROM rust:1-bookworm AS build
WORKDIR /src

# Manifests first, so that a change to the sources alone reuses the dependency layers
# of the cache mounts below.
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY operator ./operator
COPY tests/e2e ./tests/e2e

RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p prodaccess-operator \
    && mkdir -p /out \
    && cp target/release/prodaccess-operator target/release/kubectl-prodaccess /out/

# ---------------------------------------------------------------- runtime
# distroless/cc: glibc and libgcc only, no shell, no package manager; "nonroot" runs as
# uid/gid 65532, the user the Helm chart's securityContext expects.
FROM gcr.io/distroless/cc-debian12:nonroot

LABEL org.opencontainers.image.title="prodaccess-operator" \
      org.opencontainers.image.description="Approval-gated, time-bound production AWS access and the PrivateLink path into production" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0"

COPY --from=build /out/prodaccess-operator /prodaccess-operator
COPY --from=build /out/kubectl-prodaccess /kubectl-prodaccess

USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/prodaccess-operator"]
CMD ["run"]
