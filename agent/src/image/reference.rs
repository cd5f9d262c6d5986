//! Docker-style image reference normalisation.
//!
//! Written here rather than using `oci_spec::distribution::Reference` because
//! that parser accepts upper-case hex in digests, gives one generic message for
//! most failures, and needs the `distribution` feature (plus `regex`). The
//! grammar follows `github.com/distribution/reference`:
//!
//! ```text
//! reference := name [ ":" tag ] [ "@" digest ]
//! name      := [domain "/"] path-component ("/" path-component)*
//! domain    := host [":" port]
//! ```

use super::ImageError;

/// Registry used when a reference names none.
const DEFAULT_DOMAIN: &str = "docker.io";
/// Legacy alias of the Docker Hub registry, folded into [`DEFAULT_DOMAIN`].
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
/// Namespace of official images on Docker Hub ("busybox" -> "library/busybox").
const OFFICIAL_REPO_PREFIX: &str = "library/";
/// Tag used when a reference has neither tag nor digest.
const DEFAULT_TAG: &str = "latest";
/// Maximum length of `domain/path`, as in the distribution spec.
const NAME_TOTAL_LENGTH_MAX: usize = 255;
/// Maximum tag length (1 leading + 127 following characters).
const TAG_MAX: usize = 128;

/// Normalises a Docker-style image reference to its fully qualified form.
///
/// `busybox` becomes `docker.io/library/busybox:latest`, `foo/bar:1` becomes
/// `docker.io/foo/bar:1`, `localhost:5000/x` becomes `localhost:5000/x:latest`;
/// a digest is kept (and no `:latest` is added when one is present), and
/// `name:tag@digest` keeps both.
///
/// # Errors
/// [`ImageError::InvalidReference`] with a message saying what is wrong.
pub fn normalize(s: &str) -> Result<String, ImageError> {
    let bad =
        |why: &str| ImageError::InvalidReference(format!("{:?}: {why}", crate::error::capped(s)));
    if s.is_empty() {
        return Err(bad("reference is empty"));
    }
    // Docker's names stop at 255 characters; tag and digest add under 200.
    if s.len() > crate::container::bounds::IMAGE_MAX {
        return Err(bad(&format!(
            "reference is {} bytes long: at most {} are accepted",
            s.len(),
            crate::container::bounds::IMAGE_MAX
        )));
    }
    if s.len() == 64 && is_lower_hex(s) {
        // Docker refuses these so that a name can never be confused with an image id.
        return Err(bad(
            "a 64-character hexadecimal string is an image id, not a repository name",
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || !c.is_ascii())
    {
        return Err(bad(&format!("contains invalid character {c:?}")));
    }

    // A name never contains '@', so the first one starts the digest.
    let (rest, digest) = match s.split_once('@') {
        Some((rest, digest)) => {
            validate_digest(digest).map_err(|why| bad(&why))?;
            (rest, Some(digest))
        }
        None => (s, None),
    };
    // A ':' after the last '/' separates the tag; one before it is a registry port.
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(tag) = tag {
        if !is_tag(tag) {
            return Err(bad(&format!(
                "invalid tag {tag:?} (allowed: [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})"
            )));
        }
    }
    if name.is_empty() {
        return Err(bad("repository name is empty"));
    }

    let (domain, path) = split_domain(name);
    let domain = match domain {
        Some(d) => {
            validate_domain(d).map_err(|why| bad(&why))?;
            if d == LEGACY_DEFAULT_DOMAIN {
                DEFAULT_DOMAIN
            } else {
                d
            }
        }
        None => DEFAULT_DOMAIN,
    };
    validate_path(path).map_err(|why| bad(&why))?;
    let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
        format!("{OFFICIAL_REPO_PREFIX}{path}")
    } else {
        path.to_string()
    };
    if domain.len() + 1 + path.len() > NAME_TOTAL_LENGTH_MAX {
        return Err(bad(&format!(
            "repository name longer than {NAME_TOTAL_LENGTH_MAX} characters"
        )));
    }

    let mut out = format!("{domain}/{path}");
    match (tag, digest) {
        (None, None) => {
            out.push(':');
            out.push_str(DEFAULT_TAG);
        }
        (tag, digest) => {
            if let Some(tag) = tag {
                out.push(':');
                out.push_str(tag);
            }
            if let Some(digest) = digest {
                out.push('@');
                out.push_str(digest);
            }
        }
    }
    Ok(out)
}

/// Splits `name` into (domain, path) the way Docker does: the first component
/// is a registry only if it looks like a host (has a '.' or ':', is
/// "localhost", or has upper-case letters, which repository paths cannot).
fn split_domain(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

/// Checks `host[:port]`, where host is dot-separated DNS labels or a
/// bracketed IPv6 address.
fn validate_domain(d: &str) -> Result<(), String> {
    let (host, port) = if let Some(inner) = d.strip_prefix('[') {
        let (v6, after) = inner
            .split_once(']')
            .ok_or_else(|| format!("invalid registry {d:?}: unclosed '['"))?;
        if v6.is_empty() || !v6.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return Err(format!("invalid registry {d:?}: bad IPv6 address"));
        }
        match after {
            "" => ("", None),
            p => match p.strip_prefix(':') {
                Some(port) => ("", Some(port)),
                None => return Err(format!("invalid registry {d:?}")),
            },
        }
    } else {
        match d.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (d, None),
        }
    };
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("invalid registry {d:?}: bad port {port:?}"));
        }
    }
    if !d.starts_with('[') {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if !host.split('.').all(label_ok) {
            return Err(format!("invalid registry host {host:?}"));
        }
    }
    Ok(())
}

