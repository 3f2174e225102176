//! The filesystem's one error type; every variant maps to an errno in an
//! exhaustive match, so a new variant forces a decision.

#[derive(Debug, Clone, thiserror::Error)]
pub enum FsError {
    #[error("no such file or directory")]
    NotFound,
    #[error("file exists")]
    Exists,
    #[error("directory not empty")]
    NotEmpty,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("read-only place")]
    ReadOnly,
    #[error("operation not permitted here")]
    NotPermitted,
    #[error("access denied: {0}")]
    AccessDenied(String),
    #[error("cannot move across this boundary")]
    CrossDevice,
    #[error("invalid argument: {0}")]
    Invalid(String),
    #[error("name too long")]
    NameTooLong,
    #[error("file too large")]
    TooBig,
    #[error("try again: {0}")]
    TryAgain(String),
    #[error("timed out: {0}")]
    TimedOut(String),
    #[error("I/O error: {0}")]
    Io(String),
    #[error("no such attribute")]
    NoData,
    #[error("not supported")]
    NotSupported,
    #[error("buffer too small")]
    Range,
    #[error("bad file handle")]
    BadHandle,
    /// An ioctl this filesystem has none of (`ENOTTY`, as for any file
    /// without device controls).
    #[error("no such ioctl")]
    NoSuchIoctl,
    /// A request the kernel can do itself once told so (`ENOSYS`: it then
    /// stops asking, e.g. `copy_file_range` falls back to read + write).
    #[error("left to the kernel")]
    LeftToKernel,
    /// The file was replaced on the remote while open, by a version the
    /// kernel cannot be told about mid-read (another size): open it again.
    #[error("the remote file was replaced; open it again")]
    Stale,
    /// The local spool's disk is full (or over quota).
    #[error("no space left on the spool's disk")]
    NoSpace,
}

impl FsError {
    /// An answer that will not change by asking again (400, 404, 409, 413,
    /// 422…): retrying it in the background would go on forever. Transient
    /// failures and refused credentials (a rotated token file fixes those)
    /// are not.
    pub fn is_permanent(&self) -> bool {
        !matches!(
            self,
            FsError::Io(_) | FsError::TimedOut(_) | FsError::TryAgain(_) | FsError::AccessDenied(_)
        )
    }

    pub fn errno(&self) -> i32 {
        match self {
            FsError::NotFound => libc::ENOENT,
            FsError::Exists => libc::EEXIST,
            FsError::NotEmpty => libc::ENOTEMPTY,
            FsError::NotDir => libc::ENOTDIR,
            FsError::IsDir => libc::EISDIR,
            FsError::ReadOnly => libc::EROFS,
            FsError::NotPermitted => libc::EPERM,
            FsError::AccessDenied(_) => libc::EACCES,
            FsError::CrossDevice => libc::EXDEV,
            FsError::Invalid(_) => libc::EINVAL,
            FsError::NameTooLong => libc::ENAMETOOLONG,
            FsError::TooBig => libc::EFBIG,
            FsError::TryAgain(_) => libc::EAGAIN,
            FsError::TimedOut(_) => libc::ETIMEDOUT,
            FsError::Io(_) => libc::EIO,
            FsError::NoData => libc::ENODATA,
            FsError::NotSupported => libc::ENOTSUP,
            FsError::Range => libc::ERANGE,
            FsError::BadHandle => libc::EBADF,
            FsError::NoSuchIoctl => libc::ENOTTY,
            FsError::LeftToKernel => libc::ENOSYS,
            FsError::NoSpace => libc::ENOSPC,
            FsError::Stale => libc::ESTALE,
        }
    }
}

impl From<std::io::Error> for FsError {
    fn from(e: std::io::Error) -> Self {
        match e.raw_os_error() {
            Some(libc::ENOENT) => FsError::NotFound,
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => FsError::NoSpace,
            // Beyond what the spool's filesystem can hold in one file.
            Some(libc::EFBIG) => FsError::TooBig,
            _ => FsError::Io(e.to_string()),
        }
    }
}

pub type FsResult<T> = Result<T, FsError>;
