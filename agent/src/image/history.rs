//! An image's history: the steps its config records ("history"), each
//! paired with the layer it made, as `docker history` shows them.

use std::io;

use oci_spec::image::{History, ImageConfiguration};

use super::{ImageError, ImageRecord, ImageStore};

/// One step of an image's history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryEntry {
    /// When the step ran (RFC 3339, as recorded), if recorded.
    pub created: Option<String>,
    /// The command that ran.
    pub created_by: String,
    /// The step's comment.
    pub comment: String,
    /// The step's author.
    pub author: String,
    /// True when the step made no layer.
    pub empty_layer: bool,
    /// Diff id of the layer the step made (`None` for an empty step).
    pub layer: Option<String>,
    /// Unpacked size of that layer on this agent (0 for an empty step).
    pub size_bytes: u64,
}

impl ImageStore {
    /// The history of the image `name_or_id`, oldest step first, with the
    /// unpacked size of each step's layer.
    ///
    /// # Errors
    /// Those of [`resolve`](Self::resolve); `Internal` when the stored
    /// config is missing or unreadable.
    pub fn history(
        &self,
        name_or_id: &str,
    ) -> Result<(ImageRecord, Vec<HistoryEntry>), ImageError> {
        let image = self.resolve(name_or_id)?;
        let config = self.read_blob(&image.id).ok_or_else(|| {
            ImageError::io(
                format!("reading the config of image {}", image.id),
                io::Error::from(io::ErrorKind::NotFound),
            )
        })?;
        let config = ImageConfiguration::from_reader(config.as_slice()).map_err(|e| {
            ImageError::io(
                format!("parsing the config of image {}", image.id),
                io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
            )
        })?;
        let mut entries =
            pair_with_layers(config.history().as_deref().unwrap_or(&[]), &image.layers);
        for e in &mut entries {
            if let Some(layer) = &e.layer {
                e.size_bytes = self.layer_size(layer);
            }
        }
        Ok((image, entries))
    }
}

/// Pairs the config's history with the image's layers, in order: each step
/// not marked `empty_layer` made the next layer. Docker does the same; a
/// config whose history names fewer layers than the image has gets the rest
/// as steps of their own (nothing recorded about them), and steps beyond the
/// last layer get none, so the result never invents or drops a layer.
fn pair_with_layers(history: &[History], layers: &[String]) -> Vec<HistoryEntry> {
    let mut layers = layers.iter();
    let mut out: Vec<HistoryEntry> = history
        .iter()
        .map(|h| {
            let empty_layer = h.empty_layer().unwrap_or(false);
            HistoryEntry {
                created: h.created().clone(),
                created_by: h.created_by().clone().unwrap_or_default(),
                comment: h.comment().clone().unwrap_or_default(),
                author: h.author().clone().unwrap_or_default(),
                layer: if empty_layer {
                    None
                } else {
                    layers.next().cloned()
                },
                empty_layer,
                size_bytes: 0,
            }
        })
        .collect();
    out.extend(layers.map(|l| HistoryEntry {
        layer: Some(l.clone()),
        ..HistoryEntry::default()
    }));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::HistoryBuilder;

    fn step(by: &str, empty: bool) -> History {
        HistoryBuilder::default()
            .created_by(by.to_string())
            .empty_layer(empty)
            .build()
            .expect("history entry")
    }

    #[test]
    fn steps_take_layers_in_order_and_empty_steps_take_none() {
        let layers = vec!["sha256:a".to_string(), "sha256:b".to_string()];
        let h = [
            step("ADD rootfs", false),
            step("ENV X=1", true),
            step("RUN x", false),
        ];
        let out = pair_with_layers(&h, &layers);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].layer.as_deref(), Some("sha256:a"));
        assert_eq!(out[1].layer, None);
        assert!(out[1].empty_layer);
        assert_eq!(out[2].layer.as_deref(), Some("sha256:b"));
        assert_eq!(out[2].created_by, "RUN x");
    }

    #[test]
    fn layers_the_history_does_not_name_still_appear() {
        let layers = vec!["sha256:a".to_string(), "sha256:b".to_string()];
        let out = pair_with_layers(&[step("ADD rootfs", false)], &layers);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].layer.as_deref(), Some("sha256:b"));
        assert_eq!(out[1].created_by, "");
        let none = pair_with_layers(&[], &layers);
        assert_eq!(none.len(), 2);
    }

    #[test]
    fn steps_beyond_the_layers_get_none() {
        let layers = vec!["sha256:a".to_string()];
        let out = pair_with_layers(&[step("a", false), step("b", false)], &layers);
        assert_eq!(out[1].layer, None);
        assert!(!out[1].empty_layer);
    }
}
