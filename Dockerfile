# One static binary serves as operator and helper. Build: make docker-build (needs a Docker engine).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY main.go ./
COPY api/ api/
COPY controllers/ controllers/
COPY internal/ internal/
ARG VERSION=dev
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/cryptoassets .

# distroless/static: no shell, no package manager; nonroot is uid 65532, the uid the rendered pods run as.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/cryptoassets /cryptoassets
USER 65532:65532
ENTRYPOINT ["/cryptoassets"]
