//! What can go wrong while reconciling, with a short stable category for Events and
//! metrics.

/// A reconcile that could not finish; it is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes api: {0}")]
    Kube(#[from] kube::Error),

    #[error("leader election: {0}")]
    Lease(#[from] super::leader::LeaseError),

    #[error("leadership lost: {0}")]
    LeaseLost(String),

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
            Self::Lease(_) => "LeaseError",
            Self::LeaseLost(_) => "LeaseLost",
            Self::MissingNamespace => "MissingNamespace",
            Self::MissingUid => "MissingUid",
            Self::Serialize { .. } => "SerializeError",
        }
    }
}