/// Checks the repository path: '/'-separated components of lower-case
/// alphanumerics joined by '.', '_', '__' or runs of '-'.
fn validate_path(path: &str) -> Result<(), String> {
    if path.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(format!("repository name {path:?} must be lowercase"));
    }
    for comp in path.split('/') {
        if !is_path_component(comp) {
            return Err(if comp.is_empty() {
                format!("repository name {path:?} has an empty component")
            } else {
                format!(
                    "invalid repository name component {comp:?} (allowed: lowercase letters, \
                     digits, separated by '.', '_', '__' or '-')"
                )
            });
        }
    }
    Ok(())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn is_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: '.', '_', '__' or any number of '-'.
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`: the tag grammar.
pub(crate) fn is_tag(t: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= TAG_MAX
        && word(b[0])
        && b[1..].iter().all(|&x| word(x) || x == b'.' || x == b'-')
}

/// Only sha256/sha512 with lower-case hex of the right length are accepted:
/// those are the algorithms registries actually use.
fn validate_digest(d: &str) -> Result<(), String> {
    let (alg, hex) = d
        .split_once(':')
        .ok_or_else(|| format!("invalid digest {d:?}: expected <algorithm>:<hex>"))?;
    let want = match alg {
        "sha256" => 64,
        "sha512" => 128,
        _ => return Err(format!("unsupported digest algorithm {alg:?}")),
    };
    if hex.len() != want || !is_lower_hex(hex) {
        return Err(format!(
            "invalid {alg} digest: expected {want} lowercase hex characters"
        ));
    }
    Ok(())
}

/// True if `s` is non-empty and only `[0-9a-f]`.
pub(crate) fn is_lower_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Returns the repository part (`domain/path`) of a normalised reference.
pub(crate) fn repository(normalized: &str) -> &str {
    let no_digest = normalized.split('@').next().unwrap_or(normalized);
    let last_slash = no_digest.rfind('/').map_or(0, |i| i + 1);
    match no_digest[last_slash..].rfind(':') {
        Some(i) => &no_digest[..last_slash + i],
        None => no_digest,
    }
}

/// The tag of a normalised reference, if it has one ("v1" of
/// "docker.io/library/app:v1"; none for "quay.io/a/b@sha256:...").
pub(crate) fn tag_of(normalized: &str) -> Option<&str> {
    let no_digest = normalized.split('@').next().unwrap_or(normalized);
    let repo = repository(normalized);
    no_digest.get(repo.len()..)?.strip_prefix(':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_part() {
        assert_eq!(tag_of("localhost:5000/x:v1"), Some("v1"));
        assert_eq!(tag_of("localhost:5000/x"), None);
        assert_eq!(tag_of(&format!("quay.io/a/b@{D}")), None);
        assert_eq!(tag_of(&format!("docker.io/a/b:t@{D}")), Some("t"));
    }

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn normalizes() {
        let cases: &[(&str, String)] = &[
            ("busybox", "docker.io/library/busybox:latest".into()),
            ("busybox:1.36", "docker.io/library/busybox:1.36".into()),
            ("foo/bar:1", "docker.io/foo/bar:1".into()),
            ("foo/bar/baz", "docker.io/foo/bar/baz:latest".into()),
            (
                "docker.io/busybox",
                "docker.io/library/busybox:latest".into(),
            ),
            ("index.docker.io/foo/bar", "docker.io/foo/bar:latest".into()),
            ("localhost/x", "localhost/x:latest".into()),
            ("localhost:5000/x", "localhost:5000/x:latest".into()),
            ("localhost:5000/x:v2", "localhost:5000/x:v2".into()),
            ("quay.io/a/b", "quay.io/a/b:latest".into()),
            (&format!("quay.io/a/b@{D}"), format!("quay.io/a/b@{D}")),
            (
                &format!("name:tag@{D}"),
                format!("docker.io/library/name:tag@{D}"),
            ),
            (
                "a.b-c_d__e---f",
                "docker.io/library/a.b-c_d__e---f:latest".into(),
            ),
            ("[::1]:5000/x", "[::1]:5000/x:latest".into()),
            ("Registry/x", "Registry/x:latest".into()),
            ("x:Tag_1.0-rc", "docker.io/library/x:Tag_1.0-rc".into()),
            ("test.com:5000", "docker.io/library/test.com:5000".into()),
        ];
        for (input, want) in cases {
            assert_eq!(&normalize(input).unwrap(), want, "input {input}");
        }
    }

    #[test]
    fn rejects() {
        let hex64 = "a".repeat(64);
        let long_tag = format!("x:{}", "t".repeat(129));
        let long_name = format!("x/{}", "a".repeat(260));
        let cases: &[&str] = &[
            "",
            "Busybox",
            "foo/Bar",
            "busybox:",
            ":tag",
            "busybox:-tag",
            "busy box",
            "busybox\n",
            "foo//bar",
            "foo/",
            "/foo",
            "-foo",
            "foo-",
            "foo..bar",
            "foo___bar",
            "foo@sha256:abc",
            "foo@md5:d41d8cd98f00b204e9800998ecf8427e",
            "foo@sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "foo@",
            "foo@@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "localhost:port/x",
            "bad_host.com/x",
            "-bad.com/x",
            "ünïcode",
            &hex64,
            &long_tag,
            &long_name,
        ];
        for input in cases {
            match normalize(input) {
                Err(ImageError::InvalidReference(msg)) => assert!(!msg.is_empty()),
                other => panic!("{input:?} should be rejected, got {other:?}"),
            }
        }
    }

    #[test]
    fn uppercase_message_is_clear() {
        let err = normalize("Foo/Bar").unwrap_err().to_string();
        assert!(err.contains("lowercase"), "{err}");
    }

    #[test]
    fn repository_part() {
        assert_eq!(repository("localhost:5000/x:v1"), "localhost:5000/x");
        assert_eq!(repository(&format!("quay.io/a/b@{D}")), "quay.io/a/b");
        assert_eq!(repository(&format!("docker.io/a/b:t@{D}")), "docker.io/a/b");
    }
}
