package broker

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Follower-side replication: one fetcher per leader broker fetches every
// partition this broker follows from that leader, with the Kafka Fetch
// protocol as a replica (the request names this broker as the replica and
// each partition's last fetched epoch), and appends what it gets to the
// local logs unchanged (offsets, epochs, producer state: see
// log.AppendAsFollower). A diverging-epoch answer (KIP-320, the leader's log
// went another way after a leader change) truncates the local log to where
// the two agree; the leader's high watermark and log start offset follow
// along.

// Replica fetch settings (Kafka's replica.fetch.* defaults). A fetch
// unanswered replicaFetchTimeout after its MaxWait closes the connection
// (a leader that stopped answering, or a network fault that held the
// request) and the fetcher reconnects after replicaFetchBackoff.
const (
	replicaFetchMaxWait      = 500 * time.Millisecond
	replicaFetchMaxBytes     = 10 << 20
	replicaFetchPartitionMax = 1 << 20
	replicaFetchBackoff      = time.Second
	replicaFetchTimeout      = 5 * time.Second
)

// fetchers runs the fetchers of this broker.
type fetchers struct {
	b *Broker

	mu       sync.Mutex
	byLeader map[int32]*fetcher
	closed   bool
}

// fetcher fetches from one leader.
type fetcher struct {
	f        *fetchers
	leader   int32
	endpoint string
	cancel   context.CancelFunc
	done     chan struct{}

	mu    sync.Mutex
	parts map[*partition]*fetchPartState
	wake  chan struct{}
}

// fetchPartState is a followed partition's fetch state.
type fetchPartState struct {
	epoch      int32     // the leader epoch it is followed at
	retryAfter time.Time // paused after an error until then
}

func newFetchers(b *Broker) *fetchers {
	return &fetchers{b: b, byLeader: map[int32]*fetcher{}}
}

// follow makes p fetched from its current leader (or from no one when it
// has none).
func (fs *fetchers) follow(p *partition) {
	st := p.state.Load()
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.removeLocked(p)
	if fs.closed || st == nil || st.Leader < 0 || st.Leader == p.self {
		return
	}
	lb := fs.b.meta.broker(st.Leader)
	if lb == nil || lb.Endpoint == "" {
		return // the leader's registration arrives with the next image
	}
	f := fs.byLeader[st.Leader]
	if f != nil && f.endpoint != lb.Endpoint {
		// The leader restarted on another address.
		f.stop()
		delete(fs.byLeader, st.Leader)
		f = nil
	}
	if f == nil {
		f = fs.start(st.Leader, lb.Endpoint)
		fs.byLeader[st.Leader] = f
	}
	f.mu.Lock()
	f.parts[p] = &fetchPartState{epoch: st.LeaderEpoch}
	f.mu.Unlock()
	f.poke()
}

// ensure follows p unless it is already fetched from its current leader
// at that leader's current endpoint.
func (fs *fetchers) ensure(p *partition) {
	st := p.state.Load()
	if st == nil || st.Leader < 0 || st.Leader == p.self {
		return
	}
	lb := fs.b.meta.broker(st.Leader)
	fs.mu.Lock()
	f := fs.byLeader[st.Leader]
	ok := false
	if f != nil && lb != nil && f.endpoint == lb.Endpoint {
		f.mu.Lock()
		ps := f.parts[p]
		ok = ps != nil && ps.epoch == st.LeaderEpoch
		f.mu.Unlock()
	}
	fs.mu.Unlock()
	if !ok {
		fs.follow(p)
	}
}

// unfollow stops fetching p. When it returns, no fetch response is being
// applied to p, and none from before will be.
func (fs *fetchers) unfollow(p *partition) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.removeLocked(p)
}

// newFetchGen starts a new fetch generation of p: responses to fetches
// built before are dropped (fetcher.applyCurrent), and one being applied
// now finishes first, so that a response in flight while p changes role
// never lands in the log of its new role (docs/durability.md).
func (p *partition) newFetchGen() {
	p.fetchMu.Lock()
	p.fetchGen.Add(1)
	p.fetchMu.Unlock()
}

