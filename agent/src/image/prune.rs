//! Which images a prune removes (`docker image prune`).

use std::collections::HashSet;

use super::ImageRecord;

/// The images to remove: none that a container uses (`used`: image ids of
/// every container, stopped ones included); without `all` only dangling
/// ones (no reference); only those whose config has every label filter
/// ("key" or "key=value").
pub fn prunable<'a>(
    images: &'a [ImageRecord],
    used: &HashSet<String>,
    all: bool,
    labels: &[String],
) -> Vec<&'a ImageRecord> {
    images
        .iter()
        .filter(|i| !used.contains(&i.id))
        .filter(|i| all || i.references.is_empty())
        .filter(|i| crate::volume::labels_match(&i.config.labels, labels))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(id: &str, refs: &[&str], labels: &[(&str, &str)]) -> ImageRecord {
        let config = crate::image::ImageConfig {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        };
        ImageRecord {
            id: id.into(),
            references: refs.iter().map(|r| r.to_string()).collect(),
            manifest_digest: String::new(),
            size_bytes: 0,
            created: None,
            imported_at_unix_nanos: 0,
            os: "linux".into(),
            architecture: "amd64".into(),
            config,
            layers: Vec::new(),
            build_cache: false,
        }
    }

    fn ids(v: Vec<&ImageRecord>) -> Vec<&str> {
        v.into_iter().map(|i| i.id.as_str()).collect()
    }

    #[test]
    fn dangling_unused_images_go_and_all_takes_tagged_ones_too() {
        let images = [
            image("dangling", &[], &[]),
            image("dangling-used", &[], &[]),
            image("tagged", &["docker.io/library/a:1"], &[]),
            image("tagged-used", &["docker.io/library/b:1"], &[]),
        ];
        let used: HashSet<String> = ["dangling-used".into(), "tagged-used".into()].into();
        assert_eq!(ids(prunable(&images, &used, false, &[])), ["dangling"]);
        assert_eq!(
            ids(prunable(&images, &used, true, &[])),
            ["dangling", "tagged"]
        );
    }

    #[test]
    fn label_filters_must_all_match() {
        let images = [
            image("a", &[], &[("team", "x"), ("tier", "db")]),
            image("b", &[], &[("team", "y")]),
        ];
        let none = HashSet::new();
        let f = |l: &[&str]| {
            let l: Vec<String> = l.iter().map(|s| s.to_string()).collect();
            ids(prunable(&images, &none, false, &l))
        };
        assert_eq!(f(&["team"]), ["a", "b"]);
        assert_eq!(f(&["team=x"]), ["a"]);
        assert_eq!(f(&["team=x", "tier"]), ["a"]);
        assert!(f(&["team=z"]).is_empty());
    }
}
