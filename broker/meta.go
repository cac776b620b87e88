package broker

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kerr"

	vlog "github.com/vigilhq/vigil/broker/log"
)

// metaFile is the broker's own state in its data directory: the cluster id,
// the topics with their ids and config overrides, and the producer id
// allocator. It is rewritten atomically on every change. The metadata
// quorum (controller package) replaces it when the cluster issue lands.
const metaFile = "vigil-meta.json"

// partitionMetaFile in each partition directory names the topic id the
// directory belongs to, so a directory left behind by a deleted topic is
// never mistaken for a new topic of the same name.
const partitionMetaFile = "partition.metadata"

// deleteDirSuffix ends the name of a partition directory being removed.
// deleteTopic renames a deleted topic's partition directories to
// deleteDirName under the metadata lock, so that the name is free for a new
// topic at once while nothing can touch the new topic's directories, and
// removes the renamed directories afterwards (as Kafka does). A start
// removes any that a crash left behind.
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

// producerIDBlock is how many producer ids are reserved per metadata write.
const producerIDBlock = 1000

type metaState struct {
	Version        int         `json:"version"`
	ClusterID      string      `json:"cluster_id"`
	ProducerIDNext int64       `json:"producer_id_block_end"`
	Topics         []metaTopic `json:"topics"`
}

type metaTopic struct {
	Name       string            `json:"name"`
	ID         string            `json:"id"`
	Partitions int32             `json:"partitions"`
	Configs    map[string]string `json:"configs,omitempty"`
}

// topic is an immutable view of one topic; changes replace it.
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

// topicSet is an immutable snapshot of all topics, swapped atomically so the
// produce and fetch paths look topics up without locks.
type topicSet struct {
	byName map[string]*topic
	byID   map[[16]byte]*topic
}

