module github.com/tunnels-dev/tunnels/tests

go 1.26.0

replace github.com/tunnels-dev/tunnels => ../

require (
	github.com/santhosh-tekuri/jsonschema/v6 v6.0.3 // indirect
	go.uber.org/goleak v1.3.0 // indirect
	golang.org/x/text v0.40.0 // indirect
	k8s.io/api v0.37.2 // indirect
	k8s.io/apimachinery v0.37.2 // indirect
	k8s.io/client-go v0.37.2 // indirect
	k8s.io/cri-streaming v0.37.2 // indirect
	k8s.io/streaming v0.37.2 // indirect
)
