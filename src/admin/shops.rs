//! Shops and their staff, on a stopped daemon's data directory (`confabd shop ...`). A
//! running daemon changes staff through the service API (`AddStaff`, `RemoveStaff`).
//! Shop and user names are qualified with their app; a shop's staff are users of its app.

use super::{hosted, AdminError, AdminResult};
use crate::apps::{app_of, local, same_app, split};
use crate::clock::now_ms;
use crate::protocol::{valid_shop_name, SupportId};
use crate::store::{LogOwner, ShopRecord, StaffRecord, Store};

/// A shop as `confabd shop list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShopSummary {
    pub name: String,
    pub id: u64,
    pub staff: usize,
    pub conversations: usize,
}

fn existing(store: &Store, shop: &str) -> AdminResult<ShopRecord> {
    store.shop(shop)?.ok_or_else(|| AdminError::NoSuchShop(local(shop).to_string()))
}

/// Creates a shop with no staff; returns its id.
pub fn add_shop(store: &Store, name: &str) -> AdminResult<u64> {
    let (app, local_name) = split(name);
    if app.is_empty() || !valid_shop_name(local_name) {
        return Err(AdminError::InvalidName);
    }
    hosted(store, app)?;
    if store.shop(name)?.is_some() {
        return Err(AdminError::NameTaken(local_name.to_string()));
    }
    let record = ShopRecord { id: store.next_id()?, staff: Vec::new(), created_ms: now_ms() };
    store.put_shop(name, &record, &[])?;
    store.checkpoint()?;
    Ok(record.id)
}

/// Removes a shop with its conversations. Refused while a conversation holds messages
/// some reader has not acknowledged, unless `force`: those would be lost.
pub fn remove_shop(store: &Store, name: &str, force: bool) -> AdminResult<()> {
    existing(store, name)?;
    if !force {
        let (mut conversations, mut messages) = (0, 0);
        for id in store.shop_support(name)? {
            let state = store.support_log.state(LogOwner::from(id))?;
            if state.last_seq > state.floor {
                conversations += 1;
                messages += state.last_seq - state.floor;
            }
        }
        if messages > 0 {
            return Err(AdminError::Unacknowledged { shop: local(name).to_string(), conversations, messages });
        }
    }
    store.remove_shop(name)?;
    store.checkpoint()?;
    Ok(())
}

/// The shops of `app`, by name as its clients know them.
pub fn list_shops(store: &Store, app: &str) -> AdminResult<Vec<ShopSummary>> {
    hosted(store, app)?;
    let mut shops = Vec::new();
    for name in store.shop_names()?.into_iter().filter(|n| app_of(n) == app) {
        let Some(record) = store.shop(&name)? else { continue };
        let conversations = store.shop_support(&name)?.len();
        let name = local(&name).to_string();
        shops.push(ShopSummary { name, id: record.id, staff: record.staff.len(), conversations });
    }
    Ok(shops)
}

/// Makes `user` staff of `shop`, within `max` staff.
pub fn add_staff(store: &Store, shop: &str, user: &str, max: usize) -> AdminResult<()> {
    let mut record = existing(store, shop)?;
    let unknown = || AdminError::NoSuchUser(local(user).to_string());
    if !same_app(shop, user) {
        return Err(unknown());
    }
    let account = store.account(user)?.ok_or_else(unknown)?;
    if record.staff.iter().any(|s| s.username == user) {
        return Err(AdminError::AlreadyStaff { shop: local(shop).to_string(), user: local(user).to_string() });
    }
    if record.staff.len() >= max {
        return Err(AdminError::TooManyStaff { shop: local(shop).to_string(), max });
    }
    let before = staff_names(&record);
    record.staff.push(StaffRecord { username: user.to_string(), uid: account.user_id });
    store.put_shop(shop, &record, &before)?;
    store.checkpoint()?;
    Ok(())
}

