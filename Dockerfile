# The operator's image: one static binary, the CA certificates, nothing else; it runs as
# user 65532. scripts/build-image.sh builds the same image where no container engine runs.
ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
COPY . .
# glibc, linked statically: the final image has no C library to load. (The musl targets
# would do too, where they can be installed.)
ENV RUSTFLAGS="-C target-feature=+crt-static"
RUN cargo build --release --locked --target x86_64-unknown-linux-gnu --bin patchkeeper \
    && cp target/x86_64-unknown-linux-gnu/release/patchkeeper /patchkeeper \
    && { ldd /patchkeeper 2>&1 | grep -Eq 'not a dynamic executable|statically linked'; }

FROM scratch
COPY --from=builder /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=builder --chmod=0755 /patchkeeper /patchkeeper
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
ENTRYPOINT ["/patchkeeper"]
CMD ["run"]
