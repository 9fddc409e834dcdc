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
    /// When the failure says the connection is gone (the server restarted,
    /// failed over, or ended the session), the idle ones went with it: they
    /// are dropped too, so one request meets the outage, not one per idle
    /// connection.
    pub(crate) fn with<T>(
        &self,
        f: impl FnOnce(&mut C) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.attempt(f).map_err(|(e, _)| e)
    }

    /// [`with`](Self::with) for a body that may run twice: when a pooled
    /// connection turns out to be gone, `f` runs once more on a new one.
    /// Only for bodies with no effect outside the database (no rows handed
    /// to a caller's sink) whose transaction the lost session rolled back.
    pub(crate) fn with_retry<T>(
        &self,
        mut f: impl FnMut(&mut C) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match self.attempt(&mut f) {
            Ok(v) => Ok(v),
            Err((_, true)) => self.attempt(f).map_err(|(e, _)| e),
            Err((e, false)) => Err(e),
        }
    }

    /// Runs `f` once; on failure also says whether a pooled connection was
    /// found gone (worth one more try on a new connection).
    fn attempt<T>(
        &self,
        f: impl FnOnce(&mut C) -> Result<T, StoreError>,
    ) -> Result<T, (StoreError, bool)> {
        let taken = self.idle.lock().expect("pool lock").pop();
        let pooled = taken.is_some();
        let mut conn = match taken {
            Some(c) => c,
            None => (self.connect)().map_err(|e| (e, false))?,
        };
        match f(&mut conn) {
            Ok(v) => {
                let mut idle = self.idle.lock().expect("pool lock");
                if idle.len() < self.idle_max {
                    idle.push(conn);
                }
                Ok(v)
            }
            Err(e) => {
                let gone = (self.gone)(&conn, &e);
                if gone {
                    drop_elsewhere(std::mem::take(&mut *self.idle.lock().expect("pool lock")));
                }
                drop_elsewhere(vec![conn]);
                Err((e, gone && pooled))
            }
        }
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
