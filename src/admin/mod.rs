//! Administration of a data directory while the daemon is stopped (sled locks the
//! directory, so these fail cleanly while it runs): accounts, administrators, service
//! tokens, shops and their staff (`shops`), storage statistics. `confabd` exposes each as a
//! subcommand.

use crate::auth::{hash_with_cost, new_token, token_digest};
use crate::clock::now_ms;
use crate::config::HashCost;
use crate::protocol::{valid_password, valid_username, Role, UserId};
use crate::store::{Account, ServiceRecord, Store, StoreError, StoreStats};
use thiserror::Error;

mod shops;
pub use shops::{add_shop, add_staff, list_shops, list_staff, remove_shop, remove_staff, ShopSummary};

#[derive(Debug, Error)]
pub enum AdminError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("not a valid name (3-32 characters of a-z 0-9 _ . -)")]
    InvalidName,
    #[error("passwords are 8-256 bytes")]
    InvalidPassword,
    #[error("no such user: {0}")]
    NoSuchUser(String),
    #[error("no such service: {0}")]
    NoSuchService(String),
    #[error("no such shop: {0}")]
    NoSuchShop(String),
    #[error("{user} is not staff of {shop}")]
    NotStaff { shop: String, user: String },
    #[error("{user} is already staff of {shop}")]
    AlreadyStaff { shop: String, user: String },
    #[error("{shop} has {max} staff, the most a shop may have (--max-staff-per-shop)")]
    TooManyStaff { shop: String, max: usize },
    #[error(
        "{shop} has {conversations} conversations holding {messages} unacknowledged messages; \
         use --force to delete them too"
    )]
    Unacknowledged { shop: String, conversations: u64, messages: u64 },
    #[error("name taken: {0}")]
    NameTaken(String),
    #[error("{name} looks like the existing user {other}: users could be mistaken for each other")]
    LooksLike { name: String, other: String },
    #[error("the system could not provide randomness or hash the password")]
    Crypto,
}

pub type AdminResult<T> = Result<T, AdminError>;

/// An account as the user list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSummary {
    pub username: String,
    pub user_id: UserId,
    pub display_name: String,
    pub admin: bool,
}

pub fn add_user(store: &Store, username: &str, password: &str, cost: HashCost) -> AdminResult<UserId> {
    if !valid_username(username) {
        return Err(AdminError::InvalidName);
    }
    if !valid_password(password) {
        return Err(AdminError::InvalidPassword);
    }
    // The same rule as registration: no username that reads as another (adm1n, admin).
    let skeleton = crate::names::skeleton(username);
    let others = store.usernames()?;
    if let Some(other) = others.into_iter().find(|o| o != username && crate::names::skeleton(o) == skeleton) {
        return Err(AdminError::LooksLike { name: username.to_string(), other });
    }
    let password_hash = hash_with_cost(password, cost).ok_or(AdminError::Crypto)?;
    let user_id = UserId(store.next_id()?);
    let account =
        Account { user_id, display_name: username.to_string(), password_hash, admin: false, created_ms: now_ms() };
    if !store.create_account(username, &account)? {
        return Err(AdminError::NameTaken(username.to_string()));
    }
    store.checkpoint()?;
    Ok(user_id)
}

/// Sets a new password and revokes every resume token of the user.
pub fn set_password(store: &Store, username: &str, password: &str, cost: HashCost) -> AdminResult<()> {
    if !valid_password(password) {
        return Err(AdminError::InvalidPassword);
    }
    let mut account = existing(store, username)?;
    account.password_hash = hash_with_cost(password, cost).ok_or(AdminError::Crypto)?;
    store.put_account(username, &account)?;
    store.revoke_tokens(account.user_id)?;
    store.checkpoint()?;
    Ok(())
}

pub fn set_admin(store: &Store, username: &str, admin: bool) -> AdminResult<()> {
    let mut account = existing(store, username)?;
    account.admin = admin;
    store.put_account(username, &account)?;
    store.checkpoint()?;
    Ok(())
}

/// Deletes the account, its inbox and tokens, and takes it out of its groups: an owner's
/// group passes to an admin (or else a member), and a group left empty is deleted.
pub fn delete_user(store: &Store, username: &str) -> AdminResult<()> {
    let account = existing(store, username)?;
    for group_id in store.memberships(username)? {
        let Some(mut record) = store.group(group_id)? else { continue };
        let was_owner = record.members.iter().any(|m| m.username == username && m.role == Role::Owner);
        record.members.retain(|m| m.username != username);
        store.remove_group_ack(group_id, username)?;
        store.remove_membership(username, group_id)?;
        if record.members.is_empty() {
            store.delete_group(group_id, &record)?;
            continue;
        }
        if was_owner {
            let heir = record.members.iter().position(|m| m.role == Role::Admin).unwrap_or(0);
            record.members[heir].role = Role::Owner;
        }
        store.put_group(group_id, &record)?;
    }
    store.delete_account(username, account.user_id)?;
    store.checkpoint()?;
    Ok(())
}

pub fn list_users(store: &Store) -> AdminResult<Vec<UserSummary>> {
    let mut users = Vec::new();
    for username in store.usernames()? {
        if let Some(account) = store.account(&username)? {
            users.push(UserSummary {
                username,
                user_id: account.user_id,
                display_name: account.display_name,
                admin: account.admin,
            });
        }
    }
    Ok(users)
}

