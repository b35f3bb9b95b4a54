//! Apps (tenants): one server hosts many independent apps. Users, groups, rooms,
//! presence, services, broadcast, limits and statistics are per app; nothing crosses from
//! one app to another.
//!
//! - `name`: a name carries its app inside the server (`app/name`), so every name-keyed
//!   table is per app by construction;
//! - `wire`: the boundary where a client's names gain its app and a frame's names lose it;
//! - `table`: the hosted apps, their limits and counters, shared by the loop and workers.
//!
//! What is keyed by number (groups, messages) carries its app through its members: a
//! group's members are all of its app, and every request that reaches a group without
//! being a member (joining an open group, a service's message) checks the app.

mod name;
mod table;
pub mod wire;

pub use name::{
    app_of, local, localize, prefix, qualify, same_app, split, valid_room, valid_user_name, DEFAULT_APP, SEPARATOR,
};
pub use table::{AppEntry, Apps};
