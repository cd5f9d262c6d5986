//! Entry points for the fuzz targets (feature `fuzzing`, see `fuzz/`).

/// The largest record the log reads (`log::MAX_RECORD`).
pub const MAX_RECORD: usize = super::log::MAX_RECORD;
