//! A small pool of database connections for readers.

use std::sync::Mutex;

use crate::StoreError;

type Connect<C> = Box<dyn Fn() -> Result<C, StoreError> + Send + Sync>;

/// Keeps up to `idle_max` idle connections; opens more on demand.
pub(crate) struct Pool<C: Send + 'static> {
    idle: Mutex<Vec<C>>,
    idle_max: usize,
    connect: Connect<C>,
    /// Whether a call's error means its connection is gone.
    gone: fn(&C, &StoreError) -> bool,
}

impl<C: Send + 'static> Pool<C> {
    pub(crate) fn new(
        idle_max: usize,
        connect: Connect<C>,
        gone: fn(&C, &StoreError) -> bool,
    ) -> Self {
        Self {
            idle: Mutex::new(Vec::new()),
            idle_max,
            connect,
            gone,
        }
    }

    /// Runs `f` with a connection, returning it to the pool afterwards unless
    /// `f` failed (a failed connection may be broken, so it is dropped).
    ///
    /// When a pooled connection turns out to be gone (the server restarted,
    /// failed over, or ended the session), the idle ones went with it: they
    /// are dropped, and `f` runs once more on a new connection. A session
    /// the server ended has no transaction left open, so nothing of the
    /// first try stands.
    pub(crate) fn with<T>(
        &self,
        mut f: impl FnMut(&mut C) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let taken = self.idle.lock().expect("pool lock").pop();
        let pooled = taken.is_some();
        let mut conn = match taken {
            Some(c) => c,
            None => (self.connect)()?,
        };
        let mut result = f(&mut conn);
        if let Err(e) = &result {
            if (self.gone)(&conn, e) {
                drop_elsewhere(std::mem::take(&mut *self.idle.lock().expect("pool lock")));
                drop_elsewhere(vec![conn]);
                if !pooled {
                    return result;
                }
                conn = (self.connect)()?;
                result = f(&mut conn);
            }
        }
        if result.is_ok() {
            let mut idle = self.idle.lock().expect("pool lock");
            if idle.len() < self.idle_max {
                idle.push(conn);
            }
        }
        result
    }
}

impl<C: Send + 'static> Drop for Pool<C> {
    /// Closes idle connections on a thread of their own: the PostgreSQL
    /// client blocks while closing, which is forbidden on an async worker,
    /// where the last handle to a store is often dropped.
    fn drop(&mut self) {
        drop_elsewhere(std::mem::take(self.idle.get_mut().expect("pool lock")));
    }
}

/// Closes connections on a thread of their own: the PostgreSQL client
/// blocks while closing, which is forbidden on an async worker.
fn drop_elsewhere<C: Send + 'static>(connections: Vec<C>) {
    if !connections.is_empty() {
        let _ = std::thread::Builder::new()
            .name("payoff-pool-close".into())
            .spawn(move || drop(connections));
    }
}
