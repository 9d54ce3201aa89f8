package proxy

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite docs/commands.md from the *otr command table")

// TestCommandsDoc keeps docs/commands.md in step with the command table:
// it renders the table and compares. Regenerate with
//
//	go test ./proxy -run TestCommandsDoc -update
func TestCommandsDoc(t *testing.T) {
	path := filepath.Join("..", "docs", "commands.md")
	want := renderCommandsDoc()
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (generate it with: go test ./proxy -run TestCommandsDoc -update)", err)
	}
	if string(got) != want {
		gl, wl := strings.Split(string(got), "\n"), strings.Split(want, "\n")
		for i := 0; i < len(gl) || i < len(wl); i++ {
			var g, w string
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if g != w {
				t.Fatalf("docs/commands.md is out of date at line %d:\n file:  %q\n table: %q\nregenerate it with: go test ./proxy -run TestCommandsDoc -update", i+1, g, w)
			}
		}
	}
}

// TestSetHelpNamesSettings checks that the command list names every
// setting in the set row (it once promised a list "below" that help never
// showed).
func TestSetHelpNamesSettings(t *testing.T) {
	set, err := lookupCommand(serviceCommands(), "set")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range settingsTable {
		if !strings.Contains(set.help, s.name) {
			t.Errorf("the help line of set does not name the setting %s: %q", s.name, set.help)
		}
	}
	if strings.Contains(set.help+set.details, "below") {
		t.Errorf("help output has no \"below\": %q", set.help)
	}
}

// TestStatusHelpExplainsSessionID checks that help status tells which half
// of the session id to read aloud.
func TestStatusHelpExplainsSessionID(t *testing.T) {
	status, err := lookupCommand(serviceCommands(), "status")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"session id", "[e5f6a7b8]", "half in brackets aloud"} {
		if !strings.Contains(status.details, want) {
			t.Errorf("help status does not say %q: %q", want, status.details)
		}
	}
}

// TestCommandTable checks the table itself: every command has usage,
// help and an example that the dispatcher accepts, and no name or alias
// is used twice.
func TestCommandTable(t *testing.T) {
	seen := map[string]string{}
	for _, c := range serviceCommands() {
		if !strings.HasPrefix(c.usage, c.name) || c.help == "" || len(c.examples) == 0 || c.run == nil {
			t.Errorf("command %s: incomplete row", c.name)
		}
		for _, w := range append([]string{c.name}, c.aliases...) {
			if other, dup := seen[w]; dup {
				t.Errorf("%q names both %s and %s", w, other, c.name)
			}
			seen[w] = c.name
		}
		for _, ex := range c.examples {
			first, rest := cutWord(ex)
			got, err := lookupCommand(serviceCommands(), first)
			if err != nil || got.name != c.name {
				t.Errorf("example %q does not run %s: %v", ex, c.name, err)
				continue
			}
			var args []string
			if c.raw {
				args, err = splitRaw(rest, c.maxArgs)
			} else {
				args, err = splitWords(rest)
			}
			if err != nil || len(args) < c.minArgs || (c.maxArgs >= 0 && len(args) > c.maxArgs) {
				t.Errorf("example %q: bad arguments %q (%v)", ex, args, err)
			}
		}
	}
}
