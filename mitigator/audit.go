package mitigator

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"
)

// AuditFile is the audit trail's file name under Config.DataDir. Rotated
// trails are named mitigations-<UTC time>.jsonl beside it.
const AuditFile = "mitigations.jsonl"

const (
	auditRotatedPrefix = "mitigations-"
	auditRotatedSuffix = ".jsonl"
)

// AuditRecord is one line of the audit trail: a decision as it was after
// an event. The last record of a decision is its current state.
type AuditRecord struct {
	At time.Time `json:"at"`
	// Event is decided, approved, executed, undone, cancelled, closed,
	// refused, mode (a mode change; Mode is the new mode) or updated.
	Event    string    `json:"event"`
	Mode     string    `json:"mode,omitempty"`
	Decision *Decision `json:"decision,omitempty"`
}

// audit appends records to the trail, fsyncing each. Once the trail
// passes maxBytes it is rotated: renamed to mitigations-<UTC time>.jsonl,
// and a new trail starts with the mode set through the API and the last
// state of every decision (event "carried"), so that reading the current
// trail alone restores everything; only the keep newest rotated trails
// are kept.
type audit struct {
	f        *os.File
	dir      string
	size     int64 // of the trail
	base     int64 // of the state it started with
	maxBytes int64
	keep     int
	now      func() time.Time

	// What a new trail starts with: the last state of every decision and
	// the last mode set through the API.
	last map[string]*Decision
	mode string
}

// openAudit opens (creating) the trail in dir and returns the last state
// of every decision, in ID order, and the last mode set through the API
// ("" if none). A torn last line (a crash mid-write) is ignored.
func openAudit(dir string, maxBytes int64, keep int, now func() time.Time) (*audit, []*Decision, string, error) {
	if dir == "" {
		return &audit{}, nil, "", nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, "", fmt.Errorf("mitigator: audit trail directory: %w", err)
	}
	path := filepath.Join(dir, AuditFile)
	if err := finishRotation(path); err != nil {
		return nil, nil, "", fmt.Errorf("mitigator: audit trail: %w", err)
	}
	byID := map[string]*Decision{}
	mode := ""
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, "", fmt.Errorf("mitigator: reading the audit trail: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	line := 0
	valid := 0 // bytes of whole, valid lines
	for sc.Scan() {
		line++
		var r AuditRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			// Only a torn last line is tolerated.
			if valid+len(sc.Bytes()) >= len(data)-1 {
				break
			}
			return nil, nil, "", fmt.Errorf("mitigator: %s line %d: %v; move the file away to start a new trail", path, line, err)
		}
		valid += len(sc.Bytes()) + 1
		if r.Event == "mode" {
			mode = r.Mode
		}
		if r.Decision != nil {
			byID[r.Decision.ID] = r.Decision
		}
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, nil, "", fmt.Errorf("mitigator: opening the audit trail: %w", err)
	}
	// Cut a torn tail so the next record starts on a line of its own.
	if valid < len(data) {
		if err := f.Truncate(int64(valid)); err != nil {
			f.Close()
			return nil, nil, "", err
		}
	}
	if _, err := f.Seek(int64(valid), 0); err != nil {
		f.Close()
		return nil, nil, "", err
	}
	ds := make([]*Decision, 0, len(byID))
	for _, d := range byID {
		ds = append(ds, d)
	}
	sort.Slice(ds, func(i, j int) bool { return idLess(ds[i].ID, ds[j].ID) })
	a := &audit{f: f, dir: dir, size: int64(valid), maxBytes: maxBytes, keep: keep, now: now, last: byID, mode: mode}
	return a, ds, mode, nil
}

func idLess(a, b string) bool {
	x, ex := strconv.Atoi(a)
	y, ey := strconv.Atoi(b)
	if ex != nil || ey != nil {
		return a < b
	}
	return x < y
}

// append writes records and fsyncs them, then rotates the trail if it has
// grown past maxBytes.
func (a *audit) append(rs ...AuditRecord) error {
	if a.f == nil || len(rs) == 0 {
		return nil
	}
	if err := a.write(a.f, rs); err != nil {
		return fmt.Errorf("mitigator: writing the audit trail: %w", err)
	}
	for _, r := range rs {
		if r.Event == "mode" {
			a.mode = r.Mode
		}
		if r.Decision != nil {
			a.last[r.Decision.ID] = r.Decision
		}
	}
	if a.maxBytes > 0 && a.size-a.base > a.maxBytes {
		if err := a.rotate(); err != nil {
			return fmt.Errorf("mitigator: rotating the audit trail: %w", err)
		}
	}
	return nil
}

// write appends rs to f as JSON lines and fsyncs it.
func (a *audit) write(f *os.File, rs []AuditRecord) error {
	var buf []byte
	for _, r := range rs {
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		buf = append(append(buf, b...), '\n')
	}
	if _, err := f.Write(buf); err != nil {
		return err
	}
	a.size += int64(len(buf))
	return f.Sync()
}

// rotate starts a new trail with the current state (see audit). The new
// trail is written and fsynced aside (AuditFile.new), then the old one is
// renamed away and the new one into place; finishRotation completes or
// undoes a rotation a crash interrupted.
func (a *audit) rotate() error {
	now := a.now().UTC()
	tmp := filepath.Join(a.dir, AuditFile+".new")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	var rs []AuditRecord
	if a.mode != "" {
		rs = append(rs, AuditRecord{At: now, Event: "mode", Mode: a.mode})
	}
	ids := make([]string, 0, len(a.last))
	for id := range a.last {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return idLess(ids[i], ids[j]) })
	for _, id := range ids {
		rs = append(rs, AuditRecord{At: now, Event: "carried", Decision: a.last[id]})
	}
	size := a.size
	a.size = 0
	if err := a.write(f, rs); err != nil {
		f.Close()
		os.Remove(tmp)
		a.size = size
		return err
	}
	path := filepath.Join(a.dir, AuditFile)
	rotated := filepath.Join(a.dir, auditRotatedPrefix+now.Format("20060102T150405.000000000Z")+auditRotatedSuffix)
	if err := os.Rename(path, rotated); err != nil {
		f.Close()
		os.Remove(tmp)
		a.size = size
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		f.Close()
		return err
	}
	if d, err := os.Open(a.dir); err == nil {
		d.Sync()
		d.Close()
	}
	a.f.Close()
	a.f = f
	a.base = a.size
	return a.prune()
}

// finishRotation completes a rotation interrupted between its renames (the
// trail is gone, the complete new one is beside it) or drops an
// unfinished new trail (the old one is still in place).
func finishRotation(path string) error {
	tmp := path + ".new"
	if _, err := os.Stat(tmp); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if _, err := os.Stat(path); err == nil {
		return os.Remove(tmp)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return os.Rename(tmp, path)
}

// prune removes all but the keep newest rotated trails.
func (a *audit) prune() error {
	old, err := filepath.Glob(filepath.Join(a.dir, auditRotatedPrefix+"*"+auditRotatedSuffix))
	if err != nil {
		return err
	}
	sort.Strings(old) // the names sort by time
	for len(old) > a.keep {
		if err := os.Remove(old[0]); err != nil {
			return err
		}
		old = old[1:]
	}
	return nil
}

func (a *audit) close() error {
	if a.f == nil {
		return nil
	}
	return a.f.Close()
}
