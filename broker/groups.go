package broker

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"hash/crc32"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/vigilhq/vigil/broker/group"
	vlog "github.com/vigilhq/vigil/broker/log"
	"github.com/vigilhq/vigil/controller"
)

// offsetsTopic is Kafka's internal topic of committed offsets and group
// metadata. A group belongs to partition group.PartitionFor(id, n); the
// leader of that partition is the group's coordinator, so coordination
// follows partition leadership.
const offsetsTopic = "__consumer_offsets"

// groupCoordinator is the I/O shell around the deterministic coordinator
// cores of broker/group: one shard per partition of __consumer_offsets this
// broker leads, each with a lock, a timer for the core's deadlines and the
// partition's log for the records the core asks to persist (written like an
// acks=all produce: the reply waits until every in-sync replica has them).
// A shard starts when this broker becomes the partition's leader and stops
// when it stops leading it.
type groupCoordinator struct {
	b *Broker

	mu     sync.Mutex
	shards map[int32]*groupShard // by offsets partition, for those led here
	closed bool
	create sync.Mutex // serializes creating the offsets topic
}

// groupShard is the coordinator of one __consumer_offsets partition.
type groupShard struct {
	gc *groupCoordinator
	p  *partition

	mu      sync.Mutex
	core    *group.Coordinator
	loaded  chan struct{} // closed once the partition is replayed
	loadErr error
	timer   *time.Timer
	stopped bool
	// metrics is what the last scrape collected (groupCollector).
	metrics atomic.Pointer[shardMetrics]
}

// shardMetrics is a shard's committed offsets and group states, as the
// metrics collector last read them.
type shardMetrics struct {
	offsets []shardOffset
	states  map[[2]string]int
}

type shardOffset struct {
	key lagKey
	off int64
}

// Errors of shardFor.
var (
	errCoordinatorLoading = errors.New("coordinator is loading")
	errNotCoordinator     = errors.New("this broker does not coordinate the group")
)

// offsetsWriteTimeout bounds how long a group write waits for the
// in-sync replicas.
const offsetsWriteTimeout = 10 * time.Second

func newGroupCoordinator(b *Broker) *groupCoordinator {
	return &groupCoordinator{b: b, shards: map[int32]*groupShard{}}
}

// lead starts the coordinator of offsets partition p, which this broker
// now leads (a previous shard of the partition stops first).
func (gc *groupCoordinator) lead(p *partition) {
	gc.mu.Lock()
	defer gc.mu.Unlock()
	if gc.closed {
		return
	}
	if old := gc.shards[p.index]; old != nil {
		go old.stop()
	}
	s := &groupShard{gc: gc, p: p, loaded: make(chan struct{})}
	gc.shards[p.index] = s
	go s.load()
}

// resign stops the coordinator of offsets partition p: clients holding
// requests get NOT_COORDINATOR and look for the new leader.
func (gc *groupCoordinator) resign(p *partition) {
	gc.mu.Lock()
	defer gc.mu.Unlock()
	if s := gc.shards[p.index]; s != nil && s.p == p {
		delete(gc.shards, p.index)
		go s.stop()
	}
}

// ensureTopic creates __consumer_offsets on first use, as Kafka does, with
// --offsets-topic-replication-factor replicas (fewer if the cell has fewer
// live brokers).
func (gc *groupCoordinator) ensureTopic(ctx context.Context) (*topic, error) {
	if t := gc.b.meta.lookup(offsetsTopic); t != nil {
		return t, nil
	}
	gc.create.Lock()
	defer gc.create.Unlock()
	if t := gc.b.meta.lookup(offsetsTopic); t != nil {
		return t, nil
	}
	alive := 0
	for _, br := range gc.b.meta.topics.Load().brokers {
		if br.Alive() && br.Cell == gc.b.cfg.Cell {
			alive++
		}
	}
	rf := min(gc.b.cfg.OffsetsTopicReplicationFactor, int16(max(alive, 1)))
	t, err := gc.b.createTopic(ctx, controller.CreateTopic{
		Name: offsetsTopic, Partitions: gc.b.cfg.OffsetsTopicPartitions, ReplicationFactor: rf,
		Configs: map[string]string{"cleanup.policy": "compact", "segment.bytes": "104857600"},
	})
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", offsetsTopic, err)
	}
	gc.b.logger.Info("created the offsets topic", "topic", offsetsTopic, "partitions", len(t.partitions), "replication_factor", rf)
	return t, nil
}

