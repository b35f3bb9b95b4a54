//! The sets `group`, `room` and `soak` runs send to, made before the traffic and removed
//! after it: groups (created by their first member, who adds the others; leftovers of
//! earlier runs removed first) and rooms (joined by every member). Each step is plain
//! requests and answers through [`call_all`]; a setup step that fails stops the run, a
//! failed deletion at the end is only counted. Kept apart from `group` and `room`, which
//! only turn flags into a `fanout` run, so the driver and its callers do not import each
//! other.

use super::{answer_errors, call_all, Answer};
use crate::engine::Engine;
use crate::error::Error;
use confab_proto::protocol::{ErrorCode, GroupId, Reply, Request, Role};

/// Every group this tool creates is named with this prefix, so setup can recognise
/// leftovers of earlier runs among an account's groups.
const MARKER: &str = "loadgen ";

pub fn group_name(run_id: u32, index: usize) -> String {
    format!("{MARKER}{run_id:08x} {index}")
}

pub struct Made {
    /// The new groups' ids, in the order of the sets.
    pub ids: Vec<GroupId>,
    pub stale_groups_removed: u64,
}

/// Makes one group per set of connection slots (all logged in): the first slot creates
/// it and adds the others.
pub fn setup_groups(
    eng: &mut Engine,
    sets: &[Vec<usize>],
    names: &[String],
    deadline: u64,
    show: bool,
) -> Result<Made, Error> {
    let label = |l: &'static str| show.then_some(l);
    let stale_groups_removed = remove_leftovers(eng, sets, deadline, label("leftover groups checked"))?;

    let calls: Vec<(usize, Request)> = sets
        .iter()
        .zip(names)
        .map(|(set, name)| (set[0], Request::CreateGroup { name: name.clone(), open: false }))
        .collect();
    let answers = call_all(eng, calls, deadline, label("groups created"))?;
    require("creating groups", &answers)?;
    let ids: Vec<GroupId> = answers
        .iter()
        .map(|a| match a {
            Some(Ok(Reply::GroupCreated { group_id })) => Ok(*group_id),
            _ => Err(Error::Step {
                step: "creating groups",
                failed: 1,
                total: sets.len(),
                detail: "an answer other than GroupCreated".into(),
            }),
        })
        .collect::<Result<_, _>>()?;

    let mut calls = Vec::new();
    for (set, &group_id) in sets.iter().zip(&ids) {
        for &member in &set[1..] {
            let username = eng.accounts().name(eng.conns[member].account).to_string();
            calls.push((set[0], Request::AddMember { group_id, username }));
        }
    }
    let answers = call_all(eng, calls, deadline, label("members added"))?;
    require("adding members", &answers)?;
    Ok(Made { ids, stale_groups_removed })
}

/// Deletes (as owner) or leaves the groups of earlier runs; returns how many it deleted.
fn remove_leftovers(eng: &mut Engine, sets: &[Vec<usize>], deadline: u64, label: Option<&str>) -> Result<u64, Error> {
    let slots: Vec<usize> = sets.iter().flatten().copied().collect();
    let calls = slots.iter().map(|&c| (c, Request::ListGroups)).collect();
    let answers = call_all(eng, calls, deadline, label)?;
    require("listing groups", &answers)?;
    let mut calls = Vec::new();
    for (&c, answer) in slots.iter().zip(&answers) {
        let Some(Ok(Reply::Groups { groups })) = answer else {
            continue;
        };
        for g in groups.iter().filter(|g| g.name.starts_with(MARKER)) {
            let request = match g.role {
                Role::Owner => Request::DeleteGroup { group_id: g.group_id },
                Role::Admin | Role::Member => Request::LeaveGroup { group_id: g.group_id },
            };
            calls.push((c, request));
        }
    }
    if calls.is_empty() {
        return Ok(0);
    }
    let deletes: Vec<bool> = calls.iter().map(|(_, r)| matches!(r, Request::DeleteGroup { .. })).collect();
    let answers = call_all(eng, calls, deadline, None)?;
    // The owner may have deleted a group before a member's leave reached it.
    let gone = [ErrorCode::UnknownGroup, ErrorCode::NotAMember];
    let errors = answer_errors(&answers, &gone);
    if !errors.is_empty() {
        return Err(step_error("removing leftover groups", answers.len(), &errors));
    }
    Ok(deletes.iter().zip(&answers).filter(|(d, a)| **d && matches!(a, Some(Ok(_)))).count() as u64)
}

/// Deletes this run's groups (slot of the owner, group id); failures are only counted.
pub fn delete_groups(eng: &mut Engine, owners: &[(usize, GroupId)], deadline: u64) -> Result<(), Error> {
    let calls = owners.iter().map(|&(c, group_id)| (c, Request::DeleteGroup { group_id })).collect();
    let answers = call_all(eng, calls, deadline, None)?;
    for (kind, n) in answer_errors(&answers, &[]) {
        *eng.errors.entry(format!("delete_group:{kind}")).or_default() += n;
    }
    Ok(())
}

fn require(step: &'static str, answers: &[Answer]) -> Result<(), Error> {
    let errors = answer_errors(answers, &[]);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(step_error(step, answers.len(), &errors))
    }
}

pub fn step_error(step: &'static str, total: usize, errors: &std::collections::BTreeMap<String, u64>) -> Error {
    let failed = errors.values().sum::<u64>() as usize;
    let mut detail = errors.iter().map(|(k, n)| format!("{k}: {n}")).collect::<Vec<_>>().join(", ");
    if errors.contains_key("LimitReached") {
        detail.push_str("; LimitReached: a user is in too many groups (100 by default) or a group is full (1000)");
    }
    Error::Step { step, failed, total, detail }
}

/// Room names allow `a-z 0-9 _ . -`, starting with a letter or digit.
pub fn room_name(run_id: u32, index: usize) -> String {
    format!("lg-{run_id:08x}-{index}")
}

/// Every slot of `sets[i]` joins room `rooms[i]`.
pub fn join_rooms(
    eng: &mut Engine,
    sets: &[Vec<usize>],
    rooms: &[String],
    deadline: u64,
    show: bool,
) -> Result<(), Error> {
    let calls: Vec<(usize, Request)> = sets
        .iter()
        .zip(rooms)
        .flat_map(|(set, room)| set.iter().map(|&c| (c, Request::JoinRoom { room: room.clone() })))
        .collect();
    let total = calls.len();
    let answers = call_all(eng, calls, deadline, show.then_some("room members joined"))?;
    let errors = answer_errors(&answers, &[]);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(step_error("joining rooms", total, &errors))
    }
}
