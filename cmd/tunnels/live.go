package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The live view of `tunnels up` on a terminal, as docker compose shows its
// services: a header, the table of ports cut to the terminal's width, and
// the recent events as short lines (events.go). Long cells are cut with an
// ellipsis; `tunnels status -o json` and `--output log` keep them whole.

// liveRecent is how many recent events the view shows at most.
const liveRecent = 8

// liveInterval is how often the view is redrawn.
const liveInterval = 500 * time.Millisecond

// liveView redraws the status of a running `tunnels up` in place.
type liveView struct {
	w      io.Writer
	report func() statusReport
	events *eventLog
	// size returns the terminal's columns and rows; 0 if unknown (then 80
	// columns, and no limit on rows).
	size func() (cols, rows int)
	// color paints the states: only on a terminal, and never with NO_COLOR.
	color bool
}

// newLiveView returns the view of report and events on e's stdout, a
// terminal: its size asked at each frame ($COLUMNS if it will not say),
// its states in colour unless NO_COLOR is set (https://no-color.org) or
// TERM is dumb.
func newLiveView(e *env, report func() statusReport, events *eventLog) *liveView {
	return &liveView{
		w: e.stdout, report: report, events: events,
		size: func() (int, int) {
			cols, rows := termSize(e.stdout)
			if cols <= 0 {
				cols, _ = strconv.Atoi(e.getenv("COLUMNS"))
			}
			return cols, rows
		},
		color: colorOK(e, e.stdout),
	}
}

