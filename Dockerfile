# fetchd container image: static binaries on an empty base, run as 65532.
#
#   docker build -t fetchd .
#   docker run --rm -p 50051:50051 fetchd
#
# GO_VERSION must be at least the go line of go.mod.
ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src

# Modules first, in their own layer: it is rebuilt only when go.mod or go.sum change.
COPY go.mod go.sum ./
RUN go mod download

COPY . .
# fetchd always; fetchctl when its command exists in this tree.
RUN set -eu; \
    for cmd in fetchd fetchctl; do \
        if [ -d "./cmd/$cmd" ]; then \
            CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o "/out/$cmd" "./cmd/$cmd"; \
        fi; \
    done; \
    test -x /out/fetchd

# The final image's file system: the binaries, CA certificates for https
# upstreams, and a passwd and group naming the unprivileged user 65532.
RUN set -eu; \
    mkdir -p /rootfs/etc/ssl/certs /rootfs/tmp; \
    chmod 1777 /rootfs/tmp; \
    cp /out/* /rootfs/; \
    cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/; \
    echo 'nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin' > /rootfs/etc/passwd; \
    echo 'nonroot:x:65532:' > /rootfs/etc/group

FROM scratch
COPY --from=build /rootfs/ /
USER 65532:65532
# gRPC, and metrics (-metrics-listen).
EXPOSE 50051 9090
ENTRYPOINT ["/fetchd"]
CMD ["-listen=:50051"]
