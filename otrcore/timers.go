package otrcore

import "time"

// Tick runs the conversation's timers: unfinished AKEs are forgotten
// after a minute, partial fragmented messages after 90 s without a new
// piece, and a session that received a message with content since it last
// sent gets a heartbeat once a minute has passed, so old keys do not
// linger. A heartbeat is never answered with a heartbeat. A session that
// has neither sent nor received for five minutes drops the cipher state
// it can rebuild from its keys (MemoryUse shrinks accordingly); the next
// message rebuilds it.
func (c *Conversation) Tick(now time.Time) Result {
	var res Result
	for _, in := range c.all() {
		if in.ake.active() && now.Sub(in.ake.started) >= akeTimeout {
			in.dropAKE()
		}
		if in.frag.pending() && now.Sub(in.frag.last) >= fragmentTimeout {
			in.frag.reset()
		}
		if in.state == StateEncrypted && in.recvSinceSent && now.Sub(in.lastSent) >= heartbeatInterval {
			if err := c.sendData(&res, in, now, "", nil, flagIgnoreUnreadable); err != nil {
				res.event(Event{Kind: EventProtocolError, Instance: in.tag, Err: err})
			}
		}
		if in.state == StateEncrypted && now.Sub(in.lastSent) >= idleCompact && now.Sub(in.lastRecv) >= idleCompact {
			in.keys.compact()
		}
	}
	if c.resendArmed && now.Sub(c.lastTextAt) >= resendWindow {
		c.resendArmed = false
	}
	return res
}
