//! A full disk, for real: confabd's data directory on a small tmpfs that a filler file
//! fills. Sends must get a typed `StorageFull` (never a receipt for what is not stored),
//! while logins, reading, acks and SIGTERM keep working; the daemon must start on the full
//! disk; nothing receipted is lost; and once space is freed it takes messages again by
//! itself, without a restart. (Mounting a tmpfs needs root, as CI runs.)

use crate::common::daemon::{spawn_daemon, Daemon};
use crate::common::{eventually, PASSWORD};
use confab::client::{Client, ClientError};
use confab::protocol::{ClientMsgId, Content, ErrorCode, Reply, Request, Seq, Target};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mnt");
        std::fs::create_dir(&path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()
            .expect("the mount command exists");
        assert!(status.success(), "mounting a {size} tmpfs failed: this test needs root (CI runs as root)");
        Tmpfs { _dir: dir, path }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Writes a file until the disk refuses.
fn fill(path: &Path) {
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0x55u8; 256 * 1024];
    while file.write_all(&chunk).is_ok() {}
    let _ = file.sync_all();
}

fn send(alice: &mut Client, cmid: ClientMsgId) -> Result<Seq, ClientError> {
    let body = format!("{cmid:>8}").repeat(2048); // 16 KiB
    let request = Request::Send {
        to: Target::User("bob".into()),
        client_msg_id: cmid,
        transient: false,
        content: Content::text(body),
    };
    match alice.request(request)? {
        Reply::Sent { seq, .. } => Ok(seq),
        other => panic!("{other:?}"),
    }
}

fn terminate(daemon: &mut Daemon) {
    let status = Command::new("kill").arg("-TERM").arg(daemon.child.id().to_string()).status().unwrap();
    assert!(status.success());
    let exit = daemon.child.wait().unwrap();
    assert!(exit.success(), "SIGTERM on a full disk still exits cleanly: {exit:?}");
}

/// Logs bob in, reads every message he is owed (checking order and content), acks them;
/// returns how many.
fn bob_reads_everything(daemon: &Daemon) -> u64 {
    let (mut bob, _) = Client::connect(daemon.addr, "bob").unwrap();
    let (acked, last_seq) = match bob.login("bob", PASSWORD).unwrap() {
        Reply::LoggedIn { acked, last_seq, .. } => (acked, last_seq),
        other => panic!("{other:?}"),
    };
    for seq in (acked.get() + 1..=last_seq.get()).map(Seq) {
        let m = bob.next_message().unwrap();
        assert_eq!(m.seq, seq);
        assert!(String::from_utf8(m.content.body).unwrap().trim_start().starts_with(&seq.to_string()));
    }
    if last_seq > acked {
        assert_eq!(bob.ack(last_seq).unwrap(), last_seq, "an ack is answered on the full disk");
    }
    last_seq - acked
}

#[test]
fn a_full_disk_refuses_sends_keeps_serving_and_recovers_when_space_is_freed() {
    let disk = Tmpfs::mount("96m");
    let data = disk.path.join("data");
    let filler = disk.path.join("filler");
    let args = ["--log-level", "info", "--log-segment-mib", "4"];
    let mut daemon = spawn_daemon(&data, &args);
    let (mut setup, _) = Client::connect(daemon.addr, "setup").unwrap();
    for name in ["alice", "bob"] {
        setup.register(name, PASSWORD).unwrap();
    }
    let (mut alice, _) = Client::connect(daemon.addr, "alice").unwrap();
    alice.login("alice", PASSWORD).unwrap();
    for cmid in 1..=20 {
        assert_eq!(send(&mut alice, ClientMsgId(cmid)).unwrap(), Seq(cmid));
    }

    fill(&filler);
    // Sends go on into the space already reserved, then are refused with a typed error.
    let mut cmid = 21;
    let refused = loop {
        match send(&mut alice, ClientMsgId(cmid)) {
            Ok(seq) => assert_eq!(seq, Seq(cmid), "every receipt is a stored message, in order"),
            Err(e) => break e,
        }
        cmid += 1;
        assert!(cmid < 2000, "the full disk was never noticed");
    };
    assert_eq!(refused.code(), Some(ErrorCode::StorageFull), "{refused}");
    let receipted = cmid - 1;
    assert_eq!(setup.register("carol", PASSWORD).unwrap_err().code(), Some(ErrorCode::StorageFull));
    // A user with stored messages logs in, reads and acks; alice is still served.
    assert_eq!(bob_reads_everything(&daemon), receipted);
    assert_eq!(alice.request(Request::Ping).unwrap(), Reply::Pong);
    terminate(&mut daemon);

    // The daemon starts on the full disk; nothing is lost, logins and acks work.
    let mut daemon = spawn_daemon(&data, &args);
    assert_eq!(bob_reads_everything(&daemon), 0, "everything was acked before the restart");
    let (mut alice, _) = Client::connect(daemon.addr, "alice").unwrap();
    alice.login("alice", PASSWORD).unwrap();
    assert_eq!(send(&mut alice, ClientMsgId(cmid)).unwrap_err().code(), Some(ErrorCode::StorageFull));

    // Space comes back: sends are taken again without a restart.
    std::fs::remove_file(&filler).unwrap();
    let seq = eventually("a send to be taken once space was freed", Duration::from_secs(15), || {
        match send(&mut alice, ClientMsgId(cmid)) {
            Ok(seq) => Some(seq),
            Err(e) if e.code() == Some(ErrorCode::StorageFull) => None,
            Err(e) => panic!("refused otherwise than for a full disk: {e}"),
        }
    });
    assert_eq!(seq, Seq(receipted + 1));
    setup = Client::connect(daemon.addr, "setup").unwrap().0;
    setup.register("carol", PASSWORD).unwrap();
    assert_eq!(bob_reads_everything(&daemon), 1);
    terminate(&mut daemon);
    let daemon = spawn_daemon(&data, &args);
    assert_eq!(bob_reads_everything(&daemon), 0);
    let (mut carol, _) = Client::connect(daemon.addr, "carol").unwrap();
    carol.login("carol", PASSWORD).unwrap();
    let mut daemon = daemon;
    terminate(&mut daemon);
}
