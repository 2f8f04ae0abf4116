// Package image checks the product image as `make image` builds it, and that the Dockerfile
// builds from every file the program compiles.
package image

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cryptoassets/cryptoassets-operator/internal/testing/devstack/image"
)

func root(t *testing.T) string {
	t.Helper()
	r, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestProductImage builds the binary and the image as `make image` does, then reads the archive
// back: the user, the entrypoint, the labels, the CA bundle, and the program's own `version`.
func TestProductImage(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "cryptoassets")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=v9.8.7-test", "-o", bin, ".")
	build.Dir = root(t)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	archive := filepath.Join(dir, "image.tar")
	if err := image.WriteProduct(image.Product{Binary: bin, Tag: "cryptoassets-operator:v9.8.7-test", Version: "v9.8.7-test", Revision: "abc123"}, archive); err != nil {
		t.Fatal(err)
	}
	cf, program, err := image.Inspect(archive, "cryptoassets")
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if c.User != "65532:65532" {
		t.Errorf("user %q, want 65532:65532", c.User)
	}
	if len(c.Entrypoint) != 1 || c.Entrypoint[0] != "/cryptoassets" {
		t.Errorf("entrypoint %q", c.Entrypoint)
	}
	if cf.OS != "linux" || cf.Architecture == "" {
		t.Errorf("platform %s/%s", cf.OS, cf.Architecture)
	}
	if c.Labels["org.opencontainers.image.version"] != "v9.8.7-test" || c.Labels["org.opencontainers.image.revision"] != "abc123" {
		t.Errorf("labels %v", c.Labels)
	}
	for _, f := range []string{"etc/passwd", "etc/ssl/certs/ca-certificates.crt"} {
		if _, data, err := image.Inspect(archive, f); err != nil || len(data) == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	_, passwd, _ := image.Inspect(archive, "etc/passwd")
	if !strings.Contains(string(passwd), ":65532:65532:") {
		t.Errorf("/etc/passwd has no uid 65532:\n%s", passwd)
	}
	// The program in the image, run as it is: a static binary that prints the built version.
	extracted := filepath.Join(dir, "extracted")
	if err := os.WriteFile(extracted, program, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(extracted, "version").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "v9.8.7-test" {
		t.Fatalf("version in the image: %q %v", out, err)
	}
	if err := image.WriteProduct(image.Product{Binary: bin, Tag: "cryptoassets-operator:latest"}, filepath.Join(dir, "latest.tar")); err == nil ||
		!strings.Contains(err.Error(), "not latest") {
		t.Errorf("a :latest tag was not refused: %v", err)
	}
}

// TestDockerfileBuildsEveryFileOfTheProgram: the Dockerfile copies the whole context, and
// .dockerignore excludes no file the program compiles or embeds. A new package or a file moved
// anywhere is then in the build without touching the Dockerfile.
func TestDockerfileBuildsEveryFileOfTheProgram(t *testing.T) {
	r := root(t)
	df, err := os.ReadFile(filepath.Join(r, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	copiesAll := false
	for _, line := range strings.Split(string(df), "\n") {
		if f := strings.Fields(line); len(f) == 3 && strings.EqualFold(f[0], "COPY") && f[1] == "." && f[2] == "." {
			copiesAll = true
		}
	}
	if !copiesAll {
		t.Fatal("the Dockerfile's build stage must COPY . . (the whole context), or a new file of the program goes missing")
	}
	patterns := dockerignore(t, filepath.Join(r, ".dockerignore"))
	list := exec.Command("go", "list", "-deps", "-f", `{{if not .Standard}}{{.Dir}}{{range .GoFiles}} {{.}}{{end}}{{range .EmbedFiles}} {{.}}{{end}}{{end}}`, ".")
	list.Dir = r
	out, err := list.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], r+string(filepath.Separator)) && f[0] != r {
			continue // a module dependency, downloaded by `go mod download`
		}
		for _, name := range f[1:] {
			rel, _ := filepath.Rel(r, filepath.Join(f[0], name))
			n++
			if p := excluded(patterns, filepath.ToSlash(rel)); p != "" {
				t.Errorf("%s is part of the program but .dockerignore excludes it (%s)", rel, p)
			}
		}
	}
	if n < 50 {
		t.Fatalf("only %d files of the program found; go list output:\n%s", n, out)
	}
}

func dockerignore(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.HasPrefix(l, "!") {
			t.Fatalf(".dockerignore: exceptions (%s) are not understood by this test", l)
		}
		out = append(out, strings.TrimPrefix(l, "/"))
	}
	return out
}

// excluded returns the pattern that excludes rel: Docker's rules for what this project uses (a
// path and everything under it, a glob per segment, and a leading **/ for any depth).
func excluded(patterns []string, rel string) string {
	segs := strings.Split(rel, "/")
	for _, p := range patterns {
		anyDepth := strings.HasPrefix(p, "**/")
		ps := strings.Split(strings.TrimPrefix(p, "**/"), "/")
		for start := 0; start < len(segs); start++ {
			if !anyDepth && start > 0 {
				break
			}
			if start+len(ps) > len(segs) {
				break
			}
			match := true
			for i, s := range ps {
				if ok, _ := filepath.Match(s, segs[start+i]); !ok {
					match = false
					break
				}
			}
			if match {
				return p
			}
		}
	}
	return ""
}
