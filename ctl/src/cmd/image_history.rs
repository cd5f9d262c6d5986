//! `image history` (`history`): how an image was made, newest step first.

use std::time::SystemTime;

use berth::v1::{images_client::ImagesClient, ImageHistoryRequest, ImageHistoryResponse};

use super::fan::fan_ids;
use crate::cli::ImageHistoryArgs;
use crate::error::Result;
use crate::fleet::{host_table, with_host, Fleet};
use crate::output::{self, print_json_line};

/// Headers of the `image history` table (Docker's).
pub const HISTORY_HEADERS: [&str; 5] = ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"];

/// Width Docker cuts CREATED BY to without `--no-trunc`.
const CREATED_BY_WIDTH: usize = 45;

/// The IMAGE column of each step, newest first: the image's id on the
/// newest step and `<missing>` on the others, as `docker history` shows an
/// image whose intermediate images are not stored (berth never stores them).
fn step_ids(h: &ImageHistoryResponse, no_trunc: bool) -> Vec<String> {
    let id = if no_trunc {
        h.id.clone()
    } else {
        output::short_image_id(&h.id).to_string()
    };
    (0..h.entries.len())
        .map(|i| {
            if i == 0 {
                id.clone()
            } else {
                "<missing>".into()
            }
        })
        .collect()
}

/// The table rows, newest step first (Docker's order).
pub fn history_rows(h: &ImageHistoryResponse, no_trunc: bool, now: SystemTime) -> Vec<Vec<String>> {
    let ids = step_ids(h, no_trunc);
    h.entries
        .iter()
        .rev()
        .zip(ids)
        .map(|(e, id)| {
            // Tabs and newlines (heredocs in RUN) would break the table.
            let by = e.created_by.replace(['\t', '\n'], " ");
            vec![
                id,
                output::ago(&e.created_at, now),
                if no_trunc {
                    by
                } else {
                    output::ellipsis(&by, CREATED_BY_WIDTH)
                },
                output::human_size(e.size_bytes),
                e.comment.clone(),
            ]
        })
        .collect()
}

/// `image history IMAGE`: Docker's table (with a HOST column on many
/// hosts), each step as a JSON line with `-o json` (oldest first, as the
/// API gives them), or (`-q`) the IMAGE column only.
pub async fn history(f: &Fleet, args: ImageHistoryArgs) -> Result<()> {
    let outcome = fan_ids(
        f,
        std::slice::from_ref(&args.image),
        "image",
        |ch, image| async move {
            Ok(ImagesClient::new(ch)
                .max_decoding_message_size(crate::MAX_RESPONSE_BYTES)
                .max_encoding_message_size(crate::MAX_REQUEST_BYTES)
                .history(ImageHistoryRequest { image })
                .await?
                .into_inner())
        },
        |_| Ok(()),
    )
    .await?;
    let now = SystemTime::now();
    let single = f.is_single();
    if args.quiet {
        for d in &outcome.done {
            for id in step_ids(&d.value, args.no_trunc) {
                println!("{id}");
            }
        }
    } else if f.json() {
        for d in &outcome.done {
            for e in &d.value.entries {
                let v = output::message_json(e)?;
                print_json_line(&if single { v } else { with_host(&d.host, v) });
            }
        }
    } else if single {
        let rows: Vec<_> = outcome
            .done
            .iter()
            .flat_map(|d| history_rows(&d.value, args.no_trunc, now))
            .collect();
        print!("{}", output::table(&HISTORY_HEADERS, &rows));
    } else {
        let mut rows = Vec::new();
        for d in &outcome.done {
            for r in history_rows(&d.value, args.no_trunc, now) {
                rows.push((d.host.clone(), r));
            }
        }
        print!("{}", host_table(&HISTORY_HEADERS, rows));
    }
    outcome.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth::v1::ImageHistoryEntry;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn history_table_is_newest_first_with_dockers_columns() {
        let now = UNIX_EPOCH + Duration::from_secs(100_000);
        let at = Some(prost_types::Timestamp {
            seconds: 100_000 - 7200,
            nanos: 0,
        });
        let h = ImageHistoryResponse {
            id: format!("sha256:{}", "ab".repeat(32)),
            entries: vec![
                ImageHistoryEntry {
                    created_at: at,
                    created_by: "/bin/sh -c #(nop) ADD file:0123456789abcdef0123456789 in /".into(),
                    layer: "sha256:11".into(),
                    size_bytes: 4_261_000,
                    ..Default::default()
                },
                ImageHistoryEntry {
                    created_at: at,
                    created_by: "CMD [\"sh\"]".into(),
                    comment: "buildkit.dockerfile.v0".into(),
                    empty_layer: true,
                    ..Default::default()
                },
            ],
        };
        assert_eq!(
            output::table(&HISTORY_HEADERS, &history_rows(&h, false, now)),
            "IMAGE          CREATED       CREATED BY                                      SIZE     COMMENT\n\
             abababababab   2 hours ago   CMD [\"sh\"]                                      0B       buildkit.dockerfile.v0\n\
             <missing>      2 hours ago   /bin/sh -c #(nop) ADD file:0123456789abcdef0…   4.26MB\n"
        );
        let full = history_rows(&h, true, now);
        assert_eq!(full[0][0], h.id);
        assert!(full[1][2].ends_with("in /"));
    }
}