// removeLocked takes p out of every fetcher, then starts a new fetch
// generation of p. In that order, every request that includes p from
// those fetchers was built in the old generation: its answer is dropped,
// or, if it is being applied already, finishes before newFetchGen returns.
func (fs *fetchers) removeLocked(p *partition) {
	for id, f := range fs.byLeader {
		f.mu.Lock()
		delete(f.parts, p)
		empty := len(f.parts) == 0
		f.mu.Unlock()
		if empty {
			f.stop()
			delete(fs.byLeader, id)
		}
	}
	p.newFetchGen()
}

// close stops every fetcher.
func (fs *fetchers) close() {
	fs.mu.Lock()
	fs.closed = true
	all := fs.byLeader
	fs.byLeader = map[int32]*fetcher{}
	fs.mu.Unlock()
	for _, f := range all {
		f.stop()
	}
}

func (fs *fetchers) start(leader int32, endpoint string) *fetcher {
	ctx, cancel := context.WithCancel(fs.b.ctx)
	f := &fetcher{f: fs, leader: leader, endpoint: endpoint, cancel: cancel, done: make(chan struct{}),
		parts: map[*partition]*fetchPartState{}, wake: make(chan struct{}, 1)}
	go f.run(ctx)
	return f
}

func (f *fetcher) poke() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// stop ends the fetcher and waits for it (never under f.mu).
func (f *fetcher) stop() {
	f.cancel()
	<-f.done
}

func (f *fetcher) run(ctx context.Context) {
	defer close(f.done)
	b := f.f.b
	logger := b.logger.With("leader", f.leader)
	var rc *replicaConn
	defer func() {
		if rc != nil {
			rc.close()
		}
	}()
	backoff := time.Duration(0)
	for ctx.Err() == nil {
		if backoff > 0 {
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return
			}
		}
		req, parts, next := f.request()
		if req == nil {
			wait := time.Until(next)
			if next.IsZero() {
				wait = time.Hour
			}
			select {
			case <-f.wake:
			case <-time.After(wait):
			case <-ctx.Done():
				return
			}
			backoff = 0
			continue
		}
		if rc == nil {
			var err error
			rc, err = dialReplica(ctx, b.faults.dialer(peerReplication, f.leader), f.endpoint,
				replicaClientPrefix+itoa(b.cfg.NodeID), replicaFetchTimeout)
			if err != nil {
				if ctx.Err() == nil {
					logger.Debug("connecting to the leader failed; retrying", "err", err)
				}
				backoff = replicaFetchBackoff
				continue
			}
		}
		resp, buf, err := rc.fetch(ctx, req, replicaFetchMaxWait+replicaFetchTimeout)
		if err != nil {
			rc.close()
			rc = nil
			if ctx.Err() == nil {
				logger.Debug("replica fetch failed; reconnecting", "err", err)
			}
			backoff = replicaFetchBackoff
			continue
		}
		if resp.ErrorCode != 0 {
			putBuf(buf)
			logger.Debug("replica fetch refused; retrying", "err", kerr.ErrorForCode(resp.ErrorCode))
			backoff = replicaFetchBackoff
			continue
		}
		backoff = 0
		f.handle(resp, parts)
		putBuf(buf) // the records are appended
	}
}

// fetchedPart is a partition of a replica fetch request: what the response
// may be applied to.
type fetchedPart struct {
	p      *partition
	gen    uint64 // p's fetch generation when the request was built
	offset int64  // the fetch offset: p's log end then
}

