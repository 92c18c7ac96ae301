//! Image references, normalised as upstream (`github.com/distribution/reference`, which
//! containerd and the kubelet use): `busybox` → `docker.io/library/busybox:latest`.

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

/// The registry short names default to.
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// Host that serves the registry API for `docker.io`.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";

static DOMAIN: LazyLock<Regex> = LazyLock::new(|| {
    let component = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
    Regex::new(&format!(
        r"^(?:{component}(?:\.{component})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$"
    ))
    .expect("static regex")
});
static PATH_COMPONENT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*$").expect("static regex")
});
static TAG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[\w][\w.-]{0,127}$").expect("static regex"));
static DIGEST: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$")
        .expect("static regex")
});
static HEX64: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-f0-9]{64}$").expect("static regex"));

/// A fully qualified image reference: registry domain, repository path, tag and/or digest.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry domain as written (`docker.io`, `127.0.0.1:5000`, `[::1]:5000`).
    pub domain: String,
    /// Repository path inside the registry (`library/busybox`).
    pub path: String,
    /// Tag (`latest` when neither tag nor digest was given).
    pub tag: Option<String>,
    /// Digest (`sha256:…`) when pinned.
    pub digest: Option<String>,
}

impl Reference {
    /// Parses and normalises a reference as containerd's CRI plugin does: default domain
    /// `docker.io`, `library/` for official images and the `latest` tag when neither a tag
    /// nor a digest is given. The error is the kubelet's `InvalidImageName` message.
    pub fn parse(s: &str) -> Result<Reference, String> {
        parse_normalized(s).map_err(|reason| {
            format!(
                "Failed to apply default image tag \"{s}\": couldn't parse image name \"{s}\": {reason}"
            )
        })
    }

    /// `domain/path` without tag or digest (`docker.io/library/busybox`).
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// What to ask the registry's manifest endpoint for: the digest when pinned, else the tag.
    pub fn object(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// The host serving the registry API (`registry-1.docker.io` for `docker.io`).
    pub fn api_host(&self) -> &str {
        if self.domain == DEFAULT_DOMAIN {
            DOCKER_HUB_API_HOST
        } else {
            &self.domain
        }
    }

    /// `name:tag` when tagged.
    pub fn tagged_name(&self) -> Option<String> {
        self.tag.as_ref().map(|t| format!("{}:{t}", self.name()))
    }

    /// `name@digest` for the given manifest digest.
    pub fn digested_name(&self, digest: &str) -> String {
        format!("{}@{digest}", self.name())
    }

    /// Whether the domain names this machine (containerd falls back to plain HTTP for these).
    pub fn is_loopback_host(host: &str) -> bool {
        let h = host_without_port(host);
        h == "localhost" || h == "::1" || h.starts_with("127.")
    }
}

/// `host` of `host:port`, `[v6]:port` or `[v6]`.
pub(crate) fn host_without_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

fn parse_normalized(s: &str) -> Result<Reference, String> {
    const BAD: &str = "invalid reference format";
    if HEX64.is_match(s) {
        return Err(format!(
            "invalid repository name ({s}), cannot specify 64-byte hexadecimal strings"
        ));
    }
    // Split off the digest first: it may contain ':' which would confuse the tag split.
    let (named, digest) = match s.split_once('@') {
        Some((n, d)) => {
            if !DIGEST.is_match(d) {
                return Err(BAD.into());
            }
            if let Some(hex) = d.strip_prefix("sha256:")
                && hex.len() != 64
            {
                return Err("invalid checksum digest length".into());
            }
            (n, Some(d.to_string()))
        }
        None => (s, None),
    };
    // A ':' after the last '/' starts the tag (a ':' before it is a registry port).
    let last_slash = named.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match named[last_slash..].rfind(':') {
        Some(i) => (
            &named[..last_slash + i],
            Some(named[last_slash + i + 1..].to_string()),
        ),
        None => (named, None),
    };
    if let Some(t) = &tag
        && !TAG.is_match(t)
    {
        return Err(BAD.into());
    }
    let (domain, remainder) = split_domain(name);
    if remainder.to_lowercase() != remainder {
        return Err(format!("{BAD}: repository name must be lowercase"));
    }
    if !DOMAIN.is_match(&domain) || remainder.is_empty() {
        return Err(BAD.into());
    }
    if !remainder.split('/').all(|c| PATH_COMPONENT.is_match(c)) {
        return Err(BAD.into());
    }
    if domain.len() + 1 + remainder.len() > 255 {
        return Err("repository name must not be more than 255 characters".into());
    }
    let tag = match (tag, &digest) {
        (None, None) => Some("latest".to_string()),
        (t, _) => t,
    };
    Ok(Reference {
        domain,
        path: remainder,
        tag,
        digest,
    })
}

/// Upstream's `splitDockerDomain`: the first component is a registry only if it looks like a
/// host (has a `.` or `:`, or is `localhost`) or has upper-case letters.
fn split_domain(name: &str) -> (String, String) {
    let (domain, mut remainder) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.')
                || first.contains(':')
                || first == "localhost"
                || first.to_lowercase() != first =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
    };
    let domain = if domain == "index.docker.io" {
        DEFAULT_DOMAIN.to_string()
    } else {
        domain
    };
    if domain == DEFAULT_DOMAIN && !remainder.contains('/') {
        remainder = format!("library/{remainder}");
    }
    (domain, remainder)
}

