package broker

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	vlog "github.com/vigilhq/vigil/broker/log"
	"github.com/vigilhq/vigil/controller"
)

// The broker's view of the cluster is a copy of the controller quorum's
// metadata image, kept current by a long poll (controller.WatchMetadata),
// plus the partition logs of the replicas the image assigns to this
// broker. Every change to the image is applied under one lock, which also
// opens and closes logs and moves partitions between the leader and
// follower roles; produce, fetch and the other request paths read an
// immutable snapshot of the topics (topicSet), swapped atomically after
// each change, so they never take that lock.

// brokerMetaFile records, in the data directory, the cluster and the node
// the directory belongs to (Kafka's meta.properties), so a broker never
// mixes data of two clusters or two node ids.
const brokerMetaFile = "vigil-broker.json"

// partitionMetaFile in each partition directory names the topic id the
// directory belongs to, so a directory left behind by a deleted topic is
// never mistaken for a new topic of the same name.
const partitionMetaFile = "partition.metadata"

// deleteDirSuffix ends the name of a partition directory being removed. A
// partition that leaves this broker (its topic deleted, or its replica
// moved elsewhere) is closed and its directory renamed to deleteDirName
// under the metadata lock, so the name is free for a new topic at once
// while nothing can touch the new topic's directories; the renamed
// directory is removed afterwards (as Kafka does). A start removes any that
// a crash left behind.
const deleteDirSuffix = "-delete"

// deleteDirName is the name a partition directory of the topic with id is
// renamed to while it is removed: <name>-<index>.<topic id>-delete, with the
// topic name shortened so the whole fits in a 255-byte file name. The topic
// id makes it unique.
func deleteDirName(name string, index int32, id [16]byte) string {
	suffix := "-" + strconv.Itoa(int(index)) + "." + hex.EncodeToString(id[:]) + deleteDirSuffix
	if limit := 255 - len(suffix); len(name) > limit {
		name = name[:limit]
	}
	return name + suffix
}

// topic is an immutable view of one topic; a metadata change replaces it.
// Its partitions outlive it: a partition object lives as long as its
// replica on this broker (or, for a partition this broker holds no replica
// of, as long as the topic).
type topic struct {
	name       string
	id         [16]byte
	configs    map[string]string // overrides
	partitions []*partition
}

// internal reports whether t is one of Kafka's internal topics, which clients
// may read but not write.
func (t *topic) internal() bool { return isInternalTopic(t.name) }

// isInternalTopic reports whether name is one of Kafka's internal topics,
// which only the broker creates.
func isInternalTopic(name string) bool {
	return name == offsetsTopic || name == "__transaction_state"
}

// topicSet is an immutable snapshot of all topics and brokers, swapped
// atomically so the request paths look them up without locks.
type topicSet struct {
	byName  map[string]*topic
	byID    map[[16]byte]*topic
	brokers map[int32]*controller.Broker
	offset  int64 // the image's applied index
}

// partKey identifies a partition across topic renames and re-creations.
type partKey struct {
	topicID [16]byte
	index   int32
}

// roleHooks are told about partitions changing role on this broker. They
// are called under the metadata lock, in image order, and must not block.
type roleHooks interface {
	// becameLeader: this broker leads p (a new leader epoch, or the first
	// image after a start).
	becameLeader(p *partition)
	// becameFollower: this broker holds a replica of p led by another
	// broker, or by no one (leader -1).
	becameFollower(p *partition)
	// stopped: this broker no longer holds a replica of p; its log is
	// closed.
	stopped(p *partition)
	// applied: a change was applied (after the role changes it caused).
	applied()
}

type metaStore struct {
	cfg    Config
	logger *slog.Logger
	nodeID int32
	hooks  roleHooks

	topics atomic.Pointer[topicSet]

	mu        sync.Mutex // serializes applying changes; guards the fields below
	image     *controller.Image
	offset    int64
	parts     map[partKey]*partition
	clusterID string
	changed   chan struct{} // closed and replaced after every change
	started   bool          // the first image was applied

	removing sync.WaitGroup // removals of renamed partition directories
}

// fs is the file system partition directories are renamed and removed
// through (Config.FS, so tests can inject faults).
func (m *metaStore) fs() vlog.FS {
	if m.cfg.FS != nil {
		return m.cfg.FS
	}
	return vlog.OSFS()
}

// brokerMeta is the content of brokerMetaFile.
type brokerMeta struct {
	Version   int    `json:"version"`
	ClusterID string `json:"cluster_id"`
	NodeID    int32  `json:"node_id"`
}