/// `user` is staff of `shop` no more: its positions in the shop's conversations go, and
/// the conversations it answered are released to the other staff.
pub fn remove_staff(store: &Store, shop: &str, user: &str) -> AdminResult<()> {
    let mut record = existing(store, shop)?;
    if !record.staff.iter().any(|s| s.username == user) {
        return Err(AdminError::NotStaff { shop: local(shop).to_string(), user: local(user).to_string() });
    }
    let before = staff_names(&record);
    record.staff.retain(|s| s.username != user);
    store.put_shop(shop, &record, &before)?;
    for id in store.shop_support(shop)? {
        release_and_forget(store, id, user)?;
    }
    store.checkpoint()?;
    Ok(())
}

fn release_and_forget(store: &Store, id: SupportId, user: &str) -> AdminResult<()> {
    let Some(mut conversation) = store.support(id)? else { return Ok(()) };
    if conversation.customer != user {
        store.remove_support_ack(id, user)?;
    }
    if conversation.claimed_by.as_deref() == Some(user) {
        conversation.claimed_by = None;
        store.put_support(id, &conversation)?;
    }
    Ok(())
}

/// The shop's staff, by name as its app's clients know them.
pub fn list_staff(store: &Store, shop: &str) -> AdminResult<Vec<String>> {
    Ok(staff_names(&existing(store, shop)?).iter().map(|n| local(n).to_string()).collect())
}

fn staff_names(record: &ShopRecord) -> Vec<String> {
    record.staff.iter().map(|s| s.username.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::add_user;
    use crate::config::HashCost;
    use crate::protocol::{Seq, UserId};
    use crate::store::{StoredMessage, SupportRecord};

    #[test]
    fn shops_and_staff_are_managed_and_removal_guards_unread_messages() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        add_user(&store, "default/bob", "password1", HashCost::MINIMUM).unwrap();
        add_shop(&store, "default/acme").unwrap();
        assert!(matches!(add_shop(&store, "default/acme"), Err(AdminError::NameTaken(_))));
        assert!(matches!(add_shop(&store, "default/Acme!"), Err(AdminError::InvalidName)));
        add_staff(&store, "default/acme", "default/bob", 1).unwrap();
        assert!(matches!(add_staff(&store, "default/acme", "default/bob", 5), Err(AdminError::AlreadyStaff { .. })));
        assert!(matches!(add_staff(&store, "default/acme", "default/nobody", 5), Err(AdminError::NoSuchUser(_))));
        add_user(&store, "default/carol", "password1", HashCost::MINIMUM).unwrap();
        assert!(matches!(
            add_staff(&store, "default/acme", "default/carol", 1),
            Err(AdminError::TooManyStaff { max: 1, .. })
        ));
        assert_eq!(list_staff(&store, "default/acme").unwrap(), vec!["bob".to_string()]);
        let conversation = SupportRecord {
            shop: "default/acme".into(),
            customer: "default/alice".into(),
            customer_uid: UserId(77),
            claimed_by: Some("default/bob".into()),
            created_ms: 0,
        };
        store.put_support(SupportId(50), &conversation).unwrap();
        store.support_log.append(SupportId(50).into(), Seq(1), &StoredMessage::example("help")).unwrap();
        remove_staff(&store, "default/acme", "default/bob").unwrap();
        assert_eq!(store.support(SupportId(50)).unwrap().unwrap().claimed_by, None, "bob's claim is released");
        assert!(matches!(remove_staff(&store, "default/acme", "default/bob"), Err(AdminError::NotStaff { .. })));
        let listed = list_shops(&store, "default").unwrap();
        assert_eq!((listed[0].name.as_str(), listed[0].staff, listed[0].conversations), ("acme", 0, 1));
        assert!(matches!(
            remove_shop(&store, "default/acme", false),
            Err(AdminError::Unacknowledged { conversations: 1, messages: 1, .. })
        ));
        remove_shop(&store, "default/acme", true).unwrap();
        assert!(list_shops(&store, "default").unwrap().is_empty());
        assert!(matches!(remove_shop(&store, "default/acme", true), Err(AdminError::NoSuchShop(_))));
    }
}
