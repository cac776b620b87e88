package probes

import (
	"context"
	"errors"
	"net"
	"os"
	"syscall"

	"github.com/twmb/franz-go/pkg/kerr"
)

// Failure classes, the class label of vigil_probe_failures_total.
const (
	ClassTimeout           = "timeout"            // no answer within the deadline, or the broker's REQUEST_TIMED_OUT
	ClassNotLeader         = "not_leader"         // the broker does not lead the partition (or coordinate the group)
	ClassConnectionRefused = "connection_refused" // nothing listens at the broker's address
	ClassOther             = "other"              // anything else: resets, other error codes, unknown address
)

// Classes lists the failure classes.
var Classes = []string{ClassTimeout, ClassNotLeader, ClassConnectionRefused, ClassOther}

// classify returns the failure class of err ("" for nil).
func classify(err error) string {
	if err == nil {
		return ""
	}
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return ClassConnectionRefused
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.Is(err, kerr.RequestTimedOut), errors.As(err, &ne) && ne.Timeout():
		return ClassTimeout
	case errors.Is(err, kerr.NotLeaderForPartition), errors.Is(err, kerr.LeaderNotAvailable),
		errors.Is(err, kerr.FencedLeaderEpoch), errors.Is(err, kerr.NotCoordinator),
		errors.Is(err, kerr.CoordinatorNotAvailable):
		return ClassNotLeader
	}
	return ClassOther
}