// coordinatorOf returns the offsets partition of groupID (creating the
// offsets topic if needed).
func (gc *groupCoordinator) coordinatorOf(ctx context.Context, groupID string) (*partition, error) {
	t, err := gc.ensureTopic(ctx)
	if err != nil {
		return nil, err
	}
	return t.partitions[group.PartitionFor(groupID, int32(len(t.partitions)))], nil
}

// shardFor returns the shard coordinating groupID once it is loaded.
func (gc *groupCoordinator) shardFor(groupID string) (*groupShard, error) {
	ctx, cancel := gc.b.adminContext()
	defer cancel()
	p, err := gc.coordinatorOf(ctx, groupID)
	if err != nil {
		return nil, err
	}
	gc.mu.Lock()
	s := gc.shards[p.index]
	gc.mu.Unlock()
	if s == nil || s.p != p {
		return nil, errNotCoordinator
	}
	select {
	case <-s.loaded:
		return s, s.loadErr
	default:
		return nil, errCoordinatorLoading
	}
}

// coordinatorError maps a shardFor error to the code a group client
// should see.
func coordinatorError(err error) int16 {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errCoordinatorLoading):
		return kerr.CoordinatorLoadInProgress.Code
	case errors.Is(err, errNotCoordinator):
		return kerr.NotCoordinator.Code
	default:
		return kerr.CoordinatorNotAvailable.Code
	}
}

// load replays the partition into a new core and starts it.
func (s *groupShard) load() {
	defer close(s.loaded)
	logger := s.gc.b.logger.With("partition", s.p.String())
	cfg := s.gc.b.cfg.groupConfig()
	core := group.New(cfg, s.p.index)
	core.SetIDGenerator(randomID)
	start := time.Now()
	var records, bad int
	err := readLog(s.p.log, func(r *vlog.Record) {
		records++
		if err := core.Replay(r.Key, r.Value); err != nil {
			bad++
			logger.Warn("skipping a malformed record in the offsets topic", "offset", r.Offset, "err", err)
		}
	})
	if err != nil {
		s.loadErr = fmt.Errorf("loading %s: %w", s.p, err)
		logger.Error("group coordinator could not load its partition; its groups are unavailable", "err", err)
		return
	}
	s.mu.Lock()
	s.core = core
	s.applyLocked(core.Start(time.Now()))
	s.mu.Unlock()
	if records > 0 {
		logger.Info("group coordinator loaded", "records", records, "malformed", bad,
			"unknown_record_versions", core.Skipped(), "took", time.Since(start))
	}
}

// readLog calls fn with every record of l from its start to its end.
func readLog(l *vlog.Log, fn func(*vlog.Record)) error {
	buf := make([]byte, 0, 1<<20)
	off := l.StartOffset()
	end := l.EndOffset()
	for off < end {
		info, err := l.Read(buf[:0], off, 1<<20, end)
		if err != nil {
			return err
		}
		if len(info.Records) == 0 {
			break
		}
		next := off
		for b := info.Records; len(b) > 0; {
			h, err := vlog.ParseBatchHeader(b)
			if err != nil {
				return err
			}
			batch := b[:h.Size()]
			b = b[h.Size():]
			next = h.LastOffset() + 1
			if h.IsControl() {
				continue
			}
			if err := vlog.DecodeRecords(batch, func(r *vlog.Record) error {
				if r.Offset >= off {
					fn(r)
				}
				return nil
			}); err != nil {
				return err
			}
		}
		if next <= off {
			break
		}
		off = next
		buf = info.Records
	}
	return nil
}

func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// do runs op against the loaded core and carries out its output: replies
// go to their channels, records are appended to the partition before the
// core hears the outcome, and the timer is set to the next deadline.
func (s *groupShard) do(op func(core *group.Coordinator, now time.Time) group.Output) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped || s.core == nil {
		return errors.New("coordinator stopped")
	}
	s.applyLocked(op(s.core, time.Now()))
	return nil
}

func (s *groupShard) applyLocked(out group.Output) {
	for {
		for _, e := range out.Events {
			s.gc.b.logger.Info("group: "+e.Msg, "group", e.Group, "generation", e.Generation, "members", e.Members, "reason", e.Reason)
		}
		for _, r := range out.Replies {
			r.To.(chan kmsg.Response) <- r.Resp // buffered; one reply per token
		}
		if out.Append == nil {
			break
		}
		code := s.append(out.Append.Records)
		out = s.core.Persisted(time.Now(), out.Append.ID, code)
	}
	s.resetTimerLocked()
}

