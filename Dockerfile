# Lambda container image of rag-agent: the same binary as the zip build,
# on the AWS Lambda provided:al2023 base image (arm64 by default, as in
# template.yaml). Build with:
#   docker buildx build --platform linux/arm64 -t rag-agent:latest .
# The build stage is Amazon Linux 2023 itself, so the binary links against
# the glibc the runtime image provides.

FROM public.ecr.aws/amazonlinux/amazonlinux:2023 AS build
ARG RUST_VERSION=1.90.0
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

FROM public.ecr.aws/lambda/provided:al2023
# The Lambda runtime interface starts `bootstrap` from the task root.
COPY --from=build /src/target/release/rag-agent ${LAMBDA_TASK_ROOT}/bootstrap
ENV RUST_LOG=info \
    METADATA_BACKEND=dynamodb \
    DOCUMENT_BACKEND=s3 \
    VECTOR_BACKEND=s3vectors \
    EMBEDDING_PROVIDER=bedrock \
    LLM_PROVIDER=bedrock \
    SEARCH_MODE=dense
ENTRYPOINT ["/var/task/bootstrap"]
CMD ["serve"]
