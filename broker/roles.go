package broker

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/vigilhq/vigil/controller"
)

// The broker's side of partition roles: the metadata store calls these as
// the image moves partitions between leader and follower on this broker.

// becameLeader starts leading p: its followers are tracked from now, no
// fetcher pulls it any more, and for __consumer_offsets partitions the
// group coordinator of the partition starts.
func (b *Broker) becameLeader(p *partition) {
	b.fetchers.unfollow(p)
	if err := p.becomeLeader(time.Now()); err != nil && p.log.Offline() == nil {
		b.logger.Error("recording the new leader epoch failed", "partition", p.String(), "err", err)
	}
	b.logger.Debug("leading partition", "partition", p.String(), "leader_epoch", p.leaderEpoch())
	if p.topic == offsetsTopic {
		b.groups.lead(p)
	}
}

// becameFollower makes p a follower of its leader (or of no one while it
// has none).
func (b *Broker) becameFollower(p *partition) {
	p.resign()
	if p.topic == offsetsTopic {
		b.groups.resign(p)
	}
	b.fetchers.follow(p)
}

// stopped forgets p, whose replica leaves this broker.
func (b *Broker) stopped(p *partition) {
	p.resign()
	if p.topic == offsetsTopic {
		b.groups.resign(p)
	}
	b.fetchers.unfollow(p)
}

// applied makes sure every partition this broker follows is fetched from
// its current leader: a leader whose registration arrived after the
// partition's state, or that moved to another endpoint, is picked up here.
func (b *Broker) applied() {
	for _, p := range b.meta.localPartitions() {
		if !p.isLeader() && !p.deleted.Load() {
			b.fetchers.ensure(p)
		}
	}
}

// checkISRs proposes the ISR changes due now for the partitions this
// broker leads: it shrinks the ISRs of followers that fell behind and
// expands them with followers that caught up. Serve runs it every
// replica.lag.time.max.ms/4.
func (b *Broker) checkISRs() {
	now := time.Now()
	alive := func(id int32) bool {
		br := b.meta.broker(id)
		return br != nil && br.Alive()
	}
	for _, p := range b.meta.localPartitions() {
		if p.log.Offline() != nil {
			b.leaveISR(p)
			continue
		}
		if !p.isLeader() {
			continue
		}
		isr, ok := p.proposeISR(now, b.cfg.ReplicaLagTimeMax, alive)
		if !ok {
			continue
		}
		go b.alterISR(p, isr)
	}
}

// leaveISR takes this broker out of the ISR of a partition whose log went
// offline after a storage error, so that another in-sync replica leads it
// (Kafka's brokers report offline log directories to the controller for
// the same reason). It is retried every ISR check while this broker is
// still in the ISR; the controller refuses while no other in-sync replica
// is alive, and the partition then stays unavailable, as in Kafka, rather
// than lose acknowledged records.
func (b *Broker) leaveISR(p *partition) {
	st := p.state.Load()
	if st == nil || !slices.Contains(st.ISR, b.cfg.NodeID) || len(st.ISR) < 2 || !p.leavingISR.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer p.leavingISR.Store(false)
		ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
		defer cancel()
		np, err := b.link.cl.RemoveFromISR(ctx, p.topic, p.index, b.cfg.NodeID)
		if err != nil {
			if ctx.Err() == nil {
				b.logger.Warn("leaving the ISR of an offline partition failed; retrying", "partition", p.String(), "err", err)
			}
			return
		}
		b.logger.Warn("left the ISR of a partition whose log is offline", "partition", p.String(), "isr", np.ISR, "leader", np.Leader)
	}()
}

// alterISR sends one AlterPartition and takes its answer in.
func (b *Broker) alterISR(p *partition, isr []int32) {
	defer p.alterDone()
	st := p.state.Load()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	np, err := b.link.cl.AlterPartition(ctx, controller.AlterPartitionRequest{
		BrokerID: b.cfg.NodeID, BrokerEpoch: b.link.brokerEpoch(),
		TopicID: controller.TopicID(p.topicID), Topic: p.topic, Partition: p.index,
		LeaderEpoch: st.LeaderEpoch, PartitionEpoch: st.PartitionEpoch, NewISR: isr,
	})
	if err != nil {
		if !errors.Is(err, controller.ErrFencedLeaderEpoch) && !errors.Is(err, controller.ErrInvalidUpdateVersion) && ctx.Err() == nil {
			b.logger.Warn("changing the ISR failed", "partition", p.String(), "isr", isr, "err", err)
		}
		return
	}
	b.logger.Info("ISR changed", "partition", p.String(), "from", st.ISR, "to", np.ISR, "partition_epoch", np.PartitionEpoch)
	for _, r := range st.ISR {
		if !slices.Contains(np.ISR, r) {
			b.isrShrinks.Inc()
			break
		}
	}
	for _, r := range np.ISR {
		if !slices.Contains(st.ISR, r) {
			b.isrExpands.Inc()
			break
		}
	}
	// The image brings the same state; take it now so the high watermark
	// and acks=all see the new ISR at once.
	for {
		cur := p.state.Load()
		if cur.PartitionEpoch >= np.PartitionEpoch || cur.LeaderEpoch != np.LeaderEpoch {
			return
		}
		c := np.Clone()
		if p.state.CompareAndSwap(cur, c) {
			return
		}
	}
}
