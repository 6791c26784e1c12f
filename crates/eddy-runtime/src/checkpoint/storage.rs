//! Where checkpoint and savepoint files live, through `object_store`.
//!
//! A [`StorageLocation`] is a directory in an object store: a local path or `file://` URL (the
//! local file system), or `s3://bucket/prefix` when the `s3` feature is on. Files are written
//! whole (`put`), read whole (`get`), and deleted by name; nothing relies on directories, so the
//! same code works on S3.
//!
//! The object store API is asynchronous. State files are written on a small shared Tokio
//! runtime ([`runtime`]), so that tasks return to processing while their snapshot is uploaded;
//! the job master and restoring tasks use [`block_on`].

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::error::{Result, RuntimeError};

/// The runtime that performs checkpoint I/O for every job of this process.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("eddy-checkpoint-io")
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cannot start the checkpoint I/O runtime: {e}"))
    })
}

/// Runs `future` to completion on the checkpoint I/O runtime, blocking this thread.
pub fn block_on<F: Future>(future: F) -> F::Output {
    runtime().block_on(future)
}

/// A directory in an object store.
#[derive(Clone)]
pub struct StorageLocation {
    store: Arc<dyn ObjectStore>,
    root: Path,
    display: String,
    local: Option<PathBuf>,
}

impl std::fmt::Debug for StorageLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display)
    }
}

impl StorageLocation {
    /// Parses a local path (absolute or relative to the working directory), a `file://` URL, or
    /// an `s3://` URL.
    pub fn parse(location: &str) -> Result<Self> {
        let location = location.trim();
        if location.is_empty() {
            return Err(RuntimeError::storage(
                "checkpoint location",
                "the location is empty",
            ));
        }
        if let Some((scheme, _)) = location.split_once("://") {
            let url = url::Url::parse(location).map_err(|e| {
                RuntimeError::storage(format!("location '{location}'"), e.to_string())
            })?;
            return match scheme {
                "file" => {
                    let path = url.to_file_path().map_err(|_| {
                        RuntimeError::storage(
                            format!("location '{location}'"),
                            "not a valid local path",
                        )
                    })?;
                    Self::local(path)
                }
                "s3" | "s3a" => Self::s3(location, &url),
                other => Err(RuntimeError::storage(
                    format!("location '{location}'"),
                    format!("unsupported scheme '{other}://' (use a local path, file:// or s3://)"),
                )),
            };
        }
        Self::local(PathBuf::from(location))
    }

    fn local(path: PathBuf) -> Result<Self> {
        let absolute = if path.is_absolute() {
            path
        } else {
            std::env::current_dir()
                .map_err(|e| RuntimeError::io("cannot read the working directory", e))?
                .join(path)
        };
        let absolute = normalize_local(&absolute);
        let root = Path::from_absolute_path(&absolute)
            .map_err(|e| RuntimeError::storage(format!("location '{}'", absolute.display()), e))?;
        Ok(StorageLocation {
            store: local_store(),
            root,
            display: absolute.display().to_string(),
            local: Some(absolute),
        })
    }

    #[cfg(feature = "s3")]
    fn s3(location: &str, url: &url::Url) -> Result<Self> {
        let mut builder = object_store::aws::AmazonS3Builder::from_env();
        builder = builder.with_url(url.as_str());
        let store = builder
            .build()
            .map_err(|e| RuntimeError::storage(format!("location '{location}'"), e))?;
        let root = Path::parse(url.path().trim_start_matches('/'))
            .map_err(|e| RuntimeError::storage(format!("location '{location}'"), e))?;
        Ok(StorageLocation {
            store: Arc::new(store),
            root,
            display: location.trim_end_matches('/').to_string(),
            local: None,
        })
    }

    #[cfg(not(feature = "s3"))]
    fn s3(location: &str, _url: &url::Url) -> Result<Self> {
        Err(RuntimeError::storage(
            format!("location '{location}'"),
            "this build has no S3 support; build Eddy with the `s3` feature",
        ))
    }

    /// The subdirectory `name`.
    pub fn child(&self, name: &str) -> StorageLocation {
        StorageLocation {
            store: self.store.clone(),
            root: self.root.clone().join(name),
            display: format!("{}/{name}", self.display),
            local: self.local.as_ref().map(|p| p.join(name)),
        }
    }

    /// How the location is shown to users: the local path, or the URL.
    pub fn display(&self) -> &str {
        &self.display
    }

