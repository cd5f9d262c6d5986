//! `image ls` (`images`): lists images.

use std::time::SystemTime;

use serde_json::Value;

use berth::v1::{images_client::ImagesClient, Image, ListImagesRequest};

use super::fan::per_host;
use crate::cli::ImageLsArgs;
use crate::error::Result;
use crate::fleet::{host_table, with_host, with_host_field, Fleet};
use crate::output::{self, format, print_json_line};

/// Headers of the `image ls` table.
pub const IMAGE_HEADERS: [&str; 5] = ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"];

/// The rows of `image ls`: one per reference, like `docker images`, and
/// one with `<none>` for an image without any.
pub fn image_rows(images: &[Image], now: SystemTime) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for i in images {
        let created = output::ago(&i.created_at, now);
        let row = |repo: String, tag: String| {
            vec![
                repo,
                tag,
                output::short_image_id(&i.id).to_string(),
                created.clone(),
                output::human_size(i.size_bytes),
            ]
        };
        if i.references.is_empty() {
            rows.push(row("<none>".into(), "<none>".into()));
        }
        for r in &i.references {
            let (repo, tag) = output::repo_tag(r);
            rows.push(row(repo, tag));
        }
    }
    rows
}

/// Column titles of `image ls --format "table ..."`, by field.
pub const IMAGE_TITLES: &[(&str, &str)] = &[
    ("Repository", "REPOSITORY"),
    ("Tag", "TAG"),
    ("ID", "IMAGE ID"),
    ("Digest", "DIGEST"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("Size", "SIZE"),
    ("Host", "HOST"),
];

/// The objects of `image ls --format`: one per reference (one with
/// `<none>` for an image without any), as the table's rows: the image's API
/// message in PascalCase with Docker's fields over it.
pub fn image_objects(images: &[Image], now: SystemTime, no_trunc: bool) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for i in images {
        let base = format::pascal(output::message_json(i)?);
        let object = |repo: String, tag: String| {
            let mut v = base.clone();
            let fields = [
                ("Repository", repo),
                ("Tag", tag),
                ("ID", quiet_id(&i.id, no_trunc).to_string()),
                ("Digest", i.manifest_digest.clone()),
                ("CreatedSince", output::ago(&i.created_at, now)),
                (
                    "CreatedAt",
                    i.created_at
                        .as_ref()
                        .map(output::rfc3339)
                        .unwrap_or_default(),
                ),
                ("Size", output::human_size(i.size_bytes)),
            ];
            if let Value::Object(m) = &mut v {
                for (k, text) in fields {
                    m.insert(k.to_string(), Value::String(text));
                }
            }
            v
        };
        if i.references.is_empty() {
            out.push(object("<none>".into(), "<none>".into()));
        }
        for r in &i.references {
            let (repo, tag) = output::repo_tag(r);
            out.push(object(repo, tag));
        }
    }
    Ok(out)
}

/// An image id as `images -q` prints it: the 12 hex digits of `image ls`,
/// or the whole `sha256:...` id with `--no-trunc`, as `docker images -q`.
pub fn quiet_id(id: &str, no_trunc: bool) -> &str {
    if no_trunc {
        id
    } else {
        output::short_image_id(id)
    }
}

/// `image ls`: one table (with a HOST column on many hosts), the images as
/// JSON lines, or (`-q`) their ids, one per image.
pub async fn ls(f: &Fleet, args: ImageLsArgs) -> Result<()> {
    let format = args
        .format
        .as_deref()
        .map(format::parse)
        .transpose()?
        .flatten();
    let results = f
        .each(|_, ch| async move {
            Ok(ImagesClient::new(ch)
                .max_decoding_message_size(crate::MAX_RESPONSE_BYTES)
                .max_encoding_message_size(crate::MAX_REQUEST_BYTES)
                .list(ListImagesRequest {})
                .await?
                .into_inner()
                .images)
        })
        .await;
    let single = f.is_single();
    per_host(f, results, |ok| {
        let now = SystemTime::now();
        if args.quiet {
            for i in ok.iter().flat_map(|(_, images)| images.iter()) {
                println!("{}", quiet_id(&i.id, args.no_trunc));
            }
        } else if let Some(format) = &format {
            let mut objects = Vec::new();
            for (m, images) in ok {
                for v in image_objects(images, now, args.no_trunc)? {
                    objects.push(if single {
                        v
                    } else {
                        with_host_field(&m.name, v)
                    });
                }
            }
            print!("{}", format.render(&objects, IMAGE_TITLES)?);
        } else if f.json() {
            for (m, images) in ok {
                for i in images {
                    let v = output::message_json(i)?;
                    print_json_line(&if single { v } else { with_host(&m.name, v) });
                }
            }
        } else if single {
            let rows: Vec<_> = ok.iter().flat_map(|(_, i)| image_rows(i, now)).collect();
            print!("{}", output::table(&IMAGE_HEADERS, &rows));
        } else {
            let mut rows = Vec::new();
            for (m, images) in ok {
                for r in image_rows(images, now) {
                    rows.push((m.name.clone(), r));
                }
            }
            print!("{}", host_table(&IMAGE_HEADERS, rows));
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn image_table() {
        let now = UNIX_EPOCH + Duration::from_secs(100_000);
        let images = vec![
            Image {
                id: format!("sha256:{}", "ab".repeat(32)),
                references: vec![
                    "docker.io/library/busybox:latest".into(),
                    "docker.io/library/busybox:1.36".into(),
                ],
                size_bytes: 4_261_000,
                created_at: Some(prost_types::Timestamp {
                    seconds: 100_000 - 7200,
                    nanos: 0,
                }),
                ..Default::default()
            },
            Image {
                id: format!("sha256:{}", "cd".repeat(32)),
                size_bytes: 999,
                ..Default::default()
            },
        ];
        assert_eq!(
            output::table(&IMAGE_HEADERS, &image_rows(&images, now)),
            "REPOSITORY   TAG      IMAGE ID       CREATED       SIZE\n\
             busybox      latest   abababababab   2 hours ago   4.26MB\n\
             busybox      1.36     abababababab   2 hours ago   4.26MB\n\
             <none>       <none>   cdcdcdcdcdcd   N/A           999B\n"
        );
    }
}
