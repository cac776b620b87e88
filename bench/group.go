package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// modeGroup is `vigil bench group`.
const modeGroup = "group"

// Balancers for the group benchmark: the client-side ones of the classic
// protocol and the server-side assignors of KIP-848.
var groupBalancers = []string{"range", "roundrobin", "sticky", "cooperative-sticky", "uniform", "server-range"}

// GroupStats is what the group benchmark measured.
type GroupStats struct {
	// Group is the consumer group used (a new one per run).
	Group    string `json:"group"`
	Members  int    `json:"members"`
	Balancer string `json:"balancer"`
	// Stable is the time from starting every consumer at once to the
	// first moment every partition was owned by exactly one member and
	// every member owned at least one (or, with more members than
	// partitions, every partition had an owner).
	Stable        time.Duration `json:"-"`
	StableSeconds float64       `json:"stable_seconds"`
	// Rebalances counts the assignments the members received until then
	// (OnPartitionsAssigned calls, summed over members).
	Rebalances int64 `json:"rebalances"`
	// Commit is the latency of synchronous offset commits once the group
	// is stable: each member commits its partitions Commits times.
	Commit  *Latency `json:"commit_latency_ms"`
	Commits int64    `json:"commits"`
	// Errors counts failed commits.
	Errors     int64  `json:"errors"`
	FirstError string `json:"first_error,omitempty"`
}

