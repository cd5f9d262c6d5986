//! Pure mapping between berth's image records and CRI's image messages:
//! the CRI `Image` of a record, whether a record matches a `ListImages`
//! filter, and the registry credentials of a `PullImage` request.

use super::api_file::v1 as cri;
use base64::Engine;

use crate::image::pull::Credentials;
use crate::image::reference;
use crate::image::ImageRecord;

/// The longest `auth`, `username` or `password` of a pull's `AuthConfig`
/// accepted (a registry token or password fits many times over).
pub const AUTH_FIELD_MAX: usize = 16 * 1024;

/// The CRI view of one stored image.
///
/// - `id`: the config digest (`sha256:<hex>`), as containerd reports it.
/// - `repo_tags`: the references that name a tag.
/// - `repo_digests`: `repository@digest` for each repository naming the
///   image, with its manifest digest, plus every reference that was given
///   with a digest (an index digest, when pulled through an index).
/// - `size`: the unpacked size of its layers (what it takes on disk).
/// - `uid` / `username`: from the config's `User`, as containerd splits it.
pub fn to_cri_image(img: &ImageRecord) -> cri::Image {
    let repo_tags = img
        .references
        .iter()
        .filter(|r| !r.contains('@'))
        .cloned()
        .collect();
    let mut repo_digests: Vec<String> = img
        .references
        .iter()
        .map(|r| format!("{}@{}", reference::repository(r), img.manifest_digest))
        .collect();
    repo_digests.extend(img.references.iter().filter_map(|r| {
        let (_, digest) = r.split_once('@')?;
        Some(format!("{}@{digest}", reference::repository(r)))
    }));
    repo_digests.sort();
    repo_digests.dedup();
    let (uid, username) = user_of(&img.config.user);
    cri::Image {
        id: img.id.clone(),
        repo_tags,
        repo_digests,
        size: img.size_bytes,
        uid: uid.map(|value| cri::Int64Value { value }),
        username,
        spec: Some(cri::ImageSpec {
            image: img.id.clone(),
            ..Default::default()
        }),
        pinned: false,
    }
}

/// The uid, or else the user name, of an image config's `User`
/// (`name`, `uid`, `uid:gid`, `name:group`): the group is not CRI's concern.
pub fn user_of(user: &str) -> (Option<i64>, String) {
    let name = user.split(':').next().unwrap_or_default();
    if name.is_empty() {
        return (None, String::new());
    }
    match name.parse::<i64>() {
        Ok(uid) if uid >= 0 => (Some(uid), String::new()),
        _ => (None, name.to_string()),
    }
}

/// What a `ListImages` filter asks for, checked once per request.
#[derive(Debug, PartialEq, Eq)]
pub enum Filter {
    /// No filter: every image.
    All,
    /// An image id: `sha256:<hex>`, or hex (a prefix of at least 12
    /// characters, as `crictl images` shows them).
    Id(String),
    /// A repository without tag or digest: every image of it.
    Repository(String),
    /// A reference with a tag or digest: that one.
    Reference(String),
}

/// The shortest id prefix a filter matches by (`crictl images` shows 13).
const ID_PREFIX_MIN: usize = 12;

impl Filter {
    /// Parses a filter's `image` field.
    ///
    /// # Errors
    /// A message (never echoing more than a capped part of the input) when
    /// it is neither an id nor a valid reference.
    pub fn parse(image: &str) -> Result<Filter, String> {
        if image.is_empty() {
            return Ok(Filter::All);
        }
        if let Some(hex) = image.strip_prefix("sha256:") {
            return if hex.len() <= 64 && reference::is_lower_hex(hex) {
                Ok(Filter::Id(hex.to_string()))
            } else {
                Err(format!(
                    "{:?} is not a sha256 image id",
                    crate::error::capped(image)
                ))
            };
        }
        // A bare hex string of 12..64 characters could also be a repository
        // name; as in `crictl images`, an id (prefix) wins.
        if (ID_PREFIX_MIN..=64).contains(&image.len()) && reference::is_lower_hex(image) {
            return Ok(Filter::Id(image.to_string()));
        }
        let norm = reference::normalize(image).map_err(|e| e.to_string())?;
        // The last path component says whether a tag or digest was given
        // (a registry port has a ':' too, before the last '/').
        let last = image.rsplit('/').next().unwrap_or(image);
        if last.contains(':') || last.contains('@') {
            Ok(Filter::Reference(norm))
        } else {
            Ok(Filter::Repository(reference::repository(&norm).to_string()))
        }
    }

