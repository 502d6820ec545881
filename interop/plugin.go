// Package interop holds the helpers for checking ssm-proxy against the
// official AWS session-manager-plugin (module
// github.com/aws/session-manager-plugin). It is a separate module so that
// the official client and its dependencies never enter the main module's
// build list. See NOTES.md for what the official client does on the wire.
package interop

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// PluginMainPackage is the import path of the official plugin's main
// package inside the required module version.
const PluginMainPackage = "github.com/aws/session-manager-plugin/src/sessionmanagerplugin-main"

// PluginVersion is what the required module version prints for --version
// (src/version/version.go) and sends as ClientVersion.
const PluginVersion = "1.3.0.0"

// PluginBinaryName is the file name BuildPlugin writes in its directory.
const PluginBinaryName = "session-manager-plugin"

// BuildPlugin builds the official session-manager-plugin into
// dir/session-manager-plugin and returns that path. It runs the go command
// found on PATH (go test puts its own toolchain first) inside this module, so
// the versions pinned in interop/go.mod are the ones built. The first build
// downloads modules and takes tens of seconds; later builds hit the cache.
func BuildPlugin(dir string) (path string, err error) {
	path, err = goBuild(dir, PluginBinaryName, PluginMainPackage)
	if err != nil {
		return "", fmt.Errorf("build plugin: %w", err)
	}
	return path, nil
}

// ShimPackage is the import path of cmd/startsession-shim, which does what
// `aws ssm start-session` does for an ssh ProxyCommand: it calls
// StartSession itself and execs the official plugin with the CLI's argv
// (docs/protocol.md §1.6). It only talks to loopback endpoints.
const ShimPackage = "github.com/ssm-proxy/ssm-proxy/interop/cmd/startsession-shim"

// ShimBinaryName is the file name BuildStartSessionShim writes in its
// directory.
const ShimBinaryName = "startsession-shim"

// BuildStartSessionShim builds cmd/startsession-shim into
// dir/startsession-shim and returns that path.
func BuildStartSessionShim(dir string) (path string, err error) {
	path, err = goBuild(dir, ShimBinaryName, ShimPackage)
	if err != nil {
		return "", fmt.Errorf("build startsession-shim: %w", err)
	}
	return path, nil
}

// goBuild runs `go build -o dir/name pkg` inside this module.
func goBuild(dir, name, pkg string) (string, error) {
	modDir, err := moduleDir()
	if err != nil {
		return "", err
	}
	out, err := filepath.Abs(filepath.Join(dir, name))
	if err != nil {
		return "", err
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", err
	}
	cmd := exec.Command(goBin, "build", "-o", out, pkg)
	cmd.Dir = modDir
	// GOWORK=off keeps a go.work further up from changing the build list;
	// CGO_ENABLED=0 makes the build independent of a C toolchain (neither
	// program has cgo code of its own).
	cmd.Env = append(os.Environ(), "GOWORK=off", "CGO_ENABLED=0")
	var stderr bytes.Buffer
	cmd.Stdout = &stderr
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, stderr.Bytes())
	}
	return out, nil
}

// moduleDir returns the directory holding interop/go.mod: the directory of
// this source file, or, when the binary was built with -trimpath, the
// working directory (go test runs in the package directory).
func moduleDir() (string, error) {
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		dir := filepath.Dir(file)
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		return "", errors.New("cannot find the interop module directory")
	}
	return dir, nil
}
