package cluster

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
)

// waitForwarded waits until kwok routes the pod's port: kwok learns of a
// PortForward object through a watch, so a stream opened right after the
// object is created can still be refused with "no forward found". It opens
// real port-forward streams with client-go until one is not refused that way.
func (c *Cluster) waitForwarded(t testing.TB, ns, pod string, port int32) {
	t.Helper()
	cfg := c.Rest()
	transport, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		t.Fatalf("spdy round tripper: %v", err)
	}
	u, _ := url.Parse(fmt.Sprintf("%s/api/v1/namespaces/%s/pods/%s/portforward", c.Server, ns, pod))
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, u)
	var last string
	err = poll(context.Background(), 30*time.Second, func() error {
		conn, _, err := dialer.Dial(portforward.PortForwardProtocolV1Name)
		if err != nil {
			last = err.Error()
			return err
		}
		defer conn.Close()
		h := http.Header{}
		h.Set(corev1.StreamType, corev1.StreamTypeError)
		h.Set(corev1.PortHeader, strconv.Itoa(int(port)))
		h.Set(corev1.PortForwardRequestIDHeader, "0")
		errStream, err := conn.CreateStream(h)
		if err != nil {
			return err
		}
		errStream.Close()
		h.Set(corev1.StreamType, corev1.StreamTypeData)
		data, err := conn.CreateStream(h)
		if err != nil {
			return err
		}
		// Half-close: the target sees EOF and closes, which ends the error stream.
		data.Close()
		msg := make(chan string, 1)
		go func() {
			b, _ := io.ReadAll(errStream)
			msg <- string(b)
		}()
		select {
		case m := <-msg:
			last = m
		case <-time.After(2 * time.Second):
			last = ""
		}
		if strings.Contains(last, "no forward found") {
			return fmt.Errorf("%s", last)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("kwok does not forward port %d of pod %s/%s yet: %v (last: %s)", port, ns, pod, err, last)
	}
}
