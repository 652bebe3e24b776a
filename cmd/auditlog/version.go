package main

import (
	"cmp"
	"context"
	"fmt"
	"runtime/debug"
)

// runVersion prints the module's version and the VCS revision the binary
// was built from, as the Go toolchain stamped them.
func runVersion(_ context.Context, e env, args []string) error {
	fs := newFlagSet(e, "version", "")
	if err := fs.Parse(args); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, version())
	return nil
}

// version is "auditlog VERSION (revision REV[, modified], GOVERSION)".
func version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "auditlog (no build information)"
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	rev := cmp.Or(settings["vcs.revision"], "unknown")
	if settings["vcs.modified"] == "true" {
		rev += ", modified"
	}
	return fmt.Sprintf("auditlog %s (revision %s, %s)", cmp.Or(info.Main.Version, "(devel)"), rev, info.GoVersion)
}
