//! Tests of the durable event log.

use super::*;

fn ev(seq: u64) -> Event {
    Event {
        seq,
        name: format!("e{seq}"),
        ..Default::default()
    }
}

#[test]
fn reopens_where_it_left_off_and_cuts_torn_tails() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = EventLog::open(dir.path(), 100).unwrap().log;
    for s in 1..=5 {
        log.append(s, &ev(s).encode_to_vec()).unwrap();
    }
    log.take_dirty().unwrap().unwrap().sync_data().unwrap();
    assert!(log.take_dirty().unwrap().is_none(), "clean after a flush");
    drop(log);
    // A crash in the middle of a record.
    let seg = segment_path(dir.path(), 1);
    let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&[40, 0, 0, 0, 1, 2]).unwrap();
    drop(f);
    let opened = EventLog::open(dir.path(), 100).unwrap();
    assert_eq!(opened.log.next_seq(), 6);
    assert_eq!(opened.events.len(), 5);
    let mut log = opened.log;
    log.append(6, &ev(6).encode_to_vec()).unwrap();
    let got = read_from(&log.plan(4), 4, 10).unwrap();
    assert_eq!(got.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![4, 5, 6]);
}

#[test]
fn rotates_and_retains_whole_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = EventLog::open(dir.path(), SEGMENT_EVENTS).unwrap().log;
    let total = SEGMENT_EVENTS * 3 + 5;
    for s in 1..=total {
        log.append(s, &ev(s).encode_to_vec()).unwrap();
    }
    assert!(log.oldest() > 1, "old segments are dropped");
    assert!(total - log.oldest() < 2 * SEGMENT_EVENTS + 5);
    let got = read_from(&log.plan(log.oldest()), log.oldest(), 3).unwrap();
    assert_eq!(got[0].seq, log.oldest());
    let opened = EventLog::open(dir.path(), SEGMENT_EVENTS).unwrap();
    assert_eq!(opened.log.next_seq(), total + 1);
}

fn seqs(got: &[StoredEvent]) -> Vec<u64> {
    got.iter().map(|e| e.seq).collect()
}

#[test]
fn reads_from_anywhere_across_segments_up_to_max() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = EventLog::open(dir.path(), 100_000).unwrap().log;
    let total = SEGMENT_EVENTS * 2 + 500;
    for s in 1..=total {
        log.append(s, &ev(s).encode_to_vec()).unwrap();
    }
    for from in [
        1,
        MARK_EVERY - 1,
        MARK_EVERY,
        MARK_EVERY + 1,
        SEGMENT_EVENTS - 10,
        SEGMENT_EVENTS + 1,
        SEGMENT_EVENTS * 2 + 257,
        total - 3,
    ] {
        let plan = log.plan(from);
        // The mark is right, not merely survived by the fallback.
        let (seq, offset) = plan.start.expect("a segment marks its first record");
        assert!(seq <= from && from - seq < MARK_EVERY, "from {from}");
        let mut f = File::open(&plan.files[0]).unwrap();
        f.seek(SeekFrom::Start(offset)).unwrap();
        let mut body = Vec::new();
        assert!(next_record(&mut f, &mut body).unwrap());
        assert_eq!(Event::decode(body.as_slice()).unwrap().seq, seq);
        assert!(read_from(&plan, from, 0).unwrap().is_empty(), "from {from}");
        let got = read_from(&plan, from, 300).unwrap();
        let want: Vec<u64> = (from..=total).take(300).collect();
        assert_eq!(seqs(&got), want, "from {from}");
        assert_eq!(got[0].encoded.decode_event().unwrap(), ev(from));
    }
    assert!(read_from(&log.plan(total + 1), total + 1, 10)
        .unwrap()
        .is_empty());
}

#[test]
fn reopening_finds_the_marks_the_writer_made() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = EventLog::open(dir.path(), 100_000).unwrap().log;
    for s in 1..=(SEGMENT_EVENTS + 1000) {
        log.append(s, &ev(s).encode_to_vec()).unwrap();
    }
    let written: Vec<_> = log.segments.iter().map(|s| s.marks.clone()).collect();
    assert_eq!(
        written[1].len(),
        4,
        "1,000 records: marks at 0, 256, 512, 768"
    );
    drop(log);
    let log = EventLog::open(dir.path(), 100_000).unwrap().log;
    let found: Vec<_> = log.segments.iter().map(|s| s.marks.clone()).collect();
    assert_eq!(found, written);
}

