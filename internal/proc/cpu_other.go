//go:build !unix

// Package proc reads this process's own resource use.
package proc

import "time"

// CPU is not measured on this platform.
func CPU() time.Duration { return 0 }
