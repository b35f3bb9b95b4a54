//! Where a user's device id and resume token are remembered between runs, so `--user NAME`
//! can log in without a password, always as the same device.
//!
//! A token file holds a format line, the username it belongs to, this client's device id
//! for that user, the token in hex (empty after a logout: the device id outlives the
//! token, so the next login is the same device again and the server's positions for it
//! are used, not left to expire), and the address of the server that gave it. In a
//! cluster that is the user's home node, the only one that knows the token (protocol.md
//! "Cluster"); another node would only redirect there. Files of the earlier formats are
//! read too: the second has no address line, the first no device line either (its token
//! was a login without a device). The username is checked on load, so
//! one `--token-file` shared by several accounts never hands one user's token or device to
//! another. The file is written to a temporary name and renamed (a crash leaves the old
//! token, not half a new one) and, on Unix, readable by its owner only: the token is as
//! good as the password until it expires or the user logs out.

use confab_proto::protocol::DEFAULT_APP;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The format with a device line and a home address line.
const MAGIC: &str = "confab-token 3";
/// The second format: a device line, no home address.
const MAGIC_V2: &str = "confab-token 2";
/// The first format: username and token, no device.
const MAGIC_V1: &str = "confab-token 1";
/// The longest device id the server takes (protocol.md "Devices").
pub const MAX_DEVICE_ID: usize = 64;

/// What a token file remembers for its user.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Saved {
    /// None only in a file of the first format.
    pub device: Option<String>,
    /// None after a logout, or a refused token.
    pub token: Option<Vec<u8>>,
    /// The server address the last login answered on (the user's home node in a
    /// cluster); None in a file of an earlier format.
    pub home: Option<String>,
}

