//! Image pulls for a pod's containers (upstream's `image_manager.go`): pull policy, pull
//! secrets (parsed by `rkube_cri::auths_from_dockerconfigjson`), `Pulling`/`Pulled`/
//! `Failed`/`BackOff` events and the `ErrImagePull` → `ImagePullBackOff` progression.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod};
use rkube_cri::{AuthConfig, ImageService};

use crate::backoff::Backoff;
use crate::events::{NORMAL, Recorder, WARNING, container_field_path};

/// `imagePullPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullPolicy {
    /// Pull every time a container starts.
    Always,
    /// Pull when absent.
    IfNotPresent,
    /// Never pull.
    Never,
}

/// Whether an image reference names a tag or digest (`busybox` has neither).
fn has_tag_or_digest(image: &str) -> (bool, bool) {
    let last = image.rsplit('/').next().unwrap_or(image);
    (last.contains(':'), image.contains('@'))
}

/// The container's pull policy, defaulted as the apiserver does: `Always` for `:latest` or an
/// untagged image, else `IfNotPresent`.
pub fn pull_policy(c: &Container) -> PullPolicy {
    match c.image_pull_policy.as_deref() {
        Some("Always") => PullPolicy::Always,
        Some("Never") => PullPolicy::Never,
        Some("IfNotPresent") => PullPolicy::IfNotPresent,
        _ => {
            let image = c.image.as_deref().unwrap_or_default();
            let (tag, digest) = has_tag_or_digest(image);
            if digest || (tag && !image.ends_with(":latest")) {
                PullPolicy::IfNotPresent
            } else {
                PullPolicy::Always
            }
        }
    }
}

/// Credentials from a `kubernetes.io/dockerconfigjson` (`{"auths": {...}}`) or legacy
/// `kubernetes.io/dockercfg` (the map alone) secret value. A value that does not parse gives
/// none (the pull then goes on with the other secrets, or anonymously, as upstream's does).
pub fn auths_from_dockerconfigjson(bytes: &[u8]) -> Vec<AuthConfig> {
    rkube_cri::auths_from_dockerconfigjson(bytes).unwrap_or_else(|e| {
        tracing::warn!("ignoring an image pull secret: {e}");
        Vec::new()
    })
}

/// Go's `time.Duration` text at millisecond precision (`350ms`, `1.2s`, `1m3.5s`).
pub fn go_duration_ms(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = (ms % 60_000) as f64 / 1000.0;
    let s = format!("{secs:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if ms >= 60_000 {
        format!("{}m{}s", ms / 60_000, s)
    } else {
        format!("{s}s")
    }
}

/// Why an image is not ready: the container's waiting reason and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageWait {
    /// `ErrImagePull`, `ImagePullBackOff`, `ErrImageNeverPull`, `InvalidImageName`.
    pub reason: String,
    /// The message.
    pub message: String,
}

/// Pulls images for one pod, remembering the last error per image for back-off messages.
#[derive(Debug, Default)]
pub struct Puller {
    last_error: HashMap<String, (String, i64)>,
}