    /// Whether `img` is one the filter asks for.
    pub fn matches(&self, img: &ImageRecord) -> bool {
        match self {
            Filter::All => true,
            Filter::Id(hex) => img
                .id
                .strip_prefix("sha256:")
                .is_some_and(|h| h.starts_with(hex.as_str())),
            Filter::Repository(repo) => img
                .references
                .iter()
                .any(|r| reference::repository(r) == repo),
            Filter::Reference(norm) => {
                img.references.contains(norm)
                    || norm.split_once('@').is_some_and(|(name, digest)| {
                        digest == img.manifest_digest
                            && img
                                .references
                                .iter()
                                .any(|r| reference::repository(r) == reference::repository(name))
                    })
            }
        }
    }
}

/// The credentials of a pull's `AuthConfig`: `username`/`password`, or
/// `auth` (base64 of `user:password`, as in a Docker config). None when it
/// carries neither.
///
/// # Errors
/// A message for a field over [`AUTH_FIELD_MAX`], an `auth` that is not
/// base64 of `user:password`, or a token (identity and registry tokens are
/// not supported yet). The message never repeats a credential.
pub fn credentials(auth: Option<&cri::AuthConfig>) -> Result<Option<Credentials>, AuthError> {
    let Some(a) = auth else { return Ok(None) };
    for (name, v) in [
        ("username", &a.username),
        ("password", &a.password),
        ("auth", &a.auth),
        ("identity_token", &a.identity_token),
        ("registry_token", &a.registry_token),
    ] {
        if v.len() > AUTH_FIELD_MAX {
            return Err(AuthError::Invalid(format!(
                "auth.{name} is {} bytes long: at most {AUTH_FIELD_MAX} are accepted",
                v.len()
            )));
        }
    }
    if !a.identity_token.is_empty() {
        return Err(AuthError::Unsupported("auth.identity_token"));
    }
    if !a.registry_token.is_empty() {
        return Err(AuthError::Unsupported("auth.registry_token"));
    }
    if !a.username.is_empty() {
        return Ok(Some(Credentials {
            username: a.username.clone(),
            password: a.password.clone(),
        }));
    }
    if a.auth.is_empty() {
        return Ok(None);
    }
    let bad = || AuthError::Invalid("auth.auth is not the base64 of \"user:password\"".into());
    let raw = base64::engine::general_purpose::STANDARD
        .decode(a.auth.trim())
        .map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    match text.split_once(':') {
        Some((user, password)) if !user.is_empty() => Ok(Some(Credentials {
            username: user.to_string(),
            password: password.to_string(),
        })),
        _ => Err(bad()),
    }
}

