package interop

// The official plugin builds from this module and reports the version the
// AWS CLI accepts and PluginVersion names. Running it against the emulator
// is plugin_e2e_test.go's, portforward_e2e_test.go's and
// cellmove_e2e_test.go's. Skipped with -short.

import (
	"context"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// versionRE is the shape the AWS CLI accepts from `--version` before it
// hands the StartSession response to the plugin (docs/protocol.md §1.6).
var versionRE = regexp.MustCompile(`^\d+(\.\d+){0,3}$`)

func TestBuildPluginVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the official plugin (slow on a cold cache)")
	}
	bin, err := BuildPlugin(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--version")
	// --version returns before the plugin looks at credentials or the
	// network; an empty HOME keeps it away from any real AWS config anyway.
	cmd.Env = []string{"HOME=" + t.TempDir(), "AWS_EC2_METADATA_DISABLED=true"}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s --version: %v", bin, err)
	}
	got := strings.TrimSpace(string(out))
	if !versionRE.MatchString(got) {
		t.Fatalf("--version printed %q, want a dotted version", got)
	}
	if got != PluginVersion {
		t.Errorf("--version = %q, want %q", got, PluginVersion)
	}
}
