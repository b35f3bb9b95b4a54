//! Where the service token comes from: `--token-file`, else the CONFAB_SERVICE_TOKEN
//! environment variable, else one line of standard input. Never a flag: flags show in
//! the process list.

use std::io::BufRead;
use std::path::Path;

/// The environment variable `confabd stats` reads too.
pub const TOKEN_ENV: &str = "CONFAB_SERVICE_TOKEN";

/// Reads the token from the first source that is given; surrounding whitespace (the
/// newline `confabd service add` printed) is not part of it.
pub fn read_token(file: Option<&Path>, env: Option<String>, stdin: &mut dyn BufRead) -> Result<String, String> {
    let (token, from) = match (file, env) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
            (text, "the token file")
        }
        (None, Some(token)) => (token, TOKEN_ENV),
        (None, None) => {
            let mut line = String::new();
            stdin.read_line(&mut line).map_err(|e| format!("reading the token from standard input: {e}"))?;
            (line, "standard input")
        }
    };
    let token = token.trim();
    if token.is_empty() {
        return Err(format!("no service token in {from}"));
    }
    Ok(token.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn the_file_comes_first_then_the_environment_then_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "from-file\n").unwrap();
        let mut stdin = Cursor::new(b"from-stdin\nmore\n".to_vec());
        assert_eq!(read_token(Some(&file), Some("from-env".into()), &mut stdin).unwrap(), "from-file");
        assert_eq!(read_token(None, Some(" from-env ".into()), &mut stdin).unwrap(), "from-env");
        assert_eq!(read_token(None, None, &mut stdin).unwrap(), "from-stdin");
        std::fs::write(&file, "\n").unwrap();
        assert!(read_token(Some(&file), None, &mut stdin).unwrap_err().contains("no service token"));
        assert!(read_token(None, None, &mut Cursor::new(Vec::new())).is_err());
        assert!(read_token(Some(&dir.path().join("missing")), None, &mut stdin).is_err());
    }
}
