//! Lease-based leader election, so that only one replica changes AWS or writes status.
//!
//! A replica acquires the Lease before it starts any controller and renews it every
//! `renew` interval. Updates carry the Lease's resourceVersion, so two candidates racing for an
//! expired Lease cannot both win (the loser gets a 409). A leader that fails to renew within
//! the lease duration stops the process: a replica that might no longer lead must not act, and
//! Kubernetes restarts it as a standby.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use std::time::Duration;

/// Lease settings of one candidate.
#[derive(Clone, Debug)]
pub struct Election {
    pub api: Api<Lease>,
    pub name: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_every: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("failed to read lease {name}")]
    Get {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to write lease {name}")]
    Write {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("lease {name} kept changing under every write")]
    Contended { name: String },
}

/// How many times one attempt re-reads the Lease after its write met a 409 Conflict.
const CONFLICT_RETRIES: usize = 3;

/// The outcome of one read-then-write of the Lease.
enum Attempt {
    Won,
    /// Someone else holds a Lease that has not run out.
    HeldByOther,
    /// The Lease changed between the read and the write (409): read it again.
    Conflict,
}

/// Whether a lease held by someone else has run out at `now`.
pub fn expired(spec: &LeaseSpec, now: Timestamp) -> bool {
    let Some(renewed) = spec.renew_time.as_ref().map(|t| t.0) else {
        return true;
    };
    let seconds = i64::from(spec.lease_duration_seconds.unwrap_or(15));
    renewed + SignedDuration::from_secs(seconds) < now
}

impl Election {
    /// Tries to take or keep the lease. `Ok(true)` means this candidate leads now, `Ok(false)`
    /// that another holder does. A 409 only says that someone wrote the Lease since it was
    /// read (an admin's annotation, or a rival candidate): the Lease is read again to see who
    /// holds it, so that a leader is never stopped by a write that did not take its place.
    pub async fn try_acquire(&self) -> Result<bool, LeaseError> {
        for _ in 0..CONFLICT_RETRIES {
            match self.attempt().await? {
                Attempt::Won => return Ok(true),
                Attempt::HeldByOther => return Ok(false),
                Attempt::Conflict => continue,
            }
        }
        Err(LeaseError::Contended {
            name: self.name.clone(),
        })
    }

    async fn attempt(&self) -> Result<Attempt, LeaseError> {
        let now = Timestamp::now();
        let existing = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|source| LeaseError::Get {
                name: self.name.clone(),
                source,
            })?;
        let Some(mut lease) = existing else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(self.spec(now, None, 0)),
            };
            return self.write(self.api.create(&PostParams::default(), &lease).await);
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let mine = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        if !mine && !expired(&spec, now) {
            return Ok(Attempt::HeldByOther);
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!mine);
        let acquired = if mine {
            spec.acquire_time.clone()
        } else {
            None
        };
        lease.spec = Some(self.spec(now, acquired, transitions));
        self.write(
            self.api
                .replace(&self.name, &PostParams::default(), &lease)
                .await,
        )
    }

    fn spec(&self, now: Timestamp, acquired: Option<MicroTime>, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.lease_duration.as_secs() as i32),
            acquire_time: Some(acquired.unwrap_or(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    fn write(&self, result: Result<Lease, kube::Error>) -> Result<Attempt, LeaseError> {
        match result {
            Ok(_) => Ok(Attempt::Won),
            // Someone else wrote first; who holds the Lease now decides.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(Attempt::Conflict),
            Err(source) => Err(LeaseError::Write {
                name: self.name.clone(),
                source,
            }),
        }
    }

    /// Waits until this candidate leads.
    pub async fn acquire(&self) {
        loop {
            match self.try_acquire().await {
                Ok(true) => return,
                Ok(false) => {}
                Err(err) => tracing::warn!(error = %err, "Leader election attempt failed"),
            }
            tokio::time::sleep(self.renew_every).await;
        }
    }

    /// Renews the lease until it cannot; returns when leadership is lost.
    pub async fn keep(&self) {
        let mut last_renewal = tokio::time::Instant::now();
        let mut wait = self.renew_every;
        // Stop this long before the lease can lapse, so that two leaders never overlap.
        let margin = (self.lease_duration / 6).max(Duration::from_secs(1));
        loop {
            tokio::time::sleep(wait).await;
            // A renewal that hangs must not outlive the lease either.
            let left = self
                .lease_duration
                .saturating_sub(margin + last_renewal.elapsed());
            let renewal = match tokio::time::timeout(left, self.try_acquire()).await {
                Ok(renewal) => renewal,
                Err(_) => return,
            };
            match renewal {
                Ok(true) => {
                    last_renewal = tokio::time::Instant::now();
                    wait = self.renew_every;
                }
                Ok(false) => return,
                Err(err) => {
                    tracing::warn!(error = %err, "Lease renewal failed");
                    if last_renewal.elapsed() + margin >= self.lease_duration {
                        return;
                    }
                    // Try again soon: an API server restart of a few seconds must not cost
                    // the lease just because the next regular renewal came too late.
                    wait = Duration::from_secs(1).min(self.renew_every);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_expires_after_its_duration_since_renewal() {
        let now = Timestamp::from_second(1_000).unwrap_or(Timestamp::UNIX_EPOCH);
        let spec = |renewed: i64| LeaseSpec {
            renew_time: Timestamp::from_second(renewed).ok().map(MicroTime),
            lease_duration_seconds: Some(15),
            ..Default::default()
        };
        assert!(!expired(&spec(990), now));
        assert!(expired(&spec(980), now));
        assert!(expired(&LeaseSpec::default(), now));
    }
}
