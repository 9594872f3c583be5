//! Leader election with a coordination.k8s.io Lease: of several operator processes exactly
//! one acts. A standby only reads the Lease until it expires; the leader renews it and, on
//! a graceful shutdown, releases it so that a standby takes over at once.
//!
//! Lease times are real time, never the operator's decision clock, which tests may shift.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::{Client, ResourceExt};

/// How the Lease is held.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    /// This process, as written in the Lease (the Pod name in a cluster).
    pub identity: String,
    /// A Lease not renewed for this long is free to take.
    pub duration: Duration,
    /// The leader renews this often.
    pub renew_every: Duration,
    /// A standby looks at the Lease this often.
    pub retry_every: Duration,
}

/// What can go wrong with the Lease.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("kubernetes api: {0}")]
    Kube(#[from] kube::Error),
    #[error("lease {0} was taken over by {1}")]
    Lost(String, String),
    #[error("lease {0} could not be renewed for longer than its duration")]
    Expired(String),
}

/// Whether `lease` may be taken by `identity` at `now`.
pub fn is_free(lease: &Lease, identity: &str, now: Timestamp) -> bool {
    let Some(spec) = &lease.spec else { return true };
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder.is_empty() || holder == identity {
        return true;
    }
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(15)));
    let renewed = spec
        .renew_time
        .as_ref()
        .map_or(Timestamp::UNIX_EPOCH, |t| t.0);
    renewed
        .saturating_add(duration)
        .is_ok_and(|expiry| expiry < now)
}

fn spec_for(config: &LeaseConfig, previous: Option<&LeaseSpec>, now: Timestamp) -> LeaseSpec {
    let held_before =
        previous.and_then(|s| s.holder_identity.as_deref()) == Some(config.identity.as_str());
    let transitions = previous.and_then(|s| s.lease_transitions).unwrap_or(0);
    LeaseSpec {
        holder_identity: Some(config.identity.clone()),
        lease_duration_seconds: Some(i32::try_from(config.duration.as_secs()).unwrap_or(15)),
        acquire_time: if held_before {
            previous.and_then(|s| s.acquire_time.clone())
        } else {
            Some(MicroTime(now))
        },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(if held_before {
            transitions
        } else {
            transitions + 1
        }),
        ..LeaseSpec::default()
    }
}

/// Waits until this process holds the Lease.
pub async fn acquire(client: &Client, config: &LeaseConfig) -> Result<(), LeaseError> {
    let api: Api<Lease> = Api::namespaced(client.clone(), &config.namespace);
    loop {
        if try_take(&api, config).await? {
            tracing::info!(lease = %config.name, identity = %config.identity, "became the leader");
            return Ok(());
        }
        tokio::time::sleep(config.retry_every).await;
    }
}

/// One attempt to take or renew the Lease; false when another process holds it.
async fn try_take(api: &Api<Lease>, config: &LeaseConfig) -> Result<bool, LeaseError> {
    let now = Timestamp::now();
    let result = match api.get_opt(&config.name).await? {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(config.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(spec_for(config, None, now)),
            };
            api.create(&PostParams::default(), &lease)
                .await
                .map(|_| true)
        }
        Some(lease) if is_free(&lease, &config.identity, now) => {
            let mut next = lease.clone();
            next.spec = Some(spec_for(config, lease.spec.as_ref(), now));
            // The resourceVersion makes the write fail if another process got there first.
            api.replace(&config.name, &PostParams::default(), &next)
                .await
                .map(|_| true)
        }
        Some(_) => Ok(false),
    };
    match result {
        Ok(taken) => Ok(taken),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(error) => Err(error.into()),
    }
}

/// Renews the Lease until it is lost; returns why.
pub async fn hold(client: &Client, config: &LeaseConfig) -> LeaseError {
    let api: Api<Lease> = Api::namespaced(client.clone(), &config.namespace);
    let mut last_renewed = std::time::Instant::now();
    loop {
        tokio::time::sleep(config.renew_every).await;
        match try_take(&api, config).await {
            Ok(true) => last_renewed = std::time::Instant::now(),
            Ok(false) => {
                let holder = api
                    .get_opt(&config.name)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|l| l.spec?.holder_identity);
                return LeaseError::Lost(config.name.clone(), holder.unwrap_or_default());
            }
            Err(error) => {
                tracing::warn!(lease = %config.name, error = %error, "lease renewal failed")
            }
        }
        if last_renewed.elapsed() > config.duration {
            return LeaseError::Expired(config.name.clone());
        }
    }
}

/// Gives the Lease up, so that a standby takes over without waiting for it to expire.
pub async fn release(client: &Client, config: &LeaseConfig) {
    let api: Api<Lease> = Api::namespaced(client.clone(), &config.namespace);
    let Ok(Some(mut lease)) = api.get_opt(&config.name).await else {
        return;
    };
    let held = lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.as_deref())
        == Some(config.identity.as_str());
    if !held {
        return;
    }
    if let Some(spec) = lease.spec.as_mut() {
        spec.holder_identity = None;
        spec.renew_time = None;
        spec.acquire_time = None;
    }
    match api
        .replace(&lease.name_any(), &PostParams::default(), &lease)
        .await
    {
        Ok(_) => tracing::info!(lease = %config.name, "released the lease"),
        Err(error) => {
            tracing::warn!(lease = %config.name, error = %error, "could not release the lease")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, renewed: &str, seconds: i32) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                renew_time: Some(MicroTime(renewed.parse().unwrap())),
                lease_duration_seconds: Some(seconds),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn a_lease_held_and_renewed_by_another_is_not_free() {
        let now: Timestamp = "2026-12-03T10:00:10Z".parse().unwrap();
        assert!(!is_free(
            &lease("other", "2026-12-03T10:00:00Z", 15),
            "me",
            now
        ));
    }

    #[test]
    fn an_expired_lease_is_free() {
        let now: Timestamp = "2026-12-03T10:00:16Z".parse().unwrap();
        assert!(is_free(
            &lease("other", "2026-12-03T10:00:00Z", 15),
            "me",
            now
        ));
    }

    #[test]
    fn a_released_or_own_lease_is_free() {
        let now: Timestamp = "2026-12-03T10:00:01Z".parse().unwrap();
        assert!(is_free(&lease("", "2026-12-03T10:00:00Z", 15), "me", now));
        assert!(is_free(&lease("me", "2026-12-03T10:00:00Z", 15), "me", now));
    }
}
