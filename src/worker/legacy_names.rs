//! Names stored before the names policy, tidied once at start.
//!
//! The policy is applied where a name is set, so a display name or group name written by
//! an earlier version (a right-to-left override, zero-width characters, another user's
//! username) would otherwise go on being shown to everyone. At start each stored name is
//! put through the policy: a display name that breaks it, or reads as another user's
//! username, becomes the account's username; a group name that breaks it becomes
//! "group ID"; names that only needed tidying are stored tidy. O(accounts + groups), once.

use super::lookalikes::Lookalikes;
use crate::names::normalize_name;
use crate::store::{Store, StoreResult};
use log::warn;

/// Returns how many names changed (made durable before it returns).
pub fn tidy_stored_names(store: &Store, lookalikes: &Lookalikes) -> StoreResult<usize> {
    let mut changed = 0;
    for username in store.usernames()? {
        let Some(mut account) = store.account(&username)? else { continue };
        let shown = match normalize_name(&account.display_name) {
            Ok(tidy) if lookalikes.other_than(&tidy, &username).is_none() => tidy,
            _ => crate::apps::local(&username).to_string(),
        };
        if shown != account.display_name {
            warn!(
                "the display name of {username} ({:?}) broke the names policy; it is now {shown:?}",
                account.display_name
            );
            account.display_name = shown;
            store.put_account(&username, &account)?;
            changed += 1;
        }
    }
    for (group_id, mut record) in store.groups()? {
        let tidy = normalize_name(&record.name).unwrap_or_else(|_| format!("group {group_id}"));
        if tidy != record.name {
            warn!("the name of group {group_id} ({:?}) broke the names policy; it is now {tidy:?}", record.name);
            record.name = tidy;
            store.put_group(group_id, &record)?;
            changed += 1;
        }
    }
    if changed > 0 {
        store.checkpoint()?;
    }
    Ok(changed)
}
