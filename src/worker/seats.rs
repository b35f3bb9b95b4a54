//! Seats in groups: `--max-groups-per-user` held atomically across workers.
//!
//! A user's groups are counted from the store (one membership record each), but a new
//! membership is written by the worker that owns the group, later than the check and
//! perhaps on another thread. Pipelined `CreateGroup`s, or joins and adds racing on
//! several group workers, would each see the old count and all pass. So a seat is taken
//! here before the check passes, under one lock, and given back once the membership is
//! written (it is then counted by the store) or the change failed.

use crate::store::StoreError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Clone, Default)]
pub struct GroupSeats {
    /// Seats taken and not yet written to the store, by username.
    pending: Arc<Mutex<HashMap<Arc<str>, usize>>>,
}

/// A seat taken for a membership still being made; give it back with [`GroupSeats::release`].
#[must_use]
#[derive(Debug)]
pub struct Seat(Arc<str>);

impl GroupSeats {
    /// Takes a seat for `username` if its stored memberships (`stored`, read under the
    /// lock so two takers cannot both read the old count) plus the seats already taken
    /// leave room under `max`. None at the limit.
    pub fn take(
        &self,
        username: &str,
        max: usize,
        stored: impl FnOnce() -> Result<usize, StoreError>,
    ) -> Result<Option<Seat>, StoreError> {
        let mut pending = self.lock();
        let taken = pending.get(username).copied().unwrap_or(0);
        if stored()? + taken >= max {
            return Ok(None);
        }
        let name: Arc<str> = username.into();
        *pending.entry(name.clone()).or_insert(0) += 1;
        Ok(Some(Seat(name)))
    }

    /// Gives a seat back: its membership is now in the store, or was never made.
    pub fn release(&self, seat: Seat) {
        let mut pending = self.lock();
        if let Some(count) = pending.get_mut(&seat.0) {
            *count -= 1;
            if *count == 0 {
                pending.remove(&seat.0);
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, usize>> {
        // A panic while holding this lock leaves only counts behind; they stay usable.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seats_taken_count_until_released() {
        let seats = GroupSeats::default();
        let a = seats.take("ann", 2, || Ok(0)).unwrap().expect("first seat");
        let b = seats.take("ann", 2, || Ok(0)).unwrap().expect("second seat");
        assert!(seats.take("ann", 2, || Ok(0)).unwrap().is_none(), "two pending fill a limit of two");
        assert!(seats.take("bob", 2, || Ok(1)).unwrap().is_some(), "per user");
        seats.release(a);
        // The released membership is in the store now.
        assert!(seats.take("ann", 2, || Ok(1)).unwrap().is_none());
        seats.release(b);
        assert!(seats.take("ann", 2, || Ok(1)).unwrap().is_some());
    }
}
