//! The policy for names people choose freely: display names and group names.
//!
//! protocol.md's "Names" table is this module: a name is NFC-normalised, its whitespace
//! trimmed and collapsed, and refused if it is empty or too long, holds a character that
//! can hide or reorder text (controls, format characters such as zero-width and bidi
//! controls, the BOM and tag characters, line separators), a noncharacter, a private-use
//! or unassigned code point, or nothing visible at all. [`skeleton`] is what makes two
//! names look alike (UTS #39 plus a few folds of its own), used to refuse a display name
//! that impersonates another user's username.
//!
//! Pure functions, no state: the worker decides whose usernames to compare against.

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// Longest name, in characters (code points) after normalisation.
pub const MAX_NAME_CHARS: usize = 64;

/// Why a name was refused; the text goes into the error frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRefusal {
    /// Empty, or only whitespace and invisible characters.
    Blank,
    TooLong,
    /// A character the policy refuses; the name says which kind.
    Forbidden(&'static str),
}

impl NameRefusal {
    pub fn explain(self) -> String {
        match self {
            NameRefusal::Blank => "a name needs at least one visible character".into(),
            NameRefusal::TooLong => format!("names are at most {MAX_NAME_CHARS} characters"),
            NameRefusal::Forbidden(kind) => format!("names may not contain {kind}"),
        }
    }
}

/// Checks a display or group name and returns the form to store: NFC, without leading or
/// trailing whitespace, every run of whitespace inside collapsed to one U+0020 space.
pub fn normalize_name(raw: &str) -> Result<String, NameRefusal> {
    let nfc: String = raw.nfc().collect();
    // Every character is checked before whitespace is collapsed, so a tab or a line
    // separator is refused rather than quietly turned into a space.
    if let Some(kind) = nfc.chars().find_map(forbidden) {
        return Err(NameRefusal::Forbidden(kind));
    }
    let name = nfc.split_whitespace().collect::<Vec<_>>().join(" ");
    let visible = name.chars().any(|c| c != ' ' && !invisible(c));
    if !visible {
        return Err(NameRefusal::Blank);
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(NameRefusal::TooLong);
    }
    Ok(name)
}

/// The kind of a character no name may hold, or None if it may appear.
fn forbidden(c: char) -> Option<&'static str> {
    // Checked before the categories: these are letters or symbols by category, but blank.
    if matches!(c, '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}') {
        return Some("Hangul filler characters");
    }
    if is_noncharacter(c) {
        return Some("noncharacters");
    }
    match c.general_category() {
        GeneralCategory::Control => Some("control characters"),
        // Zero-width spaces and joiners, bidi embeddings, overrides and isolates, the
        // left-to-right and right-to-left marks, the BOM, and the tag characters.
        GeneralCategory::Format => Some("format characters (zero-width, bidirectional controls, BOM, tags)"),
        GeneralCategory::LineSeparator | GeneralCategory::ParagraphSeparator => Some("line or paragraph separators"),
        GeneralCategory::PrivateUse => Some("private-use characters"),
        GeneralCategory::Surrogate => Some("surrogates"),
        GeneralCategory::Unassigned => Some("unassigned code points"),
        _ => None,
    }
}

/// U+FDD0..=U+FDEF and the last two code points of every plane: never to be interchanged.
fn is_noncharacter(c: char) -> bool {
    let cp = u32::from(c);
    (0xFDD0..=0xFDEF).contains(&cp) || cp & 0xFFFE == 0xFFFE
}

/// Characters that draw nothing by themselves: combining marks (which decorate a
/// neighbour), variation selectors, and the braille blank. A name made only of these and
/// whitespace looks empty.
fn invisible(c: char) -> bool {
    matches!(c.general_category(), GeneralCategory::NonspacingMark | GeneralCategory::EnclosingMark) || c == '\u{2800}'
}

