//! Log lines on stderr (a service manager keeps the file; the gateway logs too little to
//! want rotation of its own).

use log::LevelFilter;
use simplelog::{ColorChoice, ConfigBuilder, TermLogger, TerminalMode};

/// Installs the logger; a second call keeps the first (tests may call it often).
pub fn init(level: LevelFilter) {
    // Every line with its UTC time; the level's name, not a colour, as a file would want.
    let config = ConfigBuilder::new().set_time_format_rfc3339().build();
    let _ = TermLogger::init(level, config, TerminalMode::Stderr, ColorChoice::Never);
}
