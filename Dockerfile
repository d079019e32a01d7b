# snappea's daemon in a container: a static binary on a distroless base,
# running as a non-root user, with the data directory as a volume.
#
#   docker build -t snappea .
#   docker run -d --name snappea -v snappea-data:/data --stop-timeout 30 snappea
#   docker exec snappea snappea status
#
# PKG builds another program of this module instead, for example a daemon
# built on package cli with your tasks, or the example web app
# (contrib/compose/compose.yaml does both).
#
# Stop timeout: on TERM the daemon lets running tasks finish for
# --graceful-timeout (10s), cancels them and exits a second later. Docker
# kills a container 10s after TERM unless told otherwise: give it more
# (docker stop -t 30, docker run --stop-timeout 30, compose
# stop_grace_period: 30s), always above the graceful timeout plus a few
# seconds.
#
# The build line below is checked by integration_test/contrib_test.go,
# which builds the binary with it and runs it: keep it on one line.

FROM golang:1.26 AS build
ARG PKG=./cmd/snappea
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags=-s -o /out/snappea $PKG
# The volume's mount point, owned by the runtime user: Docker copies it
# (and its owner) into a new named volume.
RUN mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/snappea /usr/local/bin/snappea
COPY --from=build --chown=nonroot:nonroot /out/data /data
USER nonroot:nonroot
ENV SNAPPEA_DIR=/data
VOLUME /data
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s CMD ["/usr/local/bin/snappea", "health"]
ENTRYPOINT ["/usr/local/bin/snappea"]
CMD ["run"]
