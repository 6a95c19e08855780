package bench

import "time"

// publishBatch is how many messages a publisher queues between checks of
// the pacer and the stop channel.
const publishBatch = 64

// publishLoop publishes from at until limit messages (0: no limit) or stop,
// paced at rate per second (0: as fast as backpressure allows). QoS > 0
// publishes take a window token that the acknowledgement returns.
func (c *client) publishLoop(stop <-chan struct{}, rate float64, limit int64, at time.Time) {
	timer := time.NewTimer(time.Until(at))
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-stop:
		return
	}
	// Messages already queued (and counted as sent) leave when the loop
	// ends, whatever ends it, not with the final DISCONNECT.
	defer c.flushNow()
	pacer := NewPacer(rate, burstFor(rate), at)
	qos := c.r.cfg.QoS
	var seq uint64
	for limit == 0 || int64(seq) < limit {
		n, wait := pacer.Take(time.Now(), publishBatch)
		if n == 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-stop:
				return
			}
			continue
		}
		for ; n > 0 && (limit == 0 || int64(seq) < limit); n-- {
			if qos > 0 {
				select {
				case c.window <- struct{}{}:
				default: // window full: send what is queued, then wait for an ack
					c.flushNow()
					select {
					case c.window <- struct{}{}:
					case <-stop:
						return
					}
				}
			}
			seq++
			last := n == 1 || (limit > 0 && int64(seq) == limit)
			if !c.publish(seq, last) {
				return
			}
		}
		select {
		case <-stop:
			return
		default:
		}
	}
}
