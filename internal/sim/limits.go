package sim

import (
	"fmt"
	"syscall"
)

// RaiseFileLimit makes room in this process's open-file limit for
// agents simulated agents (a NATS socket and a spool segment each, plus
// slack), raising the hard limit too when allowed (root). Processes
// started afterwards inherit the limit.
func RaiseFileLimit(agents int) error {
	want := uint64(3*agents + 1024)
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if lim.Cur >= want {
		return nil
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: want, Max: max(lim.Max, want)}); err == nil {
		return nil
	}
	_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: lim.Max, Max: lim.Max})
	return fmt.Errorf("open-file limit %d is below the %d that %d agents need", lim.Max, want, agents)
}