/// Normalises a registry host as written in credentials or configs
/// (`https://index.docker.io/v1/` → `docker.io`).
pub fn normalize_registry_host(server: &str) -> String {
    let s = server.trim();
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    let host = s.split('/').next().unwrap_or(s).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DEFAULT_DOMAIN.to_string()
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalises_like_upstream() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(norm("foo/bar:1"), "docker.io/foo/bar:1");
        assert_eq!(norm("index.docker.io/foo/bar"), "docker.io/foo/bar:latest");
        assert_eq!(
            norm("docker.io/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(norm("127.0.0.1:5000/x"), "127.0.0.1:5000/x:latest");
        assert_eq!(norm("localhost/x/y:2"), "localhost/x/y:2");
        assert_eq!(norm("[::1]:5000/x"), "[::1]:5000/x:latest");
        assert_eq!(
            norm("registry.k8s.io/pause:3.10"),
            "registry.k8s.io/pause:3.10"
        );
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            norm(&format!("busybox@{d}")),
            format!("docker.io/library/busybox@{d}")
        );
        assert_eq!(
            norm(&format!("busybox:1@{d}")),
            format!("docker.io/library/busybox:1@{d}")
        );
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(r.object(), "latest");
        let r = Reference::parse("127.0.0.1:5000/x/y:3").unwrap();
        assert_eq!(
            (r.domain.as_str(), r.path.as_str()),
            ("127.0.0.1:5000", "x/y")
        );
        assert_eq!(r.api_host(), "127.0.0.1:5000");
    }

    #[test]
    fn rejects_invalid_with_upstream_message() {
        assert_eq!(
            Reference::parse("Foo").unwrap_err(),
            "Failed to apply default image tag \"Foo\": couldn't parse image name \"Foo\": invalid reference format: repository name must be lowercase"
        );
        for bad in [
            "",
            "a b",
            "busybox:",
            "busybox@sha256:12",
            "-x",
            "foo//bar",
            "x:a$b",
        ] {
            let e = Reference::parse(bad).unwrap_err();
            assert!(e.contains("invalid") || e.contains("digest"), "{bad}: {e}");
        }
        assert!(
            Reference::parse(&"a".repeat(64))
                .unwrap_err()
                .contains("64-byte")
        );
    }

    #[test]
    fn loopback_hosts() {
        assert!(Reference::is_loopback_host("localhost:5000"));
        assert!(Reference::is_loopback_host("127.0.0.1:5000"));
        assert!(Reference::is_loopback_host("[::1]:5000"));
        assert!(!Reference::is_loopback_host("docker.io"));
        assert_eq!(
            normalize_registry_host("https://index.docker.io/v1/"),
            "docker.io"
        );
        assert_eq!(normalize_registry_host("127.0.0.1:5000"), "127.0.0.1:5000");
    }
}
