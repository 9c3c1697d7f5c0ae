package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// ErrResourceExpired is a watch's 410 Gone: the resourceVersion is too old;
// list again and watch from the list's version.
var ErrResourceExpired = errors.New("resource version expired")

// The types of watch events.
const (
	EventAdded    = "ADDED"
	EventModified = "MODIFIED"
	EventDeleted  = "DELETED"
	EventBookmark = "BOOKMARK"
	EventError    = "ERROR"
)

// PodEvent is one event of a pod watch. For EventError, Err is set and Pod
// is nil; Err matches ErrResourceExpired for a 410.
type PodEvent struct {
	Type string
	Pod  *Pod
	Err  error
}

type rawEvent struct {
	Type   string          `json:"type"`
	Object json.RawMessage `json:"object"`
}

// WatchPods watches the pods of a namespace matching selector from
// resourceVersion ("" for "now"; use a PodList's version to miss nothing).
// Events arrive on the returned channel, which is closed when the stream
// ends (the server ends watches after some minutes: list and watch again),
// on a decode error (sent as an EventError first), or when ctx is done. The
// goroutine feeding the channel is stopped by cancelling ctx; the closed
// channel tells it has exited.
func (c *Client) WatchPods(ctx context.Context, namespace, selector, resourceVersion string) (<-chan PodEvent, error) {
	q := url.Values{}
	q.Set("watch", "true")
	q.Set("allowWatchBookmarks", "true")
	if selector != "" {
		q.Set("labelSelector", selector)
	}
	if resourceVersion != "" {
		q.Set("resourceVersion", resourceVersion)
	}
	info := requestInfo{verb: "watch", resource: "pods", namespace: namespace}
	resp, err := c.do(ctx, nsPath("", namespace, "pods", ""), q, info)
	if err != nil {
		return nil, err
	}
	ch := make(chan PodEvent)
	go c.streamPods(ctx, resp, ch, namespace, selector)
	return ch, nil
}

// streamPods decodes watch events from resp onto ch until the stream ends or
// ctx is done, then closes ch.
func (c *Client) streamPods(ctx context.Context, resp *http.Response, ch chan<- PodEvent, namespace, selector string) {
	defer close(ch)
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	send := func(ev PodEvent) bool {
		select {
		case ch <- ev:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for {
		var raw rawEvent
		if err := dec.Decode(&raw); err != nil {
			if ctx.Err() != nil || errors.Is(err, io.EOF) {
				return
			}
			send(PodEvent{Type: EventError, Err: fmt.Errorf("watch pods in %s matching %q: decode event: %w", namespace, selector, err)})
			return
		}
		ev := PodEvent{Type: raw.Type}
		switch raw.Type {
		case EventAdded, EventModified, EventDeleted, EventBookmark:
			var p Pod
			if err := json.Unmarshal(raw.Object, &p); err != nil {
				ev = PodEvent{Type: EventError, Err: fmt.Errorf("watch pods in %s matching %q: decode pod: %w", namespace, selector, err)}
				break
			}
			ev.Pod = &p
		case EventError:
			var st struct {
				Message string `json:"message"`
				Reason  string `json:"reason"`
				Code    int    `json:"code"`
			}
			_ = json.Unmarshal(raw.Object, &st)
			ae := &APIError{StatusCode: st.Code, Reason: st.Reason, Message: st.Message, Verb: "watch", Resource: "pods", Namespace: namespace, Context: c.rc.Context, User: c.rc.User}
			err := error(ae)
			if st.Code == http.StatusGone || st.Reason == "Expired" || st.Reason == "Gone" {
				err = fmt.Errorf("%w: %w", ErrResourceExpired, ae)
			}
			ev.Err = fmt.Errorf("watch pods in %s matching %q: %w", namespace, selector, err)
		default:
			continue
		}
		if !send(ev) {
			return
		}
	}
}
