//! Extended attributes: the `user.bridgefs.*` names each backend owns.

use crate::fs::backend::{Backend, Entry, XATTR_PREFIX};
use crate::fs::core::BridgeFs;
use crate::fs::error::{FsError, FsResult};
use crate::fs::namespace::inode::Ino;
use std::sync::Arc;

impl BridgeFs {
    pub(in crate::fs) fn xattr_target(&self, ino: Ino) -> FsResult<(Arc<dyn Backend>, Entry)> {
        let st = self.state.lock();
        let node = st.table.get(ino).ok_or(FsError::NotFound)?;
        match node.backend {
            Some(b) if node.is_remote() => Ok((self.mounts[b].backend.clone(), node.entry.clone())),
            _ => Err(FsError::NoData),
        }
    }

    pub async fn listxattr(&self, ino: Ino) -> FsResult<Vec<String>> {
        match self.xattr_target(ino) {
            Ok((b, e)) => b.xattr_list(&e).await,
            Err(FsError::NoData) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// `user.bridgefs.*` is the backends'; any other `user.*` name simply
    /// is not there (ENODATA). The namespaces bridgefs does not implement
    /// (`security.*`, `system.*`, `trusted.*`) answer ENOTSUP: `ls -l` then
    /// stops asking for them for the rest of a listing, where ENODATA makes
    /// it ask again for every entry.
    pub async fn getxattr(&self, ino: Ino, name: &str) -> FsResult<Vec<u8>> {
        if let Some(answer) = self.getxattr_cached(name) {
            return answer;
        }
        let (b, e) = self.xattr_target(ino)?;
        b.xattr_get(&e, name).await
    }

    pub async fn setxattr(&self, ino: Ino, name: &str, value: Option<&[u8]>) -> FsResult<()> {
        if !name.starts_with(XATTR_PREFIX) {
            return Err(FsError::NotSupported);
        }
        let (b, e) = self.xattr_target(ino).map_err(|_| FsError::NotSupported)?;
        b.xattr_set(&e, name, value).await
    }
}
