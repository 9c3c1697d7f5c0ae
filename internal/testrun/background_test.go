package testrun

import (
	"context"
	"testing"
)

func TestBackgroundRunsUntilTheTestEnds(t *testing.T) {
	started := make(chan struct{})
	returned := make(chan struct{})
	t.Run("test", func(t *testing.T) {
		Background(t, func(ctx context.Context) error {
			close(started)
			<-ctx.Done()
			close(returned)
			return nil
		})
		<-started
		select {
		case <-returned:
			t.Fatal("run returned before the test ended")
		default:
		}
	})
	select {
	case <-returned:
	default:
		t.Fatal("the test ended before run returned")
	}
}
