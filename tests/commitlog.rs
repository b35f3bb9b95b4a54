//! The commit log on disk, damaged the way a crash or a bad disk damages it: alice sends
//! bob a stream of messages, confabd is killed, and bob's segment is cut short or has a
//! byte flipped before the restart. The server must start, keep every record before the
//! damage (and so every message in it), never serve anything from the damaged record or
//! after it, and say in its log what it cut.

use crate::common::daemon::{daemon_with_users, spawn_daemon, Daemon};
use crate::common::{DataDir, PASSWORD};
use confab::client::Client;
use confab::protocol::{ClientMsgId, Reply, Request, Seq};
use confab::route::Owner;
use confab::store::commitlog::{change, record, segment, Change, SegmentId, DIR};
use confab::store::LogId;
use std::path::{Path, PathBuf};
use std::process::Command;

const MESSAGES: u64 = 240;

/// A data directory whose daemon was killed right after bob was sent MESSAGES messages,
/// each receipted (well inside the two seconds after which messages migrate to sled: they
/// are only in the commit log).
fn killed_after_a_stream() -> DataDir {
    let data = DataDir::new();
    let mut daemon = daemon_with_users(data.path(), &["alice", "bob"]);
    let (mut alice, _) = Client::connect(daemon.addr, "alice").unwrap();
    alice.login("alice", PASSWORD).unwrap();
    let mut cmid = 1;
    while cmid <= MESSAGES {
        // Eight in flight: several batches, several records.
        let ids: Vec<u32> =
            (cmid..cmid + 8).map(|id| alice.send(crate::crash::send_request(ClientMsgId(id))).unwrap()).collect();
        for id in ids {
            assert!(matches!(alice.reply_to(id).unwrap(), Reply::Sent { .. }));
        }
        cmid += 8;
    }
    kill(&mut daemon);
    data
}

fn kill(daemon: &mut Daemon) {
    let status = Command::new("kill").arg("-KILL").arg(daemon.child.id().to_string()).status().unwrap();
    assert!(status.success());
    daemon.child.wait().unwrap();
}

/// The newest segment of the partition that owns bob (default: two workers).
fn bobs_segment(data: &Path) -> PathBuf {
    let partition = Owner::User("bob").partition(2) as u32;
    segment::list(&data.join(DIR))
        .unwrap()
        .into_iter()
        .rfind(|(id, _)| id.partition == partition)
        .expect("bob's partition wrote a segment")
        .1
}

/// Each record of a segment: where it ends (file offset), and the inbox sequences in it.
fn records(path: &Path) -> Vec<(usize, Vec<Seq>)> {
    let bytes = std::fs::read(path).unwrap();
    let id: SegmentId = record::read_header(&bytes).expect("a valid header");
    let body = &bytes[record::HEADER_LEN..];
    let mut scan = record::Scan::new(id, body);
    let mut out = Vec::new();
    while let Some(payload) = scan.next() {
        let seqs = change::decode(payload)
            .unwrap()
            .into_iter()
            .filter_map(|c| match c {
                Change::Message { log: LogId::Inbox, seq, .. } => Some(seq),
                _ => None,
            })
            .collect();
        out.push((record::HEADER_LEN + scan.offset(), seqs));
    }
    assert_eq!(scan.end(), Some(record::End::Clean));
    out
}

/// A copy of the killed data directory to damage, and the path of bob's segment in it.
fn trial_copy(data: &Path, segment: &Path) -> (DataDir, PathBuf) {
    let trial = DataDir::copy_of(data);
    let file = trial.path().join(DIR).join(segment.file_name().unwrap());
    (trial, file)
}

/// Restarts on `data`; returns bob's last sequence after checking that he is delivered
/// exactly 1..=last_seq in order, and the daemon's start-up log.
fn bobs_inbox_after_restart(data: &Path) -> (Seq, Vec<String>) {
    let mut daemon = spawn_daemon(data, &["--log-level", "info"]);
    let (mut bob, _) = Client::connect(daemon.addr, "bob").unwrap();
    let last_seq = match bob.login("bob", PASSWORD).unwrap() {
        Reply::LoggedIn { acked: Seq::ZERO, last_seq, .. } => last_seq,
        other => panic!("{other:?}"),
    };
    for expected in (1..=last_seq.get()).map(Seq) {
        let m = bob.next_message().unwrap();
        assert_eq!(m.seq, expected);
        assert_eq!(String::from_utf8(m.content.body).unwrap(), format!("message {expected}"));
    }
    assert_eq!(bob.request(Request::Ping).unwrap(), Reply::Pong, "nothing more was pushed");
    kill(&mut daemon);
    (last_seq, std::mem::take(&mut daemon.startup))
}