// append writes records to the shard's partition as one batch and returns
// the Kafka error code of the outcome.
func (s *groupShard) append(recs []group.Record) int16 {
	if len(recs) == 0 {
		return 0
	}
	batch := encodeBatch(recs, time.Now().UnixMilli())
	info, err := s.p.appendAsLeader(batch)
	if errors.Is(err, kerr.NotLeaderForPartition) {
		return kerr.NotLeaderForPartition.Code
	}
	if err != nil {
		code, _ := s.p.errorCode(err)
		s.gc.b.logger.Error("writing to the offsets topic failed", "partition", s.p.String(), "err", err)
		if code == 0 {
			code = kerr.UnknownServerError.Code
		}
		return code
	}
	s.p.maybeAdvanceHW() // wakes every fetch if it moved
	s.p.notifyAppended()
	expired, stop := closeAfter(offsetsWriteTimeout)
	defer stop()
	return s.p.waitReplicated(s.gc.b.ctx.Done(), expired, info.LastOffset+1, 1)
}

func (s *groupShard) resetTimerLocked() {
	if s.stopped {
		return
	}
	next := s.core.NextDeadline()
	if next.IsZero() {
		return
	}
	d := max(time.Until(next), 0)
	if s.timer == nil {
		s.timer = time.AfterFunc(d, s.tick)
	} else {
		s.timer.Reset(d)
	}
}

func (s *groupShard) tick() {
	_ = s.do(func(core *group.Coordinator, now time.Time) group.Output { return core.Tick(now) })
}

// stop answers every held request with NOT_COORDINATOR and stops the timer.
func (s *groupShard) stop() {
	<-s.loaded
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped || s.core == nil {
		s.stopped = true
		return
	}
	out := s.core.Stop()
	s.stopped = true
	for _, r := range out.Replies {
		r.To.(chan kmsg.Response) <- r.Resp
	}
	if s.timer != nil {
		s.timer.Stop()
	}
}

// close stops every shard; called before the logs are closed.
func (gc *groupCoordinator) close() {
	gc.mu.Lock()
	gc.closed = true
	shards := gc.shards
	gc.shards = map[int32]*groupShard{}
	gc.mu.Unlock()
	for _, s := range shards {
		s.stop()
	}
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// encodeBatch encodes records as one uncompressed v2 record batch with base
// offset 0 (the log assigns offsets) and no producer id.
func encodeBatch(recs []group.Record, nowMs int64) []byte {
	var body []byte
	for i, r := range recs {
		kr := kmsg.Record{OffsetDelta: int32(i), Key: r.Key, Value: r.Value}
		enc := kr.AppendTo(nil) // with Length 0; re-encoded below with the real length
		kr.Length = int32(len(enc) - 1)
		body = kr.AppendTo(body)
	}
	b := kmsg.RecordBatch{
		FirstOffset:          0,
		PartitionLeaderEpoch: -1,
		Magic:                2,
		Attributes:           0,
		LastOffsetDelta:      int32(len(recs) - 1),
		FirstTimestamp:       nowMs,
		MaxTimestamp:         nowMs,
		ProducerID:           -1,
		ProducerEpoch:        -1,
		FirstSequence:        -1,
		NumRecords:           int32(len(recs)),
		Records:              body,
	}
	out := b.AppendTo(nil)
	// batchLength counts everything after itself; the CRC covers the
	// bytes from the attributes on.
	kbin.AppendInt32(out[:8], int32(len(out)-12))
	crc := crc32.Checksum(out[21:], castagnoli)
	kbin.AppendInt32(out[:17], int32(crc))
	return out
}

// client describes a connection's client for the coordinator.
func (c *conn) groupClient(clientID string) group.Client {
	host := c.nc.RemoteAddr().String()
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return group.Client{ID: clientID, Host: "/" + host}
}

// wait waits for the reply to a held request; if the connection or the
// broker goes away first, the client gets NOT_COORDINATOR so that it looks
// the coordinator up again.
func (c *conn) wait(ch chan kmsg.Response, onClose func() kmsg.Response) kmsg.Response {
	select {
	case resp := <-ch:
		return resp
	case <-c.ctx.Done():
		select {
		case resp := <-ch:
			return resp
		default:
			return onClose()
		}
	}
}

// topicsView exposes the broker's topics to KIP-848 groups.
type topicsView struct{ m *metaStore }

func (v topicsView) ByName(name string) ([16]byte, int32, bool) {
	t := v.m.lookup(name)
	if t == nil {
		return [16]byte{}, 0, false
	}
	return t.id, int32(len(t.partitions)), true
}

func (v topicsView) ByID(id [16]byte) (string, bool) {
	t := v.m.lookupID(id)
	if t == nil {
		return "", false
	}
	return t.name, true
}

func (v topicsView) Names() []string {
	var names []string
	for _, t := range v.m.sortedTopics() {
		if !t.internal() {
			names = append(names, t.name)
		}
	}
	return names
}
