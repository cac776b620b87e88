package log

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// memFS is an in-memory FS for fuzzing: no system calls and nothing to
// fsync, so a fuzz run costs microseconds instead of the milliseconds of
// creating, syncing and removing real files. It follows the operating
// system's semantics where the log relies on them: a removed or renamed
// file stays readable through the File already open on it, renaming
// replaces the target, ReadAt past the end returns io.EOF, and missing
// files give errors that satisfy errors.Is(err, fs.ErrNotExist).
type memFS struct {
	mu    sync.Mutex
	files map[string]*memNode // by clean path
	dirs  map[string]bool
}

// memNode is a file's contents, shared by the Files open on it.
type memNode struct {
	mu   sync.RWMutex
	data []byte
}

func newMemFS() *memFS {
	return &memFS{files: map[string]*memNode{}, dirs: map[string]bool{"/": true}}
}

func memErr(op, name string, err error) error { return &fs.PathError{Op: op, Path: name, Err: err} }

func (m *memFS) OpenFile(name string, flag int, perm uint32) (File, error) {
	name = filepath.Clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.dirs[name] {
		if flag&(os.O_WRONLY|os.O_RDWR) != 0 {
			return nil, memErr("open", name, syscall.EISDIR)
		}
		return &memFile{name: name, dir: true}, nil
	}
	n, ok := m.files[name]
	switch {
	case !ok && flag&os.O_CREATE == 0:
		return nil, memErr("open", name, fs.ErrNotExist)
	case !ok && !m.dirs[filepath.Dir(name)]:
		return nil, memErr("open", name, fs.ErrNotExist)
	case !ok:
		n = &memNode{}
		m.files[name] = n
	case flag&os.O_CREATE != 0 && flag&os.O_EXCL != 0:
		return nil, memErr("open", name, fs.ErrExist)
	}
	if flag&os.O_TRUNC != 0 {
		n.mu.Lock()
		n.data = n.data[:0]
		n.mu.Unlock()
	}
	return &memFile{name: name, node: n, appendMode: flag&os.O_APPEND != 0}, nil
}

func (m *memFS) Remove(name string) error {
	name = filepath.Clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.files[name]; ok {
		delete(m.files, name)
		return nil
	}
	if !m.dirs[name] {
		return memErr("remove", name, fs.ErrNotExist)
	}
	if len(m.childrenLocked(name)) > 0 {
		return memErr("remove", name, syscall.ENOTEMPTY)
	}
	delete(m.dirs, name)
	return nil
}

func (m *memFS) RemoveAll(name string) error {
	name = filepath.Clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	prefix := name + "/"
	delete(m.files, name)
	delete(m.dirs, name)
	for p := range m.files {
		if strings.HasPrefix(p, prefix) {
			delete(m.files, p)
		}
	}
	for p := range m.dirs {
		if strings.HasPrefix(p, prefix) {
			delete(m.dirs, p)
		}
	}
	return nil
}

func (m *memFS) Rename(oldname, newname string) error {
	oldname, newname = filepath.Clean(oldname), filepath.Clean(newname)
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.dirs[filepath.Dir(newname)] {
		return memErr("rename", newname, fs.ErrNotExist)
	}
	if n, ok := m.files[oldname]; ok {
		if m.dirs[newname] {
			return memErr("rename", newname, syscall.EISDIR)
		}
		delete(m.files, oldname)
		m.files[newname] = n
		return nil
	}
	if !m.dirs[oldname] {
		return memErr("rename", oldname, fs.ErrNotExist)
	}
	if _, ok := m.files[newname]; ok {
		return memErr("rename", newname, syscall.ENOTDIR)
	}
	if m.dirs[newname] && len(m.childrenLocked(newname)) > 0 {
		return memErr("rename", newname, syscall.ENOTEMPTY)
	}
	move := func(p string) (string, bool) {
		if p == oldname {
			return newname, true
		}
		if rest, ok := strings.CutPrefix(p, oldname+"/"); ok {
			return newname + "/" + rest, true
		}
		return "", false
	}
	files, dirs := map[string]*memNode{}, map[string]bool{}
	for p, n := range m.files {
		if q, ok := move(p); ok {
			files[q] = n
			delete(m.files, p)
		}
	}
	for p := range m.dirs {
		if q, ok := move(p); ok {
			dirs[q] = true
			delete(m.dirs, p)
		}
	}
	for p, n := range files {
		m.files[p] = n
	}
	for p := range dirs {
		m.dirs[p] = true
	}
	return nil
}