/// What a name looks like, for comparing names: case-folded, mapped by the UTS #39
/// confusables table (Cyrillic and Greek look-alikes, fullwidth and mathematical letters
/// to Latin), then folded further where Latin letters and digits look alike in common
/// fonts: `0` as `o`, and `1`, `i`, `l` and `|` as one. Two names with the same skeleton
/// may be mistaken for each other.
pub fn skeleton(name: &str) -> String {
    let lower = name.to_lowercase();
    let confusable: String = unicode_security::skeleton(&lower).collect();
    confusable
        .to_lowercase()
        .chars()
        .map(|c| match c {
            '0' => 'o',
            '1' | 'i' | '|' => 'l',
            other => other,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_pass_and_are_tidied() {
        assert_eq!(normalize_name("Bob the Builder 🙂").as_deref(), Ok("Bob the Builder 🙂"));
        assert_eq!(normalize_name("  Alice \u{3000} Liddell ").as_deref(), Ok("Alice Liddell"));
        assert_eq!(normalize_name("Zoë").as_deref(), Ok("Zoë"));
        assert_eq!(normalize_name("עברית").as_deref(), Ok("עברית"), "right-to-left letters are fine");
        assert_eq!(normalize_name("Ana\u{301}").as_deref(), Ok("An\u{e1}"), "NFC composes");
        assert_eq!(normalize_name("café ☕").as_deref(), Ok("café ☕"));
    }

    #[test]
    fn blank_names_are_refused() {
        for blank in ["", "   ", "\u{3000}", "\u{301}\u{301}", "\u{2800}", " \u{FE0F} "] {
            assert_eq!(normalize_name(blank), Err(NameRefusal::Blank), "{blank:?}");
        }
    }

    #[test]
    fn hiding_and_reordering_characters_are_refused() {
        let attacks = [
            "\u{200B}\u{200B}",      // zero-width spaces only
            "ad\u{200D}min",         // zero-width joiner inside
            "\u{202E}nimda",         // right-to-left override
            "bob\u{2066}x\u{2069}",  // isolates
            "\u{200F}bob",           // right-to-left mark
            "\u{FEFF}bob",           // BOM
            "bob\u{E0041}\u{E007F}", // tag characters
            "bob\u{FFFF}",           // noncharacter
            "bob\u{FDD0}",           // noncharacter
            "bob\u{10FFFE}",         // noncharacter of plane 16
            "bob\u{E000}",           // private use
            "bob\u{F0000}",          // private use, plane 15
            "bob\u{0378}",           // unassigned
            "a\nb",                  // control
            "a\u{7F}b",              // control
            "a\u{2028}b",            // line separator
            "\u{3164}",              // Hangul filler
        ];
        for attack in attacks {
            assert!(matches!(normalize_name(attack), Err(NameRefusal::Forbidden(_))), "{attack:?}");
        }
    }

    #[test]
    fn length_counts_characters_after_normalising() {
        assert!(normalize_name(&"x".repeat(MAX_NAME_CHARS)).is_ok());
        assert_eq!(normalize_name(&"x".repeat(MAX_NAME_CHARS + 1)), Err(NameRefusal::TooLong));
        assert!(normalize_name(&"é".repeat(MAX_NAME_CHARS)).is_ok(), "64 two-byte characters");
        let padded = format!("   {}   ", "x".repeat(MAX_NAME_CHARS));
        assert!(normalize_name(&padded).is_ok(), "trimmed before counting");
    }

    #[test]
    fn look_alikes_share_a_skeleton() {
        let admin = skeleton("admin");
        for alike in ["adm1n", "ADMIN", "Admin", "\u{0430}dmin", "adm\u{0456}n", "\u{FF41}dmin", "admln", "adm|n"] {
            assert_eq!(skeleton(alike), admin, "{alike:?}");
        }
        assert_eq!(skeleton("b0b"), skeleton("bob"));
        assert_eq!(skeleton("\u{03BF}scar"), skeleton("oscar"), "Greek omicron");
        assert_ne!(skeleton("alice"), skeleton("alicia"));
        assert_ne!(skeleton("bob"), skeleton("rob"));
    }
}
