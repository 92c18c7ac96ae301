//! [`OpenApi`]: the documents built once and kept serialized, plus custom resources added at
//! run time.
//!
//! Building the definitions and documents takes a noticeable fraction of a second; the
//! apiserver serves them on every kubectl invocation. So they are built when the set of kinds
//! changes (at start and when a CRD is established) and served as bytes in between.

use std::collections::BTreeMap;

use rkube_apimachinery::schema::Schemas;
use rkube_core::registry::{Registry, ResourceType, STANDARD_VERBS};
use serde_json::{Map, Value};

use crate::custom::{definition_of, insert_custom};
use crate::definitions::{builtin, sort_keys};
use crate::typed::{from_openapi_v3, schemas};
use crate::v2::with_customs;
use crate::v3::{gv_key, hash, index_of, parse_gv_key};

/// A built v3 group-version document.
#[derive(Debug, Clone)]
struct V3Doc {
    bytes: Gzipped,
    hash: String,
}

/// A served document, kept gzip-compressed: JSON compresses about tenfold and these
/// documents (megabytes) are otherwise the largest thing an idle apiserver holds. Clients
/// that accept gzip (kubectl and client-go do) get these bytes as they are.
#[derive(Debug, Clone, Default)]
pub struct Gzipped(Vec<u8>);

impl Gzipped {
    /// Compresses `plain` (fast level: this runs on every rebuild).
    pub fn new(plain: &[u8]) -> Gzipped {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        // Writing to a Vec cannot fail.
        let _ = enc.write_all(plain);
        Gzipped(enc.finish().unwrap_or_default())
    }

    /// The gzip stream, for `Content-Encoding: gzip`.
    pub fn gzip(&self) -> &[u8] {
        &self.0
    }

    /// The document itself, for clients that do not accept gzip.
    pub fn decompress(&self) -> Vec<u8> {
        use std::io::Read;
        let mut out = Vec::new();
        // Our own stream: it decompresses unless memory is exhausted.
        let _ = flate2::read::GzDecoder::new(self.0.as_slice()).read_to_end(&mut out);
        out
    }
}

/// The OpenAPI documents of a registry, serialized, and its typed schemas.
#[derive(Debug, Clone)]
pub struct OpenApi {
    registry: Registry,
    /// Custom resources' `openAPIV3Schema`, by definition name.
    custom_schemas: BTreeMap<String, Value>,
    v2: Gzipped,
    /// The v2 document in protobuf, made on first request (kubectl asks for it only to
    /// validate kinds the v3 documents lack), so it costs no memory until then.
    v2_protobuf: std::sync::OnceLock<Vec<u8>>,
    v3: BTreeMap<String, V3Doc>,
    v3_index: Vec<u8>,
    schemas: Schemas,
}

impl OpenApi {
    /// Builds every document for `registry`. Custom resources already in it get a permissive
    /// schema until [`OpenApi::add_custom`] supplies theirs.
    pub fn new(registry: &Registry) -> Self {
        let mut api = OpenApi {
            registry: registry.clone(),
            custom_schemas: BTreeMap::new(),
            v2: Gzipped::default(),
            v2_protobuf: std::sync::OnceLock::new(),
            v3: BTreeMap::new(),
            v3_index: Vec::new(),
            schemas: Schemas::new(),
        };
        api.rebuild();
        api
    }

    /// Adds (or replaces) a custom resource with its CRD's `openAPIV3Schema` and rebuilds.
    pub fn add_custom(
        &mut self,
        group: &str,
        version: &str,
        kind: &str,
        plural: &str,
        namespaced: bool,
        schema_json: &Value,
    ) {
        let resource = ResourceType {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: kind.to_ascii_lowercase(),
            namespaced,
            short_names: Vec::new(),
            categories: Vec::new(),
            subresources: Vec::new(),
            verbs: STANDARD_VERBS.iter().map(|v| v.to_string()).collect(),
            definition: String::new(),
        };
        self.add_custom_resource(resource, schema_json);
    }

    /// Adds (or replaces) a custom resource described in full (short names, subresources...).
    pub fn add_custom_resource(&mut self, resource: ResourceType, schema_json: &Value) {
        self.custom_schemas
            .insert(definition_of(&resource), schema_json.clone());
        self.registry.upsert(resource);
        self.rebuild();
    }

    /// Removes every version of a custom resource and rebuilds.
    pub fn remove_custom(&mut self, group: &str, plural: &str) {
        let gone: Vec<String> = self
            .registry
            .resources()
            .iter()
            .filter(|r| r.group == group && r.plural == plural && r.definition.is_empty())
            .map(definition_of)
            .collect();
        for name in gone {
            self.custom_schemas.remove(&name);
        }
        let is_custom = self
            .registry
            .resources()
            .iter()
            .any(|r| r.group == group && r.plural == plural && r.definition.is_empty());
        if is_custom {
            self.registry.remove(group, plural);
        }
        self.rebuild();
    }

    /// The registry the documents describe (the built-ins plus added custom resources).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// `GET /openapi/v2`, JSON.
    pub fn v2(&self) -> &Gzipped {
        &self.v2
    }

