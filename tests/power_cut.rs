//! A power cut, modelled: while users register, join a group, send, read and acknowledge,
//! a shadow directory keeps exactly what the disk would hold if the power went now: the
//! bytes of each commit-log segment up to its last completed fdatasync, and sled's files
//! as of its last checkpoint (flush and fsync). At a random moment the shadow is frozen,
//! and a new server starts on it. Everything that was answered before that moment must
//! be there: each receipted message (in order, as sent), each message pushed to bob, each
//! acknowledged position, each registration and each group change.

use crate::common::PASSWORD;
use confab::client::{Client, ClientError};
use confab::protocol::{ClientMsgId, Content, Conversation, GroupId, Push, Reply, Request, Role, Seq, Target};
use confab::store::{DurabilityHook, Durable};
use confab::{Config, Server};
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What survives a power cut, kept up to date by the store's durability hook.
struct Shadow {
    real: PathBuf,
    shadow: PathBuf,
    state: Mutex<ShadowState>,
}

#[derive(Default)]
struct ShadowState {
    frozen: Option<Instant>,
    /// Bytes of each segment known durable.
    synced: HashMap<PathBuf, u64>,
}

impl Shadow {
    fn new(real: &Path, shadow: &Path) -> Arc<Shadow> {
        std::fs::create_dir_all(shadow).unwrap();
        Arc::new(Shadow { real: real.to_path_buf(), shadow: shadow.to_path_buf(), state: Mutex::default() })
    }

    fn mirror(&self, path: &Path) -> PathBuf {
        self.shadow.join(path.strip_prefix(&self.real).expect("a path in the data directory"))
    }

    fn observe(&self, event: Durable<'_>) {
        let mut state = self.state.lock().unwrap();
        if state.frozen.is_some() {
            return;
        }
        match event {
            Durable::LogSynced { path, upto } => {
                let from = state.synced.get(path).copied().unwrap_or(0);
                let mut bytes = vec![0; (upto - from) as usize];
                let mut real = std::fs::File::open(path).unwrap();
                real.seek(SeekFrom::Start(from)).unwrap();
                real.read_exact(&mut bytes).unwrap();
                let target = self.mirror(path);
                std::fs::create_dir_all(target.parent().unwrap()).unwrap();
                let mut copy =
                    std::fs::OpenOptions::new().create(true).write(true).truncate(false).open(target).unwrap();
                copy.seek(SeekFrom::Start(from)).unwrap();
                copy.write_all(&bytes).unwrap();
                state.synced.insert(path.to_path_buf(), upto);
            }
            Durable::LogRemoved { path } => {
                state.synced.remove(path);
                let _ = std::fs::remove_file(self.mirror(path));
            }
            Durable::Checkpointed { dir } => copy_sled(dir, &self.mirror(dir)),
        }
    }

    /// The power goes now: nothing changes the shadow from here on.
    fn cut(&self) -> Instant {
        let mut state = self.state.lock().unwrap();
        *state.frozen.get_or_insert_with(Instant::now)
    }
}

