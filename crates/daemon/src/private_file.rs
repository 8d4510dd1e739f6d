//! Files that only their owner may read: the key that seals credentials, the first account's
//! credentials. Each is written once, whole, and synced with its directory, so that it
//! outlives a crash as the log does; a half-written one (a full disk) is removed rather than
//! left to be misread.

use std::io::Write;
use std::path::Path;

/// Writes `contents` to `path`, which must not exist yet, with mode 0600.
pub fn create(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    if let Err(error) = file.write_all(contents).and_then(|()| file.sync_all()) {
        let _ = std::fs::remove_file(path);
        return Err(error);
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::File::open(parent)?.sync_all()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_private_file_is_its_owners_alone_and_never_overwritten() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("secret");
        super::create(&path, b"one").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(super::create(&path, b"two").is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
    }
}
