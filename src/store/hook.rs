//! A window on the moments data becomes durable, for tests that model a power cut: the
//! store reports each completed sync, retirement and checkpoint, and a test keeps a copy
//! of exactly what a disk would still hold if the power went at that moment.
//!
//! Nothing in the server depends on it; with no hook set the calls cost a branch.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// What just became durable (or was durably removed).
#[derive(Debug)]
pub enum Durable<'a> {
    /// Every byte of the segment up to `upto` is on disk (fdatasync returned).
    LogSynced { path: &'a Path, upto: u64 },
    /// The segment was deleted and its directory synced.
    LogRemoved { path: &'a Path },
    /// sled's files in `dir` were flushed and fsynced.
    Checkpointed { dir: &'a Path },
}

/// Called after each durable step, on the thread that made it (so before anything that
/// step allowed, such as a receipt, leaves the server).
#[derive(Clone)]
pub struct DurabilityHook(pub Arc<dyn Fn(Durable<'_>) + Send + Sync>);

impl fmt::Debug for DurabilityHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DurabilityHook")
    }
}

impl DurabilityHook {
    pub fn report(hook: &Option<DurabilityHook>, event: Durable<'_>) {
        if let Some(hook) = hook {
            (hook.0)(event);
        }
    }
}
