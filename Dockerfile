# One static binary serves as operator and helper. `make docker-build` builds this with a Docker
# engine; `make image` builds the same image without one (internal/testing/devstack/image).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
# The whole context: every package of the program comes along whatever its name or place.
# .dockerignore keeps out only what the program never builds from (test/dockerfile_test.go
# checks that no file the program compiles is excluded).
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/cryptoassets .

# distroless/static: no shell, no package manager, a CA bundle; nonroot is uid 65532, the uid
# the rendered pods run as.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/cryptoassets /cryptoassets
USER 65532:65532
ENTRYPOINT ["/cryptoassets"]
