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
	modDir, err := moduleDir()
	if err != nil {
		return "", fmt.Errorf("build plugin: %w", err)
	}
	out, err := filepath.Abs(filepath.Join(dir, PluginBinaryName))
	if err != nil {
		return "", fmt.Errorf("build plugin: %w", err)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("build plugin: %w", err)
	}
	cmd := exec.Command(goBin, "build", "-o", out, PluginMainPackage)
	cmd.Dir = modDir
	// GOWORK=off keeps a go.work further up from changing the build list;
	// CGO_ENABLED=0 makes the build independent of a C toolchain (the plugin
	// has no cgo code of its own).
	cmd.Env = append(os.Environ(), "GOWORK=off", "CGO_ENABLED=0")
	var stderr bytes.Buffer
	cmd.Stdout = &stderr
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build plugin: go build %s: %w\n%s", PluginMainPackage, err, stderr.Bytes())
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