    /// `GET /openapi/v2` as gnostic protobuf bytes.
    pub fn v2_protobuf(&self) -> &[u8] {
        self.v2_protobuf.get_or_init(|| {
            serde_json::from_slice(&self.v2.decompress())
                .map(|doc| crate::v2proto::encode_document(&doc))
                .unwrap_or_default()
        })
    }

    /// `GET /openapi/v3` as JSON bytes.
    pub fn v3_index(&self) -> &[u8] {
        &self.v3_index
    }

    /// `GET /openapi/v3/<key>`, JSON, for a key like `apis/apps/v1` (a leading `/` is
    /// allowed); `None` for a group version not served.
    pub fn v3(&self, key: &str) -> Option<&Gzipped> {
        self.v3_doc(key).map(|d| &d.bytes)
    }

    /// The hash the index advertises for a v3 document (for `ETag` and caching headers).
    pub fn v3_hash(&self, key: &str) -> Option<&str> {
        self.v3_doc(key).map(|d| d.hash.as_str())
    }

    /// The typed schemas of every definition, custom kinds included.
    pub fn schemas(&self) -> &Schemas {
        &self.schemas
    }

    fn v3_doc(&self, key: &str) -> Option<&V3Doc> {
        let (group, version) = parse_gv_key(key)?;
        self.v3.get(&gv_key(&group, &version))
    }

    fn rebuild(&mut self) {
        let mut defs: Map<String, Value> = builtin();
        for r in self.registry.resources() {
            if let Some(schema) = self.custom_schemas.get(&definition_of(r)) {
                insert_custom(&mut defs, r, schema);
            }
        }
        let mut defs = with_customs(&self.registry, defs);
        sort_keys(&mut defs);

        self.v2 = Gzipped::new(
            crate::v2::build(&self.registry, &defs)
                .to_string()
                .as_bytes(),
        );
        self.v2_protobuf = std::sync::OnceLock::new();
        self.v3.clear();
        let mut entries = Vec::new();
        for (group, version) in self.registry.group_versions() {
            if let Some(doc) = crate::v3::build(&self.registry, &defs, &group, &version) {
                let bytes = doc.to_string().into_bytes();
                let key = gv_key(&group, &version);
                let hash = hash(&bytes);
                entries.push((key.clone(), hash.clone()));
                let bytes = Gzipped::new(&bytes);
                self.v3.insert(key, V3Doc { bytes, hash });
            }
        }
        self.v3_index = index_of(&entries).to_string().into_bytes();

        let mut typed = schemas();
        for r in self.registry.resources() {
            if r.definition.is_empty() {
                let name = definition_of(r);
                let schema = self.custom_schemas.get(&name).unwrap_or(&Value::Null);
                typed.insert(name, from_openapi_v3(schema));
            }
        }
        self.schemas = typed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rkube_apimachinery::schema::Schema;
    use serde_json::json;

    fn parse(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn serves_cached_documents() {
        let api = OpenApi::new(&Registry::builtin());
        let v2 = parse(&api.v2().decompress());
        assert!(v2["definitions"]["io.k8s.api.core.v1.Pod"].is_object());
        let index = parse(api.v3_index());
        let url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap();
        let hash = api.v3_hash("apis/apps/v1").unwrap();
        assert!(url.ends_with(hash));
        assert_eq!(
            hash,
            crate::v3::hash(&api.v3("/apis/apps/v1").unwrap().decompress())
        );
        assert!(api.v3("apis/nope/v1").is_none());
        assert!(api.v3("garbage").is_none());
        assert!(api.schemas().get("io.k8s.api.core.v1.PodSpec").is_some());
    }

    #[test]
    fn custom_resources_join_the_documents() {
        let mut api = OpenApi::new(&Registry::builtin());
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {"cronSpec": {"type": "string"}}}}});
        api.add_custom(
            "stable.example.com",
            "v1",
            "CronTab",
            "crontabs",
            true,
            &schema,
        );
        let doc = parse(&api.v3("apis/stable.example.com/v1").unwrap().decompress());
        let def = &doc["components"]["schemas"]["com.example.stable.v1.CronTab"];
        assert_eq!(def["x-kubernetes-group-version-kind"][0]["kind"], "CronTab");
        assert!(
            doc["components"]["schemas"]["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]
                .is_object()
        );
        let patch = &doc["paths"]["/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}"]
            ["patch"];
        assert!(patch["parameters"].to_string().contains("fieldValidation"));
        let index = parse(api.v3_index());
        assert!(index["paths"]["apis/stable.example.com/v1"].is_object());
        let v2 = parse(&api.v2().decompress());
        assert!(v2["paths"]["/apis/stable.example.com/v1/crontabs"].is_object());
        let Some(Schema::Object { fields, .. }) =
            api.schemas().get("com.example.stable.v1.CronTab")
        else {
            panic!("no typed schema");
        };
        assert!(fields.contains_key("spec") && fields.contains_key("metadata"));

        api.remove_custom("stable.example.com", "crontabs");
        assert!(api.v3("apis/stable.example.com/v1").is_none());
        assert!(api.schemas().get("com.example.stable.v1.CronTab").is_none());
        // Built-ins cannot be removed this way.
        api.remove_custom("apps", "deployments");
        assert!(api.v3("apis/apps/v1").is_some());
    }
}
