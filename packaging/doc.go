// Package packaging holds how imds is installed: the Debian package
// (nfpm.yaml, the systemd units, the conffile imds.yaml and the maintainer
// scripts) and, with the Dockerfile at the repository root and
// examples/compose, the container image. It has no Go API; its tests build
// the package and the image and install and run them for real: the .deb in
// a fresh Debian 12 root booted with systemd in a container, the image and
// the compose example on the machine's Docker engine. They skip, saying
// why, without root, a Docker engine or debootstrap.
package packaging
