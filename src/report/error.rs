//! What can stop a fleet report from being made.

/// Why `patchkeeper report` could not produce a report.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No kubeconfig could be loaded, and the command does not run in a cluster.
    #[error("cannot load a kubeconfig ({kubeconfig})")]
    NoKubeconfig {
        /// Which kubeconfig was looked for.
        kubeconfig: String,
        #[source]
        source: kube::Error,
    },

    /// The API server named by the kubeconfig did not answer.
    #[error("cannot reach the Kubernetes API server of the current kubeconfig ({kubeconfig})")]
    Unreachable {
        /// Which kubeconfig was used.
        kubeconfig: String,
        #[source]
        source: kube::Error,
    },

    /// The API server does not know the patchkeeper kinds.
    #[error(
        "patchkeeper's CRDs are not installed in this cluster \
         (kubectl apply --server-side -f crds/)"
    )]
    CrdsNotInstalled,

    /// The API server refused to list a kind to the current user.
    #[error(
        "not allowed to list {plural}.patchkeeper.io: {message}; the report needs `list` on \
         managedvms, patchexceptions, maintenancewindows and patchbaselines"
    )]
    Forbidden {
        /// The plural name of the kind.
        plural: String,
        /// The API server's explanation.
        message: String,
    },

    /// Any other failure to list a kind.
    #[error("cannot list {plural}.patchkeeper.io")]
    List {
        /// The plural name of the kind.
        plural: String,
        #[source]
        source: kube::Error,
    },

    /// The report could not be written as JSON.
    #[error("cannot write the report as json")]
    Json(#[source] serde_json::Error),
}

impl Error {
    /// A short stable name for the kind of failure.
    pub fn category(&self) -> &'static str {
        match self {
            Self::NoKubeconfig { .. } => "NoKubeconfig",
            Self::Unreachable { .. } => "Unreachable",
            Self::CrdsNotInstalled => "CrdsNotInstalled",
            Self::Forbidden { .. } => "Forbidden",
            Self::List { .. } => "ListFailed",
            Self::Json(_) => "JsonFailed",
        }
    }
}

/// The error and its chain of causes on one line, each cause once.
pub fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let inner_text = inner.to_string();
        // kube's errors often repeat their cause's text in their own.
        if !text.contains(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        cause = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_crd_names_the_command_that_installs_it() {
        assert_eq!(
            Error::CrdsNotInstalled.to_string(),
            "patchkeeper's CRDs are not installed in this cluster \
             (kubectl apply --server-side -f crds/)"
        );
    }

    #[test]
    fn a_description_lists_each_cause_once() {
        let io = std::io::Error::other("connection refused");
        let error = Error::Unreachable {
            kubeconfig: "KUBECONFIG=/tmp/k".into(),
            source: kube::Error::ReadEvents(io),
        };
        let text = describe(&error);
        assert!(
            text.starts_with("cannot reach the Kubernetes API server"),
            "{text}"
        );
        assert!(text.contains("KUBECONFIG=/tmp/k"), "{text}");
        assert_eq!(text.matches("connection refused").count(), 1, "{text}");
    }
}