/// Offsets spread over the segment's records, from a seed printed for reproduction.
fn offsets(end: usize, count: usize) -> Vec<usize> {
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    println!("offset seed {seed}");
    let mut x = seed | 1;
    (0..count)
        .map(|_| {
            // xorshift64
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            record::HEADER_LEN + (x as usize) % (end - record::HEADER_LEN)
        })
        .collect()
}

/// The last sequence in the records that end at or before `offset`.
fn last_seq_before(records: &[(usize, Vec<Seq>)], offset: usize) -> Seq {
    let before = records.iter().filter(|(end, _)| *end <= offset);
    before.flat_map(|(_, seqs)| seqs.iter().copied()).max().unwrap_or(Seq::ZERO)
}

/// The killed data directory, bob's segment and its records.
type Killed = (DataDir, PathBuf, Vec<(usize, Vec<Seq>)>);

fn killed_segment() -> Killed {
    let data = killed_after_a_stream();
    let segment = bobs_segment(data.path());
    let records = records(&segment);
    (data, segment, records)
}

#[test]
fn a_segment_cut_short_keeps_every_whole_record_before_the_cut() {
    let (data, segment, records) = killed_segment();
    assert!(records.len() >= 5, "the stream was several batches: {}", records.len());
    assert_eq!(last_seq_before(&records, usize::MAX), Seq(MESSAGES), "every receipted message is in the log");
    let end = records.last().unwrap().0;
    let original = std::fs::read(&segment).unwrap();
    let mut cuts = offsets(end, 4);
    // A cut inside the first record, and one exactly at a record's end.
    cuts.push(record::HEADER_LEN + 3);
    cuts.push(records[records.len() / 2].0);
    for cut in cuts {
        let (trial, file) = trial_copy(data.path(), &segment);
        std::fs::OpenOptions::new().write(true).open(&file).unwrap().set_len(cut as u64).unwrap();

        let (last_seq, log) = bobs_inbox_after_restart(trial.path());
        assert_eq!(last_seq, last_seq_before(&records, cut), "cut at byte {cut}");
        // A cut that leaves part of a record is reported; one that leaves only zero bytes
        // of it (the start of a small length prefix) cannot be told from the clean end,
        // and lost nothing either.
        let whole = records.iter().map(|(e, _)| *e).filter(|e| *e <= cut).max().unwrap_or(record::HEADER_LEN);
        let partial = original[whole..cut].iter().any(|b| *b != 0);
        let reported = log.iter().any(|l| l.contains("commit log:") && l.contains("stopped at byte"));
        assert_eq!(reported, partial, "cut at {cut}: the log says what was cut:\n{}", log.join("\n"));
    }
}

#[test]
fn a_flipped_byte_ends_the_log_at_the_damaged_record_and_is_reported() {
    let (data, segment, records) = killed_segment();
    let end = records.last().unwrap().0;
    for at in offsets(end, 4) {
        let (trial, file) = trial_copy(data.path(), &segment);
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[at] ^= 0x20;
        std::fs::write(&file, &bytes).unwrap();

        // Everything in the records before the damaged one, nothing from it or after.
        let start_of_damaged = records.iter().map(|(e, _)| *e).filter(|e| *e <= at).max().unwrap_or(0);
        let (last_seq, log) = bobs_inbox_after_restart(trial.path());
        assert_eq!(last_seq, last_seq_before(&records, start_of_damaged), "flip at byte {at}");
        let reported = log.iter().any(|l| l.contains("commit log:") && l.contains("stopped at byte"));
        assert!(reported, "flip at {at}: the log says what was cut:\n{}", log.join("\n"));
    }
}
