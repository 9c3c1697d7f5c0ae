package main

import "io"

// colorOK reports whether output to w may be coloured: only on a terminal,
// never with NO_COLOR set (https://no-color.org) or TERM=dumb. It is the
// one rule for every command's colours (the live view of up uses the same).
func colorOK(e *env, w io.Writer) bool {
	return isTerminal(w) && e.getenv("NO_COLOR") == "" && e.getenv("TERM") != "dumb"
}

// paint wraps s in the SGR colour code when on is set ("32" green, "31"
// red, "33" yellow).
func paint(on bool, code, s string) string {
	if !on {
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}
