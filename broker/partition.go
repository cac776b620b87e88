package broker

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kerr"

	vlog "github.com/vigilhq/vigil/broker/log"
)

// partition is one partition this broker leads.
type partition struct {
	topic   string
	topicID [16]byte
	index   int32
	epoch   int32 // leader epoch; 0 until the metadata quorum assigns epochs
	log     *vlog.Log
	deleted atomic.Bool

	// Long-poll fetches waiting for data register a wake channel here;
	// appends notify them. nwait lets appends skip the lock when no one
	// waits.
	wmu     sync.Mutex
	waiters map[chan struct{}]struct{}
	nwait   atomic.Int32
}

func (p *partition) String() string { return fmt.Sprintf("%s-%d", p.topic, p.index) }

// addWaiter registers ch to be signalled (non-blocking) by the next append.
func (p *partition) addWaiter(ch chan struct{}) {
	p.wmu.Lock()
	if p.waiters == nil {
		p.waiters = make(map[chan struct{}]struct{})
	}
	p.waiters[ch] = struct{}{}
	p.nwait.Store(int32(len(p.waiters)))
	p.wmu.Unlock()
}

func (p *partition) removeWaiter(ch chan struct{}) {
	p.wmu.Lock()
	delete(p.waiters, ch)
	p.nwait.Store(int32(len(p.waiters)))
	p.wmu.Unlock()
}

// notify wakes every waiting fetch.
func (p *partition) notify() {
	if p.nwait.Load() == 0 {
		return
	}
	p.wmu.Lock()
	for ch := range p.waiters {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	p.wmu.Unlock()
}

// errorCode maps an error from the log engine to the Kafka error code a
// client should see, and a message for versions that carry one.
func (p *partition) errorCode(err error) (int16, string) {
	if err == nil {
		return 0, ""
	}
	if p.deleted.Load() {
		return kerr.UnknownTopicOrPartition.Code, "the topic was deleted"
	}
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return ke.Code, clientMessage(err, ke)
	}
	// Anything the log engine did not classify is an I/O problem.
	return kerr.KafkaStorageError.Code, err.Error()
}

// clientMessage is err's text for a client that also gets ke's error code:
// without ke's own "NAME: description" text, which the log engine's errors
// carry (they wrap ke) and which the client already knows from the code.
func clientMessage(err error, ke *kerr.Error) string {
	msg := err.Error()
	kt := ke.Error()
	msg = strings.ReplaceAll(msg, " ("+kt+")", "")
	msg = strings.ReplaceAll(msg, ": "+kt, "")
	msg = strings.ReplaceAll(msg, kt, ke.Message)
	return strings.TrimSuffix(msg, ": "+ke.Message)
}
