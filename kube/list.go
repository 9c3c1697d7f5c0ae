package kube

import "context"

// ServiceList is a list of services.
type ServiceList struct {
	Items []Service `json:"items"`
}

// ListServices lists the services of a namespace (for shell completion).
func (c *Client) ListServices(ctx context.Context, namespace string) (*ServiceList, error) {
	var l ServiceList
	info := requestInfo{verb: "list", resource: "services", namespace: namespace}
	if err := c.get(ctx, nsPath("", namespace, "services", ""), nil, info, &l); err != nil {
		return nil, err
	}
	return &l, nil
}