    /// The directory as a path inside its store.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of file `name` in this directory.
    pub fn file(&self, name: &str) -> Path {
        self.root.clone().join(name)
    }

    /// Whether `other` is in the same object store as this location (so that paths of one can
    /// be read through the other).
    pub fn same_store(&self, other: &StorageLocation) -> bool {
        Arc::ptr_eq(&self.store, &other.store)
    }

    /// How a path of this store is shown to users.
    pub fn display_path(&self, path: &Path) -> String {
        match &self.local {
            Some(_) => format!("/{path}"),
            None => {
                let scheme_and_bucket = self
                    .display
                    .splitn(4, '/')
                    .take(3)
                    .collect::<Vec<_>>()
                    .join("/");
                format!("{scheme_and_bucket}/{path}")
            }
        }
    }

    /// Writes `bytes` as the file at `path`, replacing it.
    pub async fn put(&self, path: &Path, bytes: Vec<u8>) -> Result<()> {
        self.store
            .put(path, PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|e| {
                RuntimeError::storage(format!("cannot write {}", self.display_path(path)), e)
            })
    }

    /// Starts writing the file at `path` in parts, for files too large to hold in memory.
    pub fn upload(&self, path: &Path) -> Result<FileUpload> {
        let shown = self.display_path(path);
        let upload = block_on(self.store.put_multipart(path))
            .map_err(|e| RuntimeError::storage(format!("cannot write {shown}"), e))?;
        Ok(FileUpload {
            upload,
            shown,
            parts: Vec::new(),
        })
    }

    /// Reads the whole file at `path`.
    pub async fn get(&self, path: &Path) -> Result<Bytes> {
        let shown = self.display_path(path);
        let result = self.store.get(path).await.map_err(|e| match e {
            object_store::Error::NotFound { .. } => {
                RuntimeError::storage(format!("cannot read {shown}"), "the file does not exist")
            }
            e => RuntimeError::storage(format!("cannot read {shown}"), e),
        })?;
        result
            .bytes()
            .await
            .map_err(|e| RuntimeError::storage(format!("cannot read {shown}"), e))
    }

    /// Reads byte ranges of the file at `path`.
    pub async fn get_ranges(
        &self,
        path: &Path,
        ranges: &[std::ops::Range<u64>],
    ) -> Result<Vec<Bytes>> {
        let shown = self.display_path(path);
        self.store
            .get_ranges(path, ranges)
            .await
            .map_err(|e| match e {
                object_store::Error::NotFound { .. } => {
                    RuntimeError::storage(format!("cannot read {shown}"), "the file does not exist")
                }
                e => RuntimeError::storage(format!("cannot read {shown}"), e),
            })
    }

    /// Whether the file at `path` exists.
    pub async fn exists(&self, path: &Path) -> Result<bool> {
        match self.store.head(path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(RuntimeError::storage(
                format!("cannot look up {}", self.display_path(path)),
                e,
            )),
        }
    }

    /// Deletes the file at `path`; a missing file is not an error.
    pub async fn delete(&self, path: &Path) -> Result<()> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(RuntimeError::storage(
                format!("cannot delete {}", self.display_path(path)),
                e,
            )),
        }
    }

    /// Deletes every file under this location.
    pub async fn delete_all(&self) -> Result<()> {
        use futures::TryStreamExt;
        let files: Vec<Path> = self
            .store
            .list(Some(&self.root))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .map_err(|e| RuntimeError::storage(format!("cannot list {}", self.display), e))?;
        for f in files {
            self.delete(&f).await?;
        }
        if let Some(local) = &self.local {
            let _ = std::fs::remove_dir_all(local);
        }
        Ok(())
    }
}

/// A file being written in parts (blocking calls; used off the task threads).
pub struct FileUpload {
    upload: Box<dyn object_store::MultipartUpload>,
    shown: String,
    parts: Vec<tokio::task::JoinHandle<object_store::Result<()>>>,
}

impl FileUpload {
    /// Sends the next part (parts upload concurrently; all but the last should be at least
    /// 5 MiB for S3).
    pub fn write_part(&mut self, bytes: Vec<u8>) -> Result<()> {
        let part = self.upload.put_part(PutPayload::from(bytes));
        self.parts.push(runtime().spawn(part));
        // Keep at most a few parts in flight, bounding memory.
        while self.parts.len() > 2 {
            let first = self.parts.remove(0);
            self.join(first)?;
        }
        Ok(())
    }

