//! Label and field selectors of list, watch and deletecollection requests, checked against
//! the fields each kind supports (as upstream's `GetAttrs`/field label conversion functions).

use rkube_apimachinery::{fields, labels};
use rkube_core::registry::ResourceType;
use rkube_core::status::ApiError;

use crate::cache::Entry;
use crate::request::Query;

/// The selectors of a request.
pub struct Filter {
    labels: labels::Selector,
    fields: fields::Selector,
    /// The request's field labels and the stored-form fields they select on, for a view of
    /// another group's objects (`regarding.name` is a core Event's `involvedObject.name`).
    field_labels: &'static [(&'static str, &'static str)],
}

/// Field labels of a view of another group's objects, mapped to the stored form's fields
/// (upstream's field label conversion functions). Empty for ordinary resources.
fn field_label_conversions(rt: &ResourceType) -> &'static [(&'static str, &'static str)] {
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("events.k8s.io", "Event") => crate::conversion::EVENTS_V1_FIELD_LABELS,
        _ => &[],
    }
}

/// Field selectors a kind supports beyond `metadata.name` and `metadata.namespace`.
fn supported_fields(rt: &ResourceType) -> &'static [&'static str] {
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Pod") => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        ("", "Event") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        ("", "Secret") => &["type"],
        ("", "Node") => &["spec.unschedulable"],
        ("", "Namespace") => &["status.phase"],
        ("batch", "Job") => &["status.successful"],
        _ => &[],
    }
}

impl Filter {
    /// The selectors in `labelSelector` and `fieldSelector`.
    pub fn from_query(rt: &ResourceType, query: &Query) -> Result<Filter, ApiError> {
        let labels = match query.non_empty("labelSelector") {
            Some(s) => labels::Selector::parse(s).map_err(|e| {
                ApiError::bad_request(format!("unable to parse requirement: {}", e.0))
            })?,
            None => labels::Selector::everything(),
        };
        let fields = match query.non_empty("fieldSelector") {
            Some(s) => {
                fields::Selector::parse(s).map_err(|e| ApiError::bad_request(e.to_string()))?
            }
            None => fields::Selector::everything(),
        };
        let allowed = supported_fields(rt);
        let field_labels = field_label_conversions(rt);
        for r in fields.requirements() {
            let f = r.field.as_str();
            let known = if field_labels.is_empty() {
                allowed.contains(&f)
            } else {
                field_labels.iter().any(|(label, _)| *label == f)
            };
            if f != "metadata.name" && f != "metadata.namespace" && !known {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {f}"
                )));
            }
        }
        Ok(Filter {
            labels,
            fields,
            field_labels,
        })
    }

    /// Whether the filter selects everything.
    pub fn is_everything(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    /// Whether a cached object matches.
    pub fn matches(&self, e: &Entry) -> bool {
        self.labels.matches(|k| e.label(k))
            && self.fields.matches(|f| {
                let stored = self
                    .field_labels
                    .iter()
                    .find(|(label, _)| *label == f)
                    .map_or(f, |(_, stored)| stored);
                Some(e.field(stored))
            })
    }
}
