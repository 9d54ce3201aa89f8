package proxy

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"otrbnc/proxy/config"
)

// serviceCommand is one command of the *otr service. The table of
// commands drives the dispatcher, "help" and docs/commands.md.
type serviceCommand struct {
	name    string
	aliases []string
	// usage is the synopsis, starting with the name.
	usage string
	// help is a one-line summary; details, optional, says more (help
	// <command> and the reference).
	help    string
	details string
	// examples are command lines as typed after /msg *otr.
	examples []string
	minArgs  int
	maxArgs  int // -1: unlimited
	// raw makes the last argument the rest of the line exactly as typed
	// (no quoting), after maxArgs-1 ordinary words.
	raw bool
	run func(n *network, dc *downstream, args []string) error
}

// serviceCommands is the full table, sorted by name.
func serviceCommands() []serviceCommand {
	cmds := []serviceCommand{{
		name:     "help",
		usage:    "help [command]",
		help:     "list the commands, or explain one",
		examples: []string{"help", "help trust"},
		maxArgs:  1,
		run:      cmdHelp,
	}}
	cmds = append(cmds, otrCommands()...)
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].name < cmds[j].name })
	return cmds
}

// errUsage asks the dispatcher to print the command's usage.
var errUsage = errors.New("usage")

// lookupCommand finds a command by exact name or alias, else by unique
// prefix of a name or alias (case-insensitive).
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
		match := strings.HasPrefix(cmds[i].name, word)
		for _, a := range cmds[i].aliases {
			match = match || strings.HasPrefix(a, word)
		}
		if match {
			found = append(found, &cmds[i])
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("unknown command %q; send \"help\" for the list", word)
	case 1:
		return found[0], nil
	}
	var names []string
	for _, c := range found {
		names = append(names, c.name)
	}
	return nil, fmt.Errorf("ambiguous command %q: it could be %s", word, strings.Join(names, ", "))
}

// runService executes one line sent to *otr; replies go to dc only.
func (n *network) runService(dc *downstream, line string) {
	first, rest := cutWord(line)
	if first == "" {
		n.tellClient(dc, "send \"help\" for the list of commands")
		return
	}
	name, err := splitWords(first)
	if err != nil || len(name) != 1 {
		n.tellClient(dc, "error: send \"help\" for the list of commands")
		return
	}
	cmd, err := lookupCommand(n.services, name[0])
	if err != nil {
		n.tellClient(dc, "error: "+err.Error())
		return
	}
	var args []string
	if cmd.raw {
		args, err = splitRaw(rest, cmd.maxArgs)
	} else {
		args, err = splitWords(rest)
	}
	if err != nil {
		n.tellClient(dc, "error: "+err.Error()+` (quote arguments with "…" or '…', escape with \)`)
		return
	}
	if len(args) < cmd.minArgs || (cmd.maxArgs >= 0 && len(args) > cmd.maxArgs) {
		n.tellClient(dc, "usage: "+cmd.usage)
		return
	}
	if err := cmd.run(n, dc, args); err != nil {
		if errors.Is(err, errUsage) {
			n.tellClient(dc, "usage: "+cmd.usage)
			return
		}
		n.tellClient(dc, "error: "+err.Error())
	}
}

func cmdHelp(n *network, dc *downstream, args []string) error {
	if len(args) == 1 {
		cmd, err := lookupCommand(n.services, args[0])
		if err != nil {
			return err
		}
		n.tellClient(dc, "usage: "+cmd.usage+" — "+cmd.help)
		if cmd.details != "" {
			n.tellClient(dc, cmd.details)
		}
		if len(cmd.aliases) > 0 {
			n.tellClient(dc, "aliases: "+strings.Join(cmd.aliases, ", "))
		}
		for _, ex := range cmd.examples {
			n.tellClient(dc, "example: /msg *otr "+ex)
		}
		if cmd.name == "set" {
			for _, s := range settingsTable {
				n.tellClient(dc, fmt.Sprintf("  %s = %s (%s) — %s", s.name, n.setting(s.name), s.values, s.help))
			}
		}
		return nil
	}
	n.tellClient(dc, "commands (any unique prefix works; quote arguments with spaces; help <command> explains one):")
	for _, c := range n.services {
		n.tellClient(dc, "  "+c.usage+" — "+c.help)
	}
	return nil
}

// cutWord splits off the first whitespace-separated word of s, as typed.
func cutWord(s string) (word, rest string) {
	s = strings.TrimLeft(s, " \t")
	if i := strings.IndexAny(s, " \t"); i >= 0 {
		return s[:i], s[i+1:]
	}
	return s, ""
}

// splitRaw splits s into at most max arguments: max-1 shell-like words,
// then the rest of the line exactly as typed (leading blanks removed).
func splitRaw(s string, max int) ([]string, error) {
	var out []string
	for len(out) < max-1 {
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			return out, nil
		}
		var w string
		w, s = cutWord(s)
		words, err := splitWords(w)
		if err != nil {
			return nil, err
		}
		out = append(out, strings.Join(words, ""))
	}
	if s = strings.TrimLeft(s, " \t"); s != "" {
		out = append(out, s)
	}
	return out, nil
}

// splitWords splits a command line like a shell: blanks separate words,
// double or single quotes group, a backslash escapes the next character
// (outside single quotes).
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

