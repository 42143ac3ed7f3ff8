//go:build !unix

package process

import "os/exec"

// configure leaves cancellation to exec.CommandContext's default, which
// kills the command but not its children.
func configure(*exec.Cmd) {}
