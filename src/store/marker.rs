//! The checkpoint marker: how the server notices that sled lost writes it had made
//! durable (a damaged or truncated database file), instead of serving less in silence.
//!
//! Every checkpoint stores a rising serial number in sled (tree `meta`) before sled's
//! flush and fsync, then writes the same number to `DATA_DIR/checkpoint` (with its own
//! checksum and fdatasync). Whatever sled recovers after a crash includes everything its
//! last completed checkpoint covered, so at open sled's serial can never be below the
//! file's; if it is, sled's files have lost data and the store refuses to open.

use byteorder::{BigEndian, ByteOrder};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub const FILE: &str = "checkpoint";
/// The key in sled's `meta` tree.
pub const KEY: &[u8] = b"checkpoint";
const MAGIC: &[u8; 4] = b"CFCP";
const LEN: usize = 16;

pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

fn encode(serial: u64) -> [u8; LEN] {
    let mut out = [0; LEN];
    out[0..4].copy_from_slice(MAGIC);
    BigEndian::write_u64(&mut out[4..12], serial);
    let crc = crc32fast::hash(&out[0..12]);
    BigEndian::write_u32(&mut out[12..16], crc);
    out
}

/// The serial the file records: None if there is no file; an error if it is damaged.
pub fn read(dir: &Path) -> io::Result<Option<u64>> {
    let bytes = match std::fs::read(path(dir)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let valid = bytes.len() == LEN
        && &bytes[0..4] == MAGIC
        && crc32fast::hash(&bytes[0..12]) == BigEndian::read_u32(&bytes[12..16]);
    if !valid {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{} is damaged", path(dir).display())));
    }
    Ok(Some(BigEndian::read_u64(&bytes[4..12])))
}

/// Records `serial` durably (one 16-byte write in place, then fdatasync).
pub fn write(file: &File, serial: u64) -> io::Result<()> {
    file.write_all_at(&encode(serial), 0)?;
    file.sync_data()
}

/// Opens (creating) the marker file for writing; a new file's name is made durable.
pub fn open(dir: &Path) -> io::Result<File> {
    let existed = path(dir).exists();
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path(dir))?;
    if !existed {
        File::open(dir)?.sync_all()?;
    }
    Ok(file)
}

pub fn decode_serial(raw: &[u8]) -> Option<u64> {
    raw.try_into().ok().map(u64::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_serial_round_trips_and_damage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        let file = open(dir.path()).unwrap();
        write(&file, 41).unwrap();
        write(&file, 42).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(42));
        let mut bytes = std::fs::read(path(dir.path())).unwrap();
        bytes[6] ^= 1;
        std::fs::write(path(dir.path()), bytes).unwrap();
        assert!(read(dir.path()).is_err());
    }
}