    fn join(&self, part: tokio::task::JoinHandle<object_store::Result<()>>) -> Result<()> {
        match block_on(part) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(RuntimeError::storage(
                format!("cannot write {}", self.shown),
                e,
            )),
            Err(e) => Err(RuntimeError::storage(
                format!("cannot write {}", self.shown),
                e,
            )),
        }
    }

    /// Waits for every part and makes the file visible.
    pub fn finish(mut self) -> Result<()> {
        for part in std::mem::take(&mut self.parts) {
            self.join(part)?;
        }
        block_on(self.upload.complete())
            .map(|_| ())
            .map_err(|e| RuntimeError::storage(format!("cannot write {}", self.shown), e))
    }

    /// Gives up: nothing becomes visible.
    pub fn abort(mut self) {
        for part in std::mem::take(&mut self.parts) {
            let _ = block_on(part);
        }
        let _ = block_on(self.upload.abort());
    }
}

/// The local file system, shared by every local location. Deleting a file removes the
/// directories it leaves empty.
fn local_store() -> Arc<dyn ObjectStore> {
    static LOCAL: OnceLock<Arc<dyn ObjectStore>> = OnceLock::new();
    LOCAL
        .get_or_init(|| Arc::new(LocalFileSystem::new().with_automatic_cleanup(true)))
        .clone()
}

/// Removes `.` and `..` components without touching the file system.
fn normalize_local(path: &std::path::Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

/// The path of `target` relative to directory `base`, both in one store: `chk-7` and
/// `shared/x` give `../shared/x`.
pub fn relative_path(base: &Path, target: &Path) -> String {
    let b: Vec<_> = base.parts().collect();
    let t: Vec<_> = target.parts().collect();
    let common = b.iter().zip(&t).take_while(|(x, y)| x == y).count();
    let mut parts: Vec<String> = Vec::new();
    for _ in common..b.len() {
        parts.push("..".into());
    }
    for p in &t[common..] {
        parts.push(p.as_ref().to_string());
    }
    parts.join("/")
}

/// Resolves a path written by [`relative_path`] against directory `base`.
pub fn resolve_path(base: &Path, relative: &str) -> Result<Path> {
    let mut parts: Vec<String> = base.parts().map(|p| p.as_ref().to_string()).collect();
    for seg in relative.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(RuntimeError::storage(
                        format!("path '{relative}'"),
                        "points outside the storage root",
                    ));
                }
            }
            s => parts.push(s.to_string()),
        }
    }
    Ok(Path::from_iter(parts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_round_trip() {
        let base = Path::from("ckpt/job/chk-7");
        for target in ["ckpt/job/shared/a", "ckpt/job/chk-7/b", "other/x/y"] {
            let target = Path::from(target);
            let rel = relative_path(&base, &target);
            assert_eq!(resolve_path(&base, &rel).unwrap(), target, "{rel}");
        }
        assert_eq!(
            relative_path(&base, &Path::from("ckpt/job/shared/a")),
            "../shared/a"
        );
        assert!(resolve_path(&Path::from("a"), "../../x").is_err());
    }

    #[test]
    fn local_files_put_get_delete() {
        let dir = tempfile::tempdir().unwrap();
        let loc = StorageLocation::parse(dir.path().to_str().unwrap()).unwrap();
        let url = format!("file://{}", dir.path().display());
        let loc2 = StorageLocation::parse(&url).unwrap();
        assert_eq!(loc.root(), loc2.root());
        let sub = loc.child("chk-1");
        let f = sub.file("_metadata");
        block_on(sub.put(&f, b"hello".to_vec())).unwrap();
        assert!(dir.path().join("chk-1/_metadata").is_file());
        assert_eq!(&block_on(loc.get(&f)).unwrap()[..], b"hello");
        assert!(block_on(loc.exists(&f)).unwrap());
        block_on(loc.delete(&f)).unwrap();
        assert!(!block_on(loc.exists(&f)).unwrap());
        let err = block_on(loc.get(&f)).unwrap_err().to_string();
        assert!(err.contains("does not exist"), "{err}");
        assert!(err.contains("chk-1/_metadata"), "{err}");
        block_on(loc.delete(&f)).unwrap();
    }

    #[test]
    fn unsupported_schemes_are_named() {
        let err = StorageLocation::parse("hdfs://nn/x")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("hdfs://"), "{err}");
    }
}
