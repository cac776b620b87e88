package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// topicReadyTimeout bounds how long setup waits for a topic's partitions to
// have leaders and answer ListOffsets.
const topicReadyTimeout = 30 * time.Second

// admin wraps the admin client used for setup and offset listing.
type admin struct {
	cl  *kgo.Client
	adm *kadm.Client
	cfg Config
}

func newAdmin(cfg Config) (*admin, error) {
	cl, err := kgo.NewClient(cfg.adminOpts()...)
	if err != nil {
		return nil, fmt.Errorf("creating admin client: %w", err)
	}
	return &admin{cl: cl, adm: kadm.NewClient(cl), cfg: cfg}, nil
}

func (a *admin) close() { a.cl.Close() }

// ensureTopic creates the topic if it is missing and waits until every
// partition answers ListOffsets. It returns the partition numbers.
func (a *admin) ensureTopic(ctx context.Context) ([]int32, error) {
	topic := a.cfg.Topic
	md, err := a.adm.Metadata(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("metadata from %v: %w (is a broker listening there? see --brokers)", a.cfg.Brokers, err)
	}
	td, ok := md.Topics[topic]
	if !ok || errors.Is(td.Err, kerr.UnknownTopicOrPartition) {
		resp, err := a.adm.CreateTopic(ctx, a.cfg.Partitions, a.cfg.ReplicationFactor, nil, topic)
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			if resp.ErrMessage != "" {
				err = fmt.Errorf("%w (%s)", err, resp.ErrMessage)
			}
			return nil, fmt.Errorf("creating topic %s (%d partitions, replication factor %d): %w",
				topic, a.cfg.Partitions, a.cfg.ReplicationFactor, err)
		}
	} else if td.Err != nil && !errors.Is(td.Err, kerr.LeaderNotAvailable) {
		return nil, fmt.Errorf("topic %s: %w", topic, td.Err)
	}

	ctx, cancel := context.WithTimeout(ctx, topicReadyTimeout)
	defer cancel()
	backoff := 50 * time.Millisecond
	for {
		parts, err := a.readyPartitions(ctx)
		if err == nil {
			return parts, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("topic %s not ready after %v: %w", topic, topicReadyTimeout, err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// readyPartitions returns the topic's partitions if all of them have a
// leader and answer ListOffsets.
func (a *admin) readyPartitions(ctx context.Context) ([]int32, error) {
	md, err := a.adm.Metadata(ctx, a.cfg.Topic)
	if err != nil {
		return nil, err
	}
	td, ok := md.Topics[a.cfg.Topic]
	if !ok {
		return nil, kerr.UnknownTopicOrPartition
	}
	if td.Err != nil {
		return nil, td.Err
	}
	if len(td.Partitions) == 0 {
		return nil, errors.New("topic has no partitions yet")
	}
	parts := make([]int32, 0, len(td.Partitions))
	for p, pd := range td.Partitions {
		if pd.Err != nil {
			return nil, fmt.Errorf("partition %d: %w", p, pd.Err)
		}
		if pd.Leader < 0 {
			return nil, fmt.Errorf("partition %d has no leader", p)
		}
		parts = append(parts, p)
	}
	slices.Sort(parts)
	if _, err := a.offsets(ctx, false, parts); err != nil {
		return nil, err
	}
	return parts, nil
}

// offsets lists the start (end=false) or end (end=true, the high
// watermark) offset of every partition.
func (a *admin) offsets(ctx context.Context, end bool, parts []int32) (map[int32]int64, error) {
	list := a.adm.ListStartOffsets
	if end {
		list = a.adm.ListEndOffsets
	}
	lo, err := list(ctx, a.cfg.Topic)
	if err != nil {
		return nil, err
	}
	out := make(map[int32]int64, len(parts))
	for _, p := range parts {
		o, ok := lo.Lookup(a.cfg.Topic, p)
		if !ok {
			return nil, fmt.Errorf("partition %d missing from ListOffsets", p)
		}
		if o.Err != nil {
			return nil, fmt.Errorf("partition %d: %w", p, o.Err)
		}
		out[p] = o.Offset
	}
	return out, nil
}

// offsetsRetry is offsets with a short retry for transient leadership
// errors.
func (a *admin) offsetsRetry(ctx context.Context, end bool, parts []int32) (map[int32]int64, error) {
	var err error
	for range 20 {
		var m map[int32]int64
		if m, err = a.offsets(ctx, end, parts); err == nil {
			return m, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil, fmt.Errorf("listing offsets of %s: %w", a.cfg.Topic, err)
}
