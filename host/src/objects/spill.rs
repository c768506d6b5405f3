//! The spill directory: one file per spilled object, named by its id.
//!
//! Files are written to a temporary name and renamed, so a crash never
//! leaves a truncated file under an object's name. The directory is private
//! to the node (mode 0700 on Unix).

use crate::ids::ObjectId;
use std::io;
use std::path::PathBuf;

pub(super) struct SpillDir {
    dir: PathBuf,
}

impl SpillDir {
    pub(super) fn new(dir: PathBuf) -> io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(SpillDir { dir })
    }

    fn path(&self, id: ObjectId) -> PathBuf {
        self.dir.join(id.to_string())
    }

    pub(super) fn write(&self, id: ObjectId, bytes: &[u8]) -> io::Result<()> {
        let tmp = self.dir.join(format!("{id}.tmp"));
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, self.path(id))
    }

    pub(super) fn read(&self, id: ObjectId) -> io::Result<Vec<u8>> {
        std::fs::read(self.path(id))
    }

    pub(super) fn remove(&self, id: ObjectId) {
        // A missing file is fine: nothing to free.
        let _ = std::fs::remove_file(self.path(id));
    }
}
