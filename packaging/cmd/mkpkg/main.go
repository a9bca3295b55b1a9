// Command mkpkg builds Palisade's .deb and .rpm packages with nfpm.
//
//	go run . -root ../../.. -version 1.2.3 -out dist [-arch amd64,arm64] [-format deb,rpm]
//
// It cross-compiles the binaries (CGO_ENABLED=0) with the version stamped
// in, then packages them as packaging/nfpm/<package>.yaml describes (units
// from packaging/systemd, default configs from packaging/config, maintainer
// scripts from packaging/scripts).
//
// mkpkg is its own module (this directory's go.mod): nfpm brings some forty
// modules (go-git, ProtonMail's crypto, sprig, …) that the agent and the
// controller must not carry in their dependency graph, go.sum or
// vulnerability scans, and its own pins of x/crypto and x/sys would drag
// the product's versions around. Release tooling stays out of the product.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb"
	_ "github.com/goreleaser/nfpm/v2/rpm"
)

// binaries each package carries, by Go package path.
var packages = map[string][]string{
	"palisade-agent":      {"./agent/cmd/palisade-agent"},
	"palisade-controller": {"./controller/cmd/palisade-controller", "./controller/cmd/palisadectl"},
}

func main() {
	root := flag.String("root", ".", "repository root")
	version := flag.String("version", "0.0.0", "version to stamp and package (v1.2.3, 1.2.3, or a git describe)")
	out := flag.String("out", "dist", "output directory (relative to the root)")
	archs := flag.String("arch", "amd64,arm64", "GOARCH values")
	formats := flag.String("format", "deb,rpm", "package formats")
	pkgs := flag.String("pkg", "palisade-agent,palisade-controller", "packages to build")
	flag.Parse()
	if err := run(*root, *version, *out, split(*archs), split(*formats), split(*pkgs)); err != nil {
		fmt.Fprintln(os.Stderr, "mkpkg:", err)
		os.Exit(1)
	}
}

func split(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

var unsafeVersion = regexp.MustCompile(`[^A-Za-z0-9.+~]`)

// pkgVersion turns a tag or a git describe into a deb/rpm version: starts
// with a digit, no hyphen. Non-release builds sort before any release.
func pkgVersion(v string) string {
	v = strings.TrimPrefix(v, "v")
	if v == "" || v[0] < '0' || v[0] > '9' {
		v = "0.0.0~git" + v
	}
	return unsafeVersion.ReplaceAllString(v, ".")
}

func run(root, version, out string, archs, formats, pkgs []string) error {
	root, err := filepath.Abs(root)
	if err != nil {
		return err
	}
	if !filepath.IsAbs(out) {
		out = filepath.Join(root, out)
	}
	pv := pkgVersion(version)
	for _, arch := range archs {
		bin := filepath.Join(out, "bin", "linux_"+arch)
		var targets []string
		for _, p := range pkgs {
			t, ok := packages[p]
			if !ok {
				return fmt.Errorf("unknown package %q", p)
			}
			targets = append(targets, t...)
		}
		if err := build(root, arch, version, bin, targets); err != nil {
			return err
		}
		for _, p := range pkgs {
			for _, format := range formats {
				path, err := pack(root, p, format, arch, pv, bin, out)
				if err != nil {
					return fmt.Errorf("%s %s %s: %w", p, format, arch, err)
				}
				fmt.Println(path)
			}
		}
	}
	return nil
}

func build(root, arch, version, bin string, targets []string) error {
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return err
	}
	// PIE: ASLR for the binaries, and lintian takes a static Go binary for
	// a mistake unless it is position independent.
	args := append([]string{"build", "-trimpath", "-buildmode=pie", "-ldflags",
		"-s -w -X github.com/palisade-sec/palisade/internal/version.Version=" + version,
		"-o", bin + "/"}, targets...)
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch, "GOFLAGS=-buildvcs=false")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build (%s): %w", arch, err)
	}
	return nil
}

// changelog writes a one-entry chglog file for nfpm, which turns it into
// the Debian changelog lintian asks for.
func changelog(out, name, version, maintainer string) (string, error) {
	date := time.Now().UTC()
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			date = time.Unix(n, 0).UTC()
		}
	}
	who, email, _ := strings.Cut(maintainer, " <")
	entry := fmt.Sprintf(`- semver: %q
  date: %s
  packager: %q
  deb:
    urgency: medium
    distributions: [stable]
  changes:
    - commit: ""
      note: %q
      committer: {name: %q, email: %q}
`, version, date.Format(time.RFC3339), maintainer, "Palisade "+version+".", who, strings.TrimSuffix(email, ">"))
	path := filepath.Join(out, "changelog", name+".yml")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", err
	}
	return path, os.WriteFile(path, []byte(entry), 0o644)
}

func pack(root, name, format, arch, version, bin, out string) (string, error) {
	// nfpm resolves src paths against the working directory.
	if err := os.Chdir(filepath.Join(root, "packaging")); err != nil {
		return "", err
	}
	vars := map[string]string{"ARCH": arch, "VERSION": version, "BIN": bin}
	cfg, err := nfpm.ParseFileWithEnvMapping(filepath.Join("nfpm", name+".yaml"), func(k string) string { return vars[k] })
	if err != nil {
		return "", err
	}
	info, err := cfg.Get(format)
	if err != nil {
		return "", err
	}
	if format == "deb" {
		if info.Changelog, err = changelog(out, info.Name, version, info.Maintainer); err != nil {
			return "", err
		}
	}
	info = nfpm.WithDefaults(info)
	if err := nfpm.PrepareForPackager(info, format); err != nil {
		return "", err
	}
	packager, err := nfpm.Get(format)
	if err != nil {
		return "", err
	}
	path := filepath.Join(out, packager.ConventionalFileName(info))
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	if err := packager.Package(info, f); err != nil {
		f.Close()
		os.Remove(path)
		return "", err
	}
	return path, f.Close()
}
