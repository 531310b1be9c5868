//! The reports directory as the generation logic reads it: `std::fs` under the guest path the
//! host preopened read-only (`/reports`) for admin calls.

use std::path::PathBuf;

use backlog_core::Error;
use backlog_core::digest::Reports;

/// Reports read from a preopened directory.
pub struct FsReports {
    root: PathBuf,
}

impl FsReports {
    pub fn new(root: &str) -> Self {
        FsReports {
            root: PathBuf::from(root),
        }
    }
}

impl Reports for FsReports {
    fn list(&mut self, dir: &str) -> Result<Vec<String>, Error> {
        match std::fs::read_dir(self.root.join(dir)) {
            Ok(entries) => Ok(entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(Error::internal(format!(
                "cannot list ops/reports/{dir}: {e}"
            ))),
        }
    }

    fn read(&mut self, path: &str) -> Result<String, Error> {
        let full = self.root.join(path);
        if let Ok(m) = std::fs::metadata(&full)
            && m.len() > backlog_core::digest::DIGEST_MAX_BYTES
        {
            return Err(Error::invalid_input(format!(
                "ops/reports/{path}: the digest is {} bytes; the limit is {}",
                m.len(),
                backlog_core::digest::DIGEST_MAX_BYTES
            )));
        }
        std::fs::read_to_string(full)
            .map_err(|e| Error::invalid_input(format!("ops/reports/{path}: cannot read: {e}")))
    }

    fn log(&mut self, line: &str) {
        crate::log::log(line);
    }
}