func newMetaStore(cfg Config, logger *slog.Logger) (*metaStore, error) {
	m := &metaStore{
		cfg:     cfg,
		logger:  logger,
		nodeID:  cfg.NodeID,
		parts:   map[partKey]*partition{},
		changed: make(chan struct{}),
		offset:  -1,
	}
	m.topics.Store(&topicSet{byName: map[string]*topic{}, byID: map[[16]byte]*topic{}, brokers: map[int32]*controller.Broker{}, offset: -1})
	path := filepath.Join(cfg.DataDir, brokerMetaFile)
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		var bm brokerMeta
		if err := json.Unmarshal(data, &bm); err != nil {
			return nil, fmt.Errorf("broker metadata %s is corrupt: %w (it names the cluster and node this data directory belongs to)", path, err)
		}
		if bm.NodeID != cfg.NodeID {
			return nil, fmt.Errorf("data dir %s belongs to node %d, not %d: start with --node-id %d or use another --data-dir", cfg.DataDir, bm.NodeID, cfg.NodeID, bm.NodeID)
		}
		m.clusterID = bm.ClusterID
	case errors.Is(err, os.ErrNotExist):
	default:
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if cfg.ClusterID != "" && m.clusterID != "" && cfg.ClusterID != m.clusterID {
		return nil, fmt.Errorf("data dir %s belongs to cluster %s, not %s", cfg.DataDir, m.clusterID, cfg.ClusterID)
	}
	return m, nil
}

// lookup returns the topic named name.
func (m *metaStore) lookup(name string) *topic { return m.topics.Load().byName[name] }

// lookupID returns the topic with id.
func (m *metaStore) lookupID(id [16]byte) *topic { return m.topics.Load().byID[id] }

// broker returns a broker of the image, or nil.
func (m *metaStore) broker(id int32) *controller.Broker { return m.topics.Load().brokers[id] }

// clusterIDNow returns the cluster id.
func (m *metaStore) clusterIDNow() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.clusterID
}

