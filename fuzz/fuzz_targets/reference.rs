//! Image references: `normalize` never panics, and what it accepts is a
//! fixed point (a normalised reference normalises to itself), short enough
//! to be accepted again, and split by `repository` into name, tag, digest.
#![no_main]

use berthd::container::bounds::IMAGE_MAX;
use berthd::fuzzing::image::repository;
use berthd::image::reference::normalize;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(n) = normalize(s) else {
        return;
    };
    assert!(
        n.len() <= IMAGE_MAX,
        "{s:?} normalised to {} bytes",
        n.len()
    );
    assert_eq!(
        normalize(&n).ok().as_deref(),
        Some(n.as_str()),
        "{s:?} normalised to {n:?}, which does not normalise to itself"
    );
    let repo = repository(&n);
    let rest = n
        .strip_prefix(repo)
        .unwrap_or_else(|| panic!("{n:?} does not start with its repository {repo:?}"));
    // The repository always names its registry.
    assert!(
        repo.contains('/'),
        "{n:?}: repository {repo:?} has no domain"
    );
    // What follows is ":tag", "@digest" or ":tag@digest", never nothing.
    let (tag, digest) = match rest.split_once('@') {
        Some((t, d)) => (t, Some(d)),
        None => (rest, None),
    };
    assert!(
        tag.starts_with(':') || (tag.is_empty() && digest.is_some()),
        "{n:?}: {rest:?} after the repository"
    );
    if let Some(d) = digest {
        assert!(
            d.starts_with("sha256:") || d.starts_with("sha512:"),
            "{n:?}: digest {d:?}"
        );
    }
});
