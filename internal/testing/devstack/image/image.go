// Package image builds the product image and the node's pause image without a Docker engine or a
// registry: one layer written from files on this machine onto an empty image, saved as a
// docker-archive that `ctr images import` (containerd) and `docker load` both take.
//
// Nothing is pulled: base images are unreachable from these machines, and the program is one
// static binary that needs only a user database, a CA bundle (block.io and blockchain.info are
// HTTPS) and a writable /tmp.
package image

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// NonRoot is the uid and gid the image runs as; the rendered pods run as the same (distroless'
// "nonroot", so the Dockerfile's image and this one agree).
const NonRoot = 65532

// HostCABundle is where Debian keeps the CA bundle Go's crypto/x509 reads on Linux.
const HostCABundle = "/etc/ssl/certs/ca-certificates.crt"

// Product describes the cryptoassets image.
type Product struct {
	// Binary is the static cryptoassets binary (CGO_ENABLED=0).
	Binary string
	// Tag names the image, e.g. cryptoassets-operator:v0.1.0. A tag of "latest" is refused:
	// a cluster would pull it on every start, and nothing can be pulled here.
	Tag string
	// Version and Revision go into the OCI labels.
	Version, Revision string
	// CABundle defaults to HostCABundle.
	CABundle string
}

// Pause describes the sandbox image containerd starts for every pod.
type Pause struct {
	Binary string
	Tag    string
}

// file is one entry of the image's single layer.
type file struct {
	path string
	mode int64
	uid  int
	data []byte
	dir  bool
}

// epoch fixes every timestamp, so the same inputs give the same image digest.
var epoch = time.Unix(0, 0).UTC()

// WriteProduct builds the product image and writes it to out.
func WriteProduct(p Product, out string) error {
	bin, err := os.ReadFile(p.Binary)
	if err != nil {
		return fmt.Errorf("reading the program: %w", err)
	}
	ca := p.CABundle
	if ca == "" {
		ca = HostCABundle
	}
	bundle, err := os.ReadFile(ca)
	if err != nil {
		return fmt.Errorf("reading the CA bundle (HTTPS backends verify with it; apt-get install ca-certificates): %w", err)
	}
	files := []file{
		{path: "cryptoassets", mode: 0o755, data: bin},
		{path: "etc", dir: true, mode: 0o755},
		{path: "etc/passwd", mode: 0o644, data: []byte(fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", NonRoot, NonRoot))},
		{path: "etc/group", mode: 0o644, data: []byte(fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", NonRoot))},
		{path: "etc/ssl", dir: true, mode: 0o755},
		{path: "etc/ssl/certs", dir: true, mode: 0o755},
		{path: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, data: bundle},
		{path: "home", dir: true, mode: 0o755},
		{path: "home/nonroot", dir: true, mode: 0o700, uid: NonRoot},
		{path: "tmp", dir: true, mode: 0o1777},
	}
	labels := map[string]string{
		"org.opencontainers.image.title":       "cryptoassets-operator",
		"org.opencontainers.image.description": "Kubernetes operator and helper service for applications that take and send cryptocurrency",
		"org.opencontainers.image.version":     p.Version,
		"org.opencontainers.image.revision":    p.Revision,
		"org.opencontainers.image.licenses":    "MIT",
	}
	cfg := v1.Config{
		User:       fmt.Sprintf("%d:%d", NonRoot, NonRoot),
		Entrypoint: []string{"/cryptoassets"},
		WorkingDir: "/",
		Labels:     labels,
	}
	return write(p.Tag, files, cfg, out)
}

// WritePause builds the pause image and writes it to out.
func WritePause(p Pause, out string) error {
	bin, err := os.ReadFile(p.Binary)
	if err != nil {
		return fmt.Errorf("reading the pause program: %w", err)
	}
	// The sandbox runs as whatever the pod's security context says; pause needs no files.
	cfg := v1.Config{Entrypoint: []string{"/pause"}, User: fmt.Sprintf("%d:%d", NonRoot, NonRoot)}
	return write(p.Tag, []file{{path: "pause", mode: 0o755, data: bin}}, cfg, out)
}

func write(tag string, files []file, cfg v1.Config, out string) error {
	ref, err := name.NewTag(tag)
	if err != nil {
		return fmt.Errorf("image tag %q: %w", tag, err)
	}
	if ref.TagStr() == "latest" {
		return fmt.Errorf("image tag %q: give a version, not latest (a cluster pulls :latest on every start)", tag)
	}
	layerTar, err := tarOf(files)
	if err != nil {
		return err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layerTar)), nil })
	if err != nil {
		return fmt.Errorf("making the layer: %w", err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.Config = cfg
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Created = v1.Time{Time: epoch}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	tmp := out + ".tmp"
	if err := tarball.WriteToFile(tmp, ref, img); err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	return os.Rename(tmp, out)
}

func tarOf(files []file) ([]byte, error) {
	sort.Slice(files, func(i, j int) bool { return files[i].path < files[j].path })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.path, Mode: f.mode, Uid: f.uid, Gid: f.uid, ModTime: epoch, Format: tar.FormatPAX}
		switch {
		case f.dir:
			h.Typeflag, h.Name = tar.TypeDir, f.path+"/"
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(f.data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Inspect reads an archive back: its config and the content of one file of its layers. Tests
// and `make image` use it to check what was built.
func Inspect(archive, path string) (*v1.ConfigFile, []byte, error) {
	img, err := tarball.ImageFromPath(archive, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("reading %s: %w", archive, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, nil, err
	}
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return cf, nil, fmt.Errorf("%s: no file %s in the image", archive, path)
		}
		if err != nil {
			return nil, nil, err
		}
		if h.Name == path {
			data, err := io.ReadAll(tr)
			return cf, data, err
		}
	}
}

// goBuild builds a static binary of pkg (relative to the repository root) into out.
func goBuild(ctx context.Context, root, pkg, out, version string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w -X main.version="+version, "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}

// BuildProduct builds the program from the repository at root and writes its image (tag) to
// dir/cryptoassets-operator.tar, for the test and dev stacks.
func BuildProduct(ctx context.Context, root, dir, tag, version string) (string, error) {
	bin := filepath.Join(dir, "cryptoassets")
	if err := goBuild(ctx, root, ".", bin, version); err != nil {
		return "", err
	}
	out := filepath.Join(dir, "cryptoassets-operator.tar")
	return out, WriteProduct(Product{Binary: bin, Tag: tag, Version: version}, out)
}

// BuildPause builds hack/pause and writes its image (tag) to dir/pause.tar.
func BuildPause(ctx context.Context, root, dir, tag string) (string, error) {
	bin := filepath.Join(dir, "pause")
	if err := goBuild(ctx, root, "./hack/pause", bin, ""); err != nil {
		return "", err
	}
	out := filepath.Join(dir, "pause.tar")
	return out, WritePause(Pause{Binary: bin, Tag: tag}, out)
}