type metaStore struct {
	cfg       Config
	logger    *slog.Logger
	clusterID string

	topics atomic.Pointer[topicSet]

	mu          sync.Mutex // serializes changes and the file
	pidNext     int64
	pidBlockEnd int64

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

func openMetaStore(cfg Config, logger *slog.Logger) (*metaStore, error) {
	m := &metaStore{cfg: cfg, logger: logger}
	st := metaState{Version: 1}
	data, err := os.ReadFile(filepath.Join(cfg.DataDir, metaFile))
	switch {
	case err == nil:
		if err := json.Unmarshal(data, &st); err != nil {
			return nil, fmt.Errorf("broker metadata %s is corrupt: %w", filepath.Join(cfg.DataDir, metaFile), err)
		}
	case errors.Is(err, os.ErrNotExist):
	default:
		return nil, fmt.Errorf("reading broker metadata: %w", err)
	}
	switch {
	case cfg.ClusterID != "" && st.ClusterID != "" && cfg.ClusterID != st.ClusterID:
		return nil, fmt.Errorf("data dir %s belongs to cluster %s, not %s", cfg.DataDir, st.ClusterID, cfg.ClusterID)
	case st.ClusterID == "" && cfg.ClusterID != "":
		st.ClusterID = cfg.ClusterID
	case st.ClusterID == "":
		id := newUUID()
		st.ClusterID = base64.RawURLEncoding.EncodeToString(id[:])
	}
	m.clusterID = st.ClusterID
	// Ids up to the persisted block end may have been handed out.
	m.pidNext, m.pidBlockEnd = st.ProducerIDNext, st.ProducerIDNext

	set := &topicSet{byName: map[string]*topic{}, byID: map[[16]byte]*topic{}}
	for _, mt := range st.Topics {
		id, err := parseUUIDHex(mt.ID)
		if err != nil {
			m.closeSet(set)
			return nil, fmt.Errorf("broker metadata: topic %s: %w", mt.Name, err)
		}
		t := &topic{name: mt.Name, id: id, configs: mt.Configs}
		if t.configs == nil {
			t.configs = map[string]string{}
		}
		for i := int32(0); i < mt.Partitions; i++ {
			p, err := m.openPartition(t, i)
			if err != nil {
				// A disk error takes only this partition offline, as Kafka
				// takes only the failed log dir offline: the broker serves
				// the others and reports this one (KAFKA_STORAGE_ERROR,
				// Metadata, /readyz) until a restart after the repair.
				p = m.offlinePartition(t, i, err)
			}
			t.partitions = append(t.partitions, p)
		}
		set.byName[t.name] = t
		set.byID[t.id] = t
	}
	m.topics.Store(set)
	m.removeStrays(set)
	if err := m.persistLocked(); err != nil {
		m.closeSet(set)
		return nil, err
	}
	return m, nil
}

func (m *metaStore) closeSet(set *topicSet) {
	for _, t := range set.byName {
		for _, p := range t.partitions {
			_ = p.log.Close()
		}
	}
}

func (m *metaStore) partitionDir(name string, index int32) string {
	return filepath.Join(m.cfg.DataDir, name+"-"+strconv.Itoa(int(index)))
}

// openPartition opens (or creates) a partition's log, moving aside a
// directory that belongs to an older topic of the same name.
func (m *metaStore) openPartition(t *topic, index int32) (*partition, error) {
	dir := m.partitionDir(t.name, index)
	want := hex.EncodeToString(t.id[:])
	if data, err := os.ReadFile(filepath.Join(dir, partitionMetaFile)); err == nil {
		// Not open: deleteTopic closes a deleted topic's logs under the
		// metadata lock before the name can be reused, and moves their
		// directories aside; one is left here only by a crash or a failed
		// rename.
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
	l, err := vlog.Open(dir, topicLogConfig(t.configs, m.cfg.TopicDefaults), vlog.Options{
		FS:     m.cfg.FS,
		Logger: m.logger.With("topic", t.name, "partition", index),
	})
	if err != nil {
		return nil, fmt.Errorf("opening log of %s-%d: %w", t.name, index, err)
	}
	return &partition{topic: t.name, topicID: t.id, index: index, log: l}, nil
}

// offlinePartition returns partition index of t as offline after err kept
// it from being opened, and logs that once.
func (m *metaStore) offlinePartition(t *topic, index int32, err error) *partition {
	dir := m.partitionDir(t.name, index)
	logger := m.logger.With("topic", t.name, "partition", index)
	logger.Error("partition is offline: its log could not be opened; the broker serves its other partitions, restart it after repairing the disk",
		"dir", dir, "err", err)
	l := vlog.OpenOffline(dir, topicLogConfig(t.configs, m.cfg.TopicDefaults), vlog.Options{FS: m.cfg.FS, Logger: logger}, err)
	return &partition{topic: t.name, topicID: t.id, index: index, log: l}
}

func parseTopicIDLine(data []byte) string {
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "topic_id: "); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// removeStrays deletes partition directories of deleted topics that a
// crash left behind: those renamed for removal (deleteDirSuffix) and those
// whose topic id is not a current topic's.
func (m *metaStore) removeStrays(set *topicSet) {
	entries, err := os.ReadDir(m.cfg.DataDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(m.cfg.DataDir, e.Name())
		if strings.HasSuffix(e.Name(), deleteDirSuffix) {
			m.logger.Info("removing partition directory of a deleted topic", "dir", dir)
			if err := m.fs().RemoveAll(dir); err != nil {
				m.logger.Warn("removing stray partition directory failed", "dir", dir, "err", err)
			}
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, partitionMetaFile))
		if err != nil {
			continue
		}
		id, err := parseUUIDHex(parseTopicIDLine(data))
		if err != nil {
			continue
		}
		if _, ok := set.byID[id]; ok {
			continue
		}
		m.logger.Info("removing partition directory of a deleted topic", "dir", dir)
		if err := os.RemoveAll(dir); err != nil {
			m.logger.Warn("removing stray partition directory failed", "dir", dir, "err", err)
		}
	}
}

// persistLocked writes the metadata file. Callers hold m.mu (or own m).
func (m *metaStore) persistLocked() error {
	st := metaState{Version: 1, ClusterID: m.clusterID, ProducerIDNext: m.pidBlockEnd}
	for _, t := range m.topics.Load().byName {
		st.Topics = append(st.Topics, metaTopic{
			Name: t.name, ID: hex.EncodeToString(t.id[:]), Partitions: int32(len(t.partitions)), Configs: t.configs,
		})
	}
	sort.Slice(st.Topics, func(i, j int) bool { return st.Topics[i].Name < st.Topics[j].Name })
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(m.cfg.DataDir, metaFile), data); err != nil {
		return fmt.Errorf("writing broker metadata: %w", err)
	}
	return nil
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

// lookup returns the topic named name.
func (m *metaStore) lookup(name string) *topic { return m.topics.Load().byName[name] }

// lookupID returns the topic with id.
func (m *metaStore) lookupID(id [16]byte) *topic { return m.topics.Load().byID[id] }

// swapLocked installs a new snapshot with t added, replaced or (t.partitions
// == nil and remove) removed. Callers hold m.mu.
func (m *metaStore) swapLocked(change func(byName map[string]*topic)) {
	old := m.topics.Load()
	next := &topicSet{byName: make(map[string]*topic, len(old.byName)+1), byID: make(map[[16]byte]*topic, len(old.byID)+1)}
	for k, v := range old.byName {
		next.byName[k] = v
	}
	change(next.byName)
	for _, t := range next.byName {
		next.byID[t.id] = t
	}
	m.topics.Store(next)
}

// createTopic creates a topic with the given partitions and overrides
// (already validated). It fails if the name is taken.
func (m *metaStore) createTopic(name string, partitions int32, configs map[string]string) (*topic, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.checkNewNameLocked(name); err != nil {
		return nil, err
	}
	t := &topic{name: name, id: newUUID(), configs: configs}
	if t.configs == nil {
		t.configs = map[string]string{}
	}
	for i := int32(0); i < partitions; i++ {
		p, err := m.openPartition(t, i)
		if err != nil {
			for _, p := range t.partitions {
				_ = p.log.Delete()
			}
			return nil, err
		}
		t.partitions = append(t.partitions, p)
	}
	m.swapLocked(func(byName map[string]*topic) { byName[name] = t })
	if err := m.persistLocked(); err != nil {
		m.swapLocked(func(byName map[string]*topic) { delete(byName, name) })
		for _, p := range t.partitions {
			_ = p.log.Delete()
		}
		return nil, err
	}
	m.logger.Info("created topic", "topic", name, "partitions", partitions, "topic_id", hex.EncodeToString(t.id[:]))
	return t, nil
}

// errTopicExists and errTopicCollides are returned by checkNewNameLocked.
var (
	errTopicExists   = errors.New("topic already exists")
	errTopicCollides = errors.New("topic name collides")
)

// checkNewNameLocked rejects a name in use, or one that differs from a
// topic in use only by '.' versus '_' (their metric names would collide).
func (m *metaStore) checkNewNameLocked(name string) error {
	set := m.topics.Load()
	if _, ok := set.byName[name]; ok {
		return fmt.Errorf("topic %q already exists: %w", name, errTopicExists)
	}
	norm := strings.ReplaceAll(name, ".", "_")
	for other := range set.byName {
		if strings.ReplaceAll(other, ".", "_") == norm {
			return fmt.Errorf("topic %q collides with existing topic %q ('.' and '_' are equivalent in metric names): %w", name, other, errTopicCollides)
		}
	}
	return nil
}

// deleteTopic removes a topic: first from the metadata (so a crash leaves
// only a stray directory, removed at the next start), then, still under the
// metadata lock, it closes each partition's log and renames its directory
// to deleteDirName, so a topic of the same name created right after gets
// fresh directories that nothing of the old topic touches. The renamed
// directories are removed in the background.
func (m *metaStore) deleteTopic(t *topic) error {
	m.mu.Lock()
	cur := m.topics.Load().byName[t.name]
	if cur == nil || cur.id != t.id {
		m.mu.Unlock()
		return nil
	}
	m.swapLocked(func(byName map[string]*topic) { delete(byName, t.name) })
	if err := m.persistLocked(); err != nil {
		m.swapLocked(func(byName map[string]*topic) { byName[t.name] = cur })
		m.mu.Unlock()
		return err
	}
	var renamed []string
	for _, p := range cur.partitions {
		p.deleted.Store(true)
		p.notify()
		_ = p.log.Close() // the data is going: a failed flush does not matter
		dir := m.partitionDir(cur.name, p.index)
		to := filepath.Join(m.cfg.DataDir, deleteDirName(cur.name, p.index, cur.id))
		if err := m.fs().Rename(dir, to); err != nil {
			// The closed directory stays under its name: a new topic's
			// openPartition or the next start removes it.
			m.logger.Warn("moving the partition directory of a deleted topic aside failed", "partition", p.String(), "dir", dir, "err", err)
			continue
		}
		renamed = append(renamed, to)
	}
	m.removing.Add(1)
	m.mu.Unlock()
	go func() {
		defer m.removing.Done()
		for _, dir := range renamed {
			if err := m.fs().RemoveAll(dir); err != nil {
				m.logger.Warn("removing partition directory of deleted topic failed; it is removed at the next start", "dir", dir, "err", err)
			}
		}
	}()
	m.logger.Info("deleted topic", "topic", t.name, "topic_id", hex.EncodeToString(cur.id[:]))
	return nil
}

// addPartitions grows a topic to count partitions.
func (m *metaStore) addPartitions(t *topic, count int32) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := m.topics.Load().byName[t.name]
	if cur == nil || cur.id != t.id {
		return fmt.Errorf("topic %q was deleted", t.name)
	}
	next := *cur
	next.partitions = append([]*partition(nil), cur.partitions...)
	for i := int32(len(cur.partitions)); i < count; i++ {
		p, err := m.openPartition(&next, i)
		if err != nil {
			for _, p := range next.partitions[len(cur.partitions):] {
				_ = p.log.Delete()
			}
			return err
		}
		next.partitions = append(next.partitions, p)
	}
	m.swapLocked(func(byName map[string]*topic) { byName[t.name] = &next })
	if err := m.persistLocked(); err != nil {
		m.swapLocked(func(byName map[string]*topic) { byName[t.name] = cur })
		for _, p := range next.partitions[len(cur.partitions):] {
			_ = p.log.Delete()
		}
		return err
	}
	m.logger.Info("added partitions", "topic", t.name, "partitions", count)
	return nil
}

