package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"

	"github.com/tunnels-dev/tunnels/tests/cluster/podserver"
	"github.com/tunnels-dev/tunnels/tests/internal/cluster"
)

// TestNodeRuntimeAfterFailedStreams records, without tunnels, what the
// backend does with a new stream on an SPDY connection that has already
// carried failed ones: containerd 1.6 stops replying after three, which is
// why tunnels must not trust such a connection (TestNodeStreamWithoutReply).
// containerd 2.4, which the real node runs, keeps replying; if an upgrade
// brings the old behaviour back, this test says so.
func TestNodeRuntimeAfterFailedStreams(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *cluster.Backend) {
		ns := b.Namespace(t)
		b.ServerPod(t, ns, "srv", cluster.ServerPodOptions{})
		transport, upgrader, err := spdy.RoundTripperFor(b.Rest())
		if err != nil {
			t.Fatal(err)
		}
		u, _ := url.Parse(fmt.Sprintf("%s/api/v1/namespaces/%s/pods/srv/portforward", b.Server, ns))
		conn, _, err := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, u).Dial(portforward.PortForwardProtocolV1Name)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer conn.Close()
		for id := range 5 {
			msg := rawStream(t, conn, id, podserver.ClosedPort, "")
			if !strings.Contains(msg, "refused") {
				t.Fatalf("stream %d to the closed port: error stream %q, want a refusal", id, msg)
			}
		}
		start := time.Now()
		if got := rawStream(t, conn, 5, podserver.EchoPort, "ping"); got != "ping" {
			t.Fatalf("echo after five failed streams on the connection: %q, want ping", got)
		}
		t.Logf("a stream after five failed ones on the same connection was answered in %s", time.Since(start).Round(time.Millisecond))
	})
}

// rawStream opens a port-forward stream pair for port on conn. With data
// empty it returns what the error stream says; else it sends data, reads as
// many bytes back and returns them. It fails the test after 10 s without
// an answer.
func rawStream(t *testing.T, conn httpstream.Connection, id, port int, data string) string {
	t.Helper()
	h := http.Header{}
	h.Set(corev1.StreamType, corev1.StreamTypeError)
	h.Set(corev1.PortHeader, strconv.Itoa(port))
	h.Set(corev1.PortForwardRequestIDHeader, strconv.Itoa(id))
	errStream, err := conn.CreateStream(h)
	if err != nil {
		t.Fatalf("stream %d: create error stream: %v", id, err)
	}
	errStream.Close()
	h.Set(corev1.StreamType, corev1.StreamTypeData)
	dataStream, err := conn.CreateStream(h)
	if err != nil {
		t.Fatalf("stream %d: create data stream: %v", id, err)
	}
	defer dataStream.Reset()
	got := make(chan string, 1)
	go func() {
		if data == "" {
			b, _ := io.ReadAll(errStream)
			got <- string(b)
			return
		}
		dataStream.Write([]byte(data))
		buf := make([]byte, len(data))
		n, _ := io.ReadFull(dataStream, buf)
		got <- string(buf[:n])
	}()
	select {
	case s := <-got:
		return s
	case <-time.After(10 * time.Second):
		t.Fatalf("stream %d to port %d: no answer in 10s", id, port)
		return ""
	}
}
