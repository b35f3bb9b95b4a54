//! Where resume tokens are remembered between runs, so `--user NAME` can log in without a
//! password.
//!
//! A token file holds a format line, the username it belongs to and the token in hex. The
//! username is checked on load, so one `--token-file` shared by several accounts never
//! hands one user's token to another. The file is written to a temporary name and renamed
//! (a crash leaves the old token, not half a new one) and, on Unix, readable by its owner
//! only: the token is as good as the password until it expires or the user logs out.

use confab_proto::protocol::DEFAULT_APP;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

const MAGIC: &str = "confab-token 1";

#[derive(Debug)]
pub enum TokenError {
    Io { path: PathBuf, error: io::Error },
    Malformed { path: PathBuf },
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            TokenError::Malformed { path } => {
                write!(f, "{}: not a confab token file", path.display())
            }
        }
    }
}

/// Chooses the file for each user: a fixed one (`--token-file`), or one per user in a
/// directory (by default `$HOME/.config/confab`), or none when there is no home.
#[derive(Debug, Clone)]
pub struct TokenStore {
    fixed: Option<PathBuf>,
    dir: Option<PathBuf>,
    /// The file's name before the username: `token-`, or `token-APP-` in an app other than
    /// default (the same username in two apps is two accounts with two tokens).
    prefix: String,
}

impl TokenStore {
    pub fn new(fixed: Option<PathBuf>, app: &str) -> Self {
        let dir = std::env::var_os("HOME")
            .filter(|home| !home.is_empty())
            .map(|home| PathBuf::from(home).join(".config").join("confab"));
        let prefix = match app {
            DEFAULT_APP => "token-".to_string(),
            app => format!("token-{app}-"),
        };
        TokenStore { fixed, dir, prefix }
    }

    pub fn path_for(&self, username: &str) -> Option<PathBuf> {
        match (&self.fixed, &self.dir) {
            (Some(path), _) => Some(path.clone()),
            (None, Some(dir)) => Some(dir.join(format!("{}{username}", self.prefix))),
            (None, None) => None,
        }
    }

    /// The remembered token of `username`, if there is one for that user.
    pub fn load(&self, username: &str) -> Result<Option<Vec<u8>>, TokenError> {
        let Some(path) = self.path_for(username) else {
            return Ok(None);
        };
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(TokenError::Io { path, error }),
        };
        let mut lines = text.lines();
        let (Some(MAGIC), Some(owner), Some(hex)) = (lines.next(), lines.next(), lines.next()) else {
            return Err(TokenError::Malformed { path });
        };
        if owner != username {
            return Ok(None);
        }
        from_hex(hex).map(Some).ok_or(TokenError::Malformed { path })
    }

    pub fn save(&self, username: &str, token: &[u8]) -> Result<(), TokenError> {
        let Some(path) = self.path_for(username) else {
            return Ok(());
        };
        let io_error = |error| TokenError::Io { path: path.clone(), error };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(io_error)?;
        }
        let temp = temp_path(&path);
        let text = format!("{MAGIC}\n{username}\n{}\n", to_hex(token));
        write_private(&temp, text.as_bytes()).map_err(io_error)?;
        fs::rename(&temp, &path).map_err(|error| {
            let _ = fs::remove_file(&temp);
            io_error(error)
        })
    }

    /// Forgets `username`'s token (after a logout, which revoked it, or a refusal).
    pub fn remove(&self, username: &str) -> Result<(), TokenError> {
        let Some(path) = self.path_for(username) else {
            return Ok(());
        };
        // Only our own user's file: a shared --token-file may hold someone else's token.
        match self.load(username) {
            Ok(Some(_)) | Err(TokenError::Malformed { .. }) => {}
            Ok(None) | Err(TokenError::Io { .. }) => return Ok(()),
        }
        match fs::remove_file(&path) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => Err(TokenError::Io { path, error }),
            _ => Ok(()),
        }
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}

fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if text.len() % 2 != 0 || text.is_empty() {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_owner_check() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested").join("token");
        let store = TokenStore::new(Some(path.clone()), DEFAULT_APP);
        assert!(store.load("alice").expect("load").is_none());
        let token: Vec<u8> = (0..32).collect();
        store.save("alice", &token).expect("save");
        assert_eq!(store.load("alice").expect("load"), Some(token));
        assert_eq!(store.load("bob").expect("load"), None);
        store.remove("bob").expect("remove");
        assert!(path.exists(), "bob's logout must not delete alice's token");
        store.remove("alice").expect("remove");
        assert!(!path.exists());
    }

    #[test]
    fn per_user_files_in_a_directory() {
        let store = TokenStore { fixed: None, dir: Some(PathBuf::from("/x")), prefix: "token-".into() };
        assert_eq!(store.path_for("bob"), Some(PathBuf::from("/x/token-bob")));
        let mut acme = TokenStore::new(None, "acme");
        acme.dir = Some(PathBuf::from("/x"));
        assert_eq!(acme.path_for("bob"), Some(PathBuf::from("/x/token-acme-bob")), "another app's bob");
    }

    #[test]
    fn garbage_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        fs::write(&path, "hello").expect("write");
        let store = TokenStore::new(Some(path), DEFAULT_APP);
        assert!(matches!(store.load("alice"), Err(TokenError::Malformed { .. })));
        assert_eq!(from_hex("0g"), None);
        assert_eq!(from_hex("00ff"), Some(vec![0, 255]));
    }

    #[cfg(unix)]
    #[test]
    fn only_the_owner_can_read_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        TokenStore::new(Some(path.clone()), DEFAULT_APP).save("alice", &[1, 2, 3]).expect("save");
        let mode = fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
