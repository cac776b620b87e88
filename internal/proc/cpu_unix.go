//go:build unix

// Package proc reads this process's own resource use.
package proc

import (
	"syscall"
	"time"
)

// CPU returns the CPU time (user and system) this process has used.
func CPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