/// A device id as the server takes it: 1 to 64 printable ASCII characters, no spaces.
pub fn valid_device(device: &str) -> bool {
    !device.is_empty() && device.len() <= MAX_DEVICE_ID && device.bytes().all(|b| b.is_ascii_graphic())
}

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

    /// What is remembered for `username`, if the file is that user's.
    pub fn load(&self, username: &str) -> Result<Option<Saved>, TokenError> {
        let Some(path) = self.path_for(username) else {
            return Ok(None);
        };
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(TokenError::Io { path, error }),
        };
        let mut lines = text.lines();
        let (magic, owner) = (lines.next(), lines.next());
        let (device, hex) = match magic {
            Some(MAGIC | MAGIC_V2) => (lines.next().filter(|d| valid_device(d)).map(str::to_string), lines.next()),
            Some(MAGIC_V1) => (None, lines.next()),
            _ => return Err(TokenError::Malformed { path }),
        };
        let home = match magic {
            // Empty when the login's server address was not known.
            Some(MAGIC) => match lines.next() {
                Some(home) => Some(home.trim()).filter(|h| !h.is_empty()).map(str::to_string),
                None => return Err(TokenError::Malformed { path }),
            },
            _ => None,
        };
        let (Some(owner), Some(hex)) = (owner, hex) else {
            return Err(TokenError::Malformed { path });
        };
        if magic != Some(MAGIC_V1) && device.is_none() {
            return Err(TokenError::Malformed { path });
        }
        if owner != username {
            return Ok(None);
        }
        let token = match hex.trim() {
            "" => None,
            hex => Some(from_hex(hex).ok_or(TokenError::Malformed { path })?),
        };
        Ok(Some(Saved { device, token, home }))
    }

    /// Remembers `username`'s device and token (None: the device alone), and the address
    /// of the server that gave the token (`home`).
    pub fn save(
        &self,
        username: &str,
        device: &str,
        token: Option<&[u8]>,
        home: Option<&str>,
    ) -> Result<(), TokenError> {
        let Some(path) = self.path_for(username) else {
            return Ok(());
        };
        let io_error = |error| TokenError::Io { path: path.clone(), error };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(io_error)?;
        }
        let temp = temp_path(&path);
        let token = token.map(to_hex).unwrap_or_default();
        let text = format!("{MAGIC}\n{username}\n{device}\n{token}\n{}\n", home.unwrap_or_default());
        write_private(&temp, text.as_bytes()).map_err(io_error)?;
        fs::rename(&temp, &path).map_err(|error| {
            let _ = fs::remove_file(&temp);
            io_error(error)
        })
    }

    /// Forgets `username`'s token (after a logout, which revoked it, or a refusal); the
    /// device id and the home address stay.
    pub fn forget_token(&self, username: &str) -> Result<(), TokenError> {
        // Only our own user's file: a shared --token-file may hold someone else's token.
        let saved = match self.load(username) {
            Ok(Some(saved)) => saved,
            Ok(None) | Err(TokenError::Io { .. }) => return Ok(()),
            Err(TokenError::Malformed { path }) => {
                return match fs::remove_file(&path) {
                    Err(error) if error.kind() != io::ErrorKind::NotFound => Err(TokenError::Io { path, error }),
                    _ => Ok(()),
                };
            }
        };
        match (saved.device, saved.token) {
            (Some(device), Some(_)) => self.save(username, &device, None, saved.home.as_deref()),
            // A first-format file: its token was all it held.
            (None, Some(_)) => match self.path_for(username) {
                Some(path) => match fs::remove_file(&path) {
                    Err(error) if error.kind() != io::ErrorKind::NotFound => Err(TokenError::Io { path, error }),
                    _ => Ok(()),
                },
                None => Ok(()),
            },
            (_, None) => Ok(()),
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
        store.save("alice", "laptop", Some(&token), Some("10.0.0.2:7420")).expect("save");
        let home = Some(String::from("10.0.0.2:7420"));
        let saved = Saved { device: Some("laptop".into()), token: Some(token), home: home.clone() };
        assert_eq!(store.load("alice").expect("load"), Some(saved));
        assert_eq!(store.load("bob").expect("load"), None);
        store.forget_token("bob").expect("forget");
        assert!(store.load("alice").expect("load").is_some_and(|s| s.token.is_some()), "bob's logout is not alice's");
        // The device outlives the token: the next login is the same device (at the same home).
        store.forget_token("alice").expect("forget");
        assert_eq!(
            store.load("alice").expect("load"),
            Some(Saved { device: Some("laptop".into()), token: None, home })
        );
    }

    #[test]
    fn a_file_of_the_first_format_has_a_token_and_no_device() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        fs::write(&path, "confab-token 1\nalice\n00ff\n").expect("write");
        let store = TokenStore::new(Some(path.clone()), DEFAULT_APP);
        assert_eq!(
            store.load("alice").expect("load"),
            Some(Saved { device: None, token: Some(vec![0, 255]), home: None })
        );
        store.forget_token("alice").expect("forget");
        assert!(!path.exists());
        fs::write(&path, "confab-token 2\nalice\nhas space\n00ff\n").expect("write");
        assert!(matches!(store.load("alice"), Err(TokenError::Malformed { .. })));
    }

    #[test]
    fn a_file_of_the_second_format_has_no_home() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        fs::write(&path, "confab-token 2\nalice\nlaptop\n00ff\n").expect("write");
        let store = TokenStore::new(Some(path.clone()), DEFAULT_APP);
        let saved = Saved { device: Some("laptop".into()), token: Some(vec![0, 255]), home: None };
        assert_eq!(store.load("alice").expect("load"), Some(saved));
        // Written anew in the third format; a login whose address was unknown keeps none.
        store.save("alice", "laptop", None, None).expect("save");
        assert_eq!(fs::read_to_string(&path).expect("read"), "confab-token 3\nalice\nlaptop\n\n\n");
        assert_eq!(
            store.load("alice").expect("load"),
            Some(Saved { device: Some("laptop".into()), ..Saved::default() })
        );
        fs::write(&path, "confab-token 3\nalice\nlaptop\n00ff\n").expect("write");
        assert!(matches!(store.load("alice"), Err(TokenError::Malformed { .. })), "the home line is missing");
    }

    #[test]
    fn device_ids_are_short_printable_ascii() {
        assert!(valid_device("chat-0123abcd"));
        assert!(valid_device(&"x".repeat(MAX_DEVICE_ID)));
        for bad in ["", "has space", "tab\t", "é", &"x".repeat(MAX_DEVICE_ID + 1)] {
            assert!(!valid_device(bad), "{bad:?}");
        }
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
        TokenStore::new(Some(path.clone()), DEFAULT_APP).save("alice", "laptop", Some(&[1, 2, 3]), None).expect("save");
        let mode = fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
