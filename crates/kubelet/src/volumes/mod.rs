//! Pod volumes: setting them up on the node before the pod's containers start, keeping the
//! API-backed ones (configMap, secret, downwardAPI, projected) current while the pod runs, the
//! bind mounts each container gets, and teardown.
//!
//! Layout, as upstream's: `<root>/pods/<uid>/volumes/kubernetes.io~<kind>/<name>` with kinds
//! `empty-dir`, `configmap`, `secret`, `downward-api`, `projected`. Secret and projected
//! volumes (and `emptyDir.medium: Memory`) are tmpfs mounts, so their contents never reach
//! the disk. hostPath volumes are the host path itself.
//!
//! Supported: emptyDir, hostPath (with `type` checks), configMap, secret, downwardAPI,
//! projected (configMap, secret, downwardAPI and serviceAccountToken sources), and
//! persistentVolumeClaim / generic ephemeral volumes whose PersistentVolume is a hostPath or
//! local volume. Anything else fails with a message naming the type.

pub mod atomic_writer;
pub mod hostpath;
pub mod mount;
pub mod sources;

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{
    Container, PersistentVolume, PersistentVolumeClaim, Pod, ServiceAccount,
    ServiceAccountTokenProjection, Volume,
};
use kube::Client;
use kube::api::{Api, PostParams};

use crate::envvars::Sources;
use atomic_writer::Payload;

/// Mode of files in configMap, secret, downwardAPI and projected volumes unless
/// `defaultMode` says otherwise (upstream's 0644).
pub const DEFAULT_MODE: u32 = 0o644;
/// Token lifetime when `expirationSeconds` is not given (upstream's default).
pub const DEFAULT_TOKEN_EXPIRATION_SECONDS: i64 = 3600;

/// A volume operation that failed. [`VolumeError::message`] is the text of the `FailedMount`
/// (or `FailedUnmount`) event, as upstream words it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.message())]
pub struct VolumeError {
    /// The operation: `MountVolume.SetUp`, `UnmountVolume.TearDown`, or empty for errors in
    /// preparing a container's mounts (reported as `CreateContainerConfigError`).
    pub op: &'static str,
    /// The volume concerned, if one.
    pub volume: Option<String>,
    /// What went wrong, e.g. `configmap "nope" not found`.
    pub detail: String,
}

impl VolumeError {
    fn setup(volume: &str, detail: impl Into<String>) -> Self {
        VolumeError {
            op: "MountVolume.SetUp",
            volume: Some(volume.to_string()),
            detail: detail.into(),
        }
    }

    fn container(detail: impl Into<String>) -> Self {
        VolumeError {
            op: "",
            volume: None,
            detail: detail.into(),
        }
    }

    /// The event message: `MountVolume.SetUp failed for volume "cfg" : configmap "nope" not
    /// found`.
    pub fn message(&self) -> String {
        match (self.op, &self.volume) {
            ("", _) => self.detail.clone(),
            (op, Some(v)) => format!("{op} failed for volume {v:?} : {}", self.detail),
            (op, None) => format!("{op} failed : {}", self.detail),
        }
    }

    /// The event reason: `FailedMount` for set-up errors, `FailedUnmount` for teardown.
    pub fn reason(&self) -> &'static str {
        match self.op {
            "UnmountVolume.TearDown" => "FailedUnmount",
            _ => "FailedMount",
        }
    }
}

/// A token from the TokenRequest API and when to renew it.
#[derive(Clone)]
struct CachedToken {
    token: String,
    renew_at: Instant,
}

/// Sets up, refreshes and tears down pod volumes under `<root>/pods/<uid>`.
pub struct VolumeManager {
    client: Client,
    root: PathBuf,
    /// Tokens by pod uid and projection, so refreshes don't request a token every time.
    tokens: Mutex<HashMap<String, CachedToken>>,
}

/// The kind of a volume, by the upstream plugin name used in its directory.
fn plugin_dir(v: &Volume) -> Option<&'static str> {
    if v.empty_dir.is_some() {
        Some("kubernetes.io~empty-dir")
    } else if v.config_map.is_some() {
        Some("kubernetes.io~configmap")
    } else if v.secret.is_some() {
        Some("kubernetes.io~secret")
    } else if v.downward_api.is_some() {
        Some("kubernetes.io~downward-api")
    } else if v.projected.is_some() {
        Some("kubernetes.io~projected")
    } else {
        None
    }
}

