package log

import (
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
)

// OpenOffline returns the log of dir as a log that is offline from the
// start because cause (typically Open's error) keeps it from being opened.
// A broker uses it to keep serving its other partitions when one cannot be
// opened at start, as Kafka takes only the failed log offline: every
// operation fails as on a log that went offline (appends and reads with an
// error wrapping KAFKA_STORAGE_ERROR), the offsets and size are 0, Offline
// returns the error and Close returns it too. Nothing in dir is read or
// changed; restarting after the disk is repaired opens the log normally.
func OpenOffline(dir string, cfg Config, opts Options, cause error) *Log {
	l := newLog(dir, cfg, opts)
	l.publishSegments([]*segment{})
	err := cause
	if !errors.Is(cause, kerr.KafkaStorageError) {
		err = fmt.Errorf("partition log %s is offline (%w): %w", dir, kerr.KafkaStorageError, cause)
	}
	l.offline.Store(&err)
	return l
}
