package group

import (
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Config holds the coordinator's settings. Zero values take Kafka's defaults
// (see DefaultConfig).
type Config struct {
	// MinSessionTimeout and MaxSessionTimeout bound the session timeout a
	// classic member may ask for (group.min.session.timeout.ms,
	// group.max.session.timeout.ms); outside them JoinGroup fails with
	// INVALID_SESSION_TIMEOUT.
	MinSessionTimeout time.Duration
	MaxSessionTimeout time.Duration
	// InitialRebalanceDelay delays the first rebalance of an empty group so
	// that members starting together join one generation
	// (group.initial.rebalance.delay.ms).
	InitialRebalanceDelay time.Duration
	// MaxSize is the most members a group may have (group.max.size); 0 is
	// unlimited.
	MaxSize int
	// NewMemberJoinTimeout is how long a member that joined during a
	// rebalance may take to rejoin before it is dropped (Kafka: 5 minutes).
	NewMemberJoinTimeout time.Duration
	// OffsetsRetention is how long committed offsets are kept once a group
	// is empty, or for a standalone commit since the commit
	// (offsets.retention.minutes).
	OffsetsRetention time.Duration
	// OffsetsRetentionCheckInterval is how often expiry runs
	// (offsets.retention.check.interval.ms).
	OffsetsRetentionCheckInterval time.Duration
	// OffsetMetadataMaxBytes is the largest commit metadata string
	// (offset.metadata.max.bytes).
	OffsetMetadataMaxBytes int

	// ConsumerSessionTimeout and ConsumerHeartbeatInterval are the KIP-848
	// member session timeout and the heartbeat interval told to members
	// (group.consumer.session.timeout.ms,
	// group.consumer.heartbeat.interval.ms).
	ConsumerSessionTimeout    time.Duration
	ConsumerHeartbeatInterval time.Duration
	// ConsumerRebalanceTimeout bounds how long a KIP-848 member may take to
	// revoke partitions before it is removed (the member's own rebalance
	// timeout, group.consumer.rebalance.timeout.ms in newer Kafka).
	ConsumerRebalanceTimeout time.Duration
	// ConsumerMaxSize is the most members of a KIP-848 group
	// (group.consumer.max.size); 0 is unlimited.
	ConsumerMaxSize int
}

// DefaultConfig returns Kafka's defaults.
func DefaultConfig() Config {
	return Config{
		MinSessionTimeout:             6 * time.Second,
		MaxSessionTimeout:             30 * time.Minute,
		InitialRebalanceDelay:         3 * time.Second,
		NewMemberJoinTimeout:          5 * time.Minute,
		OffsetsRetention:              7 * 24 * time.Hour,
		OffsetsRetentionCheckInterval: 10 * time.Minute,
		OffsetMetadataMaxBytes:        4096,
		ConsumerSessionTimeout:        45 * time.Second,
		ConsumerHeartbeatInterval:     5 * time.Second,
		ConsumerRebalanceTimeout:      5 * time.Minute,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.MinSessionTimeout <= 0 {
		c.MinSessionTimeout = d.MinSessionTimeout
	}
	if c.MaxSessionTimeout <= 0 {
		c.MaxSessionTimeout = d.MaxSessionTimeout
	}
	if c.InitialRebalanceDelay < 0 {
		c.InitialRebalanceDelay = 0
	}
	if c.NewMemberJoinTimeout <= 0 {
		c.NewMemberJoinTimeout = d.NewMemberJoinTimeout
	}
	if c.OffsetsRetention <= 0 {
		c.OffsetsRetention = d.OffsetsRetention
	}
	if c.OffsetsRetentionCheckInterval <= 0 {
		c.OffsetsRetentionCheckInterval = d.OffsetsRetentionCheckInterval
	}
	if c.OffsetMetadataMaxBytes <= 0 {
		c.OffsetMetadataMaxBytes = d.OffsetMetadataMaxBytes
	}
	if c.ConsumerSessionTimeout <= 0 {
		c.ConsumerSessionTimeout = d.ConsumerSessionTimeout
	}
	if c.ConsumerHeartbeatInterval <= 0 {
		c.ConsumerHeartbeatInterval = d.ConsumerHeartbeatInterval
	}
	if c.ConsumerRebalanceTimeout <= 0 {
		c.ConsumerRebalanceTimeout = d.ConsumerRebalanceTimeout
	}
	return c
}

// Client identifies who sent a request: its client.id and address, as
// DescribeGroups reports them.
type Client struct {
	ID   string
	Host string
}

// ReplyTo is an opaque token the caller passes with a request; the reply to
// that request carries it back.
type ReplyTo any

// Reply is the response to one request.
type Reply struct {
	To   ReplyTo
	Resp kmsg.Response
}

// Record is one record for __consumer_offsets; a nil Value is a tombstone.
type Record struct {
	Key, Value []byte
}

// Append is a write the caller must make to the coordinator's
// __consumer_offsets partition before calling Persisted(ID, ...).
type Append struct {
	ID      uint64
	Records []Record
}

// Output is what a call asks the caller to do: deliver Replies, then (if
// Append is not nil) write it and report the outcome with Persisted.
// Events describe what happened to groups, for the operator's log.
type Output struct {
	Replies []Reply
	Append  *Append
	Events  []Event
}

// Event is a notable change of a group: a rebalance starting or
// completing, a member removed, a new target assignment.
type Event struct {
	Group      string
	Msg        string // what happened, e.g. "preparing to rebalance"
	Reason     string // why, when known
	Generation int32  // generation (classic) or group epoch (KIP-848)
	Members    int
}

// Coordinator is the deterministic state of the groups of one
// __consumer_offsets partition. It is not safe for concurrent use: the
// caller serializes calls.
type Coordinator struct {
	cfg       Config
	partition int32

	groups    map[string]*group
	timers    timerHeap
	compactAt int    // heap size that triggers dropping cancelled timers
	seq       uint64 // timer and member id sequence

	// The write being assembled by the current call, and the completions
	// of writes handed out and not yet reported.
	out        Output
	appendRecs []Record
	appendDone []func(code int16)
	nextAppend uint64
	pending    map[uint64][]func(code int16)

	nextExpiry time.Time
	skipped    int // replayed records of unknown key versions
	// newUUID makes member ids; tests may replace it for determinism.
	newUUID func() string
}

// New returns a Coordinator for __consumer_offsets partition p.
func New(cfg Config, p int32) *Coordinator {
	c := &Coordinator{
		cfg:       cfg.withDefaults(),
		partition: p,
		groups:    map[string]*group{},
		pending:   map[uint64][]func(int16){},
	}
	c.newUUID = c.sequentialID
	return c
}

// SetIDGenerator replaces the generator of the random part of member ids
// (by default a counter, which the caller should replace with random UUIDs
// in production so ids are not reused across coordinator restarts).
func (c *Coordinator) SetIDGenerator(f func() string) { c.newUUID = f }

func (c *Coordinator) sequentialID() string {
	c.seq++
	return "m" + strconv.FormatUint(c.seq, 10)
}

// Partition returns the __consumer_offsets partition this coordinator owns.
func (c *Coordinator) Partition() int32 { return c.partition }

// event records something notable for the operator's log.
func (c *Coordinator) event(g *group, msg, reason string) {
	e := Event{Group: g.id, Msg: msg, Reason: reason, Generation: g.generation, Members: len(g.members)}
	if g.consumer != nil {
		e.Generation, e.Members = g.consumer.epoch, len(g.consumer.members)
	}
	c.out.Events = append(c.out.Events, e)
}

// reply queues a response.
func (c *Coordinator) reply(to ReplyTo, resp kmsg.Response) {
	c.out.Replies = append(c.out.Replies, Reply{To: to, Resp: resp})
}

// write queues records; done (if not nil) runs with the outcome once the
// caller reports it through Persisted.
func (c *Coordinator) write(recs []Record, done func(code int16)) {
	c.appendRecs = append(c.appendRecs, recs...)
	if done != nil {
		c.appendDone = append(c.appendDone, done)
	}
}

// finish returns the accumulated output of a call.
func (c *Coordinator) finish() Output {
	out := c.out
	c.out = Output{}
	if len(c.appendRecs) > 0 || len(c.appendDone) > 0 {
		c.nextAppend++
		out.Append = &Append{ID: c.nextAppend, Records: c.appendRecs}
		c.pending[c.nextAppend] = c.appendDone
		c.appendRecs, c.appendDone = nil, nil
	}
	return out
}

// Persisted reports the outcome of writing Append id: errCode 0 if the
// records are durable per the offsets topic's settings, else the Kafka error
// code of the failed write. Replies that waited for the write come out.
func (c *Coordinator) Persisted(now time.Time, id uint64, errCode int16) Output {
	done := c.pending[id]
	delete(c.pending, id)
	for _, f := range done {
		f(errCode)
	}
	return c.finish()
}

// PendingWrites reports how many Appends were handed out and not yet
// reported with Persisted.
func (c *Coordinator) PendingWrites() int { return len(c.pending) }

// Tick fires every timer due at now: session and rebalance timeouts, the
// initial rebalance delay, and offset expiry.
func (c *Coordinator) Tick(now time.Time) Output {
	for {
		t, ok := c.timers.popDue(now)
		if !ok {
			break
		}
		c.fire(now, t)
	}
	if !c.nextExpiry.IsZero() && !now.Before(c.nextExpiry) {
		c.expireOffsets(now)
		c.nextExpiry = now.Add(c.cfg.OffsetsRetentionCheckInterval)
	}
	return c.finish()
}

// NextDeadline returns when Tick should next be called.
func (c *Coordinator) NextDeadline() time.Time {
	next := c.nextExpiry
	if t, ok := c.timers.peek(); ok && (next.IsZero() || t.Before(next)) {
		next = t
	}
	return next
}

// Start begins serving after Replay: members of groups read back get a
// fresh session, and offset expiry is scheduled.
func (c *Coordinator) Start(now time.Time) Output {
	for _, g := range c.groups {
		g.afterLoad(c, now)
	}
	c.nextExpiry = now.Add(c.cfg.OffsetsRetentionCheckInterval)
	return c.finish()
}

// Stop abandons the coordinator (leadership of its partition moved, or the
// broker is shutting down): every held request is answered with
// NOT_COORDINATOR so its client looks the coordinator up again, and writes
// not yet reported are failed.
func (c *Coordinator) Stop() Output {
	for id := range c.pending {
		for _, f := range c.pending[id] {
			f(kerr.NotCoordinator.Code)
		}
		delete(c.pending, id)
	}
	for _, g := range c.groups {
		g.abandon(c)
	}
	c.groups = map[string]*group{}
	c.timers = timerHeap{}
	out := c.finish()
	out.Append = nil // nothing may be written any more
	return out
}

// persistErrorCode maps the error of a failed __consumer_offsets write to
// the code a group client should see, as Kafka does: retriable conditions
// send the client to look for the coordinator again.
func persistErrorCode(code int16) int16 {
	switch code {
	case 0:
		return 0
	case kerr.UnknownTopicOrPartition.Code, kerr.NotEnoughReplicas.Code,
		kerr.NotEnoughReplicasAfterAppend.Code, kerr.RequestTimedOut.Code:
		return kerr.CoordinatorNotAvailable.Code
	case kerr.NotLeaderForPartition.Code, kerr.KafkaStorageError.Code:
		return kerr.NotCoordinator.Code
	case kerr.MessageTooLarge.Code, kerr.RecordListTooLarge.Code, kerr.InvalidFetchSize.Code:
		return kerr.InvalidCommitOffsetSize.Code
	default:
		return kerr.UnknownServerError.Code
	}
}