// Group runs the group benchmark: cfg.Consumers consumers join a new group
// on cfg.Topic at once, with cfg.Balancer; it reports how long the group
// took to reach a stable assignment, then the latency of cfg.Commits
// synchronous commits per member. The topic needs no data.
func Group(ctx context.Context, cfg Config) (*Result, error) {
	cfg, err := cfg.withDefaults(modeGroup)
	if err != nil {
		return nil, err
	}
	a, err := newAdmin(cfg)
	if err != nil {
		return nil, err
	}
	defer a.close()
	parts, err := a.ensureTopic(ctx)
	if err != nil {
		return nil, err
	}
	res := &Result{Mode: modeGroup, Settings: settingsOf(cfg, modeGroup, int32(len(parts)))}
	// The broker's CPU over the whole run: the joins, the rebalances and
	// the commits (no payload moves, so no CPU-seconds per GB).
	meters, err := startMeters(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer func() { meters.finish(context.WithoutCancel(ctx), res, 0) }()
	groupID := cfg.GroupID
	if groupID == "" {
		groupID = fmt.Sprintf("vigil-bench-group-%d", time.Now().UnixNano())
	}
	stats := &GroupStats{Group: groupID, Members: cfg.Consumers, Balancer: cfg.Balancer}
	res.Group = stats

	// Ownership as the members report it through their callbacks.
	var (
		mu         sync.Mutex
		owned      = make([]map[int32]bool, cfg.Consumers)
		rebalances int64
	)
	changed := make(chan struct{}, 1)
	notify := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	members := make([]*kgo.Client, cfg.Consumers)
	defer func() {
		for _, cl := range members {
			if cl != nil {
				cl.Close()
			}
		}
	}()
	start := time.Now()
	for i := range members {
		owned[i] = map[int32]bool{}
		i := i
		update := func(ps map[string][]int32, add bool) {
			mu.Lock()
			for _, p := range ps[cfg.Topic] {
				if add {
					owned[i][p] = true
				} else {
					delete(owned[i], p)
				}
			}
			if add {
				rebalances++
			}
			mu.Unlock()
			notify()
		}
		opts := append(cfg.baseOpts(fmt.Sprintf("vigil-bench-group-%d", i)),
			kgo.ConsumerGroup(groupID),
			kgo.ConsumeTopics(cfg.Topic),
			kgo.DisableAutoCommit(),
			kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, a map[string][]int32) { update(a, true) }),
			kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, r map[string][]int32) { update(r, false) }),
			kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, l map[string][]int32) { update(l, false) }),
		)
		opts = append(opts, balancerOpts(cfg.Balancer)...)
		cl, err := kgo.NewClient(append(opts, cfg.ClientOpts...)...)
		if err != nil {
			return res, fmt.Errorf("creating consumer %d: %w", i, err)
		}
		members[i] = cl
	}
	stable := func() bool {
		mu.Lock()
		defer mu.Unlock()
		seen := map[int32]bool{}
		owners := 0
		for _, o := range owned {
			if len(o) > 0 {
				owners++
			}
			for p := range o {
				if seen[p] {
					return false
				}
				seen[p] = true
			}
		}
		return len(seen) == len(parts) && owners == min(len(owned), len(parts))
	}
	// Polling drives nothing here (no auto commit, no data), but franz-go
	// runs the group in the background once a consumer is created; the
	// callbacks report progress.
	wait := time.NewTimer(cfg.DrainTimeout)
	defer wait.Stop()
	for !stable() {
		select {
		case <-changed:
		case <-wait.C:
			return res, fmt.Errorf("the group did not reach a stable assignment within %v (--drain-timeout)", cfg.DrainTimeout)
		case <-ctx.Done():
			return res, ctx.Err()
		}
	}
	stats.Stable = time.Since(start)
	stats.StableSeconds = stats.Stable.Seconds()
	mu.Lock()
	stats.Rebalances = rebalances
	mine := make([][]int32, len(members))
	for i, o := range owned {
		for p := range o {
			mine[i] = append(mine[i], p)
		}
	}
	mu.Unlock()

	// Commit latency: every member commits its partitions, synchronously,
	// cfg.Commits times, all members at once.
	hists := make([]*histogram, len(members))
	var (
		wg       sync.WaitGroup
		errMu    sync.Mutex
		firstErr error
		errCount int64
	)
	for i, cl := range members {
		hists[i] = newHistogram()
		if len(mine[i]) == 0 {
			continue
		}
		wg.Add(1)
		go func(i int, cl *kgo.Client) {
			defer wg.Done()
			for n := 0; n < cfg.Commits && ctx.Err() == nil; n++ {
				offs := map[string]map[int32]kgo.EpochOffset{cfg.Topic: {}}
				for _, p := range mine[i] {
					offs[cfg.Topic][p] = kgo.EpochOffset{Epoch: -1, Offset: int64(n)}
				}
				var cerr error
				t0 := time.Now()
				cl.CommitOffsetsSync(ctx, offs, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
					cerr = err
					if err == nil {
						cerr = firstCommitError(resp)
					}
				})
				if cerr != nil {
					errMu.Lock()
					errCount++
					if firstErr == nil {
						firstErr = cerr
					}
					errMu.Unlock()
					continue
				}
				hists[i].Record(int64(time.Since(t0)))
			}
		}(i, cl)
	}
	wg.Wait()
	h := newHistogram()
	for _, x := range hists {
		h.Merge(x)
	}
	stats.Commit = latencyOf(h)
	stats.Commits = int64(h.Count())
	stats.Errors = errCount
	if firstErr != nil {
		stats.FirstError = firstErr.Error()
	}
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	if errCount > 0 && h.Count() == 0 {
		return res, errors.New("every commit failed: " + stats.FirstError)
	}
	return res, nil
}

// balancerOpts maps a --balancer name to franz-go options.
func balancerOpts(name string) []kgo.Opt {
	switch name {
	case "roundrobin":
		return []kgo.Opt{kgo.Balancers(kgo.RoundRobinBalancer())}
	case "sticky":
		return []kgo.Opt{kgo.Balancers(kgo.StickyBalancer())}
	case "cooperative-sticky":
		return []kgo.Opt{kgo.Balancers(kgo.CooperativeStickyBalancer())}
	case "uniform":
		return []kgo.Opt{kgo.Balancers(kgo.StickyBalancer()), kgo.ServerSideBalancer()}
	case "server-range":
		return []kgo.Opt{kgo.Balancers(kgo.RangeBalancer()), kgo.ServerSideBalancer()}
	default:
		return []kgo.Opt{kgo.Balancers(kgo.RangeBalancer())}
	}
}

// firstCommitError returns the first partition error of a commit response.
func firstCommitError(resp *kmsg.OffsetCommitResponse) error {
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				return fmt.Errorf("%s[%d]: %w", t.Topic, p.Partition, err)
			}
		}
	}
	return nil
}
