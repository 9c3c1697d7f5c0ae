package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
)

// get fetches one JSON object into out, bounded by the client's timeout.
func (c *Client) get(ctx context.Context, path string, query url.Values, info requestInfo, out any) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	return decode(c.do(ctx, path, query, info))(info, out)
}

// decode returns a function that decodes resp's JSON body into out and
// closes it, or returns err.
func decode(resp *http.Response, err error) func(requestInfo, any) error {
	return func(info requestInfo, out any) error {
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return fmt.Errorf("%s %s: decode: %w", info.verb, info.object(), err)
		}
		return nil
	}
}

func nsPath(group, namespace, resource, name string) string {
	p := "/api/v1"
	if group != "" {
		p = "/apis/" + group
	}
	p += "/namespaces/" + url.PathEscape(namespace) + "/" + resource
	if name != "" {
		p += "/" + url.PathEscape(name)
	}
	return p
}

// GetPod returns a pod.
func (c *Client) GetPod(ctx context.Context, namespace, name string) (*Pod, error) {
	var p Pod
	info := requestInfo{verb: "get", resource: "pods", namespace: namespace, name: name}
	if err := c.get(ctx, nsPath("", namespace, "pods", name), nil, info, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// ListPods lists the pods of a namespace matching a label selector ("" for
// all).
func (c *Client) ListPods(ctx context.Context, namespace, selector string) (*PodList, error) {
	var l PodList
	q := url.Values{}
	if selector != "" {
		q.Set("labelSelector", selector)
	}
	info := requestInfo{verb: "list", resource: "pods", namespace: namespace}
	if err := c.get(ctx, nsPath("", namespace, "pods", ""), q, info, &l); err != nil {
		return nil, err
	}
	return &l, nil
}

// GetService returns a service.
func (c *Client) GetService(ctx context.Context, namespace, name string) (*Service, error) {
	var s Service
	info := requestInfo{verb: "get", resource: "services", namespace: namespace, name: name}
	if err := c.get(ctx, nsPath("", namespace, "services", name), nil, info, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// GetDeployment returns a deployment's selector.
func (c *Client) GetDeployment(ctx context.Context, namespace, name string) (*Workload, error) {
	return c.getWorkload(ctx, namespace, "deployments", name)
}

// GetStatefulSet returns a statefulset's selector.
func (c *Client) GetStatefulSet(ctx context.Context, namespace, name string) (*Workload, error) {
	return c.getWorkload(ctx, namespace, "statefulsets", name)
}

func (c *Client) getWorkload(ctx context.Context, namespace, resource, name string) (*Workload, error) {
	var w Workload
	info := requestInfo{verb: "get", resource: resource + ".apps", namespace: namespace, name: name}
	if err := c.get(ctx, nsPath("apps/v1", namespace, resource, name), nil, info, &w); err != nil {
		return nil, err
	}
	return &w, nil
}
