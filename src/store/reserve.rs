//! A reserve of disk space for opening the database on a full disk.
//!
//! sled writes when it opens a database; on a disk with no room left it cannot open, and
//! the server could not start even to let users read what they are owed. So while there is
//! room the data directory keeps `reserve`, a file with `SIZE` bytes allocated and never
//! written; if the disk is full at start, the file is deleted first and its space lets sled
//! open. It is made again at a later start that finds room.

use super::commitlog::segment;
use log::warn;
use std::path::Path;

pub const FILE: &str = "reserve";
/// Room for what sled writes when it opens (a segment of its log, its snapshot).
const SIZE: u64 = 8 * 1024 * 1024;

/// Before sled opens: frees the reserve if the disk has less than `needed` bytes free.
pub fn release_if_full(dir: &Path, needed: u64) {
    let path = dir.join(FILE);
    if !path.exists() || segment::free_space(dir).map_or(true, |free| free >= needed) {
        return;
    }
    match std::fs::remove_file(&path) {
        Ok(()) => warn!("the disk holding {} is full: released the {SIZE}-byte reserve to open it", dir.display()),
        Err(e) => warn!("the disk holding {} is full, and the reserve cannot be released: {e}", dir.display()),
    }
}

/// After a start: makes the reserve again if it is missing and there is room for it
/// beyond `keep_free`.
pub fn restore(dir: &Path, keep_free: u64) {
    let path = dir.join(FILE);
    if path.exists() || segment::free_space(dir).map_or(true, |free| free < keep_free + SIZE) {
        return;
    }
    if let Err(e) = segment::create_reserved(&path, SIZE) {
        warn!("cannot reserve space in {}: {e}", dir.display());
    }
}
