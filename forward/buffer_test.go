package forward

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"testing"
	"testing/synctest"
)

// takeAll takes from b until its end and returns what came out and the end.
func takeAll(t *testing.T, b *streamBuffer) (string, error) {
	t.Helper()
	var out bytes.Buffer
	for {
		bt, err := b.take()
		if err != nil {
			return out.String(), err
		}
		for _, c := range bt.chunks {
			out.Write(c)
		}
		b.release(bt)
	}
}

func TestStreamBufferOrderAndEOF(t *testing.T) {
	b := newStreamBuffer(100, 0)
	for _, s := range []string{"a", "bc", "def"} {
		if !b.push([]byte(s), nil) {
			t.Fatal("push refused")
		}
	}
	b.closeWrite(nil)
	got, err := takeAll(t, b)
	if got != "abcdef" || err != io.EOF {
		t.Errorf("take = %q, %v; want abcdef, io.EOF", got, err)
	}
}

func TestStreamBufferEndError(t *testing.T) {
	b := newStreamBuffer(100, 0)
	boom := errors.New("boom")
	b.push([]byte("x"), nil)
	b.closeWrite(boom)
	b.closeWrite(nil) // the first end wins
	got, err := takeAll(t, b)
	if got != "x" || !errors.Is(err, boom) {
		t.Errorf("take = %q, %v; want the data, then the end error", got, err)
	}
}

// TestStreamBufferSpillsInOrder: past the memory limit, data goes to the
// spill file and comes back in order, memory first; the pushes never wait.
func TestStreamBufferSpillsInOrder(t *testing.T) {
	b := newStreamBuffer(8, 1<<20)
	defer b.abort()
	var want bytes.Buffer
	for i := range 1000 {
		s := fmt.Sprintf("<%d>", i)
		want.WriteString(s)
		if !b.push([]byte(s), func(bool) { t.Fatal("push waited with room in the spill file") }) {
			t.Fatal("push refused")
		}
	}
	if mem, disk := b.buffered(); mem > 16 || disk == 0 {
		t.Errorf("buffered = %d in memory, %d on disk; want at most the limit and a frame in memory, the rest on disk", mem, disk)
	}
	b.closeWrite(nil)
	got, err := takeAll(t, b)
	if got != want.String() || err != io.EOF {
		t.Errorf("took %d bytes (%v), want the %d pushed in order then io.EOF", len(got), err, want.Len())
	}
}

// TestStreamBufferSpillInterleaved: a reader that keeps up now and then
// drains the file, which then starts again from its beginning.
func TestStreamBufferSpillInterleaved(t *testing.T) {
	b := newStreamBuffer(4, 64)
	defer b.abort()
	var want, got bytes.Buffer
	for round := range 50 {
		for i := range 5 {
			s := fmt.Sprintf("%02d%d", round, i)
			want.WriteString(s)
			b.push([]byte(s), nil)
		}
		for {
			if mem, disk := b.buffered(); mem == 0 && disk == 0 {
				break
			}
			bt, err := b.take()
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range bt.chunks {
				got.Write(c)
			}
			b.release(bt)
		}
		if b.fileW != 0 || b.fileR != 0 {
			t.Fatalf("round %d: the drained spill file is at [%d, %d), want it truncated", round, b.fileR, b.fileW)
		}
	}
	if got.String() != want.String() {
		t.Errorf("got %q, want %q", got.String(), want.String())
	}
}

func TestStreamBufferFullBlocksOnlyPush(t *testing.T) {
	for _, spill := range []int{0, 2} {
		t.Run(fmt.Sprintf("spill=%d", spill), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := newStreamBuffer(4, spill)
				defer b.abort()
				b.push([]byte("1234"), nil) // memory full
				if spill > 0 {
					b.push([]byte("56"), nil) // spill file full
				}
				var pushed, blocked atomic.Bool
				go func() {
					b.push([]byte("7"), func(waiting bool) { blocked.Store(waiting) })
					pushed.Store(true)
				}()
				synctest.Wait()
				if pushed.Load() || !blocked.Load() {
					t.Fatal("push into a full buffer did not wait, or did not say so")
				}
				var bts []batch
				for {
					bt, _ := b.take()
					bts = append(bts, bt)
					if mem, disk := b.buffered(); disk == 0 || mem == 0 && spill == 0 {
						break
					}
				}
				synctest.Wait()
				if spill == 0 && pushed.Load() {
					t.Fatal("push continued before the taken bytes were released")
				}
				for _, bt := range bts {
					b.release(bt)
				}
				synctest.Wait()
				if !pushed.Load() || blocked.Load() {
					t.Fatal("push still waiting after release")
				}
			})
		})
	}
}

func TestStreamBufferAbortWakesEveryone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		full := newStreamBuffer(1, 0)
		full.push([]byte("x"), nil)
		pushResult := make(chan bool, 1)
		go func() { pushResult <- full.push([]byte("y"), nil) }()

		empty := newStreamBuffer(1, 0)
		takeResult := make(chan error, 1)
		go func() {
			_, err := empty.take()
			takeResult <- err
		}()
		synctest.Wait()
		full.abort()
		empty.abort()
		if ok := <-pushResult; ok {
			t.Error("push into an aborted buffer succeeded")
		}
		if err := <-takeResult; err != errBufferAborted {
			t.Errorf("take = %v, want errBufferAborted", err)
		}
	})
}

// TestStreamBufferEmpty: the pusher may write to the local connection
// itself (pair.writeNow) only while nothing waits and nothing taken is
// still being written, in memory or read back from the spill file.
func TestStreamBufferEmpty(t *testing.T) {
	b := newStreamBuffer(1, 1<<20)
	defer b.abort()
	check := func(when string, want bool) {
		t.Helper()
		if got := b.empty(); got != want {
			t.Errorf("%s: empty() = %v, want %v", when, got, want)
		}
	}
	check("new", true)
	b.push([]byte("ab"), nil)
	check("after a push", false)
	bt, _ := b.take()
	check("taken, not released", false)
	b.release(bt)
	check("released", true)

	b.push([]byte("cd"), nil)
	b.push([]byte("ef"), nil) // memory full: spilled after the grace
	if _, disk := b.buffered(); disk == 0 {
		t.Fatal("nothing spilled; the test needs the spill file")
	}
	bt, _ = b.take() // memory
	b.release(bt)
	check("memory drained, spill file not", false)
	bt, _ = b.take() // the spill file, drained by this take
	if string(bt.chunks[0]) != "ef" || bt.pooled == nil {
		t.Fatalf("second take = %q (pooled %v), want ef from the spill file", bt.chunks[0], bt.pooled != nil)
	}
	check("spill file drained, its data not written yet", false)
	b.release(bt)
	check("everything released", true)
	b.closeWrite(nil)
	check("ended", false)
}
