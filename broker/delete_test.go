package broker

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	vlog "github.com/vigilhq/vigil/broker/log"
)

// gatedRemoveFS holds RemoveAll of any path whose base name starts with
// prefix until release is closed, like a slow disk removing a large
// directory. entered is closed when the first such RemoveAll begins.
type gatedRemoveFS struct {
	vlog.FS
	prefix  string
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func (f *gatedRemoveFS) RemoveAll(name string) error {
	if strings.HasPrefix(filepath.Base(name), f.prefix) {
		f.once.Do(func() { close(f.entered) })
		<-f.release
	}
	return f.FS.RemoveAll(name)
}

// TestDeleteThenRecreateKeepsNewData deletes a topic whose directory removal
// is slow and re-creates the topic while the removal is still running: the
// new topic's records must survive both the removal and a restart. (The
// removal used to delete the directory by its name after the metadata lock
// was released, and so removed the new topic's directory.)
func TestDeleteThenRecreateKeepsNewData(t *testing.T) {
	fsys := &gatedRemoveFS{FS: vlog.OSFS(), prefix: "rc-0", entered: make(chan struct{}), release: make(chan struct{})}
	released := false
	release := func() {
		if !released {
			released = true
			close(fsys.release)
		}
	}
	dir := t.TempDir()
	b := startBroker(t, dir, func(c *Config) { c.FS = fsys })
	t.Cleanup(release) // runs before the broker's cleanup, which waits for the removal
	adm := newAdmin(t, b)
	ctx := testCtx(t)
	createTopic(t, adm, "rc", 1, nil)
	cl := newClient(t, b, kgo.DefaultProduceTopic("rc"))
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("old")}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	deleted := make(chan error, 1)
	old := b.meta.lookup("rc")
	go func() { deleted <- b.deleteTopic(ctx, old) }()
	select {
	case <-fsys.entered: // the old topic's directory is being removed
	case <-ctx.Done():
		t.Fatal("the deletion never started removing the directory")
	}

	// Another client re-creates the topic while the removal is stuck.
	createTopic(t, adm, "rc", 1, nil)
	cl2 := newClient(t, b, kgo.DefaultProduceTopic("rc"), kgo.MetadataMinAge(10*time.Millisecond))
	for i := 0; i < 10; i++ {
		if err := cl2.ProduceSync(ctx, &kgo.Record{Value: []byte(fmt.Sprint("new-", i))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	release()
	if err := <-deleted; err != nil {
		t.Fatalf("deleteTopic: %v", err)
	}
	waitNoDeleteDirs(t, dir)

	checkNew := func(b *Broker) {
		t.Helper()
		got := consumeN(t, b, "rc", 10)
		for i, r := range got {
			if want := fmt.Sprint("new-", i); string(r.Value) != want {
				t.Fatalf("record %d is %q, want %q", i, r.Value, want)
			}
		}
	}
	checkNew(b)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b2 := startBroker(t, dir)
	if end := b2.meta.lookup("rc").partitions[0].log.EndOffset(); end != 10 {
		t.Fatalf("after a restart the re-created topic ends at offset %d, want 10", end)
	}
	checkNew(b2)
}

// waitNoDeleteDirs waits until no partition directory in dir is being
// removed.
func waitNoDeleteDirs(t *testing.T, dir string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var left []string
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), deleteDirSuffix) {
				left = append(left, e.Name())
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("directories of deleted partitions were not removed: %v", left)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestDeleteDirsRemovedAtStart: directories a crash left mid-removal are
// removed when the broker starts, whatever is (or is not) in them.
func TestDeleteDirsRemovedAtStart(t *testing.T) {
	dir := t.TempDir()
	b := startBroker(t, dir)
	createTopic(t, newAdmin(t, b), "keep", 1, nil)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	id := [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	left := []string{
		deleteDirName("gone", 0, id),
		deleteDirName("gone", 1, id),
		deleteDirName(strings.Repeat("x", 249), 7, id),
	}
	for i, name := range left {
		if len(name) > 255 {
			t.Fatalf("%q is longer than a file name may be", name)
		}
		if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if i == 0 { // one with a log, one empty
			os.WriteFile(filepath.Join(dir, name, "00000000000000000000.log"), []byte("data"), 0o644)
		}
	}
	b2 := startBroker(t, dir)
	waitNoDeleteDirs(t, dir)
	if b2.meta.lookup("keep") == nil {
		t.Fatal("topic keep is gone")
	}
	if _, err := os.Stat(filepath.Join(dir, "keep-0")); err != nil {
		t.Fatal(err)
	}
}
