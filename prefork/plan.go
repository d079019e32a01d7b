package prefork

import "time"

// view is what decide needs to know of the pool at one moment.
type view struct {
	now       time.Time
	alive     int         // children not retiring, starting ones included
	starting  int         // of those, the ones not yet ready
	idleSince []time.Time // when each idle child became idle, the longest idle first
	waiters   int         // Do calls waiting for a child
	failures  int         // deaths (or failed starts) in a row
	lastFail  time.Time   // the latest of those
	lastGrow  time.Time   // the latest start above Min
}

// decision is what Run does next.
type decision struct {
	start  bool      // start one child now
	retire int       // retire this many of the longest-idle children
	wake   time.Time // decide again then (zero: only on a change)
}

// decide is the pool's policy, kept pure so that its timing is tested
// without processes or clocks:
//
//   - below Min, start at once (after the restart backoff, if children
//     keep dying);
//   - while Do calls wait for more children than are idle or starting,
//     start one more, up to Max, at most StartRate a second: a burst of
//     load does not become a burst of starts;
//   - retire idle children above Min once they have been idle for Idle,
//     counted from when they became idle, so a child just started, or
//     just used, is never the one retired (hysteresis);
//   - never retire while anyone waits;
//   - with children above Min all busy, look again after Idle;
//   - above Max (after SetLimits lowered it), retire idle children at once.
func decide(c *Config, v view) decision {
	var d decision
	soonest := func(t time.Time) {
		if d.wake.IsZero() || t.Before(d.wake) {
			d.wake = t
		}
	}
	belowMin := v.alive < c.Min
	grow := v.alive < c.Max && v.waiters > v.starting+len(v.idleSince)
	if belowMin || grow {
		at := v.now
		if v.failures >= 2 {
			if t := v.lastFail.Add(backoff(v.failures)); t.After(at) {
				at = t
			}
		}
		if !belowMin {
			if t := v.lastGrow.Add(time.Duration(float64(time.Second) / c.StartRate)); t.After(at) {
				at = t
			}
		}
		if at.After(v.now) {
			soonest(at)
		} else {
			d.start = true
		}
	}
	excess, overMax := v.alive-c.Min, v.alive-c.Max
	armed := false
	for _, since := range v.idleSince {
		if excess <= 0 {
			break
		}
		if overMax > 0 { // Max was lowered: no need to wait
			d.retire++
			excess--
			overMax--
			continue
		}
		if c.Idle <= 0 || v.waiters > 0 {
			break
		}
		if end := since.Add(c.Idle); end.After(v.now) {
			soonest(end)
			armed = true
			break
		}
		d.retire++
		excess--
	}
	// Children above Min are busy (or jobs wait): Run is not told when
	// they go idle, or when the last waiter is served (that is every job),
	// so it looks again Idle from now, the soonest one could retire.
	if excess > 0 && !armed && c.Idle > 0 {
		soonest(v.now.Add(c.Idle))
	}
	return d
}

// backoff is the wait before the next start after n deaths in a row.
func backoff(n int) time.Duration {
	d := backoffBase
	for i := 2; i < n && d < backoffMax; i++ {
		d *= 2
	}
	return min(d, backoffMax)
}