// renderCommandsDoc renders docs/commands.md from the command and
// settings tables.
func renderCommandsDoc() string {
	var b strings.Builder
	b.WriteString(commandsDocIntro)
	b.WriteString("\n## Commands\n\n| Command | What it does |\n|---|---|\n")
	cmds := serviceCommands()
	for _, c := range cmds {
		fmt.Fprintf(&b, "| [`%s`](#%s) | %s |\n", mdCode(c.usage), c.name, mdCell(c.help))
	}
	for _, c := range cmds {
		fmt.Fprintf(&b, "\n### %s\n\n```\n%s\n```\n\n%s.", c.name, c.usage, mdText(capitalize(c.help)))
		if c.details != "" {
			b.WriteString(" " + mdText(c.details))
		}
		b.WriteString("\n")
		if len(c.aliases) > 0 {
			fmt.Fprintf(&b, "\n%s: %s.\n", plural("Alias", "Aliases", len(c.aliases)), "`"+strings.Join(c.aliases, "`, `")+"`")
		}
		if len(c.examples) > 0 {
			b.WriteString("\n" + plural("Example", "Examples", len(c.examples)) + ":\n\n```\n")
			for _, ex := range c.examples {
				b.WriteString("/msg *otr " + ex + "\n")
			}
			b.WriteString("```\n")
		}
	}
	b.WriteString("\n## Settings\n\nShown with `set`, changed with `set <name> <value>`, back to the configuration file's value with `set <name> unset`.\n\n| Setting | Values | Default | What it does |\n|---|---|---|---|\n")
	for _, s := range settingsTable {
		def := map[string]string{
			"marker":        "`plaintext_marker` of the configuration (`" + config.DefaultPlaintextMarker + "`)",
			"fragment_size": "`fragment_size` of the configuration (`auto`)",
		}[s.name]
		if def == "" {
			def = "`" + s.def(nil) + "`"
		}
		fmt.Fprintf(&b, "| `%s` | `%s` | %s | %s |\n", s.name, mdCode(s.values), def, mdCell(s.help))
	}
	b.WriteString(commandsDocEvents)
	return b.String()
}

// mdCode escapes text inside a code span in a table cell.
func mdCode(s string) string { return strings.ReplaceAll(s, "|", "\\|") }

// mdText escapes Markdown emphasis in running text ("*otr", "*serv").
func mdText(s string) string { return strings.ReplaceAll(s, "*", "\\*") }

// mdCell escapes running text in a table cell.
func mdCell(s string) string { return mdText(mdCode(s)) }

func plural(one, many string, n int) string {
	if n == 1 {
		return one
	}
	return many
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

const commandsDocIntro = `# The *otr service: command reference

<!-- Generated from the command table in proxy/commands.go by
     go test ./proxy -run TestCommandsDoc -update
     Do not edit by hand: TestCommandsDoc fails when this file and the
     table differ. -->

Every network in otrbnc has its own ` + "`*otr`" + ` service. Talk to it from
your IRC client:

` + "```" + `
/msg *otr help
` + "```" + `

- Command names are case-insensitive, and any unique prefix works
  (` + "`fing bob`" + ` is ` + "`fingerprint bob`" + `). An ambiguous prefix is reported
  with the commands it could mean.
- Arguments are separated by spaces. Quote an argument that contains spaces
  with ` + "`\"…\"`" + ` or ` + "`'…'`" + `, or escape a character with a backslash:
  ` + "`authq bob \"Where did we meet?\" \"the old pier\"`" + `.
  The text of ` + "`plain`" + ` is taken exactly as typed.
- Nicks are compared with the network's CASEMAPPING, so ` + "`Bob`" + `,
  ` + "`bob`" + ` and (on most networks) ` + "`BOB`" + ` are the same peer.
- Replies go only to the client that sent the command. Events (a private
  conversation starting or ending, verification requests and results,
  unencrypted messages, a peer's key changing) go to every attached client,
  each line starting with ` + "`[nick]`" + `. Events that happen while a client is
  away are kept in memory (at least the latest 100, or ` + "`backlog_lines`" + `) and
  shown to it when it attaches again, with the time they happened
  (user-guide.md, "Several clients"); verification questions still waiting
  for your answer are repeated then too.
- ` + "`*otr`" + ` talks with PRIVMSG, or NOTICE after ` + "`set notify notice`" + `.
  Nobody on the network can speak as ` + "`*otr`" + `: otrbnc drops anything from
  that nick.
- Policies, the ignore list and settings changed here are saved in the
  state directory (` + "`settings-NETWORK.json`" + `) and survive restarts; they take
  precedence over the configuration file. Fingerprints and trust are saved
  in the keystore.
`

const commandsDocEvents = `
## Policies

| Policy | Meaning |
|---|---|
| ` + "`never`" + ` | OTR is off: messages go in clear, OTR requests are not answered. |
| ` + "`manual`" + ` | OTR starts only when you (` + "`start`" + `) or the peer ask; the default. |
| ` + "`opportunistic`" + ` | Like manual, and plaintext messages carry the OTR whitespace tag so that OTR starts by itself with peers that support it (see ` + "`set whitespace_tags`" + `). |
| ` + "`always`" + ` | Nothing is sent in clear: messages typed before the private conversation is up are queued, sent once it starts, and never dropped silently. Use ` + "`plain`" + ` for a deliberate exception. |

Which policy applies to a nick, first match wins: the ignore list (ignored
nicks are never touched: ` + "`never`" + `), a policy set for that exact nick (with
` + "`*otr`" + `, then in the configuration file), masks in the order they were
added, ` + "`policy known`" + ` when a fingerprint of that nick is known, then
` + "`policy default`" + ` (or the configuration file's ` + "`policy`" + `).

## History and playback

Messages an upstream bouncer replays (inside a ` + "`chathistory`" + ` or playback
batch, or with a ` + "`time`" + ` tag more than a minute old) are never given to the
OTR engine: encrypted ones cannot be decrypted any more, and trying would send
errors to the peer. They are shown as
` + "`[OTR message from history, cannot be decrypted]`" + `.
`
