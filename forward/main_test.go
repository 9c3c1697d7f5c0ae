package forward

import (
	"testing"

	"github.com/tunnels-dev/tunnels/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }
