//! Turning a URL and method into what is being asked: upstream's `RequestInfo`.

use std::collections::HashMap;

/// What a resource request asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestInfo {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`.
    pub verb: String,
    /// API group ("" for core).
    pub group: String,
    /// API version.
    pub version: String,
    /// Plural resource name.
    pub resource: String,
    /// Subresource, e.g. `status`.
    pub subresource: String,
    /// Namespace, when the path has one.
    pub namespace: Option<String>,
    /// Object name, when the path has one.
    pub name: Option<String>,
}

/// A parsed API path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiPath {
    /// `/api`: the legacy group's versions.
    LegacyRoot,
    /// `/apis`: the group list.
    GroupsRoot,
    /// `/apis/<group>`: one group.
    Group(String),
    /// `/api/v1` or `/apis/<group>/<version>`: a resource list.
    GroupVersion(String, String),
    /// A resource request.
    Resource(RequestInfo),
    /// Anything else under /api or /apis.
    NotFound,
}

/// Parses the path and method of a request under `/api` or `/apis`.
pub fn parse(method: &http::Method, path: &str, query: &Query) -> ApiPath {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api"] => return ApiPath::LegacyRoot,
        ["apis"] => return ApiPath::GroupsRoot,
        ["apis", g] => return ApiPath::Group(g.to_string()),
        ["api", v] => return ApiPath::GroupVersion(String::new(), v.to_string()),
        ["apis", g, v] => return ApiPath::GroupVersion(g.to_string(), v.to_string()),
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return ApiPath::NotFound,
    };
    let mut rest: Vec<&str> = rest.to_vec();
    // The legacy `/watch/` prefix means the same as `?watch=true`.
    let mut watch = query.flag("watch");
    if rest.first() == Some(&"watch") {
        watch = true;
        rest.remove(0);
    }
    let mut info = RequestInfo {
        group: group.into(),
        version: version.into(),
        ..Default::default()
    };
    if rest.first() == Some(&"namespaces") && rest.len() > 1 {
        info.namespace = Some(rest[1].to_string());
        if rest.len() > 2 && !matches!(rest[2], "status" | "finalize") {
            rest.drain(..2);
        }
    }
    if rest.is_empty() || rest.iter().any(|s| s.is_empty()) {
        return ApiPath::NotFound;
    }
    info.resource = rest[0].to_string();
    if let Some(n) = rest.get(1) {
        info.name = Some(decode(n));
    }
    if rest.len() > 2 {
        info.subresource = rest[2..].join("/");
    }
    if info.resource == "namespaces" {
        // A namespace object is cluster-scoped; the path's namespace is its name.
        info.namespace = None;
    }
    info.verb = match (method.as_str(), info.name.is_some()) {
        ("GET" | "HEAD", true) if watch => "watch",
        ("GET" | "HEAD", true) => "get",
        ("GET" | "HEAD", false) if watch => "watch",
        ("GET" | "HEAD", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "",
    }
    .to_string();
    ApiPath::Resource(info)
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Query parameters, decoded. Repeated keys keep the first value except where noted.
#[derive(Debug, Clone, Default)]
pub struct Query {
    values: HashMap<String, Vec<String>>,
}

impl Query {
    /// Parses a raw query string.
    pub fn parse(raw: Option<&str>) -> Query {
        let mut values: HashMap<String, Vec<String>> = HashMap::new();
        if let Some(raw) = raw {
            for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
                values
                    .entry(k.into_owned())
                    .or_default()
                    .push(v.into_owned());
            }
        }
        Query { values }
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values
            .get(key)
            .and_then(|v| v.first())
            .map(String::as_str)
    }

    /// Every value of `key` (e.g. repeated `dryRun`).
    pub fn all(&self, key: &str) -> &[String] {
        self.values.get(key).map(Vec::as_slice).unwrap_or(&[])
    }

    /// A boolean parameter as Go's `strconv.ParseBool` reads it.
    pub fn flag(&self, key: &str) -> bool {
        matches!(
            self.get(key),
            Some("1" | "t" | "T" | "true" | "TRUE" | "True")
        )
    }

    /// A non-empty string parameter.
    pub fn non_empty(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|s| !s.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn info(method: Method, path: &str, query: &str) -> RequestInfo {
        match parse(&method, path, &Query::parse(Some(query))) {
            ApiPath::Resource(i) => i,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn resource_paths() {
        let i = info(Method::GET, "/api/v1/namespaces/default/pods/web", "");
        assert_eq!(
            (
                i.verb.as_str(),
                i.namespace.as_deref(),
                i.resource.as_str(),
                i.name.as_deref()
            ),
            ("get", Some("default"), "pods", Some("web"))
        );
        let i = info(Method::GET, "/apis/apps/v1/deployments", "watch=1");
        assert_eq!((i.verb.as_str(), i.group.as_str()), ("watch", "apps"));
        let i = info(Method::PUT, "/api/v1/namespaces/foo/status", "");
        assert_eq!(
            (
                i.resource.as_str(),
                i.name.as_deref(),
                i.subresource.as_str(),
                i.namespace
            ),
            ("namespaces", Some("foo"), "status", None)
        );
        let i = info(Method::GET, "/api/v1/namespaces/foo", "");
        assert_eq!(
            (i.resource.as_str(), i.name.as_deref()),
            ("namespaces", Some("foo"))
        );
        let i = info(Method::DELETE, "/api/v1/namespaces/ns/configmaps", "");
        assert_eq!(i.verb, "deletecollection");
        let i = info(Method::POST, "/api/v1/namespaces/ns/pods/p/binding", "");
        assert_eq!(
            (i.verb.as_str(), i.subresource.as_str()),
            ("create", "binding")
        );
    }

    #[test]
    fn discovery_paths() {
        let q = Query::default();
        assert_eq!(parse(&Method::GET, "/api", &q), ApiPath::LegacyRoot);
        assert_eq!(
            parse(&Method::GET, "/apis/apps/v1", &q),
            ApiPath::GroupVersion("apps".into(), "v1".into())
        );
    }
}
