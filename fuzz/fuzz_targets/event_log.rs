//! The event log over corrupt segments: `EventLog::open` and `read_from`
//! never panic, never return an event whose record's CRC did not match
//! (every event is the body of a record in the valid prefix of its
//! segment), never allocate more than `MAX_RECORD` at once, return at most
//! `max` events of seq >= `from`, and a log opened (and so repaired) once
//! opens the same the next time.
//!
//! Input: `from` (u64 LE), `max` (u16 LE), a flags byte, then segments
//! separated by `\xffSEG`, each its first seq (u64 LE) and its bytes. Flag
//! bit 0 repairs the CRCs of the records (which the fuzzer cannot keep
//! right), so mutated bodies reach the decoding.
#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use berth::v1::Event;
use berthd::events::log::{read_from, EventLog};
use berthd::fuzzing::events::MAX_RECORD;
use libfuzzer_sys::fuzz_target;
use prost::Message;

/// The largest single allocation since the last reset.
static LARGEST: AtomicUsize = AtomicUsize::new(0);

struct Tracking;

// SAFETY: forwards to the system allocator, only recording sizes.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Tracking = Tracking;

/// Recomputes the CRC of each record, walking the lengths as written.
fn fix_crcs(seg: &mut [u8]) {
    let mut pos = 0;
    while seg.len() - pos >= 8 {
        let len = u32::from_le_bytes(seg[pos..pos + 4].try_into().unwrap_or_default()) as usize;
        if len > seg.len() - pos - 8 {
            break;
        }
        let crc = crc32fast::hash(&seg[pos + 8..pos + 8 + len]);
        seg[pos + 4..pos + 8].copy_from_slice(&crc.to_le_bytes());
        pos += 8 + len;
    }
}

/// The bodies of the records a reader may accept: those before the first
/// record with a bad length or CRC.
fn valid_bodies(seg: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while seg.len() - pos >= 8 {
        let len = u32::from_le_bytes(seg[pos..pos + 4].try_into().unwrap_or_default()) as usize;
        let crc = u32::from_le_bytes(seg[pos + 4..pos + 8].try_into().unwrap_or_default());
        if len > MAX_RECORD || len > seg.len() - pos - 8 {
            break;
        }
        let body = &seg[pos + 8..pos + 8 + len];
        if crc32fast::hash(body) != crc {
            break;
        }
        out.push(body.to_vec());
        pos += 8 + len;
    }
    out
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 11 {
        return;
    }
    let from = u64::from_le_bytes(data[..8].try_into().unwrap_or_default());
    let max = usize::from(u16::from_le_bytes([data[8], data[9]]));
    let flags = data[10];
    let dir = berth_fuzz::fresh("events");
    let mut bodies: Vec<Vec<u8>> = Vec::new();
    for chunk in split(&data[11..], b"\xffSEG").into_iter().take(4) {
        let (first, seg) = if chunk.len() >= 8 {
            (
                u64::from_le_bytes(chunk[..8].try_into().unwrap_or_default()),
                &chunk[8..],
            )
        } else {
            (1, chunk)
        };
        let mut seg = seg.to_vec();
        if flags & 1 != 0 {
            fix_crcs(&mut seg);
        }
        bodies.extend(valid_bodies(&seg));
        std::fs::write(dir.join(format!("{first:020}.log")), &seg).expect("writing a segment");
    }
    let decoded: Vec<Event> = bodies
        .iter()
        .filter_map(|b| Event::decode(b.as_slice()).ok())
        .collect();

    LARGEST.store(0, Ordering::Relaxed);
    let Ok(opened) = EventLog::open(&dir, 10_000) else {
        return;
    };
    for ev in &opened.events {
        assert!(
            decoded.contains(ev),
            "open returned an event of no valid record: {ev:?}"
        );
    }
    let got = read_from(&opened.log.plan(from), from, max).expect("reading the log");
    assert!(got.len() <= max, "{} events for max {max}", got.len());
    for ev in &got {
        assert!(ev.seq >= from, "event {} before {from}", ev.seq);
        assert!(
            bodies.iter().any(|b| b.as_slice() == ev.encoded.bytes()),
            "read_from returned an event of no valid record (seq {})",
            ev.seq
        );
    }
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(largest <= MAX_RECORD, "an allocation of {largest} bytes");

    let events = opened.events;
    let next = opened.log.next_seq();
    drop(opened.log);
    let again = EventLog::open(&dir, 10_000).expect("reopening the log");
    assert_eq!(again.events, events, "a reopened log has other events");
    assert_eq!(
        again.log.next_seq(),
        next,
        "a reopened log has another next seq"
    );
});

/// `data` split at each `sep`.
fn split<'a>(data: &'a [u8], sep: &'a [u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + sep.len() <= data.len() {
        if &data[i..i + sep.len()] == sep {
            out.push(&data[start..i]);
            i += sep.len();
            start = i;
        } else {
            i += 1;
        }
    }
    out.push(&data[start..]);
    out
}