// request builds the next replica fetch for the partitions not paused; if
// none is ready it returns nil and when the earliest paused one resumes.
func (f *fetcher) request() (*kmsg.FetchRequest, map[[16]byte]map[int32]fetchedPart, time.Time) {
	b := f.f.b
	now := time.Now()
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID = b.cfg.NodeID
	req.ReplicaState.ID = b.cfg.NodeID
	req.ReplicaState.Epoch = b.link.brokerEpoch()
	req.MaxWaitMillis = int32(replicaFetchMaxWait / time.Millisecond)
	req.MinBytes = 1
	req.MaxBytes = replicaFetchMaxBytes
	req.SessionEpoch = -1 // no fetch session
	parts := map[[16]byte]map[int32]fetchedPart{}
	var next time.Time
	byTopic := map[[16]byte]int{}
	f.mu.Lock()
	for p, ps := range f.parts {
		if p.deleted.Load() || p.log.Offline() != nil {
			continue
		}
		if now.Before(ps.retryAfter) {
			if next.IsZero() || ps.retryAfter.Before(next) {
				next = ps.retryAfter
			}
			continue
		}
		i, ok := byTopic[p.topicID]
		if !ok {
			t := kmsg.NewFetchRequestTopic()
			t.Topic, t.TopicID = p.topic, p.topicID
			req.Topics = append(req.Topics, t)
			i = len(req.Topics) - 1
			byTopic[p.topicID] = i
			parts[p.topicID] = map[int32]fetchedPart{}
		}
		gen := p.fetchGen.Load()
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition = p.index
		rp.CurrentLeaderEpoch = ps.epoch
		rp.FetchOffset = p.log.EndOffset()
		if e, ok := p.log.LatestEpoch(); ok {
			rp.LastFetchedEpoch = e
		}
		rp.LogStartOffset = p.log.StartOffset()
		rp.PartitionMaxBytes = replicaFetchPartitionMax
		req.Topics[i].Partitions = append(req.Topics[i].Partitions, rp)
		parts[p.topicID][p.index] = fetchedPart{p: p, gen: gen, offset: rp.FetchOffset}
	}
	f.mu.Unlock()
	if len(req.Topics) == 0 {
		return nil, nil, next
	}
	return req, parts, next
}

// handle applies a fetch response to the followed partitions.
func (f *fetcher) handle(resp *kmsg.FetchResponse, parts map[[16]byte]map[int32]fetchedPart) {
	b := f.f.b
	for i := range resp.Topics {
		rt := &resp.Topics[i]
		byIndex := parts[rt.TopicID]
		if byIndex == nil {
			if t := b.meta.lookup(rt.Topic); t != nil {
				byIndex = parts[t.id]
			}
		}
		for j := range rt.Partitions {
			rp := &rt.Partitions[j]
			fp, ok := byIndex[rp.Partition]
			if !ok {
				continue
			}
			if err := f.applyCurrent(fp, rp); err != nil {
				f.pause(fp.p, err)
			}
		}
	}
}

// applyCurrent applies one partition of a response if the request is
// still current for it: the partition's fetch generation is the one the
// request was built in, and its log still ends at the fetch offset (as
// Kafka's fetcher checks the partition's fetch state before processing a
// response). Otherwise the partition changed role or leader, or was
// truncated, meanwhile, and the next request fetches afresh.
func (f *fetcher) applyCurrent(fp fetchedPart, rp *kmsg.FetchResponseTopicPartition) error {
	fp.p.fetchMu.Lock()
	defer fp.p.fetchMu.Unlock()
	if fp.p.fetchGen.Load() != fp.gen || fp.p.log.EndOffset() != fp.offset {
		return nil
	}
	return f.apply(fp.p, rp)
}

// errWaitForMetadata pauses a partition until the next metadata change
// re-adds it (it is re-added by follow): the leader leads it at a newer
// epoch than ours, so our image is behind and will bring the new state.
var errWaitForMetadata = errors.New("the leader leads this partition at a newer epoch; waiting for metadata")

