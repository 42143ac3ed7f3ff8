// Package docker makes the Docker engine's running containers instances:
// it lists them, follows the engine's event stream, and hands the registry
// one instance per container that opts in (label imds.enable=true, or any
// container on the configured networks with all: true), recognised by its
// address and MAC on those networks and described by its imds.* labels.
//
// The engine is reached with the official Go client (github.com/docker/docker
// client), which negotiates the API version down to the engine's, so that
// Debian 12's docker.io (API 1.41) and current engines are both served.
package docker