// waitFor waits until cond holds for the current snapshot, or ctx ends.
func (m *metaStore) waitFor(ctx context.Context, cond func(*topicSet) bool) error {
	for {
		m.mu.Lock()
		ch := m.changed
		m.mu.Unlock()
		if cond(m.topics.Load()) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// apply brings the image to delta and reconciles the local replicas with
// it. The first call also checks the cluster id against the data directory
// and removes partition directories the image does not assign here.
func (m *metaStore) apply(d *controller.Delta) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if d.Image != nil {
		m.image = d.Image
	}
	if m.image == nil {
		return errors.New("metadata delta without a base image")
	}
	for i := range d.Changes {
		m.image.ApplyChange(&d.Changes[i])
	}
	m.offset = d.Offset
	if err := m.checkClusterLocked(); err != nil {
		return err
	}
	m.reconcileLocked()
	if !m.started {
		m.started = true
		m.removeStraysLocked()
	}
	if m.hooks != nil {
		m.hooks.applied()
	}
	close(m.changed)
	m.changed = make(chan struct{})
	return nil
}

// checkClusterLocked records the image's cluster id in the data directory
// the first time, and refuses an image of another cluster.
func (m *metaStore) checkClusterLocked() error {
	id := m.image.ClusterID
	if id == "" || id == m.clusterID {
		return nil
	}
	if m.clusterID != "" {
		return fmt.Errorf("the controller quorum is of cluster %s but data dir %s belongs to cluster %s: point the broker at its own quorum (--controllers) or use a new data dir", id, m.cfg.DataDir, m.clusterID)
	}
	data, _ := json.MarshalIndent(brokerMeta{Version: 1, ClusterID: id, NodeID: m.nodeID}, "", "  ")
	if err := writeFileAtomic(filepath.Join(m.cfg.DataDir, brokerMetaFile), data); err != nil {
		return fmt.Errorf("writing %s: %w", brokerMetaFile, err)
	}
	m.clusterID = id
	return nil
}

// reconcileLocked makes the local replicas and the topic snapshot match the
// image: partitions assigned here get an open log, partitions no longer
// assigned here are closed and removed, role changes go to the hooks.
func (m *metaStore) reconcileLocked() {
	set := &topicSet{
		byName:  make(map[string]*topic, len(m.image.Topics)),
		byID:    make(map[[16]byte]*topic, len(m.image.Topics)),
		brokers: make(map[int32]*controller.Broker, len(m.image.Brokers)),
		offset:  m.offset,
	}
	for id, b := range m.image.Brokers {
		c := *b
		set.brokers[id] = &c
	}
	// The new brokers first: the role hooks look leaders' endpoints up.
	old := m.topics.Load()
	m.topics.Store(&topicSet{byName: old.byName, byID: old.byID, brokers: set.brokers, offset: old.offset})
	seen := make(map[partKey]bool, len(m.parts))
	for _, ct := range m.image.SortedTopics() {
		t := &topic{name: ct.Name, id: [16]byte(ct.ID), configs: map[string]string{}, partitions: make([]*partition, len(ct.Partitions))}
		for k, v := range ct.Configs {
			t.configs[k] = v
		}
		for i, cp := range ct.Partitions {
			key := partKey{t.id, int32(i)}
			seen[key] = true
			t.partitions[i] = m.reconcilePartitionLocked(t, key, cp.Clone())
		}
		set.byName[t.name] = t
		set.byID[t.id] = t
	}
	for key, p := range m.parts {
		if !seen[key] {
			// The topic was deleted.
			m.dropLocked(p, true)
			delete(m.parts, key)
		}
	}
	m.topics.Store(set)
}

// reconcilePartitionLocked updates one partition and returns its object.
func (m *metaStore) reconcilePartitionLocked(t *topic, key partKey, st *controller.Partition) *partition {
	p := m.parts[key]
	hosted := slices.Contains(st.Replicas, m.nodeID)
	switch {
	case p == nil || hosted && p.log == nil:
		if p != nil {
			p.deleted.Store(true) // the log-less object is replaced
			p.notify()
		}
		np := &partition{topic: t.name, topicID: t.id, index: key.index, self: m.nodeID}
		if hosted {
			np.log = m.openLog(t, key.index)
		}
		np.init()
		p = np
		m.parts[key] = p
	case !hosted && p.log != nil:
		// The replica moved away (reassignment or decommission).
		m.dropLocked(p, false)
		np := &partition{topic: t.name, topicID: t.id, index: key.index, self: m.nodeID}
		np.init()
		p = np
		m.parts[key] = p
	}
	if p.log != nil {
		p.log.SetConfig(topicLogConfig(t.configs, m.cfg.TopicDefaults))
	}
	old := p.state.Swap(st)
	if p.log == nil || m.hooks == nil {
		return p
	}
	wasLeader := old != nil && old.Leader == m.nodeID
	switch {
	case st.Leader == m.nodeID && (!wasLeader || old.LeaderEpoch != st.LeaderEpoch):
		m.hooks.becameLeader(p)
	case st.Leader == m.nodeID:
		p.stateChanged() // ISR or replicas changed under the same leadership
	case old == nil || wasLeader || old.Leader != st.Leader || old.LeaderEpoch != st.LeaderEpoch:
		m.hooks.becameFollower(p)
	}
	return p
}

// dropLocked closes p's log (if any) and, when the data is gone for good,
// renames its directory aside and removes it in the background.
func (m *metaStore) dropLocked(p *partition, topicDeleted bool) {
	p.deleted.Store(true)
	p.notify()
	p.stateChanged()
	if p.log == nil {
		return
	}
	if m.hooks != nil {
		m.hooks.stopped(p)
	}
	_ = p.log.Discard() // the data is going: nothing to flush
	dir := m.partitionDir(p.topic, p.index)
	to := filepath.Join(m.cfg.DataDir, deleteDirName(p.topic, p.index, p.topicID))
	if err := m.fs().Rename(dir, to); err != nil {
		m.logger.Warn("moving the partition directory aside failed; it is removed at the next start", "partition", p.String(), "dir", dir, "err", err)
		return
	}
	if topicDeleted {
		m.logger.Info("deleted the replica of a deleted topic", "partition", p.String())
	} else {
		m.logger.Info("deleted a replica moved to other brokers", "partition", p.String())
	}
	m.removing.Add(1)
	go func() {
		defer m.removing.Done()
		if err := m.fs().RemoveAll(to); err != nil {
			m.logger.Warn("removing a partition directory failed; it is removed at the next start", "dir", to, "err", err)
		}
	}()
}

func (m *metaStore) partitionDir(name string, index int32) string {
	return filepath.Join(m.cfg.DataDir, name+"-"+strconv.Itoa(int(index)))
}

// openLog opens (or creates) a partition's log, removing a directory that
// belongs to an older topic of the same name. A log that cannot be opened
// makes the partition offline on this broker (KAFKA_STORAGE_ERROR, listed
// by /readyz) while the broker serves the others, as Kafka takes only a
// failed log dir offline.
func (m *metaStore) openLog(t *topic, index int32) *vlog.Log {
	dir := m.partitionDir(t.name, index)
	logger := m.logger.With("topic", t.name, "partition", index)
	cfg := topicLogConfig(t.configs, m.cfg.TopicDefaults)
	l, err := m.tryOpenLog(t, index, dir, cfg, logger)
	if err != nil {
		logger.Error("partition is offline: its log could not be opened; the broker serves its other partitions, restart it after repairing the disk",
			"dir", dir, "err", err)
		return vlog.OpenOffline(dir, cfg, vlog.Options{FS: m.cfg.FS, Logger: logger}, err)
	}
	return l
}

func (m *metaStore) tryOpenLog(t *topic, index int32, dir string, cfg vlog.Config, logger *slog.Logger) (*vlog.Log, error) {
	want := hex.EncodeToString(t.id[:])
	if data, err := os.ReadFile(filepath.Join(dir, partitionMetaFile)); err == nil {
		// A directory of a deleted topic of the same name (left by a
		// crash or a failed rename: deletions move directories aside).
		if got := parseTopicIDLine(data); got != want {
			m.logger.Warn("partition directory belongs to a deleted topic of the same name; removing it",
				"dir", dir, "dir_topic_id", got, "topic_id", want)
			if err := os.RemoveAll(dir); err != nil {
				return nil, fmt.Errorf("removing stale partition dir %s: %w", dir, err)
			}
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating partition dir: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, partitionMetaFile), []byte("version: 0\ntopic_id: "+want+"\n")); err != nil {
		return nil, fmt.Errorf("writing %s: %w", partitionMetaFile, err)
	}
	l, err := vlog.Open(dir, cfg, vlog.Options{FS: m.cfg.FS, Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("opening log of %s-%d: %w", t.name, index, err)
	}
	return l, nil
}

func parseTopicIDLine(data []byte) string {
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "topic_id: "); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// removeStraysLocked removes partition directories the image does not
// assign to this broker: those renamed for removal (deleteDirSuffix), those
// of deleted topics, and those of replicas moved elsewhere while the
// broker was down. The cluster id check in apply guarantees the image is
// this data directory's cluster's.
func (m *metaStore) removeStraysLocked() {
	entries, err := os.ReadDir(m.cfg.DataDir)
	if err != nil {
		return
	}
	hosted := map[string]bool{}
	for _, p := range m.parts {
		if p.log != nil {
			hosted[filepath.Base(m.partitionDir(p.topic, p.index))] = true
		}
	}
	for _, e := range entries {
		if !e.IsDir() || hosted[e.Name()] {
			continue
		}
		dir := filepath.Join(m.cfg.DataDir, e.Name())
		if !strings.HasSuffix(e.Name(), deleteDirSuffix) {
			if _, err := os.Stat(filepath.Join(dir, partitionMetaFile)); err != nil {
				continue // not a partition directory (the embedded controller's, for one)
			}
		}
		m.logger.Info("removing a partition directory this broker no longer holds a replica of", "dir", dir)
		if err := m.fs().RemoveAll(dir); err != nil {
			m.logger.Warn("removing stray partition directory failed", "dir", dir, "err", err)
		}
	}
}

// writeFileAtomic replaces path with data durably: temp file, fsync,
// rename, fsync of the directory.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// sortedTopics returns every topic in name order.
func (m *metaStore) sortedTopics() []*topic {
	set := m.topics.Load()
	out := make([]*topic, 0, len(set.byName))
	for _, t := range set.byName {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// localPartitions returns every partition this broker holds a replica of,
// in topic and partition order.
func (m *metaStore) localPartitions() []*partition {
	var out []*partition
	for _, t := range m.sortedTopics() {
		for _, p := range t.partitions {
			if p.log != nil {
				out = append(out, p)
			}
		}
	}
	return out
}

// maintain runs retention and time-based rolling on every local partition.
// Followers take their log start offset from the leader's fetch responses,
// so retention runs on leaders only.
func (m *metaStore) maintain() {
	for _, p := range m.localPartitions() {
		if p.deleted.Load() || p.log.Offline() != nil {
			continue
		}
		deleted, err := p.log.Maintain()
		if err != nil && !p.deleted.Load() {
			m.logger.Error("log maintenance failed", "partition", p.String(), "err", err)
			continue
		}
		if deleted > 0 {
			m.logger.Info("retention deleted segments", "partition", p.String(), "segments", deleted)
		}
	}
}

// partitionLogs returns the logs of every local partition that is not
// deleted or offline (the cleaner picks the compacted ones).
func (m *metaStore) partitionLogs() []*vlog.Log {
	var out []*vlog.Log
	for _, p := range m.localPartitions() {
		if !p.deleted.Load() && p.log.Offline() == nil {
			out = append(out, p.log)
		}
	}
	return out
}

// offlinePartitions lists local partitions whose log hit a storage error.
func (m *metaStore) offlinePartitions() []string {
	var out []string
	for _, p := range m.localPartitions() {
		if p.log.Offline() != nil {
			out = append(out, p.String())
		}
	}
	return out
}

// close waits for the removals of dropped partitions' directories, then
// flushes and closes every log.
func (m *metaStore) close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.removing.Wait()
	var errs []error
	for _, p := range m.parts {
		if p.log == nil {
			continue
		}
		if err := p.log.Close(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}
