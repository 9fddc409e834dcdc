//! Where time comes from. The only module allowed to read the system
//! clock (`clippy.toml` forbids `Utc::now` and `SystemTime::now` elsewhere),
//! so every timestamp in Payoff is one of two kinds, chosen where it is
//! taken and visible in the code:
//!
//! - **Business time**, [`Clock::now`]: injected. Production reads the
//!   system clock; a simulation (the demo replaying a month, a test) sets
//!   time by hand, so everything Payoff stamps (the agent's acts, approvals
//!   and their expiry, closes, contracts, keys, audit records) happens when
//!   the simulated business says it does. The server's background work
//!   is scheduled in it too (approval sweeps, webhook retries and leases),
//!   so a simulation that moves the clock decides when they fall due.
//! - **Operational time**, [`wall`]: always real. Deadlines that protect
//!   the system or a peer rather than describe the business: webhook
//!   signature timestamps (a receiver checks them against its own clock),
//!   dashboard sessions (an expiry a simulated clock could stretch),
//!   migrations, benchmarks.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};

/// Real time, for operational deadlines only (see the module's doc):
/// never for anything a statement, a record or a report says happened.
#[allow(clippy::disallowed_methods)]
pub fn wall() -> DateTime<Utc> {
    Utc::now()
}

/// Where business "now" comes from.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    #[default]
    System,
    /// Set by hand; after [`Clock::run`], it moves on at real speed.
    Manual(Arc<Mutex<Manual>>),
}

#[derive(Debug)]
pub struct Manual {
    at: DateTime<Utc>,
    running_since: Option<Instant>,
}

impl Clock {
    /// A clock standing at `at` until set again or run.
    pub fn manual(at: DateTime<Utc>) -> Clock {
        Clock::Manual(Arc::new(Mutex::new(Manual {
            at,
            running_since: None,
        })))
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => wall(),
            Clock::Manual(m) => {
                let m = m.lock().expect("clock");
                match m.running_since {
                    None => m.at,
                    Some(since) => {
                        m.at + Duration::from_std(since.elapsed()).unwrap_or(Duration::zero())
                    }
                }
            }
        }
    }

    /// Stops a manual clock at `at` (a system clock cannot be set: no-op).
    pub fn set(&self, at: DateTime<Utc>) {
        if let Clock::Manual(m) = self {
            *m.lock().expect("clock") = Manual {
                at,
                running_since: None,
            };
        }
    }

    /// Lets a manual clock move on at real speed from where it stands.
    pub fn run(&self) {
        if let Clock::Manual(m) = self {
            let mut m = m.lock().expect("clock");
            if m.running_since.is_none() {
                m.running_since = Some(Instant::now());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_stands_still_until_set_or_run_and_clones_share_it() {
        let t = DateTime::from_timestamp(1_700_000_000, 123_000).unwrap();
        let clock = Clock::manual(t);
        let copy = clock.clone();
        assert_eq!(clock.now(), t);
        copy.set(t + Duration::hours(3));
        assert_eq!(clock.now(), t + Duration::hours(3));
        clock.run();
        let later = clock.now();
        assert!(later >= t + Duration::hours(3) && later < t + Duration::hours(4));
        assert!(Clock::System.now() > t);
    }
}
