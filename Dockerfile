# The imds container image: the static binary, CA certificates and a
# non-root user, FROM scratch (no shell: HEALTHCHECK runs imds healthcheck).
#
# The binary is built on the host, not in a golang build stage, so that the
# image is built where no registry can be reached (no image to pull), from
# the same static release binary as make dist. make image does all of it:
#
#   make image                     # builds dist/image/imds, then this file
#   docker build --build-arg BASE=debian:bookworm-slim -f Dockerfile dist/image
#
# The build context is a directory holding the binary as ./imds. BASE is
# any Debian image for the first stage (make image imports a debootstrap
# root as imds-build-base:bookworm, scripts/base-image.sh); it contributes
# only /etc/ssl/certs/ca-certificates.crt, for STS and the aws source.
ARG BASE=debian:bookworm-slim

FROM ${BASE} AS rootfs
COPY imds /rootfs/usr/bin/imds
RUN set -eu; \
    test -s /etc/ssl/certs/ca-certificates.crt; \
    mkdir -p /rootfs/etc/ssl/certs /rootfs/var/lib/imds /rootfs/run/imds /rootfs/tmp; \
    cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/; \
    echo 'imds:x:65532:65532:imds:/var/lib/imds:/nonexistent' > /rootfs/etc/passwd; \
    echo 'imds:x:65532:' > /rootfs/etc/group; \
    chown 65532:65532 /rootfs/var/lib/imds /rootfs/run/imds; \
    chmod 0750 /rootfs/var/lib/imds /rootfs/run/imds; \
    chmod 1777 /rootfs/tmp; \
    chmod 0755 /rootfs/usr/bin/imds; \
    /rootfs/usr/bin/imds version

FROM scratch
COPY --from=rootfs /rootfs/ /
USER 65532:65532
ENV IMDS_LISTEN=0.0.0.0:1338 \
    IMDS_DATA_DIR=/var/lib/imds \
    IMDS_ADMIN_SOCKET=/run/imds/admin.sock
VOLUME ["/var/lib/imds"]
EXPOSE 1338
HEALTHCHECK --interval=10s --timeout=6s --start-period=5s --retries=3 \
    CMD ["/usr/bin/imds", "healthcheck", "--url", "http://127.0.0.1:1338/"]
ENTRYPOINT ["/usr/bin/imds"]
CMD ["serve"]
