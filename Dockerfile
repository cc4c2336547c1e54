# Two images of rag-agent from one build stage (arm64 by default, as in
# template.yaml and infra/fargate.yaml):
#
#   the Lambda container image (the default, last stage), the same binary as
#   the zip build on the AWS Lambda provided:al2023 base image:
#     docker buildx build --platform linux/arm64 -t rag-agent:lambda .
#
#   the server image for ECS Fargate or any container host: `rag-agent
#   serve` on 0.0.0.0:8080 as a non-root user, on a distroless base with no
#   shell or package manager at run time:
#     docker buildx build --platform linux/arm64 --target server -t rag-agent:server .
#
# The build stage is Amazon Linux 2023 itself, so the binary links against
# the glibc (2.34) the Lambda image provides; the server's Debian 12 base
# has a newer glibc (2.36), which runs it.

FROM public.ecr.aws/amazonlinux/amazonlinux:2023 AS build
# The AWS SDK crates need Rust 1.94.1 or later; this is the toolchain CI
# builds and tests with.
ARG RUST_VERSION=1.95.0
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Amazon Linux pins package versions through its release; the base tag is
# the version control here.
# hadolint ignore=DL3041
RUN dnf install -y --setopt=install_weak_deps=False gcc gcc-c++ make perl tar gzip \
    && dnf clean all
RUN curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs \
    | sh -s -- -y --profile minimal --default-toolchain "${RUST_VERSION}"
ENV PATH="/root/.cargo/bin:${PATH}"
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
RUN cargo build --release --locked --bin rag-agent \
    && strip target/release/rag-agent

FROM gcr.io/distroless/cc-debian12:nonroot AS server
COPY --from=build /src/target/release/rag-agent /usr/local/bin/rag-agent
# The AWS backends; credentials come from the task role. Authentication
# must be api_key or jwt off loopback (the server refuses `none` there).
# SIGTERM closes the listener and lets requests and streams in flight
# finish for RAG_AGENT_DRAIN_SECS, within the task's stopTimeout. The data
# directory only holds the in-task ingest queue; documents it loses with
# the task are resumed from DynamoDB by the next task to start.
ENV RUST_LOG=info \
    LOG_FORMAT=json \
    RAG_AGENT_ADDR=0.0.0.0:8080 \
    RAG_AGENT_DATA_DIR=/tmp/rag-agent \
    RAG_AGENT_DRAIN_SECS=110 \
    RAG_AGENT_AUTH=api_key \
    METADATA_BACKEND=dynamodb \
    DOCUMENT_BACKEND=s3 \
    VECTOR_BACKEND=s3vectors \
    EMBEDDING_PROVIDER=bedrock \
    LLM_PROVIDER=bedrock \
    SEARCH_MODE=dense \
    METRICS=prometheus
# distroless's `nonroot` user, by number so the orchestrator can check it.
USER 65532:65532
EXPOSE 8080
STOPSIGNAL SIGTERM
# No shell or client to probe with: the load balancer checks GET /health.
HEALTHCHECK NONE
ENTRYPOINT ["/usr/local/bin/rag-agent"]
CMD ["serve"]

FROM public.ecr.aws/lambda/provided:al2023 AS lambda
# The Lambda runtime interface starts `bootstrap` from the task root.
COPY --from=build /src/target/release/rag-agent ${LAMBDA_TASK_ROOT}/bootstrap
ENV RUST_LOG=info \
    METADATA_BACKEND=dynamodb \
    DOCUMENT_BACKEND=s3 \
    VECTOR_BACKEND=s3vectors \
    EMBEDDING_PROVIDER=bedrock \
    LLM_PROVIDER=bedrock \
    SEARCH_MODE=dense \
    LOG_FORMAT=json \
    METRICS=emf
ENTRYPOINT ["/var/task/bootstrap"]
CMD ["serve"]