impl Puller {
    /// Makes sure `container`'s image is present per its pull policy; returns the image id.
    #[allow(clippy::too_many_arguments)]
    pub async fn ensure(
        &mut self,
        images: &dyn ImageService,
        pod: &Pod,
        container: &Container,
        auths: &[AuthConfig],
        recorder: &Recorder,
        backoff: &Backoff,
        now: i64,
    ) -> Result<String, ImageWait> {
        let image = container.image.clone().unwrap_or_default();
        let fp = Some(container_field_path(pod, &container.name));
        let event = |t: &str, reason: &str, msg: String| {
            recorder.pod_event(pod, fp.clone(), t, reason, msg)
        };
        if image.trim().is_empty() {
            let message = format!(
                "Failed to apply default image tag \"{image}\": couldn't parse image name \"{image}\": invalid reference format"
            );
            event(WARNING, "InspectFailed", message.clone());
            return Err(ImageWait {
                reason: "InvalidImageName".into(),
                message,
            });
        }
        let policy = pull_policy(container);
        let present = match images.image_status(&image).await {
            Ok(p) => p,
            Err(rkube_cri::Error::InvalidImageName(e)) => {
                let message = format!("Failed to apply default image tag \"{image}\": {e}");
                event(WARNING, "InspectFailed", message.clone());
                return Err(ImageWait {
                    reason: "InvalidImageName".into(),
                    message,
                });
            }
            Err(_) => None,
        };
        if policy != PullPolicy::Always
            && let Some(img) = &present
        {
            event(
                NORMAL,
                "Pulled",
                format!(
                    "Container image \"{image}\" already present on machine and can be accessed by the pod"
                ),
            );
            return Ok(img.id.clone());
        }
        if policy == PullPolicy::Never {
            let message =
                format!("Container image \"{image}\" is not present with pull policy of Never");
            event(WARNING, "ErrImageNeverPull", message.clone());
            return Err(ImageWait {
                reason: "ErrImageNeverPull".into(),
                message,
            });
        }
        let key = format!(
            "{}/image:{image}",
            pod.metadata.uid.as_deref().unwrap_or_default()
        );
        if let Some((err, failed_at)) = self.last_error.get(&image)
            && backoff.in_backoff_since(&key, *failed_at, now)
        {
            event(
                NORMAL,
                "BackOff",
                format!("Back-off pulling image \"{image}\""),
            );
            return Err(ImageWait {
                reason: "ImagePullBackOff".into(),
                message: format!("Back-off pulling image \"{image}\": ErrImagePull: {err}"),
            });
        }
        event(NORMAL, "Pulling", format!("Pulling image \"{image}\""));
        let started = Instant::now();
        let result = images.pull_image(&image, auths, &|_| {}).await;
        let took = go_duration_ms(started.elapsed());
        match result {
            Ok(id) => {
                self.last_error.remove(&image);
                let size = images
                    .image_status(&id)
                    .await
                    .ok()
                    .flatten()
                    .map(|i| i.size)
                    .unwrap_or_default();
                event(
                    NORMAL,
                    "Pulled",
                    format!(
                        "Successfully pulled image \"{image}\" in {took} ({took} including waiting). Image size: {size} bytes."
                    ),
                );
                Ok(id)
            }
            Err(rkube_cri::Error::InvalidImageName(e)) => {
                let message = format!("Failed to apply default image tag \"{image}\": {e}");
                event(WARNING, "InspectFailed", message.clone());
                Err(ImageWait {
                    reason: "InvalidImageName".into(),
                    message,
                })
            }
            Err(e) => {
                let msg = e.to_string();
                event(
                    WARNING,
                    "Failed",
                    format!("Failed to pull image \"{image}\": {msg}"),
                );
                event(WARNING, "Failed", "Error: ErrImagePull".to_string());
                // Back-off counts from the failure (the wall clock, not the sync's `now`).
                let failed_at = jiff::Timestamp::now().as_nanosecond() as i64;
                let failed_at = failed_at.max(now);
                backoff.next(&key, failed_at);
                self.last_error
                    .insert(image.clone(), (msg.clone(), failed_at));
                Err(ImageWait {
                    reason: "ErrImagePull".into(),
                    message: msg,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use serde_json::json;

    fn c(image: &str, policy: Option<&str>) -> Container {
        let mut v = json!({"name": "web", "image": image});
        if let Some(p) = policy {
            v["imagePullPolicy"] = json!(p);
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn default_pull_policy() {
        assert_eq!(pull_policy(&c("busybox", None)), PullPolicy::Always);
        assert_eq!(pull_policy(&c("busybox:latest", None)), PullPolicy::Always);
        assert_eq!(
            pull_policy(&c("busybox:1.36", None)),
            PullPolicy::IfNotPresent
        );
        assert_eq!(
            pull_policy(&c("127.0.0.1:5000/app", None)),
            PullPolicy::Always
        );
        assert_eq!(
            pull_policy(&c("127.0.0.1:5000/app:v1", None)),
            PullPolicy::IfNotPresent
        );
        assert_eq!(
            pull_policy(&c("busybox@sha256:abc", None)),
            PullPolicy::IfNotPresent
        );
        assert_eq!(pull_policy(&c("busybox", Some("Never"))), PullPolicy::Never);
    }

    #[test]
    fn dockerconfigjson() {
        let auth = base64::engine::general_purpose::STANDARD.encode("bob:secret");
        let doc = json!({"auths": {
            "https://index.docker.io/v1/": {"auth": auth},
            "127.0.0.1:5000": {"username": "u", "password": "p"},
        }});
        let mut a = auths_from_dockerconfigjson(doc.to_string().as_bytes());
        a.sort_by(|x, y| x.server_address.cmp(&y.server_address));
        assert_eq!(a[0].server_address, "127.0.0.1:5000");
        assert_eq!((a[0].username.as_str(), a[0].password.as_str()), ("u", "p"));
        // Kept as written: the image service matches hosts (index.docker.io → docker.io).
        assert_eq!(a[1].server_address, "https://index.docker.io/v1/");
        assert_eq!(
            (a[1].username.as_str(), a[1].password.as_str()),
            ("bob", "secret")
        );
        assert!(auths_from_dockerconfigjson(b"not json").is_empty());
    }

    #[test]
    fn durations() {
        assert_eq!(go_duration_ms(Duration::from_millis(350)), "350ms");
        assert_eq!(go_duration_ms(Duration::from_millis(1200)), "1.2s");
        assert_eq!(go_duration_ms(Duration::from_millis(63_500)), "1m3.5s");
    }
}
