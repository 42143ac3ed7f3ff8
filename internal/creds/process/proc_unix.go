//go:build unix

package process

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
)

// configure puts the command in a process group of its own and makes
// cancellation kill the whole group, so that the children of a shell script
// die with it rather than hold on to its output.
func configure(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		// The group leader is not reaped before Wait returns, so its pid
		// still names our group here.
		err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		if errors.Is(err, syscall.ESRCH) {
			return os.ErrProcessDone
		}
		return err
	}
}