func (m *memFS) MkdirAll(name string, perm uint32) error {
	name = filepath.Clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	for p := name; ; p = filepath.Dir(p) {
		if _, ok := m.files[p]; ok {
			return memErr("mkdir", p, syscall.ENOTDIR)
		}
		m.dirs[p] = true
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

func (m *memFS) ReadDir(name string) ([]string, error) {
	name = filepath.Clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.dirs[name] {
		return nil, memErr("readdir", name, fs.ErrNotExist)
	}
	return m.childrenLocked(name), nil
}

// childrenLocked returns the names in dir, sorted as os.ReadDir does.
func (m *memFS) childrenLocked(dir string) []string {
	var out []string
	for p := range m.files {
		if filepath.Dir(p) == dir {
			out = append(out, filepath.Base(p))
		}
	}
	for p := range m.dirs {
		if p != dir && filepath.Dir(p) == dir {
			out = append(out, filepath.Base(p))
		}
	}
	slices.Sort(out)
	return out
}

func (m *memFS) Stat(name string) (int64, error) {
	name = filepath.Clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	if n, ok := m.files[name]; ok {
		n.mu.RLock()
		defer n.mu.RUnlock()
		return int64(len(n.data)), nil
	}
	if m.dirs[name] {
		return 0, nil
	}
	return 0, memErr("stat", name, fs.ErrNotExist)
}

// memFile is an open file (or directory, which only Sync and Close) of a
// memFS.
type memFile struct {
	name       string
	node       *memNode
	dir        bool
	appendMode bool

	mu     sync.Mutex // guards pos and closed
	pos    int64
	closed bool
}

func (f *memFile) check(op string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case f.closed:
		return memErr(op, f.name, os.ErrClosed)
	case f.dir:
		return memErr(op, f.name, syscall.EISDIR)
	}
	return nil
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	if err := f.check("read"); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, memErr("read", f.name, syscall.EINVAL)
	}
	f.node.mu.RLock()
	defer f.node.mu.RUnlock()
	if off >= int64(len(f.node.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.node.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) writeAtLocked(p []byte, off int64) {
	if end := off + int64(len(p)); end > int64(len(f.node.data)) {
		f.node.data = append(f.node.data, make([]byte, end-int64(len(f.node.data)))...)
	}
	copy(f.node.data[off:], p)
}

func (f *memFile) Write(p []byte) (int, error) {
	if err := f.check("write"); err != nil {
		return 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.node.mu.Lock()
	defer f.node.mu.Unlock()
	if f.appendMode {
		f.pos = int64(len(f.node.data))
	}
	f.writeAtLocked(p, f.pos)
	f.pos += int64(len(p))
	return len(p), nil
}

func (f *memFile) WriteAt(p []byte, off int64) (int, error) {
	if err := f.check("write"); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, memErr("write", f.name, syscall.EINVAL)
	}
	f.node.mu.Lock()
	defer f.node.mu.Unlock()
	f.writeAtLocked(p, off)
	return len(p), nil
}

func (f *memFile) Seek(offset int64, whence int) (int64, error) {
	if err := f.check("seek"); err != nil {
		return 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var base int64
	switch whence {
	case io.SeekCurrent:
		base = f.pos
	case io.SeekEnd:
		f.node.mu.RLock()
		base = int64(len(f.node.data))
		f.node.mu.RUnlock()
	}
	if base+offset < 0 {
		return 0, memErr("seek", f.name, syscall.EINVAL)
	}
	f.pos = base + offset
	return f.pos, nil
}

func (f *memFile) Truncate(size int64) error {
	if err := f.check("truncate"); err != nil {
		return err
	}
	if size < 0 {
		return memErr("truncate", f.name, syscall.EINVAL)
	}
	f.node.mu.Lock()
	defer f.node.mu.Unlock()
	if size <= int64(len(f.node.data)) {
		f.node.data = f.node.data[:size]
	} else {
		f.node.data = append(f.node.data, make([]byte, size-int64(len(f.node.data)))...)
	}
	return nil
}

func (f *memFile) Sync() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return memErr("sync", f.name, os.ErrClosed)
	}
	return nil
}

func (f *memFile) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return memErr("close", f.name, os.ErrClosed)
	}
	f.closed = true
	return nil
}

