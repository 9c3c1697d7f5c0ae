package forward

import (
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"testing/synctest"
)

func TestStreamBufferOrderAndEOF(t *testing.T) {
	b := newStreamBuffer(100)
	for _, s := range []string{"a", "bc", "def"} {
		if !b.push([]byte(s)) {
			t.Fatal("push refused")
		}
	}
	b.closeWrite(nil)
	chunks, err := b.take()
	if err != nil {
		t.Fatal(err)
	}
	var got string
	n := 0
	for _, c := range chunks {
		got += string(c)
		n += len(c)
	}
	if got != "abcdef" {
		t.Errorf("take = %q, want abcdef", got)
	}
	b.release(n)
	if _, err := b.take(); err != io.EOF {
		t.Errorf("take after the end = %v, want io.EOF", err)
	}
}

func TestStreamBufferEndError(t *testing.T) {
	b := newStreamBuffer(100)
	boom := errors.New("boom")
	b.push([]byte("x"))
	b.closeWrite(boom)
	if _, err := b.take(); err != nil {
		t.Fatalf("data before the error: %v", err)
	}
	if _, err := b.take(); !errors.Is(err, boom) {
		t.Errorf("take = %v, want the end error", err)
	}
}

func TestStreamBufferFullBlocksOnlyPush(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newStreamBuffer(4)
		b.push([]byte("1234")) // now full
		var pushed atomic.Bool
		go func() {
			b.push([]byte("5"))
			pushed.Store(true)
		}()
		synctest.Wait()
		if pushed.Load() {
			t.Fatal("push into a full buffer did not wait")
		}
		chunks, _ := b.take()
		synctest.Wait()
		if pushed.Load() {
			t.Fatal("push continued before the taken bytes were released")
		}
		b.release(len(chunks[0]))
		synctest.Wait()
		if !pushed.Load() {
			t.Fatal("push still waiting after release")
		}
	})
}

func TestStreamBufferAbortWakesEveryone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		full := newStreamBuffer(1)
		full.push([]byte("x"))
		pushResult := make(chan bool, 1)
		go func() { pushResult <- full.push([]byte("y")) }()

		empty := newStreamBuffer(1)
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
