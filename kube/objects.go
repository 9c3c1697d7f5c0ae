package kube

import (
	"encoding/json"

	"strconv"
	"time"
)

// ObjectMeta is the part of an object's metadata tunnels reads.
type ObjectMeta struct {
	Name              string            `json:"name"`
	Namespace         string            `json:"namespace"`
	UID               string            `json:"uid"`
	ResourceVersion   string            `json:"resourceVersion"`
	Labels            map[string]string `json:"labels"`
	CreationTimestamp time.Time         `json:"creationTimestamp"`
	DeletionTimestamp *time.Time        `json:"deletionTimestamp"`
}

// Pod is the part of a core/v1 Pod tunnels reads.
type Pod struct {
	Metadata ObjectMeta `json:"metadata"`
	Spec     PodSpec    `json:"spec"`
	Status   PodStatus  `json:"status"`
}

// PodSpec is the part of a pod's spec tunnels reads.
type PodSpec struct {
	NodeName   string      `json:"nodeName"`
	Containers []Container `json:"containers"`
}

// Container is one container of a pod.
type Container struct {
	Name  string          `json:"name"`
	Ports []ContainerPort `json:"ports"`
}

// ContainerPort is a port a container declares.
type ContainerPort struct {
	Name          string `json:"name"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol"` // TCP if empty
}

// PodStatus is the part of a pod's status tunnels reads.
type PodStatus struct {
	Phase      string         `json:"phase"`
	Conditions []PodCondition `json:"conditions"`
}

// PodCondition is one of a pod's status conditions.
type PodCondition struct {
	Type               string    `json:"type"`
	Status             string    `json:"status"`
	LastTransitionTime time.Time `json:"lastTransitionTime"`
}

// Running reports whether the pod's phase is Running.
func (p *Pod) Running() bool { return p.Status.Phase == "Running" }

// Ready reports whether the pod's Ready condition is True.
func (p *Pod) Ready() bool {
	for _, c := range p.Status.Conditions {
		if c.Type == "Ready" {
			return c.Status == "True"
		}
	}
	return false
}

// Terminating reports whether the pod is being deleted.
func (p *Pod) Terminating() bool { return p.Metadata.DeletionTimestamp != nil }

// PodList is a list of pods and the resourceVersion to watch from.
type PodList struct {
	Metadata struct {
		ResourceVersion string `json:"resourceVersion"`
	} `json:"metadata"`
	Items []Pod `json:"items"`
}

// Service is the part of a core/v1 Service tunnels reads.
type Service struct {
	Metadata ObjectMeta  `json:"metadata"`
	Spec     ServiceSpec `json:"spec"`
}

// ServiceSpec is the part of a service's spec tunnels reads.
type ServiceSpec struct {
	Selector  map[string]string `json:"selector"`
	Ports     []ServicePort     `json:"ports"`
	ClusterIP string            `json:"clusterIP"` // "None" for a headless service
	Type      string            `json:"type"`
}

// ServicePort is one port of a service.
type ServicePort struct {
	Name       string      `json:"name"`
	Port       int         `json:"port"`
	TargetPort IntOrString `json:"targetPort"`
	Protocol   string      `json:"protocol"` // TCP if empty
}

// IntOrString is a port given as a number or a name.
type IntOrString struct {
	IntVal   int
	StrVal   string
	IsString bool
}

// UnmarshalJSON accepts a JSON number or string.
func (v *IntOrString) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		v.IsString = true
		v.IntVal = 0
		return json.Unmarshal(b, &v.StrVal)
	}
	v.IsString = false
	v.StrVal = ""
	return json.Unmarshal(b, &v.IntVal)
}

// MarshalJSON writes a number or a string.
func (v IntOrString) MarshalJSON() ([]byte, error) {
	if v.IsString {
		return json.Marshal(v.StrVal)
	}
	return json.Marshal(v.IntVal)
}

// String returns the name or the number.
func (v IntOrString) String() string {
	if v.IsString {
		return v.StrVal
	}
	return strconv.Itoa(v.IntVal)
}

// Workload is the part of an apps/v1 Deployment or StatefulSet tunnels
// reads: its pod selector.
type Workload struct {
	Metadata ObjectMeta `json:"metadata"`
	Spec     struct {
		Selector *LabelSelector `json:"selector"`
	} `json:"spec"`
}

// LabelSelector is a metav1.LabelSelector.
type LabelSelector struct {
	MatchLabels      map[string]string          `json:"matchLabels"`
	MatchExpressions []LabelSelectorRequirement `json:"matchExpressions"`
}

// LabelSelectorRequirement is one matchExpressions term.
type LabelSelectorRequirement struct {
	Key      string   `json:"key"`
	Operator string   `json:"operator"` // In, NotIn, Exists, DoesNotExist
	Values   []string `json:"values"`
}
