//! Administration of a data directory while the daemon is stopped (sled locks the
//! directory, so these fail cleanly while it runs): apps, accounts, administrators,
//! service tokens, shops and their staff (`shops`), storage statistics. `confabd` exposes
//! each as a subcommand.
//!
//! User, service and shop names here are qualified with their app (`app/name`, see
//! [`crate::apps`]); lists give names as the app's clients know them.

use crate::apps::{app_of, local, split, valid_user_name, DEFAULT_APP};
use crate::auth::{hash_with_cost, new_token, token_digest};
use crate::clock::now_ms;
use crate::config::HashCost;
use crate::protocol::{valid_app_name, valid_password, Role, UserId};
use crate::store::{Account, AppRecord, LogId, ServiceRecord, Store, StoreError, StoreStats};
use thiserror::Error;

mod devices;
mod shops;
pub use devices::{list_devices, remove_device, DeviceSummary};
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
    #[error("{user} has no device {device:?}")]
    NoSuchDevice { user: String, device: String },
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
    #[error("no such app: {0} (see `confabd app list`)")]
    NoSuchApp(String),
    #[error("not a valid app name (1-32 characters of a-z 0-9 _ . -)")]
    InvalidAppName,
    #[error("the app {0} already exists")]
    AppExists(String),
    #[error("the app {app} still has {what}; remove them first")]
    AppInUse { app: String, what: String },
    #[error("the app default cannot be removed")]
    DefaultApp,
    #[error("only services of the app default may be the push gateway (it serves every app)")]
    PushOutsideDefault,
    #[error(
        "{name}'s home is cluster node {home} ({address}), and this data directory is node {here}'s: \
         manage {name} on node {home}'s data directory, or register it online"
    )]
    HomedElsewhere { name: String, home: u8, address: String, here: u8 },
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
    if !valid_user_name(username) {
        return Err(AdminError::InvalidName);
    }
    homed_here(store, username)?;
    let (app, name) = split(username);
    hosted(store, app)?;
    if !valid_password(password) {
        return Err(AdminError::InvalidPassword);
    }
    // The same rule as registration: no username that reads as another of its app (adm1n,
    // admin).
    let skeleton = crate::names::skeleton(name);
    let others = store.usernames()?.into_iter().filter(|o| app_of(o) == app);
    if let Some(other) = others.into_iter().find(|o| o != username && crate::names::skeleton(local(o)) == skeleton) {
        return Err(AdminError::LooksLike { name: name.to_string(), other: local(&other).to_string() });
    }
    let password_hash = hash_with_cost(password, cost).ok_or(AdminError::Crypto)?;
    let user_id = UserId(store.next_id()?);
    let account =
        Account { user_id, display_name: name.to_string(), password_hash, admin: false, created_ms: now_ms() };
    if !store.create_account(username, &account)? {
        return Err(AdminError::NameTaken(name.to_string()));
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
        store.remove_device_acks(LogId::Group, group_id.into(), Some(account.user_id))?;
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

/// The users of `app`, by the names its clients know.
pub fn list_users(store: &Store, app: &str) -> AdminResult<Vec<UserSummary>> {
    hosted(store, app)?;
    let mut users = Vec::new();
    for username in store.usernames()?.into_iter().filter(|n| app_of(n) == app) {
        if let Some(account) = store.account(&username)? {
            users.push(UserSummary {
                username: local(&username).to_string(),
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
    if !valid_user_name(name) {
        return Err(AdminError::InvalidName);
    }
    hosted(store, app_of(name))?;
    if push && app_of(name) != DEFAULT_APP {
        return Err(AdminError::PushOutsideDefault);
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
        return Err(AdminError::NoSuchService(local(name).to_string()));
    }
    store.checkpoint()?;
    Ok(())
}

/// Every service of `app` by its name, and whether it may be the push gateway.
pub fn list_services(store: &Store, app: &str) -> AdminResult<Vec<(String, bool)>> {
    hosted(store, app)?;
    let mut services = Vec::new();
    for name in store.service_names()?.into_iter().filter(|n| app_of(n) == app) {
        let push = store.is_push_gateway(&name)?;
        services.push((local(&name).to_string(), push));
    }
    Ok(services)
}

/// An app as the app list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSummary {
    pub name: String,
    pub limits: AppRecord,
    pub users: u64,
    pub groups: u64,
    pub services: u64,
}

/// Hosts a new app with these limits (0 = none).
pub fn add_app(store: &Store, name: &str, limits: AppRecord) -> AdminResult<()> {
    if !valid_app_name(name) {
        return Err(AdminError::InvalidAppName);
    }
    if store.app(name)?.is_some() {
        return Err(AdminError::AppExists(name.to_string()));
    }
    store.put_app(name, &AppRecord { created_ms: now_ms(), ..limits })?;
    store.checkpoint()?;
    Ok(())
}

/// Changes an app's limits (the app `default` too); they take effect at the next start.
pub fn set_app_limits(store: &Store, name: &str, limits: AppRecord) -> AdminResult<()> {
    let record = hosted(store, name)?;
    store.put_app(name, &AppRecord { created_ms: record.created_ms, ..limits })?;
    store.checkpoint()?;
    Ok(())
}

/// Stops hosting an app; refused while it has users, groups or services (an app's data is
/// removed by removing those, so nothing is deleted by surprise).
pub fn remove_app(store: &Store, name: &str) -> AdminResult<()> {
    if name == DEFAULT_APP {
        return Err(AdminError::DefaultApp);
    }
    hosted(store, name)?;
    let summary = list_apps(store)?.into_iter().find(|a| a.name == name);
    if let Some(app) = summary.filter(|a| a.users + a.groups + a.services > 0) {
        let what = format!("{} users, {} groups and {} services", app.users, app.groups, app.services);
        return Err(AdminError::AppInUse { app: name.to_string(), what });
    }
    store.remove_app(name)?;
    store.checkpoint()?;
    Ok(())
}

/// Every hosted app with its limits and what it holds.
pub fn list_apps(store: &Store) -> AdminResult<Vec<AppSummary>> {
    let (users, groups, services) = (store.accounts_per_app()?, store.groups_per_app()?, store.services_per_app()?);
    let count = |counts: &std::collections::BTreeMap<String, u64>, app: &str| counts.get(app).copied().unwrap_or(0);
    Ok(store
        .apps()?
        .into_iter()
        .map(|(name, limits)| AppSummary {
            users: count(&users, &name),
            groups: count(&groups, &name),
            services: count(&services, &name),
            name,
            limits,
        })
        .collect())
}

/// The app's record, or the error that it is not hosted.
fn hosted(store: &Store, app: &str) -> AdminResult<AppRecord> {
    store.app(app)?.ok_or_else(|| AdminError::NoSuchApp(app.to_string()))
}

pub fn storage_stats(store: &Store) -> AdminResult<StoreStats> {
    Ok(store.stats()?)
}

fn existing(store: &Store, username: &str) -> AdminResult<Account> {
    match store.account(username)? {
        Some(account) => Ok(account),
        None => {
            // Not here: maybe because it lives on another node, which is worth saying.
            homed_here(store, username)?;
            Err(AdminError::NoSuchUser(local(username).to_string()))
        }
    }
}

/// Refuses a user (app-qualified name) whose home is another node, when this directory is
/// a cluster node's: its account must be on its home, the only node that serves it (the
/// node list is the one the node last ran with, recorded at each start).
fn homed_here(store: &Store, username: &str) -> AdminResult<()> {
    let Some(membership) = store.cluster_membership()? else {
        return Ok(());
    };
    let home = membership.home_of(username);
    if home == membership.me {
        return Ok(());
    }
    Err(AdminError::HomedElsewhere {
        name: local(username).to_string(),
        home,
        address: membership.address_of(home).unwrap_or("?").to_string(),
        here: membership.me,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Membership;
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
        let id = add_user(&store, "default/alice", "password1", HashCost::MINIMUM).unwrap();
        assert!(matches!(
            add_user(&store, "default/alice", "password1", HashCost::MINIMUM),
            Err(AdminError::NameTaken(_))
        ));
        let lookalike = add_user(&store, "default/a1ice", "password1", HashCost::MINIMUM);
        assert!(matches!(lookalike, Err(AdminError::LooksLike { ref other, .. }) if other == "alice"), "{lookalike:?}");
        assert!(matches!(add_user(&store, "default/A", "password1", HashCost::MINIMUM), Err(AdminError::InvalidName)));
        set_admin(&store, "default/alice", true).unwrap();
        let users = list_users(&store, "default").unwrap();
        assert_eq!(
            users,
            vec![UserSummary { username: "alice".into(), user_id: id, display_name: "alice".into(), admin: true }]
        );
        store.put_token(id, &[1; 32], u64::MAX).unwrap();
        set_password(&store, "default/alice", "password2", HashCost::MINIMUM).unwrap();
        assert!(!store.token_valid(id, &[1; 32], 0).unwrap(), "a new password revokes tokens");
        delete_user(&store, "default/alice").unwrap();
        assert!(list_users(&store, "default").unwrap().is_empty());
        assert!(matches!(delete_user(&store, "default/alice"), Err(AdminError::NoSuchUser(_))));
    }

    #[test]
    fn a_cluster_nodes_directory_takes_only_users_homed_on_that_node() {
        let (dir, store) = store();
        let membership = Membership::parse(2, "1=10.0.0.1:7420,2=10.0.0.2:7420,3=10.0.0.3:7420").unwrap();
        store.claim_for_node(2, &membership).unwrap();
        drop(store);
        // Opened again, as an administration command opens it once the node has stopped.
        let store = Store::open(dir.path()).unwrap();
        let homed_on = |node| (0..).map(|i| format!("default/user{i}")).find(|n| membership.home_of(n) == node);
        let (here, there) = (homed_on(2).unwrap(), homed_on(3).unwrap());

        let id = add_user(&store, &here, "password1", HashCost::MINIMUM).unwrap();
        assert_eq!(Membership::node_of_id(id.0), 2, "its id carries the node, as the node's own would");
        let refused = add_user(&store, &there, "password1", HashCost::MINIMUM);
        assert!(
            matches!(&refused, Err(AdminError::HomedElsewhere { home: 3, address, here: 2, .. }) if address == "10.0.0.3:7420"),
            "{refused:?}"
        );
        assert!(store.account(&there).unwrap().is_none());
        // Commands on an existing user say where one homed elsewhere is to be found.
        assert!(matches!(set_admin(&store, &there, true), Err(AdminError::HomedElsewhere { home: 3, .. })));
        set_admin(&store, &here, true).unwrap();
    }

    #[test]
    fn deleting_an_owner_hands_the_group_on() {
        let (_dir, store) = store();
        add_user(&store, "default/owner", "password1", HashCost::MINIMUM).unwrap();
        let record = GroupRecord {
            name: "g".into(),
            open: false,
            created_ms: 0,
            members: vec![
                MemberRecord { username: "default/member".into(), uid: UserId(9), role: Role::Member },
                MemberRecord { username: "default/owner".into(), uid: UserId(1), role: Role::Owner },
            ],
        };
        let group = GroupId(5);
        store.put_group(group, &record).unwrap();
        store.add_membership("default/owner", group).unwrap();
        store.add_membership("default/member", group).unwrap();
        delete_user(&store, "default/owner").unwrap();
        let record = store.group(group).unwrap().unwrap();
        let heir = MemberRecord { username: "default/member".into(), uid: UserId(9), role: Role::Owner };
        assert_eq!(record.members, vec![heir]);
        assert!(store.memberships("default/owner").unwrap().is_empty());
    }

    #[test]
    fn service_tokens_are_shown_once_and_stored_as_digests() {
        let (_dir, store) = store();
        let token = add_service(&store, "default/shop", false).unwrap();
        assert_eq!(token.len(), 64);
        let record = store.service("default/shop").unwrap().unwrap();
        assert_eq!(record.token_digest, token_digest(token.as_bytes()));
        let again = add_service(&store, "default/shop", true).unwrap();
        assert_ne!(again, token, "a new token replaces the old");
        assert_eq!(store.service("default/shop").unwrap().unwrap().uid, record.uid, "the identity stays");
        assert_eq!(list_services(&store, "default").unwrap(), vec![("shop".to_string(), true)]);
        add_service(&store, "default/shop", false).unwrap();
        assert_eq!(
            list_services(&store, "default").unwrap(),
            vec![("shop".to_string(), false)],
            "added again without --push"
        );
        remove_service(&store, "default/shop").unwrap();
        assert!(matches!(remove_service(&store, "default/shop"), Err(AdminError::NoSuchService(_))));
    }

    #[test]
    fn apps_are_added_limited_and_removed_only_when_empty() {
        let (_dir, store) = store();
        let limits = AppRecord { max_users: 2, ..AppRecord::default() };
        assert!(matches!(
            add_user(&store, "acme/alice", "password1", HashCost::MINIMUM),
            Err(AdminError::NoSuchApp(_))
        ));
        add_app(&store, "acme", limits).unwrap();
        assert!(matches!(add_app(&store, "acme", limits), Err(AdminError::AppExists(_))));
        assert!(matches!(add_app(&store, "Acme!", limits), Err(AdminError::InvalidAppName)));
        // The same name in two apps is two users; a look-alike only counts within an app.
        add_user(&store, "acme/alice", "password1", HashCost::MINIMUM).unwrap();
        add_user(&store, "default/alice", "password1", HashCost::MINIMUM).unwrap();
        add_user(&store, "default/a1ice", "password1", HashCost::MINIMUM).unwrap_err();
        assert_eq!(list_users(&store, "acme").unwrap().len(), 1);
        assert!(matches!(add_service(&store, "acme/relay", true), Err(AdminError::PushOutsideDefault)));
        add_service(&store, "acme/hooks", false).unwrap();
        assert_eq!(list_services(&store, "acme").unwrap(), vec![("hooks".to_string(), false)]);
        assert!(list_services(&store, "default").unwrap().is_empty());
        let listed = list_apps(&store).unwrap();
        assert_eq!(
            listed.iter().map(|a| (a.name.as_str(), a.users, a.services)).collect::<Vec<_>>(),
            [("acme", 1, 1), ("default", 1, 0)]
        );
        assert!(matches!(remove_app(&store, "acme"), Err(AdminError::AppInUse { .. })));
        assert!(matches!(remove_app(&store, "default"), Err(AdminError::DefaultApp)));
        delete_user(&store, "acme/alice").unwrap();
        remove_service(&store, "acme/hooks").unwrap();
        set_app_limits(&store, "acme", AppRecord { max_groups: 3, ..AppRecord::default() }).unwrap();
        assert_eq!(store.app("acme").unwrap().unwrap().max_groups, 3);
        remove_app(&store, "acme").unwrap();
        assert_eq!(store.app("acme").unwrap(), None);
    }
}
