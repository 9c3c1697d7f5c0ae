package main

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// eventKeep is how many recent events an eventLog keeps.
const eventKeep = 50

// eventLog is the slog.Handler of `tunnels up` under its live view: it
// keeps the recent records as short lines for people, as docker compose
// shows its events,
//
//	12:03:41 db  reconnected to pod db-7c9f over websocket (was db-5d2a)
//
// with the time, the tunnel, the message and only the attributes a reader
// needs (pod, local address, delay, error) woven into the sentence: no
// key=value pairs. A record that repeats the tunnel's last one but for its
// delay (a retry after the same error) replaces it, counted, as the newest
// line, instead of pushing the others out.
type eventLog struct {
	level slog.Leveler
	attrs []slog.Attr // added with WithAttrs
	st    *eventState // shared by every handler derived from the first
}

type eventState struct {
	mu      sync.Mutex
	entries []event           // oldest first
	pods    map[string]string // tunnel → the pod it last connected to
	name    int               // the longest tunnel name seen, for alignment
}

// event is one line of the recent events.
type event struct {
	at     time.Time
	tunnel string
	text   string
	err    string // shown after the count, the line's most cut part
	key    string // what a repeat has in common: all but the time and delay
	n      int    // times in a row
}

// maxNameWidth caps the tunnel column of the recent events.
const maxNameWidth = 16

func newEventLog(level slog.Leveler) *eventLog {
	return &eventLog{level: level, st: &eventState{pods: map[string]string{}}}
}

// Enabled implements slog.Handler.
func (h *eventLog) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

// WithAttrs implements slog.Handler.
func (h *eventLog) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &eventLog{level: h.level, attrs: append(h.attrs[:len(h.attrs):len(h.attrs)], attrs...), st: h.st}
}

// WithGroup implements slog.Handler; the events have no groups.
func (h *eventLog) WithGroup(string) slog.Handler { return h }

// eventAttrs are the attributes an event line shows.
type eventAttrs struct {
	tunnel, pod, local, remote, err string
	delay                           time.Duration
	started, stopped                int64
	counts                          bool // started and stopped were given
}

// Handle implements slog.Handler.
func (h *eventLog) Handle(_ context.Context, r slog.Record) error {
	var a eventAttrs
	take := func(at slog.Attr) bool {
		v := at.Value.Resolve()
		switch at.Key {
		case "tunnel":
			a.tunnel = v.String()
		case "pod":
			a.pod = v.String()
			// "namespace/name": the table shows the namespace.
			a.pod = a.pod[strings.LastIndexByte(a.pod, '/')+1:]
		case "local":
			a.local = v.String()
		case "remote":
			a.remote = v.String()
		case "err":
			a.err = strings.Join(strings.Fields(v.String()), " ")
		case "delay":
			if v.Kind() == slog.KindDuration {
				a.delay = v.Duration()
			}
		case "start":
			a.started, a.counts = v.Int64(), true
		case "stop":
			a.stopped, a.counts = v.Int64(), true
		}
		return true
	}
	for _, at := range h.attrs {
		take(at)
	}
	r.Attrs(take)

	st := h.st
	st.mu.Lock()
	defer st.mu.Unlock()
	text := r.Message
	// The session logs "connected over websocket" (or spdy).
	via, connected := strings.CutPrefix(r.Message, "connected")
	connected = connected && (via == "" || strings.HasPrefix(via, " over "))
	switch {
	case connected && a.pod != "":
		switch was := st.pods[a.tunnel]; was {
		case "":
			text = "connected to pod " + a.pod + via
		case a.pod:
			text = "reconnected to pod " + a.pod + via
		default:
			text = "reconnected to pod " + a.pod + via + " (was " + was + ")"
		}
		st.pods[a.tunnel] = a.pod
	case a.pod != "":
		text += " (pod " + a.pod + ")"
	}
	if a.local != "" {
		text += " on " + localhostPair(a.local)
		if a.remote != "" {
			text += "->" + a.remote
		}
	}
	if a.delay > 0 {
		text += " in " + a.delay.Round(100*time.Millisecond).String()
	}
	if a.counts {
		text += fmt.Sprintf(" (%d started, %d stopped)", a.started, a.stopped)
	}
	e := event{at: r.Time, tunnel: a.tunnel, text: text, err: a.err, key: strings.Join([]string{r.Message, a.pod, a.local, a.err}, "\x00"), n: 1}
	for i := len(st.entries) - 1; i >= 0; i-- {
		if st.entries[i].tunnel != a.tunnel {
			continue
		}
		if st.entries[i].key == e.key && !connected {
			e.n += st.entries[i].n
			st.entries = slices.Delete(st.entries, i, i+1)
		}
		break
	}
	st.entries = append(st.entries, e)
	if len(st.entries) > eventKeep {
		st.entries = st.entries[len(st.entries)-eventKeep:]
	}
	st.name = min(max(st.name, utf8.RuneCountInString(a.tunnel)), maxNameWidth)
	return nil
}

// lines renders the last n events, oldest first.
func (h *eventLog) lines(n int) []string {
	st := h.st
	st.mu.Lock()
	defer st.mu.Unlock()
	entries := st.entries[max(len(st.entries)-n, 0):]
	out := make([]string, 0, len(entries))
	for _, e := range entries {
		name := cutEnd(e.tunnel, st.name)
		line := e.at.Format("15:04:05") + " " + name + strings.Repeat(" ", st.name-utf8.RuneCountInString(name)) + "  " + e.text
		if e.n > 1 {
			line += fmt.Sprintf(" (x%d)", e.n)
		}
		if e.err != "" {
			line += ": " + e.err
		}
		out = append(out, line)
	}
	return out
}

// localhostPair writes the addresses "127.0.0.1:P,[::1]:P" (either order)
// as "localhost:P", and others as they are.
func localhostPair(local string) string {
	a, b, ok := strings.Cut(local, ",")
	if !ok {
		return local
	}
	if strings.HasPrefix(a, "[::1]:") {
		a, b = b, a
	}
	if p, ok := strings.CutPrefix(a, "127.0.0.1:"); ok && b == "[::1]:"+p {
		return "localhost:" + p
	}
	return local
}
