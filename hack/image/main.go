// Command image writes the product image (and, with -pause, the node's pause image) as a
// docker-archive under bin/, without a Docker engine: `make image`. Import it with
// `ctr -n k8s.io images import FILE` or `docker load -i FILE`.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/cryptoassets/cryptoassets-operator/internal/testing/devstack/image"
)

func main() {
	var (
		binary   = flag.String("binary", "bin/cryptoassets", "the static cryptoassets binary")
		tag      = flag.String("tag", "", "image name and tag, e.g. cryptoassets-operator:v0.1.0")
		version  = flag.String("version", "", "the version for the OCI labels")
		revision = flag.String("revision", "", "the source revision for the OCI labels")
		out      = flag.String("out", "", "the archive to write")
		pause    = flag.Bool("pause", false, "write the pause image from -binary instead")
	)
	flag.Parse()
	if *tag == "" || *out == "" {
		fmt.Fprintln(os.Stderr, "image: -tag and -out are required")
		os.Exit(2)
	}
	var err error
	if *pause {
		err = image.WritePause(image.Pause{Binary: *binary, Tag: *tag}, *out)
	} else {
		err = image.WriteProduct(image.Product{Binary: *binary, Tag: *tag, Version: *version, Revision: strings.TrimSpace(*revision)}, *out)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
	fmt.Println(*out)
}
