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

// AuditFile is the audit trail's file name under Config.DataDir.
const AuditFile = "mitigations.jsonl"

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

// audit appends records to the trail, fsyncing each.
type audit struct {
	f *os.File
}

// openAudit opens (creating) the trail in dir and returns the last state
// of every decision, in ID order, and the last mode set through the API
// ("" if none). A torn last line (a crash mid-write) is ignored.
func openAudit(dir string) (*audit, []*Decision, string, error) {
	if dir == "" {
		return &audit{}, nil, "", nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, "", fmt.Errorf("mitigator: audit trail directory: %w", err)
	}
	path := filepath.Join(dir, AuditFile)
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
	return &audit{f: f}, ds, mode, nil
}

func idLess(a, b string) bool {
	x, ex := strconv.Atoi(a)
	y, ey := strconv.Atoi(b)
	if ex != nil || ey != nil {
		return a < b
	}
	return x < y
}

// append writes records and fsyncs them.
func (a *audit) append(rs ...AuditRecord) error {
	if a.f == nil || len(rs) == 0 {
		return nil
	}
	var buf []byte
	for _, r := range rs {
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		buf = append(append(buf, b...), '\n')
	}
	if _, err := a.f.Write(buf); err != nil {
		return fmt.Errorf("mitigator: writing the audit trail: %w", err)
	}
	return a.f.Sync()
}

func (a *audit) close() error {
	if a.f == nil {
		return nil
	}
	return a.f.Close()
}
