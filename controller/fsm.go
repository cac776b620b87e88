package controller

import (
	"encoding/json"
	"fmt"
	"io"
	"sync"

	"github.com/hashicorp/raft"
)

// fsm adapts State to raft.FSM and keeps the recent changes that
// WatchMetadata serves. Raft calls Apply, Snapshot and Restore from one
// goroutine; everything else reads under mu.
type fsm struct {
	mu     sync.RWMutex
	st     *State
	notify chan struct{} // closed and replaced on every applied change

	// history holds the changes with index > historyBase, oldest first.
	history     []Change
	historyBase uint64
	historySize int
	lastChange  uint64 // index of the newest change (0: none)

	elections electionCounter // for vigil_controller_leader_elections_total
}

func newFSM(historySize int) *fsm {
	if historySize <= 0 {
		historySize = 10_000
	}
	return &fsm{st: NewState(), notify: make(chan struct{}), historySize: historySize}
}

// Apply decodes and applies one log entry.
func (f *fsm) Apply(l *raft.Log) any {
	var cmd Command
	if err := json.Unmarshal(l.Data, &cmd); err != nil {
		f.mu.Lock()
		f.st.index = max(f.st.index, l.Index)
		f.mu.Unlock()
		return Result{Err: errorf(CodeInvalidRequest, "undecodable command at index %d: %v", l.Index, err)}
	}
	f.mu.Lock()
	res := f.st.Apply(l.Index, &cmd)
	if res.Change != nil {
		f.elections.observe(res.Change)
		f.history = append(f.history, *res.Change)
		f.lastChange = l.Index
		if over := len(f.history) - f.historySize; over > 0 {
			f.historyBase = f.history[over-1].Index
			f.history = append(f.history[:0:0], f.history[over:]...)
		}
		close(f.notify)
		f.notify = make(chan struct{})
	}
	f.mu.Unlock()
	return res
}

// snapshotData is the JSON form of a snapshot.
type snapshotData struct {
	Version int    `json:"version"`
	Index   uint64 `json:"index"`
	Image   *Image `json:"image"`
}

type fsmSnapshot struct{ data []byte }

// Snapshot serializes the image now (cheap for metadata); Persist writes it.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	data, err := json.Marshal(snapshotData{Version: 1, Index: f.st.index, Image: f.st.img})
	if err != nil {
		return nil, err
	}
	return &fsmSnapshot{data: data}, nil
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s.data); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}

// Restore replaces the state with a snapshot's. The change history starts
// over: watchers behind the snapshot get the whole image.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var sd snapshotData
	if err := json.NewDecoder(rc).Decode(&sd); err != nil {
		return fmt.Errorf("decoding controller snapshot: %w", err)
	}
	if sd.Image == nil {
		return fmt.Errorf("controller snapshot has no image")
	}
	f.mu.Lock()
	f.st = NewStateFrom(sd.Image, sd.Index)
	f.history = nil
	f.historyBase = sd.Index
	f.lastChange = sd.Index
	close(f.notify)
	f.notify = make(chan struct{})
	f.mu.Unlock()
	return nil
}

// read calls fn with the state under the read lock.
func (f *fsm) read(fn func(st *State)) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fn(f.st)
}

// appliedIndex returns the index of the last log entry applied.
func (f *fsm) appliedIndex() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.index
}

// image returns a copy of the image and its index.
func (f *fsm) image() (*Image, uint64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.img.Clone(), f.st.index
}

// delta returns what a watcher at after needs, and a channel closed on the
// next change when there is nothing yet (ok false).
func (f *fsm) delta(after int64) (d *Delta, wait <-chan struct{}, ok bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	idx := f.st.index
	switch {
	case after < 0 || uint64(after) < f.historyBase:
		return &Delta{Offset: int64(idx), Image: f.st.img.Clone()}, nil, true
	case uint64(after) >= f.lastChange:
		return nil, f.notify, false
	}
	d = &Delta{Offset: int64(idx)}
	// history is sorted by index: find the first change after `after`.
	lo, hi := 0, len(f.history)
	for lo < hi {
		m := (lo + hi) / 2
		if f.history[m].Index <= uint64(after) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	d.Changes = append([]Change(nil), f.history[lo:]...)
	return d, nil, true
}