/// The name of the volume's type as it appears in a pod spec, for error messages.
fn type_name(v: &Volume) -> &'static str {
    let checks: [(&str, bool); 22] = [
        ("awsElasticBlockStore", v.aws_elastic_block_store.is_some()),
        ("azureDisk", v.azure_disk.is_some()),
        ("azureFile", v.azure_file.is_some()),
        ("cephfs", v.cephfs.is_some()),
        ("cinder", v.cinder.is_some()),
        ("csi", v.csi.is_some()),
        ("fc", v.fc.is_some()),
        ("flexVolume", v.flex_volume.is_some()),
        ("flocker", v.flocker.is_some()),
        ("gcePersistentDisk", v.gce_persistent_disk.is_some()),
        ("gitRepo", v.git_repo.is_some()),
        ("glusterfs", v.glusterfs.is_some()),
        ("image", v.image.is_some()),
        ("iscsi", v.iscsi.is_some()),
        ("nfs", v.nfs.is_some()),
        ("photonPersistentDisk", v.photon_persistent_disk.is_some()),
        ("portworxVolume", v.portworx_volume.is_some()),
        ("quobyte", v.quobyte.is_some()),
        ("rbd", v.rbd.is_some()),
        ("scaleIO", v.scale_io.is_some()),
        ("storageos", v.storageos.is_some()),
        ("vsphereVolume", v.vsphere_volume.is_some()),
    ];
    checks
        .into_iter()
        .find(|(_, set)| *set)
        .map_or("unknown", |(n, _)| n)
}

fn mode_of(m: Option<i32>, default: u32) -> u32 {
    m.map_or(default, |m| (m as u32) & 0o7777)
}

fn fs_group(pod: &Pod) -> Option<u32> {
    pod.spec
        .as_ref()?
        .security_context
        .as_ref()?
        .fs_group
        .and_then(|g| u32::try_from(g).ok())
}

/// With an `fsGroup`, files become group-readable as upstream's `SetVolumeOwnership` makes
/// read-only volumes (`mode | 0440`).
fn apply_fs_group(payload: &mut Payload, gid: Option<u32>) {
    if gid.is_some() {
        for f in payload.values_mut() {
            f.mode |= 0o440;
        }
    }
}