// writeFSFile writes data to a new file path of fsys, creating its
// directory.
func writeFSFile(fsys FS, path string, data []byte) error {
	if err := fsys.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := fsys.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := writeFull(f, data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// TestMemFSMatchesOS runs the same operations on memFS and on the
// operating system's file system and expects the same results, so fuzzing
// on memFS tests what runs in production.
func TestMemFSMatchesOS(t *testing.T) {
	run := func(fsys FS, root string) []string {
		var out []string
		note := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
		errs := func(err error) string {
			switch {
			case err == nil:
				return "ok"
			case errors.Is(err, fs.ErrNotExist):
				return "not-exist"
			case errors.Is(err, io.EOF):
				return "eof"
			default:
				return "error"
			}
		}
		dir := filepath.Join(root, "a", "b")
		note("mkdir %s", errs(fsys.MkdirAll(dir, 0o755)))
		_, err := fsys.OpenFile(filepath.Join(dir, "missing"), os.O_RDWR, 0)
		note("open missing %s", errs(err))
		_, err = fsys.OpenFile(filepath.Join(root, "nodir", "f"), os.O_CREATE|os.O_RDWR, 0o644)
		note("create in missing dir %s", errs(err))
		f, err := fsys.OpenFile(filepath.Join(dir, "f"), os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o644)
		note("create %s", errs(err))
		n, err := f.Write([]byte("hello"))
		note("write %d %s", n, errs(err))
		n, err = f.Write([]byte(" world"))
		note("write %d %s", n, errs(err))
		note("writeat %s", errs(writeFullAt(f, []byte("XY"), 20)))
		size, err := fsys.Stat(filepath.Join(dir, "f"))
		note("stat %d %s", size, errs(err))
		buf := make([]byte, 8)
		n, err = f.ReadAt(buf, 18)
		note("readat %d %q %s", n, buf[:n], errs(err))
		n, err = f.ReadAt(buf, 0)
		note("readat %d %q %s", n, buf[:n], errs(err))
		n, err = f.ReadAt(buf, 100)
		note("readat past end %d %s", n, errs(err))
		note("truncate %s", errs(f.Truncate(4)))
		off, err := f.Seek(0, io.SeekEnd)
		note("seek end %d %s", off, errs(err))
		note("truncate up %s", errs(f.Truncate(6)))
		n, err = f.ReadAt(buf, 0)
		note("readat %d %q %s", n, buf[:n], errs(err))
		note("sync %s", errs(f.Sync()))
		g, err := fsys.OpenFile(filepath.Join(dir, "g"), os.O_CREATE|os.O_WRONLY, 0o644)
		note("create g %s", errs(err))
		note("close g %s", errs(g.Close()))
		names, err := fsys.ReadDir(dir)
		note("readdir %v %s", names, errs(err))
		note("rename over %s", errs(fsys.Rename(filepath.Join(dir, "f"), filepath.Join(dir, "g"))))
		n, err = f.ReadAt(buf[:4], 0) // still open on the renamed file
		note("read renamed %d %q %s", n, buf[:n], errs(err))
		names, err = fsys.ReadDir(dir)
		note("readdir %v %s", names, errs(err))
		note("remove g %s", errs(fsys.Remove(filepath.Join(dir, "g"))))
		n, err = f.ReadAt(buf[:4], 0) // still open on the removed file
		note("read removed %d %q %s", n, buf[:n], errs(err))
		note("close %s", errs(f.Close()))
		note("remove again %s", errs(fsys.Remove(filepath.Join(dir, "g"))))
		_, err = fsys.Stat(filepath.Join(dir, "g"))
		note("stat removed %s", errs(err))
		d, err := fsys.OpenFile(dir, os.O_RDONLY, 0)
		note("open dir %s", errs(err))
		note("sync dir %s", errs(d.Sync()))
		note("close dir %s", errs(d.Close()))
		note("write h %s", errs(writeFSFile(fsys, filepath.Join(dir, "h"), []byte("h"))))
		note("rename dir %s", errs(fsys.Rename(filepath.Join(root, "a"), filepath.Join(root, "c"))))
		names, err = fsys.ReadDir(filepath.Join(root, "c", "b"))
		note("readdir moved %v %s", names, errs(err))
		_, err = fsys.ReadDir(dir)
		note("readdir old %s", errs(err))
		note("removeall %s", errs(fsys.RemoveAll(filepath.Join(root, "c"))))
		note("removeall missing %s", errs(fsys.RemoveAll(filepath.Join(root, "c"))))
		names, err = fsys.ReadDir(root)
		note("readdir root %v %s", names, errs(err))
		return out
	}
	want := run(OSFS(), t.TempDir())
	got := run(newMemFS(), "/mem")
	if !slices.Equal(got, want) {
		t.Fatalf("memFS differs from the OS:\n got %q\nwant %q", got, want)
	}
}

// TestLogOnMemFS: a log appends, recovers and reads on memFS as on disk.
func TestLogOnMemFS(t *testing.T) {
	l := openAt(t, "/mem/p-0", smallConfig(), newClock(t0), newMemFS())
	for i := range 50 {
		l.mustAppend(buildBatch(t, idem(1, 0, int32(i*3)), values("m", 3, t0+int64(i))))
	}
	if len(readAll(t, l.Log)) != 50 {
		t.Fatal("want 50 batches")
	}
	l2 := l.reopen(true)
	if l2.EndOffset() != 150 || len(readAll(t, l2.Log)) != 50 {
		t.Fatalf("after reopen: end %d", l2.EndOffset())
	}
	// The producer state survived: a retry of the last batch is a duplicate.
	info, err := l2.Append(buildBatch(t, idem(1, 0, 147), values("m", 3, t0+49)), 0)
	if err != nil || !info.Duplicate {
		t.Fatalf("retry after reopen: %+v %v", info, err)
	}
}
