//! The open-file limit and what it allows: every connection is a descriptor, so the
//! connection limit must fit under RLIMIT_NOFILE with room left for storage and logs.
//! Otherwise accept fails with EMFILE, and newcomers wait unanswered in the backlog.

use std::io;

/// Raises the soft open-file limit to the hard limit (the default soft limit, often 1024,
/// would cap connections far below what the machine allows); returns the limit now in
/// force.
pub fn raise_to_hard_limit() -> io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

/// Connections that fit under an open-file limit of `nofile` when `reserve` descriptors
/// are kept for everything else; at least one, so a misjudged reserve degrades service
/// rather than refusing everyone.
pub fn connections_allowed(nofile: u64, reserve: usize) -> usize {
    let allowed = nofile.saturating_sub(reserve as u64).max(1);
    usize::try_from(allowed).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_kept_out_of_the_limit() {
        assert_eq!(connections_allowed(1024, 128), 896);
        assert_eq!(connections_allowed(100, 128), 1);
        assert_eq!(connections_allowed(u64::MAX, 0), usize::MAX);
    }
}
