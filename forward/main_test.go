package forward

import (
	"os"
	"testing"

	"github.com/tunnels-dev/tunnels/internal/leakcheck"
)

func TestMain(m *testing.M) {
	if os.Getenv(fakeKubeletEnv) != "" {
		serveFakeKubeletProcess()
		return
	}
	leakcheck.VerifyTestMain(m)
}
