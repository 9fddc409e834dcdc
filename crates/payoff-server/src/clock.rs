//! Business time. Production reads the system clock; a simulation (the
//! demo replaying a month, a test) sets time by hand, so everything the
//! server stamps (the agent's acts, approvals and their expiry, closes,
//! audit records) happens when the simulated business says it does.
//! Operational timing (webhook retries, leases) stays on real time.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};

/// Where "now" comes from.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    #[default]
    System,
    /// Microseconds since the epoch, moved by [`Clock::set`].
    Manual(Arc<AtomicI64>),
}

impl Clock {
    /// A clock standing at `at` until set again.
    pub fn manual(at: DateTime<Utc>) -> Clock {
        Clock::Manual(Arc::new(AtomicI64::new(at.timestamp_micros())))
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Manual(us) => {
                DateTime::from_timestamp_micros(us.load(Ordering::SeqCst)).unwrap_or_default()
            }
        }
    }

    /// Moves a manual clock (a system clock cannot be set: no-op).
    pub fn set(&self, at: DateTime<Utc>) {
        if let Clock::Manual(us) = self {
            us.store(at.timestamp_micros(), Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_stands_still_until_set_and_clones_share_it() {
        let t = DateTime::from_timestamp(1_700_000_000, 123_000).unwrap();
        let clock = Clock::manual(t);
        let copy = clock.clone();
        assert_eq!(clock.now(), t);
        copy.set(t + chrono::Duration::hours(3));
        assert_eq!(clock.now(), t + chrono::Duration::hours(3));
        assert!(Clock::System.now() > t);
    }
}