// errLeaderBehind pauses a partition briefly: the leader does not know yet
// that it leads the partition at our epoch (it has not applied the change
// that made it leader, or created the topic, that our image already has).
// Nothing in this broker's image will change to wake the partition, so it
// is retried soon: while a follower does not fetch, acks=all writes wait
// for it and, after replica.lag.time.max.ms, the leader drops it from the
// ISR.
var errLeaderBehind = errors.New("the leader does not lead this partition at our epoch yet; retrying")

// leaderBehindBackoff is how long a partition refused with errLeaderBehind
// waits: about the time the leader takes to apply a metadata change.
const leaderBehindBackoff = 50 * time.Millisecond

// apply applies one partition of a replica fetch response.
func (f *fetcher) apply(p *partition, rp *kmsg.FetchResponseTopicPartition) error {
	l := p.log
	switch rp.ErrorCode {
	case 0:
	case kerr.OffsetOutOfRange.Code:
		// Our end is outside the leader's log: behind its start (it
		// deleted what we miss) or past its high watermark.
		if l.EndOffset() < rp.LogStartOffset {
			f.f.b.logger.Info("follower fell behind the leader's log start; restarting the log there",
				"partition", p.String(), "end_offset", l.EndOffset(), "leader_log_start", rp.LogStartOffset)
			return l.TruncateFullyAndStartAt(rp.LogStartOffset)
		}
		return l.TruncateTo(max(rp.HighWatermark, l.HighWatermark()))
	case kerr.FencedLeaderEpoch.Code:
		return errWaitForMetadata
	case kerr.NotLeaderForPartition.Code, kerr.UnknownLeaderEpoch.Code,
		kerr.UnknownTopicOrPartition.Code, kerr.UnknownTopicID.Code:
		// NOT_LEADER_OR_FOLLOWER also comes from a leader that has
		// already resigned; then our image brings the change soon and
		// follow re-adds the partition anyway.
		return errLeaderBehind
	default:
		return kerr.ErrorForCode(rp.ErrorCode)
	}
	if de := rp.DivergingEpoch; de.Epoch >= 0 && de.EndOffset >= 0 {
		// The logs diverge after the leader's end offset for our last
		// epoch: cut ours to where both agree.
		target := min(de.EndOffset, l.EndOffset())
		if e, end := l.EndOffsetForEpoch(de.Epoch); e >= 0 && end >= 0 {
			target = min(target, end)
		}
		f.f.b.logger.Info("follower log diverged from the leader's; truncating",
			"partition", p.String(), "to", target, "leader_epoch", de.Epoch, "leader_end_offset", de.EndOffset)
		return l.TruncateTo(target)
	}
	if len(rp.RecordBatches) > 0 {
		if _, err := l.AppendAsFollower(rp.RecordBatches); err != nil {
			if l.Offline() != nil {
				f.f.b.logger.Error("follower append failed; the partition is offline", "partition", p.String(), "err", err)
			}
			return err
		}
	}
	l.SetHighWatermark(min(rp.HighWatermark, l.EndOffset()))
	if rp.LogStartOffset > l.StartOffset() {
		if _, err := l.DeleteRecordsBefore(min(rp.LogStartOffset, l.HighWatermark())); err != nil {
			return err
		}
	}
	p.notify()
	return nil
}

// pause stops fetching p for a while after an error (until the next
// metadata change for errWaitForMetadata, which follow undoes; briefly for
// errLeaderBehind).
func (f *fetcher) pause(p *partition, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ps := f.parts[p]
	if ps == nil {
		return
	}
	d := replicaFetchBackoff
	switch {
	case errors.Is(err, errWaitForMetadata):
		d = 5 * time.Second
	case errors.Is(err, errLeaderBehind):
		d = leaderBehindBackoff
	}
	ps.retryAfter = time.Now().Add(d)
	if !errors.Is(err, errWaitForMetadata) && !errors.Is(err, errLeaderBehind) {
		f.f.b.logger.Warn("replica fetch of a partition failed; retrying", "partition", p.String(), "err", err)
	}
}
