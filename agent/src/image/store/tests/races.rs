//! Races with the store's critical sections, made deterministic by its
//! test seam.

use std::sync::mpsc;

use super::builders::*;
use super::fixture::*;

/// A pull asks whether a layer is stored while an import that moved it in
/// is failing: it must not see the layer the import is about to roll back
/// (the pull would skip it and then miss it at commit).
#[test]
fn has_layer_does_not_see_a_failing_import_s_layer() {
    let f = fixture();
    let built = build_oci(&Spec::new(vec![(base_layer(), true)]));
    let diff_id = built.diff_ids[0].clone();
    let archive = f.write("a.tar", &built.archive);
    let seam = &f.store.seam;
    let (moved_tx, moved_rx) = mpsc::channel();
    let (fail_tx, fail_rx) = mpsc::channel();
    *seam.after_move.lock().unwrap() = Some((moved_tx, fail_rx));
    let done = std::sync::Mutex::new(None);
    std::thread::scope(|s| {
        let import = s.spawn(|| f.store.import(&archive, Some("victim:1")));
        // An import that fails before its commit (a full disk, say) never
        // reaches the seam: say so instead of waiting for ever.
        while moved_rx
            .recv_timeout(std::time::Duration::from_millis(100))
            .is_err()
        {
            if import.is_finished() {
                let early = import.join().map(|r| r.map(|_| ()));
                panic!("the import ended before its commit: {early:?}");
            }
        }
        let lockers = *seam.lockers.lock().unwrap();
        let probe = s.spawn(|| {
            let seen = f.store.has_layer(&diff_id);
            // Under the seam's lock, so the wait below cannot miss it.
            let n = seam.lockers.lock().unwrap();
            *done.lock().unwrap() = Some(seen);
            drop(n);
            seam.locking.notify_all();
            seen
        });
        // Until the probe has its answer, or waits for the store's lock.
        let mut n = seam.lockers.lock().unwrap();
        while *n == lockers && done.lock().unwrap().is_none() {
            n = seam.locking.wait(n).unwrap();
        }
        drop(n);
        fail_tx.send(true).unwrap();
        assert!(import.join().unwrap().is_err(), "the import must fail");
        assert!(
            !probe.join().unwrap(),
            "has_layer saw a layer the failing import rolled back"
        );
    });
    assert!(!f.layer(&diff_id).exists());
}
