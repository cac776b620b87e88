package log

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// osFS is the operating system's file system.
type osFS struct{}

// OSFS returns the FS backed by the operating system, the default of
// Options.FS. Tests wrap it to inject faults.
func OSFS() FS { return osFS{} }

func (osFS) OpenFile(name string, flag int, perm uint32) (File, error) {
	f, err := os.OpenFile(name, flag, fs.FileMode(perm))
	if err != nil {
		return nil, err
	}
	return f, nil
}

func (osFS) Remove(name string) error                { return os.Remove(name) }
func (osFS) RemoveAll(name string) error             { return os.RemoveAll(name) }
func (osFS) Rename(oldname, newname string) error    { return os.Rename(oldname, newname) }
func (osFS) MkdirAll(name string, perm uint32) error { return os.MkdirAll(name, fs.FileMode(perm)) }

func (osFS) ReadDir(name string) ([]string, error) {
	ents, err := os.ReadDir(name)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names, nil
}

func (osFS) Stat(name string) (int64, error) {
	fi, err := os.Stat(name)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// File name suffixes in a partition directory.
const (
	logSuffix       = ".log"
	indexSuffix     = ".index"
	timeIndexSuffix = ".timeindex"
	snapshotSuffix  = ".snapshot"
	tmpSuffix       = ".tmp"
	deletedSuffix   = ".deleted"

	leaderEpochFile = "leader-epoch-checkpoint"
	startOffsetFile = "log-start-offset-checkpoint"
)

// offsetName is Kafka's file name stem for an offset: 20 digits, zero
// padded.
func offsetName(off int64) string { return fmt.Sprintf("%020d", off) }

// parseOffsetName parses the stem of a segment or snapshot file name.
func parseOffsetName(stem string) (int64, bool) {
	if len(stem) != 20 {
		return 0, false
	}
	v, err := strconv.ParseInt(stem, 10, 64)
	if err != nil || v < 0 {
		return 0, false
	}
	return v, true
}

// splitSuffix splits a file name into its stem and one of the suffixes the
// log owns; ok is false for other files.
func splitSuffix(name string) (stem, suffix string, ok bool) {
	for _, s := range []string{logSuffix, indexSuffix, timeIndexSuffix, snapshotSuffix} {
		if strings.HasSuffix(name, s) {
			return strings.TrimSuffix(name, s), s, true
		}
	}
	return "", "", false
}

func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }

// syncDir fsyncs a directory so that file creations, renames and removals
// in it are durable.
func syncDir(fsys FS, dir string) error {
	d, err := fsys.OpenFile(dir, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// writeFileAtomic replaces path with data so that after a crash the file
// holds either the old or the new contents: it writes path.tmp, fsyncs it,
// renames it over path and fsyncs the directory.
func writeFileAtomic(fsys FS, path string, data []byte) error {
	tmp := path + tmpSuffix
	f, err := fsys.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := writeFull(f, data); err != nil {
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
	if err := fsys.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(fsys, filepath.Dir(path))
}

// writeFull writes all of p with Write, which some File implementations
// may do in parts.
func writeFull(f File, p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := f.Write(p[n:])
		n += m
		if err != nil {
			return n, err
		}
		if m == 0 {
			return n, errors.New("short write")
		}
	}
	return n, nil
}

// writeFullAt writes all of p at off.
func writeFullAt(f File, p []byte, off int64) error {
	for len(p) > 0 {
		m, err := f.WriteAt(p, off)
		if err != nil {
			return err
		}
		if m == 0 {
			return errors.New("short write")
		}
		p, off = p[m:], off+int64(m)
	}
	return nil
}

// readFile reads a whole small file.
func readFile(fsys FS, path string) ([]byte, error) {
	size, err := fsys.Stat(path)
	if err != nil {
		return nil, err
	}
	f, err := fsys.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, size)
	if _, err := readFullAt(f, buf, 0); err != nil {
		return nil, err
	}
	return buf, nil
}