/// sled's files (not the commit log, which the shadow follows sync by sync).
fn copy_sled(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() == confab::store::commitlog::DIR {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            copy_sled(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// What the clients were told, each with when they were told.
#[derive(Default)]
struct Answered {
    registered: Vec<(String, Instant)>,
    added: Vec<(String, Instant)>,
    /// client_msg_id → (seq, when) for alice's direct sends and carol's group sends.
    direct: BTreeMap<ClientMsgId, (Seq, Instant)>,
    group: BTreeMap<ClientMsgId, (Seq, Instant)>,
    /// Messages pushed to bob: (conversation is a group, seq, text, when).
    pushed: Vec<(bool, Seq, String, Instant)>,
    inbox_acks: Vec<(Seq, Instant)>,
    group_acks: Vec<(Seq, Instant)>,
}

fn login(addr: SocketAddr, name: &str) -> Client {
    let (mut client, _) = Client::connect(addr, name).unwrap();
    client.login(name, PASSWORD).unwrap();
    client.set_timeout(Duration::from_millis(200)).unwrap();
    client
}

fn send(client: &mut Client, to: Target, cmid: ClientMsgId, text: String) -> Result<Seq, ClientError> {
    let request = Request::Send { to, client_msg_id: cmid, transient: false, content: Content::text(text) };
    match client.request(request)? {
        Reply::Sent { seq, .. } => Ok(seq),
        other => panic!("{other:?}"),
    }
}

/// One run's shape.
#[derive(Clone, Copy, Debug)]
struct Run {
    /// When the power goes, after the traffic starts.
    after: Duration,
    /// Users register and join the group meanwhile (sled writes and checkpoints).
    registrations: bool,
    /// Bob is online, reading and acknowledging (else his messages wait, move into sled
    /// and their segments are retired).
    bob_reads: bool,
}

fn traffic(
    addr: SocketAddr,
    group: GroupId,
    run: Run,
    stop: Arc<AtomicBool>,
    answered: Arc<Mutex<Answered>>,
) -> Vec<std::thread::JoinHandle<()>> {
    let mut threads = Vec::new();
    // alice to bob, carol to the group: each send as fast as its receipts come.
    for (sender, to, direct) in [("alice", Target::User("bob".into()), true), ("carol", Target::Group(group), false)] {
        let (stop, answered) = (stop.clone(), answered.clone());
        threads.push(std::thread::spawn(move || {
            let mut client = login(addr, sender);
            let prefix = if direct { "d" } else { "g" };
            for cmid in (1..).map(ClientMsgId) {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(seq) = send(&mut client, to.clone(), cmid, format!("{prefix}{cmid}")) else { break };
                let mut answered = answered.lock().unwrap();
                let sends = if direct { &mut answered.direct } else { &mut answered.group };
                sends.insert(cmid, (seq, Instant::now()));
            }
        }));
    }
    if run.registrations {
        let (stop, answered) = (stop.clone(), answered.clone());
        threads.push(std::thread::spawn(move || {
            // New users keep registering and joining the group: sled writes with checkpoints
            // between the commit-log syncs.
            let (mut registrar, _) = Client::connect(addr, "registrar").unwrap();
            let (mut admin, _) = Client::connect(addr, "dave").unwrap();
            admin.login("dave", PASSWORD).unwrap();
            for i in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let name = format!("user{i}");
                if registrar.register(&name, PASSWORD).is_err() {
                    break;
                }
                answered.lock().unwrap().registered.push((name.clone(), Instant::now()));
                match admin.request(Request::AddMember { group_id: group, username: name.clone() }) {
                    Ok(Reply::Done) => answered.lock().unwrap().added.push((name, Instant::now())),
                    _ => break,
                }
            }
        }));
    }
    if !run.bob_reads {
        return threads;
    }
    threads.push(std::thread::spawn(move || {
        let mut bob = login(addr, "bob");
        let (mut inbox, mut in_group) = (Seq::ZERO, Seq::ZERO);
        while !stop.load(Ordering::Relaxed) {
            match bob.next_push() {
                Ok(Push::Message(m)) => {
                    let is_group = matches!(m.conversation, Conversation::Group(_));
                    let text = String::from_utf8(m.content.body).unwrap();
                    answered.lock().unwrap().pushed.push((is_group, m.seq, text, Instant::now()));
                    if is_group {
                        in_group = m.seq
                    } else {
                        inbox = m.seq
                    }
                    if m.seq.get() % 7 == 0 {
                        let conversation = if is_group { Conversation::Group(group) } else { Conversation::Inbox };
                        // Behind what was read, so the restart owes bob a tail to check.
                        let read = if is_group { in_group } else { inbox };
                        let up_to = Seq(read.get().saturating_sub(40));
                        match bob.request(Request::Ack { conversation, up_to }) {
                            Ok(Reply::Acked { up_to, .. }) => {
                                let mut a = answered.lock().unwrap();
                                let acks = if is_group { &mut a.group_acks } else { &mut a.inbox_acks };
                                acks.push((up_to, Instant::now()));
                            }
                            Ok(other) => panic!("{other:?}"),
                            Err(_) => break,
                        }
                    }
                }
                Ok(_) | Err(ClientError::Timeout) => {}
                Err(_) => break,
            }
        }
    }));
    threads
}

fn one_power_cut(run: Run) {
    let after = run.after;
    let dir = tempfile::tempdir().unwrap();
    let (data, shadow_dir) = (dir.path().join("data"), dir.path().join("shadow"));
    let shadow = Shadow::new(&data, &shadow_dir);
    let observer = shadow.clone();
    let mut config = Config::for_tests(&data);
    // Small segments: the run rolls and retires some, with checkpoints in between.
    config.log_segment_bytes = 64 * 1024;
    config.durability_hook = Some(DurabilityHook(Arc::new(move |event| observer.observe(event))));
    let server = Server::start(config).unwrap();
    let addr = server.local_addr();

    let (mut setup, _) = Client::connect(addr, "setup").unwrap();
    for name in ["alice", "bob", "carol", "dave"] {
        setup.register(name, PASSWORD).unwrap();
    }
    let mut alice = login(addr, "alice");
    let group = match alice.request(Request::CreateGroup { name: "g".into(), open: false }).unwrap() {
        Reply::GroupCreated { group_id } => group_id,
        other => panic!("{other:?}"),
    };
    for who in ["bob", "carol", "dave"] {
        assert_eq!(alice.request(Request::AddMember { group_id: group, username: who.into() }).unwrap(), Reply::Done);
    }
    let admin = Request::SetRole { group_id: group, username: "dave".into(), role: Role::Admin };
    assert_eq!(alice.request(admin).unwrap(), Reply::Done);
    drop(alice);

    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(Mutex::new(Answered::default()));
    let threads = traffic(addr, group, run, stop.clone(), answered.clone());
    std::thread::sleep(after);
    let cut = shadow.cut();
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().unwrap();
    }
    server.shutdown().unwrap();

    let before = |at: &Instant| *at < cut;
    let answered = answered.lock().unwrap();
    let restarted = dir.path().join("after");
    copy_sled(&shadow_dir, &restarted);
    if shadow_dir.join(confab::store::commitlog::DIR).exists() {
        copy_sled(&shadow_dir.join(confab::store::commitlog::DIR), &restarted.join(confab::store::commitlog::DIR));
    }
    let server = Server::start(Config::for_tests(&restarted)).expect("the server starts on what the disk held");
    let addr = server.local_addr();

    // Registrations and group changes.
    for (name, _) in answered.registered.iter().filter(|(_, at)| before(at)) {
        let (mut c, _) = Client::connect(addr, "check").unwrap();
        c.login(name, PASSWORD).unwrap_or_else(|e| panic!("{name} was registered before the cut: {e}"));
    }
    let (mut bob, _) = Client::connect(addr, "bob").unwrap();
    let (inbox_acked, inbox_last) = match bob.login("bob", PASSWORD).unwrap() {
        Reply::LoggedIn { acked, last_seq, .. } => (acked, last_seq),
        other => panic!("{other:?}"),
    };
    let members = match bob.request(Request::GroupMembers { group_id: group }).unwrap() {
        Reply::Members { members, .. } => members.into_iter().map(|m| m.username).collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    for (name, _) in answered.added.iter().filter(|(_, at)| before(at)) {
        assert!(members.contains(name), "{name} was added before the cut");
    }
    let info = match bob.request(Request::ListGroups).unwrap() {
        Reply::Groups { groups } => groups.into_iter().find(|g| g.group_id == group).expect("bob is in the group"),
        other => panic!("{other:?}"),
    };

    // Acknowledged positions.
    let max_before = |acks: &[(Seq, Instant)]| acks.iter().filter(|(_, at)| before(at)).map(|(s, _)| *s).max();
    assert!(inbox_acked >= max_before(&answered.inbox_acks).unwrap_or(Seq::ZERO), "bob's inbox ack survived");
    assert!(info.acked >= max_before(&answered.group_acks).unwrap_or(Seq::ZERO), "bob's group ack survived");

    // Messages: everything after the ack, in order, as sent.
    let mut inbox = BTreeMap::new();
    let mut in_group = BTreeMap::new();
    let (inbox_owed, group_owed) = (inbox_last - inbox_acked, info.last_seq - info.acked);
    bob.set_timeout(Duration::from_secs(10)).unwrap();
    while (inbox.len() as u64) < inbox_owed || (in_group.len() as u64) < group_owed {
        let m = bob.next_message().unwrap();
        let text = String::from_utf8(m.content.body).unwrap();
        let into = if matches!(m.conversation, Conversation::Group(_)) { &mut in_group } else { &mut inbox };
        assert!(into.insert(m.seq, text).is_none(), "seq {} delivered twice", m.seq);
        // Acks open the delivery window for the rest of a long backlog.
        if into.len() % 500 == 0 {
            bob.request(Request::Ack { conversation: m.conversation, up_to: m.seq }).unwrap();
        }
    }
    let receipted = |sends: &BTreeMap<ClientMsgId, (Seq, Instant)>,
                     acked: Seq,
                     got: &BTreeMap<Seq, String>,
                     prefix: &str| {
        let mut checked = 0;
        for (cmid, (seq, at)) in sends {
            if before(at) && *seq > acked {
                assert_eq!(got.get(seq), Some(&format!("{prefix}{cmid}")), "receipted {prefix}{cmid} (seq {seq}) lost");
                checked += 1;
            }
        }
        checked
    };
    let checked =
        receipted(&answered.direct, inbox_acked, &inbox, "d") + receipted(&answered.group, info.acked, &in_group, "g");
    for (is_group, seq, text, _) in answered.pushed.iter().filter(|p| before(&p.3)) {
        let (acked, got) = if *is_group { (info.acked, &in_group) } else { (inbox_acked, &inbox) };
        if *seq > acked {
            assert_eq!(got.get(seq), Some(text), "a message pushed to bob before the cut is gone");
        }
    }
    println!(
        "{run:?}: {} sends and {} group sends receipted before it, {checked} still owed and checked; \
         {} registrations, acks at {inbox_acked}/{}",
        answered.direct.values().filter(|(_, at)| before(at)).count(),
        answered.group.values().filter(|(_, at)| before(at)).count(),
        answered.registered.iter().filter(|(_, at)| before(at)).count(),
        info.acked,
    );
    assert!(answered.direct.values().any(|(_, at)| before(at)), "the cut came after some traffic");
    server.shutdown().unwrap();
}

#[test]
fn everything_answered_before_a_power_cut_is_there_after_it() {
    // Cuts at different moments, one early and two after messages began to migrate into
    // sled (two seconds after they were sent) and segments to be retired.
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_millis() as u64;
    let at = |base: u64, spread: u64| Duration::from_millis(base + (seed * 7919) % spread);
    one_power_cut(Run { after: at(200, 800), registrations: true, bob_reads: true });
    one_power_cut(Run { after: at(2300, 1500), registrations: true, bob_reads: true });
    // Only message traffic, bob away: sled is checkpointed only to retire segments.
    one_power_cut(Run { after: at(2500, 1500), registrations: false, bob_reads: false });
}
