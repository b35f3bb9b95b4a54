//! Segment files: naming, creating one with its space reserved up front, and syncing
//! the directory that holds them.
//!
//! A segment's name is `RUN-PARTITION-NUMBER.seg` (zero-padded, so names sort in the order
//! the records were written). Its space is reserved with `fallocate` before it is needed:
//! each partition keeps a *spare* (`spare-PARTITION`, zeros, never written) that becomes
//! its next segment by a rename. Appends never grow a file, so a batch's `fdatasync`
//! writes data, not file metadata, and a full disk shows up when a spare cannot be made,
//! while the partition still has a whole segment to write into: never in a batch.

use super::record::{self, SegmentId};
use rustix::fs::FallocateFlags;
use rustix::io::Errno;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub const EXTENSION: &str = "seg";

pub fn file_name(id: SegmentId) -> String {
    format!("{:010}-{:04}-{:012}.{EXTENSION}", id.run, id.partition, id.number)
}

/// The id a segment's file name gives, if it is one.
pub fn parse_name(name: &str) -> Option<SegmentId> {
    let stem = name.strip_suffix(&format!(".{EXTENSION}"))?;
    let mut parts = stem.split('-');
    let id = SegmentId {
        run: parts.next()?.parse().ok()?,
        partition: parts.next()?.parse().ok()?,
        number: parts.next()?.parse().ok()?,
    };
    parts.next().is_none().then_some(id)
}

/// Every segment in `dir`, in the order they were written (by run, partition, number).
pub fn list(dir: &Path) -> io::Result<Vec<(SegmentId, PathBuf)>> {
    let mut segments = Vec::new();
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            for entry in entries {
                let entry = entry?;
                if let Some(id) = entry.file_name().to_str().and_then(parse_name) {
                    segments.push((id, entry.path()));
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    segments.sort();
    Ok(segments)
}

/// The partition's spare file.
pub fn spare_path(dir: &Path, partition: u32) -> PathBuf {
    dir.join(format!("spare-{partition:04}"))
}

/// Makes sure a spare of `capacity` bytes exists (one left by an earlier run is kept: it
/// was never written).
pub fn create_spare(dir: &Path, partition: u32, capacity: u64) -> io::Result<PathBuf> {
    let path = spare_path(dir, partition);
    if std::fs::metadata(&path).is_ok_and(|m| m.len() == capacity) {
        return Ok(path);
    }
    create_reserved(&path, capacity)?;
    Ok(path)
}

/// A file of `len` bytes, allocated and never written (reads as zeroes), its name durable.
pub fn create_reserved(path: &Path, len: u64) -> io::Result<()> {
    let file = OpenOptions::new().write(true).create(true).truncate(true).open(path)?;
    if let Err(e) = reserve(&file, len) {
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Whether an error means the disk (or the user's quota) is full.
pub fn is_full(e: &io::Error) -> bool {
    matches!(Errno::from_io_error(e), Some(Errno::NOSPC | Errno::DQUOT))
}

/// Bytes free for an unprivileged writer on the file system holding `dir`.
pub fn free_space(dir: &Path) -> io::Result<u64> {
    let stat = rustix::fs::statvfs(dir)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// An open segment being appended to.
pub struct Segment {
    pub id: SegmentId,
    pub path: PathBuf,
    file: File,
    /// Where the next record goes.
    pub offset: u64,
    /// The reserved size.
    pub capacity: u64,
}

impl Segment {
    /// Creates the segment with `capacity` bytes reserved and its header written (made
    /// durable by the first commit's sync, together with its first records).
    pub fn create(dir: &Path, id: SegmentId, capacity: u64) -> io::Result<Segment> {
        let path = dir.join(file_name(id));
        let file = OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
        let made = reserve(&file, capacity).and_then(|()| file.write_all_at(&record::header(id), 0));
        if let Err(e) = made {
            // Leave no half-made segment behind (a full disk): the next attempt starts over.
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        // The file's name must survive a power cut before anything in it counts.
        sync_dir(dir)?;
        Ok(Segment { id, path, file, offset: record::HEADER_LEN as u64, capacity })
    }

    /// Turns the spare into segment `id` (its space is reserved already).
    pub fn from_spare(dir: &Path, spare: &Path, id: SegmentId, capacity: u64) -> io::Result<Segment> {
        let path = dir.join(file_name(id));
        std::fs::rename(spare, &path)?;
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        file.write_all_at(&record::header(id), 0)?;
        sync_dir(dir)?;
        Ok(Segment { id, path, file, offset: record::HEADER_LEN as u64, capacity })
    }

    pub fn room(&self) -> u64 {
        self.capacity.saturating_sub(self.offset)
    }

    /// Writes `bytes` at the end of what is there; advances only if all of it was written.
    pub fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all_at(bytes, self.offset)?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    /// fdatasync: the data written so far survives a power cut once this returns Ok.
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

/// Reserves `len` bytes for the file (blocks allocated, reads as zeroes).
fn reserve(file: &File, len: u64) -> io::Result<()> {
    // fallocate's length is a signed off_t.
    if i64::try_from(len).is_err() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "segment too big"));
    }
    match rustix::fs::fallocate(file, FallocateFlags::empty(), 0, len) {
        Ok(()) => Ok(()),
        // A file system without fallocate: a file of that length (sparse) still works;
        // only the full-disk-at-creation guarantee is lost there.
        Err(Errno::OPNOTSUPP) => file.set_len(len),
        Err(e) => Err(e.into()),
    }
}

/// fsync of a directory: makes created, renamed and removed names in it durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_full_disk_or_quota_is_told_from_other_errors() {
        // fallocate's own error reaches the caller as this io::Error.
        assert!(is_full(&io::Error::from(Errno::NOSPC)));
        assert!(is_full(&io::Error::from_raw_os_error(Errno::NOSPC.raw_os_error())));
        assert!(is_full(&io::Error::from_raw_os_error(Errno::DQUOT.raw_os_error())));
        assert!(!is_full(&io::Error::from_raw_os_error(Errno::IO.raw_os_error())));
        assert!(!is_full(&io::Error::other("no errno")));
    }

    #[test]
    fn a_reserved_file_has_its_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reserved");
        create_reserved(&path, 1024 * 1024).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.len(), 1024 * 1024);
        // st_blocks counts 512-byte units; a sparse file (no fallocate) would have none.
        assert!(meta.blocks() * 512 >= 1024 * 1024, "{} blocks allocated", meta.blocks());
        assert_eq!(reserve(&File::open(&path).unwrap(), u64::MAX).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn free_space_reads_the_file_system_and_fails_without_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let free = free_space(dir.path()).unwrap();
        assert!(free > 0);
        assert!(free_space(&dir.path().join("missing")).is_err());
    }
}