impl VolumeManager {
    /// A manager writing under `root` (`<data-dir>/agent/kubelet`).
    pub fn new(client: Client, root: PathBuf) -> Self {
        VolumeManager {
            client,
            root,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// `<root>/pods/<uid>`.
    pub fn pod_dir(&self, pod_uid: &str) -> PathBuf {
        self.root.join("pods").join(pod_uid)
    }

    fn volume_dir(&self, pod_uid: &str, plugin: &str, name: &str) -> PathBuf {
        self.pod_dir(pod_uid)
            .join("volumes")
            .join(plugin)
            .join(name)
    }

    /// Sets up every volume of the pod and returns the host path of each by name. Idempotent:
    /// a second call refreshes API-backed contents and keeps mounts.
    pub async fn setup(&self, pod: &Pod) -> Result<BTreeMap<String, PathBuf>, VolumeError> {
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        if uid.is_empty() {
            return Err(VolumeError::setup("", "pod has no uid"));
        }
        let mut out = BTreeMap::new();
        for v in pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.as_ref())
            .into_iter()
            .flatten()
        {
            let path = self.setup_one(pod, uid, v).await?;
            out.insert(v.name.clone(), path);
        }
        Ok(out)
    }

    async fn setup_one(&self, pod: &Pod, uid: &str, v: &Volume) -> Result<PathBuf, VolumeError> {
        let err = |d: String| VolumeError::setup(&v.name, d);
        let io =
            |what: &str, p: &Path, e: std::io::Error| err(format!("{what} {}: {e}", p.display()));
        if let Some(h) = &v.host_path {
            hostpath::check_type(&h.path, h.type_.as_deref()).map_err(err)?;
            return Ok(PathBuf::from(&h.path));
        }
        if v.persistent_volume_claim.is_some() || v.ephemeral.is_some() {
            return self.claim_path(pod, v).await;
        }
        let Some(plugin) = plugin_dir(v) else {
            return Err(err(format!(
                "volume type {} is not supported by rkube's kubelet yet (supported: emptyDir, \
                 hostPath, configMap, secret, downwardAPI, projected, and persistentVolumeClaim \
                 bound to a hostPath or local PersistentVolume)",
                type_name(v)
            )));
        };
        let dir = self.volume_dir(uid, plugin, &v.name);
        let fresh = !dir.exists();
        std::fs::create_dir_all(&dir).map_err(|e| io("mkdir", &dir, e))?;
        if fresh {
            // Wrapped volumes start as an emptyDir, world-writable as upstream's.
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
                .map_err(|e| io("chmod", &dir, e))?;
        }
        let tmpfs_size = if let Some(e) = &v.empty_dir {
            match e.medium.as_deref().unwrap_or("") {
                "" => None,
                "Memory" => Some(
                    e.size_limit
                        .as_ref()
                        .and_then(|q| rkube_core::quantity::value(&q.0).ok())
                        .unwrap_or(0) as u64,
                ),
                other => return Err(err(format!("emptyDir medium {other:?} is not supported"))),
            }
        } else if v.secret.is_some() || v.projected.is_some() {
            Some(0)
        } else {
            None
        };
        if let Some(size) = tmpfs_size {
            let size = (size > 0).then_some(size);
            if let Err(e) = mount::mount_tmpfs(&dir, size) {
                if v.empty_dir.is_some() {
                    return Err(io("mounting tmpfs on", &dir, e));
                }
                // Secrets still work on disk; only the tmpfs guarantee is lost.
                tracing::warn!(
                    "volume {}: mounting tmpfs on {}: {e}; using the disk",
                    v.name,
                    dir.display()
                );
            }
        }
        if v.empty_dir.is_some() {
            if let Some(g) = fs_group(pod) {
                let _ = std::os::unix::fs::chown(&dir, None, Some(g));
                let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o2777));
            }
            return Ok(dir);
        }
        self.write_contents(pod, v, &dir).await?;
        Ok(dir)
    }

    /// Builds and atomically writes an API-backed volume's files.
    async fn write_contents(&self, pod: &Pod, v: &Volume, dir: &Path) -> Result<(), VolumeError> {
        let mut payload = self
            .payload(pod, v)
            .await
            .map_err(|d| VolumeError::setup(&v.name, d))?;
        let gid = fs_group(pod);
        apply_fs_group(&mut payload, gid);
        atomic_writer::write(dir, &payload, gid)
            .map(|_| ())
            .map_err(|e| VolumeError::setup(&v.name, format!("writing {}: {e}", dir.display())))
    }

    /// The files of a configMap, secret, downwardAPI or projected volume.
    async fn payload(&self, pod: &Pod, v: &Volume) -> Result<Payload, String> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let mut src = Sources::new(&self.client, ns);
        let fetch_err = |e: crate::envvars::ConfigError| e.0;
        if let Some(c) = &v.config_map {
            let cm = src.config_map(&c.name).await.map_err(fetch_err)?;
            let optional = c.optional.unwrap_or(false);
            let default = mode_of(c.default_mode, DEFAULT_MODE);
            return match cm {
                None if optional => Ok(Payload::new()),
                None => Err(format!("configmap {:?} not found", c.name)),
                Some(cm) => sources::key_payload(
                    sources::config_map_data(&cm),
                    c.items.as_deref(),
                    default,
                    optional,
                    "configmap references non-existent config key",
                ),
            };
        }
        if let Some(s) = &v.secret {
            let name = s.secret_name.clone().unwrap_or_default();
            let secret = src.secret(&name).await.map_err(fetch_err)?;
            let optional = s.optional.unwrap_or(false);
            let default = mode_of(s.default_mode, DEFAULT_MODE);
            return match secret {
                None if optional => Ok(Payload::new()),
                None => Err(format!("secret {name:?} not found")),
                Some(sec) => sources::key_payload(
                    sources::secret_data(&sec),
                    s.items.as_deref(),
                    default,
                    optional,
                    "references non-existent secret key",
                ),
            };
        }
        if let Some(d) = &v.downward_api {
            let default = mode_of(d.default_mode, DEFAULT_MODE);
            let items = d.items.as_deref().unwrap_or(&[]);
            let alloc = if items.iter().any(|i| i.resource_field_ref.is_some()) {
                crate::envvars::node_allocatable(&self.client, pod).await
            } else {
                BTreeMap::new()
            };
            return sources::downward_payload(pod, items, default, &alloc);
        }
        if let Some(p) = &v.projected {
            let default = mode_of(p.default_mode, DEFAULT_MODE);
            let mut out = Payload::new();
            let mut errors: Vec<String> = Vec::new();
            let mut alloc = None;
            for s in p.sources.iter().flatten() {
                let part = if let Some(c) = &s.config_map {
                    let optional = c.optional.unwrap_or(false);
                    match src.config_map(&c.name).await.map_err(fetch_err)? {
                        None if optional => continue,
                        None => Err(format!("configmap {:?} not found", c.name)),
                        Some(cm) => sources::key_payload(
                            sources::config_map_data(&cm),
                            c.items.as_deref(),
                            default,
                            optional,
                            "configmap references non-existent config key",
                        ),
                    }
                } else if let Some(sec) = &s.secret {
                    let optional = sec.optional.unwrap_or(false);
                    let name = sec.name.clone();
                    match src.secret(&name).await.map_err(fetch_err)? {
                        None if optional => continue,
                        None => Err(format!("secret {name:?} not found")),
                        Some(obj) => sources::key_payload(
                            sources::secret_data(&obj),
                            sec.items.as_deref(),
                            default,
                            optional,
                            "references non-existent secret key",
                        ),
                    }
                } else if let Some(d) = &s.downward_api {
                    let items = d.items.as_deref().unwrap_or(&[]);
                    if alloc.is_none() && items.iter().any(|i| i.resource_field_ref.is_some()) {
                        alloc = Some(crate::envvars::node_allocatable(&self.client, pod).await);
                    }
                    sources::downward_payload(
                        pod,
                        items,
                        default,
                        alloc.as_ref().unwrap_or(&BTreeMap::new()),
                    )
                } else if let Some(t) = &s.service_account_token {
                    self.token(pod, t).await.map(|tok| {
                        Payload::from([(
                            t.path.clone(),
                            atomic_writer::FileProjection {
                                data: tok.into_bytes(),
                                mode: default,
                            },
                        )])
                    })
                } else if s.cluster_trust_bundle.is_some() {
                    Err(
                        "clusterTrustBundle projections are not supported by rkube's kubelet yet"
                            .into(),
                    )
                } else if s.pod_certificate.is_some() {
                    Err(
                        "podCertificate projections are not supported by rkube's kubelet yet"
                            .into(),
                    )
                } else {
                    continue;
                };
                match part {
                    Ok(p) => out.extend(p),
                    Err(e) => errors.push(e),
                }
            }
            return match errors.len() {
                0 => Ok(out),
                1 => Err(errors.remove(0)),
                _ => Err(format!("[{}]", errors.join(", "))),
            };
        }
        Ok(Payload::new())
    }

    /// A service account token for a `serviceAccountToken` projection, from the TokenRequest
    /// API, bound to the pod; reused until 80% of its lifetime (at most 24 h) has passed, as
    /// upstream's token manager does.
    async fn token(&self, pod: &Pod, t: &ServiceAccountTokenProjection) -> Result<String, String> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let sa = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.as_deref())
            .filter(|s| !s.is_empty())
            .unwrap_or("default");
        let expiration = t
            .expiration_seconds
            .unwrap_or(DEFAULT_TOKEN_EXPIRATION_SECONDS);
        let audience = t.audience.clone().unwrap_or_default();
        let key = format!("{uid}/{sa}/{audience}/{expiration}");
        if let Some(c) = self.tokens.lock().expect("token cache").get(&key)
            && Instant::now() < c.renew_at
        {
            return Ok(c.token.clone());
        }
        let req: TokenRequest = serde_json::from_value(serde_json::json!({
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {
                "audiences": if audience.is_empty() { vec![] } else { vec![audience.clone()] },
                "expirationSeconds": expiration,
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": name, "uid": uid},
            },
        }))
        .map_err(|e| format!("building the token request: {e}"))?;
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), ns);
        let resp = api
            .create_token_request(sa, &PostParams::default(), &req)
            .await
            .map_err(|e| format!("failed to fetch token: {e}"))?;
        let status = resp
            .status
            .ok_or_else(|| "failed to fetch token: the response has no status".to_string())?;
        let lifetime = {
            let until =
                status.expiration_timestamp.0.as_second() - jiff::Timestamp::now().as_second();
            Duration::from_secs(until.max(1) as u64)
        };
        let renew_in = (lifetime.mul_f64(0.8)).min(Duration::from_secs(24 * 3600));
        self.tokens.lock().expect("token cache").insert(
            key,
            CachedToken {
                token: status.token.clone(),
                renew_at: Instant::now() + renew_in,
            },
        );
        Ok(status.token)
    }

    /// The host path of a PVC (or generic ephemeral) volume whose bound PersistentVolume is a
    /// hostPath or local volume.
    async fn claim_path(&self, pod: &Pod, v: &Volume) -> Result<PathBuf, VolumeError> {
        let err = |d: String| VolumeError::setup(&v.name, d);
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let claim = match &v.persistent_volume_claim {
            Some(c) => c.claim_name.clone(),
            None => format!(
                "{}-{}",
                pod.metadata.name.as_deref().unwrap_or_default(),
                v.name
            ),
        };
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
        let pvc = pvcs
            .get_opt(&claim)
            .await
            .map_err(|e| {
                err(format!(
                    "error reading persistentvolumeclaim {ns}/{claim}: {e}"
                ))
            })?
            .ok_or_else(|| err(format!("persistentvolumeclaim {claim:?} not found")))?;
        let phase = pvc
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        let pv_name = pvc
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.clone())
            .unwrap_or_default();
        if phase != "Bound" || pv_name.is_empty() {
            return Err(err(format!(
                "PVC {ns}/{claim} has non-bound phase ({phase:?}) or empty pvc.Spec.VolumeName ({pv_name:?})"
            )));
        }
        let pvs: Api<PersistentVolume> = Api::all(self.client.clone());
        let pv = pvs
            .get(&pv_name)
            .await
            .map_err(|e| err(format!("error reading persistentvolume {pv_name}: {e}")))?;
        let spec = pv.spec.unwrap_or_default();
        if let Some(h) = spec.host_path {
            hostpath::check_type(&h.path, h.type_.as_deref()).map_err(err)?;
            return Ok(PathBuf::from(h.path));
        }
        if let Some(l) = spec.local {
            return Ok(PathBuf::from(l.path));
        }
        Err(err(format!(
            "persistentvolume {pv_name} is not a hostPath or local volume, the kinds rkube's kubelet supports"
        )))
    }

    /// Re-syncs the contents of the pod's configMap, secret, downwardAPI and projected volumes
    /// (changed objects, labels and annotations, renewed tokens). Unchanged contents are not
    /// rewritten; a failure leaves the previous contents in place.
    pub async fn refresh(&self, pod: &Pod) -> Result<(), VolumeError> {
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let mut first_err = None;
        for v in pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.as_ref())
            .into_iter()
            .flatten()
        {
            let Some(plugin) = plugin_dir(v).filter(|p| *p != "kubernetes.io~empty-dir") else {
                continue;
            };
            let dir = self.volume_dir(uid, plugin, &v.name);
            if !dir.exists() {
                continue; // not set up (yet)
            }
            if let Err(e) = self.write_contents(pod, v, &dir).await {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Unmounts the pod's tmpfs volumes and removes `<root>/pods/<uid>`. Idempotent.
    pub async fn teardown(&self, pod_uid: &str) -> Result<(), VolumeError> {
        let err = |d: String| VolumeError {
            op: "UnmountVolume.TearDown",
            volume: None,
            detail: d,
        };
        if pod_uid.is_empty() || pod_uid.contains('/') || pod_uid.starts_with('.') {
            return Err(err(format!("invalid pod uid {pod_uid:?}")));
        }
        self.tokens
            .lock()
            .expect("token cache")
            .retain(|k, _| !k.starts_with(&format!("{pod_uid}/")));
        let dir = self.pod_dir(pod_uid);
        if !dir.exists() {
            return Ok(());
        }
        let d2 = dir.clone();
        tokio::task::spawn_blocking(move || -> Result<(), String> {
            mount::unmount_under(&d2).map_err(|e| e.to_string())?;
            std::fs::remove_dir_all(&d2).map_err(|e| format!("removing {}: {e}", d2.display()))
        })
        .await
        .map_err(|e| err(e.to_string()))?
        .map_err(err)
    }
}

/// Whether a volume's contents are read-only by nature (upstream plugins report
/// `ReadOnly: true` for these, so they are always mounted read-only).
fn read_only_kind(v: &Volume) -> bool {
    v.config_map.is_some()
        || v.secret.is_some()
        || v.downward_api.is_some()
        || v.projected.is_some()
}

/// Checks a `subPath` as upstream's kubelet: relative, without `..`.
fn check_sub_path(p: &str) -> Result<(), String> {
    if Path::new(p).is_absolute() {
        return Err(format!("error SubPath `{p}` must not be an absolute path"));
    }
    if Path::new(p).components().any(|c| c == Component::ParentDir) {
        return Err(format!(
            "unable to provision SubPath `{p}`: must not contain '..'"
        ));
    }
    Ok(())
}

/// The bind mounts of `container`'s `volumeMounts`, given the host paths from
/// [`VolumeManager::setup`] and the container's environment (for `subPathExpr`). As upstream:
/// configMap/secret/downwardAPI/projected volumes are always read-only; a missing `subPath`
/// directory is created with the volume's permissions; a subPath may not leave its volume
/// (symlinks included).
pub fn container_mounts(
    pod: &Pod,
    container: &Container,
    volumes: &BTreeMap<String, PathBuf>,
    envs: &[(String, String)],
) -> Result<Vec<rkube_cri::Mount>, VolumeError> {
    let specs: BTreeMap<&str, &Volume> = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
        .map(|v| (v.name.as_str(), v))
        .collect();
    let env: BTreeMap<&str, &str> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut out = Vec::new();
    for m in container.volume_mounts.iter().flatten() {
        let host = volumes.get(&m.name).ok_or_else(|| {
            VolumeError::container(format!(
                "cannot find volume {:?} to mount into container {:?}",
                m.name, container.name
            ))
        })?;
        let spec = specs.get(m.name.as_str());
        let pvc_ro = spec
            .and_then(|v| v.persistent_volume_claim.as_ref())
            .and_then(|c| c.read_only)
            .unwrap_or(false);
        let readonly =
            m.read_only.unwrap_or(false) || spec.is_some_and(|v| read_only_kind(v)) || pvc_ro;
        let mut sub = m.sub_path.clone().unwrap_or_default();
        if let Some(expr) = m.sub_path_expr.as_deref().filter(|e| !e.is_empty()) {
            let mut missing = std::collections::BTreeSet::new();
            sub = crate::envvars::expand(expr, |k| match env.get(k) {
                Some(v) if !v.is_empty() => Some(v.to_string()),
                _ => {
                    missing.insert(k.to_string());
                    Some(String::new())
                }
            });
            if !missing.is_empty() {
                return Err(VolumeError::container(format!(
                    "missing value for {}",
                    missing.into_iter().collect::<Vec<_>>().join(", ")
                )));
            }
        }
        let host_path = if sub.is_empty() {
            host.clone()
        } else {
            check_sub_path(&sub).map_err(VolumeError::container)?;
            let p = host.join(&sub);
            if std::fs::symlink_metadata(&p).is_err() {
                let perm = std::fs::metadata(host)
                    .map(|m| m.permissions().mode() & 0o7777)
                    .unwrap_or(0o755);
                std::fs::create_dir_all(&p)
                    .and_then(|_| std::fs::set_permissions(&p, std::fs::Permissions::from_mode(perm)))
                    .map_err(|e| VolumeError::container(format!("failed to create subPath directory for volumeMount {:?} of container {:?}: {e}", m.name, container.name)))?;
            }
            let base = std::fs::canonicalize(host)
                .map_err(|e| VolumeError::container(format!("{}: {e}", host.display())))?;
            let resolved = std::fs::canonicalize(&p)
                .map_err(|e| VolumeError::container(format!("{}: {e}", p.display())))?;
            if !resolved.starts_with(&base) {
                return Err(VolumeError::container(format!(
                    "subpath {:?} not within volume path {:?}",
                    resolved.display().to_string(),
                    base.display().to_string()
                )));
            }
            resolved
        };
        out.push(rkube_cri::Mount {
            container_path: m.mount_path.clone(),
            host_path,
            readonly,
            selinux_relabel: false,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "p", "namespace": "ns", "uid": "u1"}, "spec": spec}),
        )
        .unwrap()
    }

    #[test]
    fn messages() {
        let e = VolumeError::setup("cfg", "configmap \"nope\" not found");
        assert_eq!(
            e.message(),
            "MountVolume.SetUp failed for volume \"cfg\" : configmap \"nope\" not found"
        );
        assert_eq!(e.reason(), "FailedMount");
    }

    #[test]
    fn mounts() {
        let d = tempfile::tempdir().unwrap();
        let data = d.path().join("data");
        let cfg = d.path().join("cfg");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::create_dir_all(&cfg).unwrap();
        std::os::unix::fs::symlink("/etc", data.join("escape")).unwrap();
        let p = pod(json!({
        "volumes": [{"name": "data", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "c"}}],
        "containers": [{"name": "c", "volumeMounts": [
            {"name": "data", "mountPath": "/data"},
            {"name": "data", "mountPath": "/logs", "subPathExpr": "$(POD_NAME)/logs"},
            {"name": "cfg", "mountPath": "/cfg"},
            {"name": "data", "mountPath": "/ro", "readOnly": true, "subPath": "ro"},
        ]}]}));
        let c = &p.spec.as_ref().unwrap().containers[0];
        let vols: BTreeMap<String, PathBuf> = [
            ("data".to_string(), data.clone()),
            ("cfg".to_string(), cfg.clone()),
        ]
        .into();
        let env = vec![("POD_NAME".to_string(), "p".to_string())];
        let m = container_mounts(&p, c, &vols, &env).unwrap();
        assert_eq!(m.len(), 4);
        assert_eq!(
            (m[0].container_path.as_str(), m[0].readonly),
            ("/data", false)
        );
        assert_eq!(
            m[1].host_path,
            std::fs::canonicalize(&data).unwrap().join("p/logs")
        );
        assert!(data.join("p/logs").is_dir());
        assert!(m[2].readonly, "configMap volumes are read-only");
        assert!(m[3].readonly);

        let bad = |mount: serde_json::Value| {
            let mut p = p.clone();
            p.spec.as_mut().unwrap().containers[0].volume_mounts =
                Some(vec![serde_json::from_value(mount).unwrap()]);
            let c = p.spec.as_ref().unwrap().containers[0].clone();
            container_mounts(&p, &c, &vols, &env).unwrap_err().message()
        };
        assert_eq!(
            bad(json!({"name": "data", "mountPath": "/x", "subPathExpr": "$(NOPE)"})),
            "missing value for NOPE"
        );
        assert!(
            bad(json!({"name": "data", "mountPath": "/x", "subPath": "/abs"}))
                .contains("must not be an absolute path")
        );
        assert!(
            bad(json!({"name": "data", "mountPath": "/x", "subPath": "a/../../b"}))
                .contains("'..'")
        );
        assert!(
            bad(json!({"name": "data", "mountPath": "/x", "subPath": "escape"}))
                .contains("not within volume path")
        );
        assert_eq!(
            bad(json!({"name": "gone", "mountPath": "/x"})),
            "cannot find volume \"gone\" to mount into container \"c\""
        );
    }
}
