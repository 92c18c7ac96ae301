//! A small hand-made slice of the Kubernetes API schema (Deployment, Pod, Service), for tests.

use std::collections::BTreeMap;

use crate::schema::{ListPatch, ListType, ScalarType, Schema, Schemas};

pub fn string() -> Schema {
    Schema::Scalar(ScalarType::String)
}

pub fn int() -> Schema {
    Schema::Scalar(ScalarType::Integer)
}

pub fn obj(fields: &[(&str, Schema)]) -> Schema {
    Schema::Object {
        fields: fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect::<BTreeMap<_, _>>(),
        preserve_unknown: false,
    }
}

pub fn r(name: &str) -> Schema {
    Schema::Ref(name.to_string())
}

pub fn string_map() -> Schema {
    Schema::Map {
        values: Box::new(string()),
    }
}

/// A list of objects merged by `keys[0]` (strategic) and keyed by `keys` (apply).
pub fn keyed(items: Schema, keys: &[&str]) -> Schema {
    Schema::List {
        items: Box::new(items),
        patch: ListPatch::Merge {
            key: Some(keys[0].to_string()),
            retain_keys: false,
        },
        list_type: ListType::Map {
            keys: keys.iter().map(|k| k.to_string()).collect(),
        },
    }
}

pub fn atomic(items: Schema) -> Schema {
    Schema::List {
        items: Box::new(items),
        patch: ListPatch::Replace,
        list_type: ListType::Atomic,
    }
}

pub fn set(items: Schema) -> Schema {
    Schema::List {
        items: Box::new(items),
        patch: ListPatch::Merge {
            key: None,
            retain_keys: false,
        },
        list_type: ListType::Set,
    }
}

/// The definitions, named as upstream's OpenAPI names them.
pub fn k8s() -> Schemas {
    let mut s = Schemas::new();
    s.insert(
        "ObjectMeta",
        obj(&[
            ("name", string()),
            ("namespace", string()),
            ("uid", string()),
            ("resourceVersion", string()),
            ("generation", int()),
            ("creationTimestamp", string()),
            ("labels", string_map()),
            ("annotations", string_map()),
            ("finalizers", set(string())),
            ("managedFields", atomic(Schema::Any)),
        ]),
    );
    s.insert(
        "LabelSelector",
        obj(&[
            ("matchLabels", string_map()),
            ("matchExpressions", atomic(Schema::Any)),
        ]),
    );
    s.insert(
        "ContainerPort",
        obj(&[
            ("name", string()),
            ("containerPort", int()),
            ("protocol", string()),
        ]),
    );
    s.insert("EnvVar", obj(&[("name", string()), ("value", string())]));
    s.insert(
        "Container",
        obj(&[
            ("name", string()),
            ("image", string()),
            ("imagePullPolicy", string()),
            ("args", atomic(string())),
            ("command", atomic(string())),
            (
                "ports",
                keyed(r("ContainerPort"), &["containerPort", "protocol"]),
            ),
            ("env", keyed(r("EnvVar"), &["name"])),
            (
                "resources",
                obj(&[("limits", string_map()), ("requests", string_map())]),
            ),
        ]),
    );
    s.insert(
        "Volume",
        obj(&[
            ("name", string()),
            ("emptyDir", obj(&[("medium", string())])),
            ("configMap", obj(&[("name", string())])),
            ("secret", obj(&[("secretName", string())])),
        ]),
    );
    s.insert(
        "PodSpec",
        obj(&[
            ("containers", keyed(r("Container"), &["name"])),
            ("initContainers", keyed(r("Container"), &["name"])),
            (
                "volumes",
                Schema::List {
                    items: Box::new(r("Volume")),
                    patch: ListPatch::Merge {
                        key: Some("name".into()),
                        retain_keys: true,
                    },
                    list_type: ListType::Map {
                        keys: vec!["name".into()],
                    },
                },
            ),
            ("nodeSelector", string_map()),
            ("restartPolicy", string()),
        ]),
    );
    s.insert(
        "Pod",
        obj(&[
            ("apiVersion", string()),
            ("kind", string()),
            ("metadata", r("ObjectMeta")),
            ("spec", r("PodSpec")),
            ("status", obj(&[("phase", string())])),
        ]),
    );
    s.insert(
        "Deployment",
        obj(&[
            ("apiVersion", string()),
            ("kind", string()),
            ("metadata", r("ObjectMeta")),
            (
                "spec",
                obj(&[
                    ("replicas", int()),
                    ("selector", r("LabelSelector")),
                    (
                        "template",
                        obj(&[("metadata", r("ObjectMeta")), ("spec", r("PodSpec"))]),
                    ),
                    (
                        "strategy",
                        obj(&[
                            ("type", string()),
                            (
                                "rollingUpdate",
                                obj(&[("maxSurge", string()), ("maxUnavailable", string())]),
                            ),
                        ]),
                    ),
                ]),
            ),
            ("status", obj(&[("replicas", int())])),
        ]),
    );
    s.insert(
        "ServicePort",
        obj(&[
            ("name", string()),
            ("port", int()),
            ("targetPort", Schema::Scalar(ScalarType::IntOrString)),
            ("protocol", string()),
        ]),
    );
    s.insert(
        "Service",
        obj(&[
            ("apiVersion", string()),
            ("kind", string()),
            ("metadata", r("ObjectMeta")),
            (
                "spec",
                obj(&[
                    ("ports", keyed(r("ServicePort"), &["port", "protocol"])),
                    ("selector", string_map()),
                    ("type", string()),
                    ("clusterIP", string()),
                ]),
            ),
        ]),
    );
    s
}
