package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
)

// BuildTags are the tags the operator's binary is built with; the Makefile's
// build target uses the same. kustomize_disable_go_plugin_support drops
// kustomize's Go plugin loader, whose import of "plugin" makes the linker
// export every symbol and keep every method: a third of the binary, mapped
// into every runner and manager process.
const BuildTags = "kustomize_disable_go_plugin_support"

// BuildOperator builds cmd/cooperator into out, static and with BuildTags,
// as `make build` does.
func BuildOperator(ctx context.Context, out string) error {
	root, err := RepoRoot()
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-tags", BuildTags, "-o", out, "./cmd/cooperator")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building the operator: %w\n%s", err, b)
	}
	return nil
}
