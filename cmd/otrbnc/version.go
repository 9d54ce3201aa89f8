package main

import (
	"context"
	"flag"
	"fmt"
	"runtime"
	"runtime/debug"
)

var versionCommand = subcommand{
	name:     "version",
	synopsis: "",
	summary:  "print otrbnc's version",
	help: `
Prints otrbnc's version, the same one "/msg *otr version" shows in your IRC
client, with the OTR protocol versions it speaks and the Go version it was
built with. Include it when you report a problem.

Examples:
  otrbnc version
  otrbnc --version
`,
	setup: func(fs *flag.FlagSet) runFunc {
		return func(ctx context.Context, sio stdio, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("unexpected arguments %q (see: otrbnc version -h)", args)
			}
			fmt.Fprintf(sio.out, "otrbnc %s (OTR protocol versions 3 and 2; built with %s)\n", versionString(), runtime.Version())
			return nil
		}
	},
}

// version is otrbnc's version, shown by "otrbnc version" and
// "/msg *otr version"; a release build sets it with
// -ldflags "-X main.version=…". Empty means the module version or VCS
// revision from the build information.
var version = ""

// versionString returns the version to show.
func versionString() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	switch {
	case rev == "":
		return "devel"
	case dirty:
		return "devel-" + rev + "-dirty"
	}
	return "devel-" + rev
}