// updateConfigs computes a topic's new config overrides from its current
// ones and, unless validateOnly, stores and applies them. compute runs under
// the metadata lock, so concurrent incremental changes are not lost.
func (m *metaStore) updateConfigs(name string, compute func(cur map[string]string) (map[string]string, error), validateOnly bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := m.topics.Load().byName[name]
	if cur == nil {
		return errorf(kerr.UnknownTopicOrPartition, "topic %q does not exist", name)
	}
	configs, err := compute(cur.configs)
	if err == nil {
		if cerr := checkTopicConfigs(configs, m.cfg.TopicDefaults); cerr != nil {
			err = errorf(kerr.InvalidConfig, "%v", cerr)
		}
	}
	if err != nil || validateOnly {
		return err
	}
	next := *cur
	next.configs = configs
	m.swapLocked(func(byName map[string]*topic) { byName[name] = &next })
	if err := m.persistLocked(); err != nil {
		m.swapLocked(func(byName map[string]*topic) { byName[name] = cur })
		return err
	}
	lc := topicLogConfig(configs, m.cfg.TopicDefaults)
	for _, p := range next.partitions {
		p.log.SetConfig(lc)
	}
	m.logger.Info("changed topic configs", "topic", name, "configs", configs)
	return nil
}

// nextProducerID hands out a producer id never handed out before, also
// across restarts: ids are reserved in blocks recorded in the metadata file.
func (m *metaStore) nextProducerID() (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pidNext >= m.pidBlockEnd {
		m.pidBlockEnd = m.pidNext + producerIDBlock
		if err := m.persistLocked(); err != nil {
			m.pidBlockEnd = m.pidNext
			return 0, err
		}
	}
	id := m.pidNext
	m.pidNext++
	return id, nil
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

// allPartitions returns every partition, in topic and partition order.
func (m *metaStore) allPartitions() []*partition {
	var out []*partition
	for _, t := range m.sortedTopics() {
		out = append(out, t.partitions...)
	}
	return out
}

// maintain runs retention and time-based rolling on every partition.
func (m *metaStore) maintain() {
	for _, p := range m.allPartitions() {
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

// partitionLogs returns the logs of every partition that is not deleted or
// offline (the cleaner picks the compacted ones).
func (m *metaStore) partitionLogs() []*vlog.Log {
	var out []*vlog.Log
	for _, p := range m.allPartitions() {
		if !p.deleted.Load() && p.log.Offline() == nil {
			out = append(out, p.log)
		}
	}
	return out
}

// offlinePartitions lists partitions whose log hit a storage error.
func (m *metaStore) offlinePartitions() []string {
	var out []string
	for _, p := range m.allPartitions() {
		if p.log.Offline() != nil {
			out = append(out, p.String())
		}
	}
	return out
}

// close waits for the removals of deleted topics' directories, then
// flushes and closes every log.
func (m *metaStore) close() error {
	m.removing.Wait()
	var errs []error
	for _, p := range m.allPartitions() {
		if err := p.log.Close(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

func newUUID() [16]byte {
	var id [16]byte
	for {
		if _, err := rand.Read(id[:]); err != nil {
			panic("crypto/rand failed: " + err.Error())
		}
		id[6] = id[6]&0x0f | 0x40 // version 4
		id[8] = id[8]&0x3f | 0x80 // RFC 4122 variant
		// Kafka reserves the all-zero id and 0...01 (the metadata topic).
		if id != ([16]byte{}) {
			return id
		}
	}
}

func parseUUIDHex(s string) ([16]byte, error) {
	var id [16]byte
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 16 {
		return id, fmt.Errorf("invalid topic id %q", s)
	}
	copy(id[:], b)
	return id, nil
}
