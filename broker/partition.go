package broker

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	vlog "github.com/vigilhq/vigil/broker/log"
	"github.com/vigilhq/vigil/controller"
)

// partition is one partition of the cluster as this broker sees it: the
// controller's state of it (leader, epochs, replicas, ISR) and, when this
// broker holds a replica, its log. While this broker leads it, the
// partition also tracks the followers' progress, from which it advances
// the high watermark and proposes ISR changes (replication.go).
type partition struct {
	topic   string
	topicID [16]byte
	index   int32
	self    int32     // this broker's id
	log     *vlog.Log // nil when this broker holds no replica
	deleted atomic.Bool
	metrics atomic.Pointer[topicSeries] // the topic's metrics, resolved on first use
	// leavingISR is set while a request to leave the ISR (the log is
	// offline) is in flight.
	leavingISR atomic.Bool

	// state is the controller's latest state of the partition.
	state atomic.Pointer[controller.Partition]

	// Long-poll fetches waiting for data register a wake channel here,
	// marked true for a replica's fetch. Appends wake the replicas' (what
	// they read is up to the log end), high watermark moves everyone's
	// (consumers read up to it). nwait and nreplica let appends skip the
	// lock when no one waits.
	wmu      sync.Mutex
	waiters  map[chan struct{}]bool
	nwait    atomic.Int32
	nreplica atomic.Int32

	// Leader-side replication state (see replication.go), under rmu.
	rmu sync.Mutex
	// leading is the leader epoch this broker leads the partition at, or
	// -1 when it does not lead it.
	leading int32
	// epochStart is the log end offset when this leadership began: a
	// follower must have reached it to join the ISR.
	epochStart int64
	followers  map[int32]*follower
	// alterInFlight is set while an AlterPartition for this partition is
	// outstanding; proposed is the ISR it proposes.
	alterInFlight bool
	proposed      []int32
	// hwCh is closed (and replaced) when the high watermark advances or
	// the partition's state changes, waking produce requests that wait
	// for acks=all.
	hwCh chan struct{}
	// replicatedAt is when the high watermark last reached the log end
	// (every in-sync replica had everything).
	replicatedAt time.Time

	// Follower-side fetch generation (see fetcher.go): bumped, under
	// fetchMu, whenever the partition's fetching changes (it is followed
	// anew, or no longer), so that a fetch response built for an older
	// generation is dropped. A fetcher applies a response holding fetchMu.
	fetchMu  sync.Mutex
	fetchGen atomic.Uint64
}

// init prepares a new partition object.
func (p *partition) init() {
	p.leading = -1
	p.hwCh = make(chan struct{})
}

// leaderEpoch returns the current leader epoch (0 before the first state).
func (p *partition) leaderEpoch() int32 {
	if st := p.state.Load(); st != nil {
		return st.LeaderEpoch
	}
	return 0
}

// leaderID returns the current leader, or -1.
func (p *partition) leaderID() int32 {
	if st := p.state.Load(); st != nil {
		return st.Leader
	}
	return -1
}

// appendAsLeader appends records as the partition's leader, stamped with
// the leader epoch at which it checked that it leads, or fails with
// NOT_LEADER_OR_FOLLOWER. Stamping the epoch read at the check (not a
// later one) matters when the leadership moves during the append: a batch
// of this broker's old epoch is truncated by the divergence check when it
// follows the new leader, whereas one stamped with the new leader's epoch
// would pass it and stay, different from the new leader's records at the
// same offsets. If this broker was elected again meanwhile, the log
// refuses the old epoch.
func (p *partition) appendAsLeader(records []byte) (vlog.AppendInfo, error) {
	st := p.state.Load()
	if st == nil || st.Leader != p.self || p.deleted.Load() {
		return vlog.AppendInfo{}, fmt.Errorf("partition %s: %w", p, kerr.NotLeaderForPartition)
	}
	return p.log.Append(records, st.LeaderEpoch)
}

// isLeader reports whether this broker leads the partition (and holds its
// log).
func (p *partition) isLeader() bool {
	st := p.state.Load()
	return p.log != nil && st != nil && st.Leader == p.self && !p.deleted.Load()
}

func (p *partition) String() string { return fmt.Sprintf("%s-%d", p.topic, p.index) }

// addWaiter registers ch to be signalled (non-blocking) when there is more
// to read: for a replica's fetch by the next append, for a consumer's by
// the next high watermark move.
func (p *partition) addWaiter(ch chan struct{}, replica bool) {
	p.wmu.Lock()
	if p.waiters == nil {
		p.waiters = make(map[chan struct{}]bool)
	}
	if _, ok := p.waiters[ch]; !ok {
		p.waiters[ch] = replica
		p.nwait.Add(1)
		if replica {
			p.nreplica.Add(1)
		}
	}
	p.wmu.Unlock()
}

func (p *partition) removeWaiter(ch chan struct{}) {
	p.wmu.Lock()
	if replica, ok := p.waiters[ch]; ok {
		delete(p.waiters, ch)
		p.nwait.Add(-1)
		if replica {
			p.nreplica.Add(-1)
		}
	}
	p.wmu.Unlock()
}

// notify wakes every waiting fetch (the high watermark moved, or the
// partition changed).
func (p *partition) notify() {
	if p.nwait.Load() == 0 {
		return
	}
	p.wake(false)
}

// notifyAppended wakes the replicas' waiting fetches after an append that
// did not move the high watermark: consumers cannot read it yet, so they
// sleep on.
func (p *partition) notifyAppended() {
	if p.nreplica.Load() == 0 {
		return
	}
	p.wake(true)
}

func (p *partition) wake(replicasOnly bool) {
	p.wmu.Lock()
	for ch, replica := range p.waiters {
		if replicasOnly && !replica {
			continue
		}
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	p.wmu.Unlock()
}

// errorCode maps an error from the log engine to the Kafka error code a
// client should see, and a message for versions that carry one.
func (p *partition) errorCode(err error) (int16, string) {
	if err == nil {
		return 0, ""
	}
	if p.deleted.Load() {
		return kerr.UnknownTopicOrPartition.Code, "the topic was deleted"
	}
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return ke.Code, clientMessage(err, ke)
	}
	// Anything the log engine did not classify is an I/O problem.
	return kerr.KafkaStorageError.Code, err.Error()
}

// clientMessage is err's text for a client that also gets ke's error code:
// without ke's own "NAME: description" text, which the log engine's errors
// carry (they wrap ke) and which the client already knows from the code.
func clientMessage(err error, ke *kerr.Error) string {
	msg := err.Error()
	kt := ke.Error()
	msg = strings.ReplaceAll(msg, " ("+kt+")", "")
	msg = strings.ReplaceAll(msg, ": "+kt, "")
	msg = strings.ReplaceAll(msg, kt, ke.Message)
	return strings.TrimSuffix(msg, ": "+ke.Message)
}