#[test]
fn a_mark_that_leads_nowhere_is_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = EventLog::open(dir.path(), 100).unwrap().log;
    for s in 1..=1000 {
        log.append(s, &ev(s).encode_to_vec()).unwrap();
    }
    let from = 3 * MARK_EVERY + 7;
    for wrong in [1, 8, 1 << 40] {
        let mut plan = log.plan(from);
        let (seq, offset) = plan.start.unwrap();
        plan.start = Some((seq, offset + wrong));
        let got = read_from(&plan, from, 5).unwrap();
        assert_eq!(seqs(&got), (from..from + 5).collect::<Vec<_>>());
    }
    // A mark of another record (the offset of the one before).
    let mut plan = log.plan(from);
    let (seq, _) = plan.start.unwrap();
    plan.start = Some((seq + 1, log.segments[0].marks[3].1));
    let got = read_from(&plan, from, 5).unwrap();
    assert_eq!(seqs(&got), (from..from + 5).collect::<Vec<_>>());
}

#[test]
fn a_failed_write_takes_its_seq_and_what_follows_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = EventLog::open(dir.path(), 100_000).unwrap().log;
    for s in 1..=300 {
        log.append(s, &ev(s).encode_to_vec()).unwrap();
    }
    log.fail_writes().unwrap();
    assert!(log.append(301, &ev(301).encode_to_vec()).is_err());
    assert_eq!(log.next_seq(), 302, "the failed event's seq is not reused");
    // The read-only segment could not be cut back: the next event
    // starts a new one.
    for s in 302..=900 {
        log.append(s, &ev(s).encode_to_vec()).unwrap();
    }
    assert_eq!(log.segments.len(), 2);
    assert_eq!(log.segments[1].first, 302);
    let want: Vec<u64> = (1..=900).filter(|&s| s != 301).collect();
    for from in [1, 290, 301, 302, 600] {
        let got = read_from(&log.plan(from), from, 1000).unwrap();
        let want: Vec<u64> = want.iter().copied().filter(|&s| s >= from).collect();
        assert_eq!(seqs(&got), want, "from {from}");
    }
    let opened = EventLog::open(dir.path(), 100_000).unwrap();
    assert_eq!(opened.log.next_seq(), 901);
    assert_eq!(
        opened.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        want
    );
}

#[test]
fn part_of_a_record_left_by_a_failed_write_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = EventLog::open(dir.path(), 100_000).unwrap().log;
    for s in 1..=300 {
        log.append(s, &ev(s).encode_to_vec()).unwrap();
    }
    // What a write that failed half-way leaves: the start of a record.
    let path = log.segments[0].path.clone();
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(&[40, 0, 0, 0, 7, 7]).unwrap();
    log.cut_back(log.len_current);
    assert!(!log.torn);
    for s in 302..=900 {
        log.append(s, &ev(s).encode_to_vec()).unwrap();
    }
    assert_eq!(log.segments.len(), 1, "the segment goes on");
    for from in [1, 302, 513] {
        let got = read_from(&log.plan(from), from, 1000).unwrap();
        let want: Vec<u64> = (from..=900).filter(|&s| s != 301).collect();
        assert_eq!(seqs(&got), want, "from {from}");
    }
    let opened = EventLog::open(dir.path(), 100_000).unwrap();
    assert_eq!(opened.log.next_seq(), 901);
    assert_eq!(opened.events.len(), 899);
}

/// Bytes the file system has allocated for `path`.
fn allocated(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().blocks() * 512
}

#[test]
fn the_current_segment_keeps_a_reserve_and_finished_ones_give_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = EventLog::open(dir.path(), 100_000).unwrap().log;
    log.append(1, &ev(1).encode_to_vec()).unwrap();
    let first = segment_path(dir.path(), 1);
    let size = std::fs::metadata(&first).unwrap().len();
    assert!(size < 100, "the reserve does not change the size: {size}");
    if allocated(&first) < RESERVE {
        // tmpfs, ext4 and xfs all allocate ahead; a file system that
        // cannot has no reserve to test.
        assert_eq!(
            log.allocated,
            u64::MAX,
            "no reserve, yet none recorded as missing"
        );
        return;
    }
    for s in 2..=SEGMENT_EVENTS + 1 {
        log.append(s, &ev(s).encode_to_vec()).unwrap();
    }
    let second = segment_path(dir.path(), SEGMENT_EVENTS + 1);
    assert!(
        allocated(&second) >= RESERVE,
        "the new segment has its reserve"
    );
    let done = std::fs::metadata(&first).unwrap().len();
    assert!(
        allocated(&first) < done + 64 * 1024,
        "the finished segment holds {} bytes for {done}",
        allocated(&first)
    );
    // Renewed as the segment grows: never less than half the reserve ahead.
    for s in SEGMENT_EVENTS + 2..=SEGMENT_EVENTS + 5000 {
        log.append(s, &ev(s).encode_to_vec()).unwrap();
        assert!(allocated(&second) >= log.len_current + RESERVE / 2);
    }
    let opened = EventLog::open(dir.path(), 100_000).unwrap();
    assert_eq!(opened.log.next_seq(), SEGMENT_EVENTS + 5001);
}
