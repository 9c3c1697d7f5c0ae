package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/tunnels-dev/tunnels/config"
)

// Access is one permission: a verb on a resource (with its API group and
// subresource) in a namespace.
type Access struct {
	Verb        string // get, list, watch, create
	Group       string // "" for the core group, apps, ...
	Resource    string // pods, services, deployments
	Subresource string // portforward, or ""
	Namespace   string
}

// String names the permission as RBAC and kubectl write it:
// create pods/portforward, get deployments.apps.
func (a Access) String() string {
	return a.Verb + " " + a.ResourceName()
}

// ResourceName is the resource as kubectl create role's --resource takes
// it: pods/portforward, deployments.apps.
func (a Access) ResourceName() string {
	r := a.Resource
	if a.Group != "" {
		r += "." + a.Group
	}
	if a.Subresource != "" {
		r += "/" + a.Subresource
	}
	return r
}

// NeededAccess lists what forwarding to target in namespace needs
// (docs/protocol.md §2): get and create on pods/portforward (SPDY is a
// create; WebSocket is a get and, since 1.35, also checked for create);
// get, list and watch on pods (the pod, a selector's pods, the namespace's
// pod watch); and get on the object a service, deployment or statefulset
// target names.
func NeededAccess(namespace string, target config.Target) []Access {
	a := []Access{
		{Verb: "get", Resource: "pods", Subresource: "portforward"},
		{Verb: "create", Resource: "pods", Subresource: "portforward"},
		{Verb: "get", Resource: "pods"},
		{Verb: "list", Resource: "pods"},
		{Verb: "watch", Resource: "pods"},
	}
	switch target.Kind {
	case config.KindService:
		a = append(a, Access{Verb: "get", Resource: "services"})
	case config.KindDeployment:
		a = append(a, Access{Verb: "get", Group: "apps", Resource: "deployments"})
	case config.KindStatefulSet:
		a = append(a, Access{Verb: "get", Group: "apps", Resource: "statefulsets"})
	}
	for i := range a {
		a[i].Namespace = namespace
	}
	return a
}

// AccessReview is the API server's answer to whether the client may do
// something.
type AccessReview struct {
	Allowed bool
	Reason  string // the authorizer's reason, often empty
}

// CanI asks the API server whether the client's user may do a, with a
// SelfSubjectAccessReview (which every authenticated user may create).
func (c *Client) CanI(ctx context.Context, a Access) (AccessReview, error) {
	var req struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Spec       struct {
			ResourceAttributes struct {
				Namespace   string `json:"namespace,omitempty"`
				Verb        string `json:"verb"`
				Group       string `json:"group,omitempty"`
				Resource    string `json:"resource"`
				Subresource string `json:"subresource,omitempty"`
			} `json:"resourceAttributes"`
		} `json:"spec"`
	}
	req.APIVersion, req.Kind = "authorization.k8s.io/v1", "SelfSubjectAccessReview"
	ra := &req.Spec.ResourceAttributes
	ra.Namespace, ra.Verb, ra.Group, ra.Resource, ra.Subresource = a.Namespace, a.Verb, a.Group, a.Resource, a.Subresource
	var out struct {
		Status struct {
			Allowed         bool   `json:"allowed"`
			Reason          string `json:"reason"`
			EvaluationError string `json:"evaluationError"`
		} `json:"status"`
	}
	info := requestInfo{verb: "create", resource: "selfsubjectaccessreviews"}
	if err := c.post(ctx, "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", req, info, &out); err != nil {
		return AccessReview{}, fmt.Errorf("can-i %s in namespace %q: %w", a, a.Namespace, err)
	}
	reason := out.Status.Reason
	if out.Status.EvaluationError != "" {
		reason = strings.TrimSpace(reason + " " + out.Status.EvaluationError)
	}
	return AccessReview{Allowed: out.Status.Allowed, Reason: reason}, nil
}

// WhoAmI returns the user name the API server knows the client as, with a
// SelfSubjectReview (Kubernetes 1.28 and later).
func (c *Client) WhoAmI(ctx context.Context) (string, error) {
	req := map[string]string{"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
	var out struct {
		Status struct {
			UserInfo struct {
				Username string `json:"username"`
			} `json:"userInfo"`
		} `json:"status"`
	}
	info := requestInfo{verb: "create", resource: "selfsubjectreviews"}
	if err := c.post(ctx, "/apis/authentication.k8s.io/v1/selfsubjectreviews", req, info, &out); err != nil {
		return "", fmt.Errorf("who am i: %w", err)
	}
	return out.Status.UserInfo.Username, nil
}

// ServerVersion returns the API server's version (its /version gitVersion).
func (c *Client) ServerVersion(ctx context.Context) (string, error) {
	var v struct {
		GitVersion string `json:"gitVersion"`
	}
	if err := c.get(ctx, "/version", nil, requestInfo{verb: "get", resource: "version"}, &v); err != nil {
		return "", err
	}
	return v.GitVersion, nil
}

// post sends in as JSON and decodes the answer into out, bounded by the
// client's timeout.
func (c *Client) post(ctx context.Context, path string, in any, info requestInfo, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("%s %s: encode: %w", info.verb, info.object(), err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	return decode(c.send(ctx, http.MethodPost, path, nil, body, info))(info, out)
}
