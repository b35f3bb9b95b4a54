//! The accounts a run uses, and the file that caches their resume tokens.
//!
//! Accounts are named `{prefix}{index}` with a password derived from the name, so any run
//! can log any of them in again. The file maps server address → username → token (hex):
//! with a valid token a login costs no password hash, which keeps repeated runs from
//! spending their setup time in argon2. A stale token (a fresh server, an expired token)
//! is not an error: the connection falls back to a password login, then to registering.
//!
//! With devices (`direct --devices D`, D > 1) each account logs in as D named devices
//! `d0`, `d1`, ...: a login is an *identity*, account `i / D` on device `i % D`, and each
//! has its own token, kept in the file under `username/dN`. With one device the identity
//! is the account, it names no device, and its token is under the username as before.

use crate::error::Error;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Serialize, Deserialize, Default)]
struct FileFormat {
    /// Server address → username → hex token.
    servers: BTreeMap<String, BTreeMap<String, String>>,
}

/// Names, passwords and tokens of the accounts `0..count`. Each event-loop thread holds
/// a clone (the names are shared) and updates its own tokens as logins answer. Tokens are
/// per identity (see the module documentation).
#[derive(Clone)]
pub struct Accounts {
    names: Arc<[String]>,
    /// Devices per account; 1: logins name no device.
    devices: usize,
    tokens: Vec<Option<Vec<u8>>>,
}

impl Accounts {
    pub fn new(prefix: &str, count: usize) -> Self {
        Accounts::with_devices(prefix, count, 1)
    }

    /// Accounts that each log in as `devices` named devices (1: as [`Accounts::new`]).
    pub fn with_devices(prefix: &str, count: usize, devices: usize) -> Self {
        let devices = devices.max(1);
        Accounts {
            names: (0..count).map(|i| format!("{prefix}{i}")).collect::<Vec<_>>().into(),
            devices,
            tokens: vec![None; count * devices],
        }
    }

    /// The account an identity logs in as.
    pub fn account_of(&self, identity: usize) -> usize {
        identity / self.devices
    }

    /// The device an identity names (`d0`, `d1`, ...), or None with one device per account.
    pub fn device(&self, identity: usize) -> Option<String> {
        (self.devices > 1).then(|| format!("d{}", identity % self.devices))
    }

    /// The accounts file's key for an identity's token.
    fn key(&self, identity: usize) -> String {
        let name = &self.names[self.account_of(identity)];
        match self.device(identity) {
            Some(device) => format!("{name}/{device}"),
            None => name.clone(),
        }
    }

    pub fn name(&self, i: usize) -> &str {
        &self.names[i]
    }

    /// Derived, not random: the file can be lost without losing the accounts.
    pub fn password(&self, i: usize) -> String {
        format!("loadgen-password-{}", self.names[i])
    }

    pub fn token(&self, i: usize) -> Option<&[u8]> {
        self.tokens[i].as_deref()
    }

    pub fn set_token(&mut self, i: usize, token: Vec<u8>) {
        self.tokens[i] = Some(token);
    }

    pub fn forget_token(&mut self, i: usize) {
        self.tokens[i] = None;
    }

    /// Takes account `i`'s token from another copy (a thread's, after its run).
    pub fn adopt(&mut self, other: &Accounts, i: usize) {
        self.tokens[i] = other.tokens[i].clone();
    }

    /// Fills in the tokens the file holds for this server.
    pub fn load(&mut self, path: &Path, server: &str) -> Result<(), Error> {
        let file = read_file(path)?;
        if let Some(tokens) = file.servers.get(server) {
            for i in 0..self.tokens.len() {
                if let Some(token) = tokens.get(&self.key(i)).and_then(|hex| from_hex(hex)) {
                    self.tokens[i] = Some(token);
                }
            }
        }
        Ok(())
    }

    /// Merges this run's tokens into the file (other servers' and accounts' entries stay).
    pub fn save(&self, path: &Path, server: &str) -> Result<(), Error> {
        let mut file = read_file(path).unwrap_or_default();
        let entry = file.servers.entry(server.to_string()).or_default();
        for (i, token) in self.tokens.iter().enumerate() {
            match token {
                Some(token) => {
                    entry.insert(self.key(i), to_hex(token));
                }
                None => {
                    entry.remove(&self.key(i));
                }
            }
        }
        let json =
            serde_json::to_vec_pretty(&file).map_err(|e| Error::Write { path: path.into(), source: e.into() })?;
        // Write then rename: an interrupted run must not leave half a file behind.
        let tmp = PathBuf::from(format!("{}.tmp", path.display()));
        std::fs::write(&tmp, json)
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|source| Error::Write { path: path.into(), source })
    }
}

fn read_file(path: &Path) -> Result<FileFormat, Error> {
    match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map_err(|source| Error::AccountsParse { path: path.into(), source })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(FileFormat::default()),
        Err(source) => Err(Error::AccountsRead { path: path.into(), source }),
    }
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() & 1 == 1 {
        return None;
    }
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let bytes = vec![0, 1, 0xab, 0xff];
        assert_eq!(from_hex(&to_hex(&bytes)), Some(bytes));
        assert_eq!(from_hex("abc"), None);
        assert_eq!(from_hex("zz"), None);
    }

    #[test]
    fn names_and_passwords_are_valid() {
        let accounts = Accounts::new("lg-", 3);
        assert_eq!(accounts.name(2), "lg-2");
        assert!(confab_proto::protocol::valid_username(accounts.name(0)));
        assert!(confab_proto::protocol::valid_password(&accounts.password(0)));
    }

    #[test]
    fn save_then_load() {
        let dir = std::env::temp_dir().join(format!("loadgen-accounts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.json");
        let mut a = Accounts::new("t-", 2);
        a.set_token(1, vec![9; 32]);
        a.save(&path, "127.0.0.1:1").unwrap();
        let mut b = Accounts::new("t-", 2);
        b.load(&path, "127.0.0.1:1").unwrap();
        assert_eq!(b.token(1), Some(&[9u8; 32][..]));
        assert_eq!(b.token(0), None);
        let mut c = Accounts::new("t-", 2);
        c.load(&path, "127.0.0.1:2").unwrap();
        assert_eq!(c.token(1), None);
        // Two devices per account: each identity's token under its own key, beside the
        // accounts' own.
        let mut d = Accounts::with_devices("t-", 2, 2);
        assert_eq!((d.account_of(3), d.device(3).as_deref()), (1, Some("d1")));
        d.set_token(3, vec![7; 32]);
        d.save(&path, "127.0.0.1:1").unwrap();
        let mut e = Accounts::with_devices("t-", 2, 2);
        e.load(&path, "127.0.0.1:1").unwrap();
        assert_eq!(e.token(3), Some(&[7u8; 32][..]));
        assert_eq!(e.token(2), None, "t-1 on d0 has no token; t-1's own is not a device's");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"t-1/d1\"") && text.contains("\"t-1\""), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
