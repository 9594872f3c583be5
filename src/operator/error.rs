//! What can go wrong while reconciling, with a short stable category for Events and
//! metrics.

/// A reconcile that could not finish; it is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes api: {0}")]
    Kube(#[from] kube::Error),

    #[error("object has no namespace")]
    MissingNamespace,

    #[error("object has no uid yet")]
    MissingUid,

    #[error("cannot serialize {what}: {source}")]
    Serialize {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// A short stable name for the kind of failure.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Kube(_) => "ApiError",
            Self::MissingNamespace => "MissingNamespace",
            Self::MissingUid => "MissingUid",
            Self::Serialize { .. } => "SerializeError",
        }
    }
}