/// Why a pull's `AuthConfig` is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum AuthError {
    /// Malformed or too long (INVALID_ARGUMENT).
    Invalid(String),
    /// A kind of credential berth cannot use yet (UNIMPLEMENTED).
    Unsupported(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::ImageConfig;

    const ID: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const MANIFEST: &str =
        "sha256:2222222222222222222222222222222222222222222222222222222222222222";
    const INDEX: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";

    fn record(references: &[&str], user: &str) -> ImageRecord {
        ImageRecord {
            id: ID.into(),
            references: references.iter().map(|s| s.to_string()).collect(),
            manifest_digest: MANIFEST.into(),
            size_bytes: 4096,
            created: None,
            imported_at_unix_nanos: 1,
            os: "linux".into(),
            architecture: "amd64".into(),
            config: ImageConfig {
                user: user.into(),
                ..Default::default()
            },
            layers: vec![],
            build_cache: false,
        }
    }

    #[test]
    fn image_maps_tags_digests_size_and_user() {
        let img = to_cri_image(&record(
            &[
                "docker.io/library/busybox:latest",
                "docker.io/library/busybox:1.36",
                &format!("localhost:5000/bb@{INDEX}"),
            ],
            "1000:1000",
        ));
        assert_eq!(img.id, ID);
        assert_eq!(
            img.repo_tags,
            [
                "docker.io/library/busybox:latest",
                "docker.io/library/busybox:1.36"
            ]
        );
        assert_eq!(
            img.repo_digests,
            [
                format!("docker.io/library/busybox@{MANIFEST}"),
                format!("localhost:5000/bb@{MANIFEST}"),
                format!("localhost:5000/bb@{INDEX}"),
            ]
        );
        assert_eq!(img.size, 4096);
        assert_eq!(img.uid, Some(cri::Int64Value { value: 1000 }));
        assert_eq!(img.username, "");
        assert_eq!(img.spec.unwrap().image, ID);
        assert!(!img.pinned);
    }

    #[test]
    fn a_dangling_image_has_no_tags_or_digests() {
        let img = to_cri_image(&record(&[], ""));
        assert!(img.repo_tags.is_empty() && img.repo_digests.is_empty());
        assert_eq!((img.uid, img.username.as_str()), (None, ""));
    }

    #[test]
    fn user_is_a_uid_or_a_name_never_both() {
        assert_eq!(user_of(""), (None, String::new()));
        assert_eq!(user_of("0"), (Some(0), String::new()));
        assert_eq!(user_of("65534:65534"), (Some(65534), String::new()));
        assert_eq!(user_of("nobody"), (None, "nobody".into()));
        assert_eq!(user_of("www:www"), (None, "www".into()));
        assert_eq!(user_of(":1"), (None, String::new()));
        assert_eq!(user_of("-1"), (None, "-1".into()));
    }

    #[test]
    fn filters_parse_ids_repositories_and_references() {
        assert_eq!(Filter::parse(""), Ok(Filter::All));
        assert_eq!(Filter::parse(ID), Ok(Filter::Id("1".repeat(64))));
        assert_eq!(Filter::parse(&ID[7..]), Ok(Filter::Id("1".repeat(64))));
        assert_eq!(
            Filter::parse("111111111111"),
            Ok(Filter::Id("111111111111".into()))
        );
        assert_eq!(
            Filter::parse("busybox"),
            Ok(Filter::Repository("docker.io/library/busybox".into()))
        );
        assert_eq!(
            Filter::parse("localhost:5000/bb"),
            Ok(Filter::Repository("localhost:5000/bb".into()))
        );
        assert_eq!(
            Filter::parse("busybox:1.36"),
            Ok(Filter::Reference("docker.io/library/busybox:1.36".into()))
        );
        let err = Filter::parse(&"A".repeat(10_000)).unwrap_err();
        assert!(err.len() < 400, "{err}");
        assert!(Filter::parse("bad name!").is_err());
    }

    #[test]
    fn filters_match_what_they_name() {
        let img = record(&["docker.io/library/busybox:latest"], "");
        let m = |f: &str| Filter::parse(f).unwrap().matches(&img);
        assert!(m(""));
        assert!(m(ID));
        assert!(m("111111111111"));
        assert!(!m("111111111112"));
        assert!(m("busybox"));
        assert!(m("busybox:latest"));
        assert!(m("docker.io/library/busybox"));
        assert!(!m("busybox:1.36"));
        assert!(!m("alpine"));
        assert!(!m("docker.io/library/busy"));
        assert!(m(&format!("busybox@{MANIFEST}")));
        assert!(!m(&format!("alpine@{MANIFEST}")));
        assert!(!m(&format!("busybox@{INDEX}")));
    }

    fn auth(f: impl FnOnce(&mut cri::AuthConfig)) -> cri::AuthConfig {
        let mut a = cri::AuthConfig::default();
        f(&mut a);
        a
    }

    #[test]
    fn credentials_come_from_username_or_auth() {
        assert!(credentials(None).unwrap().is_none());
        assert!(credentials(Some(&auth(|_| {}))).unwrap().is_none());
        let c = credentials(Some(&auth(|a| {
            a.username = "u".into();
            a.password = "p".into();
        })))
        .unwrap()
        .unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("u", "p"));
        // base64("alice:s3:cret")
        let c = credentials(Some(&auth(|a| a.auth = "YWxpY2U6czM6Y3JldA==".into())))
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("alice", "s3:cret")
        );
    }

    #[test]
    fn bad_credentials_are_refused_without_repeating_them() {
        let e = credentials(Some(&auth(|a| a.auth = "not base64 secret!".into()))).unwrap_err();
        assert!(
            matches!(&e, AuthError::Invalid(m) if !m.contains("secret")),
            "{e:?}"
        );
        // base64("nocolon")
        let e = credentials(Some(&auth(|a| a.auth = "bm9jb2xvbg==".into()))).unwrap_err();
        assert!(matches!(e, AuthError::Invalid(_)));
        let e =
            credentials(Some(&auth(|a| a.password = "x".repeat(AUTH_FIELD_MAX + 1)))).unwrap_err();
        assert!(
            matches!(&e, AuthError::Invalid(m) if m.len() < 100),
            "{e:?}"
        );
        assert_eq!(
            credentials(Some(&auth(|a| a.registry_token = "t".into()))).unwrap_err(),
            AuthError::Unsupported("auth.registry_token")
        );
        assert_eq!(
            credentials(Some(&auth(|a| a.identity_token = "t".into()))).unwrap_err(),
            AuthError::Unsupported("auth.identity_token")
        );
    }
}