/// Creates (or replaces the token of) a service; returns the token, which is shown only
/// now: the store keeps its digest. `push`: whether it may be the push gateway (set anew
/// each time, so adding again without it takes the permission away).
pub fn add_service(store: &Store, name: &str, push: bool) -> AdminResult<String> {
    if !valid_username(name) {
        return Err(AdminError::InvalidName);
    }
    let token: String = new_token().ok_or(AdminError::Crypto)?.iter().map(|b| format!("{b:02x}")).collect();
    let uid = match store.service(name)? {
        Some(existing) => existing.uid,
        None => UserId(store.next_id()?),
    };
    let record = ServiceRecord { uid, token_digest: token_digest(token.as_bytes()), created_ms: now_ms() };
    store.put_service(name, &record)?;
    store.set_push_gateway(name, push)?;
    store.checkpoint()?;
    Ok(token)
}

pub fn remove_service(store: &Store, name: &str) -> AdminResult<()> {
    if !store.remove_service(name)? {
        return Err(AdminError::NoSuchService(name.to_string()));
    }
    store.checkpoint()?;
    Ok(())
}

/// Every service's name, and whether it may be the push gateway.
pub fn list_services(store: &Store) -> AdminResult<Vec<(String, bool)>> {
    let mut services = Vec::new();
    for name in store.service_names()? {
        let push = store.is_push_gateway(&name)?;
        services.push((name, push));
    }
    Ok(services)
}

pub fn storage_stats(store: &Store) -> AdminResult<StoreStats> {
    Ok(store.stats()?)
}

fn existing(store: &Store, username: &str) -> AdminResult<Account> {
    store.account(username)?.ok_or_else(|| AdminError::NoSuchUser(username.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::GroupId;
    use crate::store::{GroupRecord, MemberRecord};

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    #[test]
    fn users_are_added_listed_promoted_and_deleted() {
        let (_dir, store) = store();
        let id = add_user(&store, "alice", "password1", HashCost::MINIMUM).unwrap();
        assert!(matches!(add_user(&store, "alice", "password1", HashCost::MINIMUM), Err(AdminError::NameTaken(_))));
        let lookalike = add_user(&store, "a1ice", "password1", HashCost::MINIMUM);
        assert!(matches!(lookalike, Err(AdminError::LooksLike { ref other, .. }) if other == "alice"), "{lookalike:?}");
        assert!(matches!(add_user(&store, "A", "password1", HashCost::MINIMUM), Err(AdminError::InvalidName)));
        set_admin(&store, "alice", true).unwrap();
        let users = list_users(&store).unwrap();
        assert_eq!(
            users,
            vec![UserSummary { username: "alice".into(), user_id: id, display_name: "alice".into(), admin: true }]
        );
        store.put_token(id, &[1; 32], u64::MAX).unwrap();
        set_password(&store, "alice", "password2", HashCost::MINIMUM).unwrap();
        assert!(!store.token_valid(id, &[1; 32], 0).unwrap(), "a new password revokes tokens");
        delete_user(&store, "alice").unwrap();
        assert!(list_users(&store).unwrap().is_empty());
        assert!(matches!(delete_user(&store, "alice"), Err(AdminError::NoSuchUser(_))));
    }

    #[test]
    fn deleting_an_owner_hands_the_group_on() {
        let (_dir, store) = store();
        add_user(&store, "owner", "password1", HashCost::MINIMUM).unwrap();
        let record = GroupRecord {
            name: "g".into(),
            open: false,
            created_ms: 0,
            members: vec![
                MemberRecord { username: "member".into(), uid: UserId(9), role: Role::Member },
                MemberRecord { username: "owner".into(), uid: UserId(1), role: Role::Owner },
            ],
        };
        let group = GroupId(5);
        store.put_group(group, &record).unwrap();
        store.add_membership("owner", group).unwrap();
        store.add_membership("member", group).unwrap();
        delete_user(&store, "owner").unwrap();
        let record = store.group(group).unwrap().unwrap();
        let heir = MemberRecord { username: "member".into(), uid: UserId(9), role: Role::Owner };
        assert_eq!(record.members, vec![heir]);
        assert!(store.memberships("owner").unwrap().is_empty());
    }

    #[test]
    fn service_tokens_are_shown_once_and_stored_as_digests() {
        let (_dir, store) = store();
        let token = add_service(&store, "shop", false).unwrap();
        assert_eq!(token.len(), 64);
        let record = store.service("shop").unwrap().unwrap();
        assert_eq!(record.token_digest, token_digest(token.as_bytes()));
        let again = add_service(&store, "shop", true).unwrap();
        assert_ne!(again, token, "a new token replaces the old");
        assert_eq!(store.service("shop").unwrap().unwrap().uid, record.uid, "the identity stays");
        assert_eq!(list_services(&store).unwrap(), vec![("shop".to_string(), true)]);
        add_service(&store, "shop", false).unwrap();
        assert_eq!(list_services(&store).unwrap(), vec![("shop".to_string(), false)], "added again without --push");
        remove_service(&store, "shop").unwrap();
        assert!(matches!(remove_service(&store, "shop"), Err(AdminError::NoSuchService(_))));
    }
}