// run redraws the view until ctx ends.
func (v *liveView) run(ctx context.Context) {
	t := time.NewTicker(liveInterval)
	defer t.Stop()
	wipe := "\x1b[2J" // the first frame clears the screen
	for {
		cols, rows := v.size()
		if cols <= 0 {
			cols = 80
		}
		var events []string
		if v.events != nil {
			events = v.events.lines(liveRecent)
		}
		frame := renderFrame(v.report(), events, cols, rows, v.color)
		// Cursor home; each line clears what an older, longer frame left
		// on it; the end clears the lines below.
		var b strings.Builder
		b.WriteString(wipe + "\x1b[H")
		wipe = ""
		for _, l := range frame {
			b.WriteString(l + "\x1b[K\n")
		}
		b.WriteString("\x1b[J")
		_, _ = io.WriteString(v.w, b.String())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// renderFrame lays out one frame of the view, no line wider than cols
// (colour codes aside) and, when rows is known, the recent events cut to
// what fits below the table.
func renderFrame(r statusReport, events []string, cols, rows int, color bool) []string {
	title := "tunnels up -f " + r.File
	ns := sharedNamespace(r.Tunnels)
	if ns != "" {
		title += " · namespace " + ns
	}
	lines := []string{
		fitLine(title+" · Ctrl-C to stop", cols),
		"",
	}
	lines = append(lines, liveTable(r.Tunnels, ns, cols, color)...)
	if r.Config.Error != "" {
		lines = append(lines, "", fitLine("the last save of "+r.File+" was rejected; still running the last good config:", cols))
		for _, l := range strings.Split(r.Config.Error, "\n") {
			lines = append(lines, fitLine(l, cols))
		}
	}
	if len(events) == 0 {
		return lines
	}
	if rows > 0 {
		// Two lines for the gap and the title, one left empty at the bottom
		// so the terminal does not scroll.
		room := max(rows-len(lines)-3, 0)
		events = events[max(len(events)-room, 0):]
		if len(events) == 0 {
			return lines
		}
	}
	lines = append(lines, "", "recent:")
	for _, e := range events {
		lines = append(lines, fitLine("  "+e, cols))
	}
	return lines
}

// A liveColumn is one column of the live table.
type liveColumn struct {
	title string
	cells []string
	// cut is how a cell too wide is shortened (nil: never), down to min.
	cut func(s string, width int) string
	min int
	// drop is the order in which columns go when cutting is not enough
	// (1 first; 0: never); a spare one goes before any column is cut.
	drop  int
	spare bool
	// last is the column that takes the width left (the last error);
	// spare columns go while it would get less than want.
	last bool
	want int
}

// sharedNamespace returns the namespace of every row, or "" if they differ.
func sharedNamespace(rows []portRow) string {
	for _, row := range rows[min(1, len(rows)):] {
		if row.Namespace != rows[0].Namespace {
			return ""
		}
	}
	if len(rows) == 0 {
		return ""
	}
	return rows[0].Namespace
}

// liveTable renders the ports as the live view's table, cols wide at
// most: the last error takes the width left and is cut with an ellipsis;
// if it would get too little, the target and pod columns are cut too, and
// on a narrow terminal the byte and connection counts go. Targets are
// shown without their namespace when it is ns, the one of every row.
func liveTable(rows []portRow, ns string, cols int, color bool) []string {
	columns := []*liveColumn{
		{title: "TUNNEL", cut: cutEnd, min: 8, drop: 7},
		{title: "TARGET", cut: cutMiddle, min: 10, drop: 5},
		{title: "POD", cut: cutMiddle, min: 10, drop: 4},
		{title: "PORTS", drop: 6},
		{title: "STATE"},
		{title: "CONNS", drop: 3, spare: true},
		{title: "IN", drop: 2, spare: true},
		{title: "OUT", drop: 1, spare: true},
		{title: "LAST ERROR", cut: cutEnd, min: 16, last: true, want: 24, drop: 8},
	}
	for _, row := range rows {
		pod := row.Pod
		if pod == "" {
			pod = "-"
		}
		lastErr := strings.Join(strings.Fields(row.LastError), " ")
		if lastErr == "" {
			lastErr = "-"
		}
		target := row.Target
		if row.Namespace != ns {
			target = row.Namespace + "/" + target
		}
		cells := []string{
			row.Tunnel, target, pod, portsCell(row), row.State,
			fmt.Sprintf("%d/%d", row.Active, row.Total), humanBytes(row.BytesIn), humanBytes(row.BytesOut), lastErr,
		}
		for i, c := range cells {
			columns[i].cells = append(columns[i].cells, c)
		}
	}
	shown, widths := fitColumns(columns, cols)

	var lines []string
	for r := -1; r < len(rows); r++ {
		var b strings.Builder
		for i, c := range shown {
			text := c.title
			if r >= 0 {
				text = c.cells[r]
			}
			if n := utf8.RuneCountInString(text); n > widths[i] {
				text = c.cut(text, widths[i])
			}
			pad := widths[i] - utf8.RuneCountInString(text)
			if r >= 0 && color && c.title == "STATE" {
				text = paintState(text)
			}
			b.WriteString(text)
			if i < len(shown)-1 {
				b.WriteString(strings.Repeat(" ", pad+2))
			}
		}
		lines = append(lines, b.String())
	}
	return lines
}

// fitColumns chooses the columns shown and their widths so that the table
// is cols wide at most: the spare columns go, in order, while the table
// would not fit uncut (but for the last column, cut to its want); then
// the others, while even every column cut to its least would not fit.
// The last column takes the width left, and while that is below its
// least, the widest of the others that may be cut gives it a column at a
// time.
func fitColumns(columns []*liveColumn, cols int) ([]*liveColumn, []int) {
	uncut := func(c *liveColumn) int {
		if c.last {
			return min(c.natural(), max(c.want, c.least()))
		}
		return c.natural()
	}
	shown := columns
	for _, spare := range []bool{true, false} {
		width := (*liveColumn).least
		if spare {
			width = uncut
		}
		for sumWidths(shown, width) > cols {
			i := -1
			for j, c := range shown {
				if c.drop > 0 && (c.spare || !spare) && (i < 0 || c.drop < shown[i].drop) {
					i = j
				}
			}
			if i < 0 {
				break // nothing left to drop: fitLine cuts the lines
			}
			shown = append(shown[:i:i], shown[i+1:]...)
		}
	}
	widths := make([]int, len(shown))
	for i, c := range shown {
		widths[i] = c.natural()
	}
	last := len(shown) - 1
	if last < 0 || !shown[last].last {
		return shown, widths
	}
	lastCol := shown[last]
	left := cols - 2*last
	for _, w := range widths[:last] {
		left -= w
	}
	for left < lastCol.least() {
		widest := -1
		for i, c := range shown[:last] {
			if c.cut != nil && widths[i] > c.least() && (widest < 0 || widths[i] > widths[widest]) {
				widest = i
			}
		}
		if widest < 0 {
			break
		}
		widths[widest]--
		left++
	}
	widths[last] = max(min(left, lastCol.natural()), 1)
	return shown, widths
}

// sumWidths is the width of a table of columns of the given widths.
func sumWidths(shown []*liveColumn, width func(*liveColumn) int) int {
	total := 2 * (len(shown) - 1)
	for _, c := range shown {
		total += width(c)
	}
	return total
}

// natural is the width of the column's widest cell or title.
func (c *liveColumn) natural() int {
	w := utf8.RuneCountInString(c.title)
	for _, s := range c.cells {
		w = max(w, utf8.RuneCountInString(s))
	}
	return w
}

// least is the narrowest the column may be cut to.
func (c *liveColumn) least() int {
	if c.cut == nil {
		return c.natural()
	}
	return min(c.natural(), max(c.min, utf8.RuneCountInString(c.title)))
}

// portsCell renders a row's local addresses and remote port as docker
// does: "localhost:5432->5432" for the pair 127.0.0.1 and ::1.
func portsCell(row portRow) string {
	local := localhostPair(strings.Join(row.Local, ","))
	if local == "" {
		local = "-"
	}
	return local + "->" + row.Remote
}

// cutEnd shortens s to width runes, ending with an ellipsis.
func cutEnd(s string, width int) string {
	if utf8.RuneCountInString(s) <= width {
		return s
	}
	if width <= 0 {
		return ""
	}
	r := []rune(s)
	return string(r[:width-1]) + "…"
}

// cutMiddle shortens s to width runes with an ellipsis in the middle, so
// that the end of a pod's name (what tells its replicas apart) stays.
func cutMiddle(s string, width int) string {
	r := []rune(s)
	if len(r) <= width {
		return s
	}
	if width < 5 {
		return cutEnd(s, width)
	}
	tail := (width - 1) / 2
	head := width - 1 - tail
	return string(r[:head]) + "…" + string(r[len(r)-tail:])
}

// fitLine cuts a line of plain text to cols runes.
func fitLine(s string, cols int) string { return cutEnd(s, cols) }

// paintState colours a state by how it stands: green when ready, yellow
// while on the way or retrying, red when failed.
func paintState(s string) string {
	code := ""
	switch s {
	case "ready":
		code = "32"
	case "starting", "connecting", "retrying":
		code = "33"
	case "failed":
		code = "31"
	case "closed":
		code = "2"
	default:
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}
