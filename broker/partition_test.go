package broker

import (
	"errors"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
)

func TestClientMessage(t *testing.T) {
	for _, tc := range []struct {
		err  error
		ke   *kerr.Error
		want string
	}{
		{fmt.Errorf("batch 0: bad CRC: %w", kerr.CorruptMessage), kerr.CorruptMessage, "batch 0: bad CRC"},
		{fmt.Errorf("log /d is offline (%w): fsync: %w", kerr.KafkaStorageError, errors.New("EIO")), kerr.KafkaStorageError, "log /d is offline: fsync: EIO"},
		{fmt.Errorf("wrapped: %w", fmt.Errorf("gap of 3: %w", kerr.OutOfOrderSequenceNumber)), kerr.OutOfOrderSequenceNumber, "wrapped: gap of 3"},
		{errors.New("2 records have no key: INVALID_RECORD"), kerr.InvalidRecord, "2 records have no key"},
		{kerr.NotLeaderForPartition, kerr.NotLeaderForPartition, "NOT_LEADER_FOR_PARTITION"},
	} {
		if got := clientMessage(tc.err, tc.ke); got != tc.want {
			t.Errorf("clientMessage(%q) = %q, want %q", tc.err, got, tc.want)
		}
	}
}
