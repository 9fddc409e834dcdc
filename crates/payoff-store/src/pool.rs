//! A small pool of database connections for readers.

use std::sync::Mutex;

use crate::StoreError;

type Connect<C> = Box<dyn Fn() -> Result<C, StoreError> + Send + Sync>;

/// Keeps up to `idle_max` idle connections; opens more on demand.
pub(crate) struct Pool<C: Send + 'static> {
    idle: Mutex<Vec<C>>,
    idle_max: usize,
    connect: Connect<C>,
    /// Whether a connection is known to be gone (after a failed call).
    closed: fn(&C) -> bool,
}

impl<C: Send + 'static> Pool<C> {
    pub(crate) fn new(idle_max: usize, connect: Connect<C>, closed: fn(&C) -> bool) -> Self {
        Self {
            idle: Mutex::new(Vec::new()),
            idle_max,
            connect,
            closed,
        }
    }

    /// Runs `f` with a connection, returning it to the pool afterwards unless
    /// `f` failed (a failed connection may be broken, so it is dropped).
    pub(crate) fn with<T>(
        &self,
        f: impl FnOnce(&mut C) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let taken = self.idle.lock().expect("pool lock").pop();
        let mut conn = match taken {
            Some(c) => c,
            None => (self.connect)()?,
        };
        let result = f(&mut conn);
        if result.is_ok() {
            let mut idle = self.idle.lock().expect("pool lock");
            if idle.len() < self.idle_max {
                idle.push(conn);
            }
        } else if (self.closed)(&conn) {
            // The server closed it (a restart, a failover, an operator):
            // the idle ones went with it, and each would fail one request.
            let gone = std::mem::take(&mut *self.idle.lock().expect("pool lock"));
            drop_elsewhere(gone);
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
