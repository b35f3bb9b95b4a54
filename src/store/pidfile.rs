//! The daemon's pid file in the data directory: written once the daemon holds the
//! directory's lock, removed at a clean exit. It is only ever read to say who holds the
//! lock when an open fails for it, so a stale file (left by a crash) blocks nothing.

use std::path::{Path, PathBuf};

/// The file's name inside the data directory.
pub const PID_FILE: &str = "confabd.pid";

fn path(dir: &Path) -> PathBuf {
    dir.join(PID_FILE)
}

/// Records this process as the directory's daemon.
pub fn write(dir: &Path) -> std::io::Result<()> {
    std::fs::write(path(dir), format!("{}\n", std::process::id()))
}

/// Removes the record if it is this process's (a later daemon may have written its own).
pub fn remove(dir: &Path) {
    if read(dir) == Some(std::process::id()) {
        let _ = std::fs::remove_file(path(dir));
    }
}

/// The pid recorded, if the file exists and holds one.
pub fn read(dir: &Path) -> Option<u32> {
    std::fs::read_to_string(path(dir)).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_read_and_removed_only_by_its_process() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()), None);
        write(dir.path()).unwrap();
        assert_eq!(read(dir.path()), Some(std::process::id()));
        remove(dir.path());
        assert_eq!(read(dir.path()), None);
        std::fs::write(path(dir.path()), "not a pid").unwrap();
        assert_eq!(read(dir.path()), None);
        std::fs::write(path(dir.path()), "1\n").unwrap();
        remove(dir.path());
        assert_eq!(read(dir.path()), Some(1), "another process's record stays");
    }
}
