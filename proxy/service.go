package proxy

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// serviceCommand is one command of the *otr service. Commands live in a
// table so that later ones (distrust, forget, set, …) are just new rows.
type serviceCommand struct {
	name    string
	aliases []string
	usage   string
	help    string
	minArgs int
	maxArgs int // -1: unlimited
	run     func(n *network, dc *downstream, args []string) error
}

// serviceCommands is the full table: generic commands plus OTR ones.
func serviceCommands() []serviceCommand {
	cmds := []serviceCommand{{
		name:    "help",
		usage:   "help [command]",
		help:    "list commands, or explain one",
		maxArgs: 1,
		run:     cmdHelp,
	}}
	cmds = append(cmds, otrCommands()...)
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].name < cmds[j].name })
	return cmds
}

// errUsage asks the dispatcher to print the command's usage.
var errUsage = errors.New("usage")

// lookupCommand finds a command by exact name or alias, else by unique
// prefix (case-insensitive).
func lookupCommand(cmds []serviceCommand, word string) (*serviceCommand, error) {
	word = strings.ToLower(word)
	for i := range cmds {
		if cmds[i].name == word {
			return &cmds[i], nil
		}
		for _, a := range cmds[i].aliases {
			if a == word {
				return &cmds[i], nil
			}
		}
	}
	var found []*serviceCommand
	for i := range cmds {
		if strings.HasPrefix(cmds[i].name, word) {
			found = append(found, &cmds[i])
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("unknown command %q; try: help", word)
	case 1:
		return found[0], nil
	}
	var names []string
	for _, c := range found {
		names = append(names, c.name)
	}
	return nil, fmt.Errorf("ambiguous command %q: %s", word, strings.Join(names, ", "))
}

// runService executes one line sent to *otr; replies go to dc only.
func (n *network) runService(dc *downstream, line string) {
	words, err := splitWords(line)
	if err != nil {
		n.notify(dc, "error: "+err.Error())
		return
	}
	if len(words) == 0 {
		n.notify(dc, "send \"help\" for the list of commands")
		return
	}
	cmd, err := lookupCommand(n.services, words[0])
	if err != nil {
		n.notify(dc, "error: "+err.Error())
		return
	}
	args := words[1:]
	if len(args) < cmd.minArgs || (cmd.maxArgs >= 0 && len(args) > cmd.maxArgs) {
		n.notify(dc, "usage: "+cmd.usage)
		return
	}
	if err := cmd.run(n, dc, args); err != nil {
		if errors.Is(err, errUsage) {
			n.notify(dc, "usage: "+cmd.usage)
			return
		}
		n.notify(dc, "error: "+err.Error())
	}
}

func cmdHelp(n *network, dc *downstream, args []string) error {
	if len(args) == 1 {
		cmd, err := lookupCommand(n.services, args[0])
		if err != nil {
			return err
		}
		n.notify(dc, cmd.usage+" — "+cmd.help)
		if len(cmd.aliases) > 0 {
			n.notify(dc, "aliases: "+strings.Join(cmd.aliases, ", "))
		}
		return nil
	}
	n.notify(dc, "commands (any unique prefix works; quote arguments with spaces):")
	for _, c := range n.services {
		n.notify(dc, "  "+c.usage+" — "+c.help)
	}
	return nil
}

// splitWords splits a command line like a shell: whitespace separates
// words, double or single quotes group, backslash escapes.
func splitWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	var quote rune
	escaped := false
	for _, r := range s {
		switch {
		case escaped:
			cur.WriteRune(r)
			escaped = false
		case r == '\\' && quote != '\'':
			escaped = true
			inWord = true
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '"' || r == '\'':
			quote = r
			inWord = true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, errors.New("unterminated quote")
	}
	if escaped {
		return nil, errors.New("trailing backslash")
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}
