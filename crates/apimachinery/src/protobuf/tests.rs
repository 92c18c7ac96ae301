use super::*;
use serde_json::json;

/// A minimal encoder, enough to build the bodies kubectl sends.
fn key(tag: u64, wt: u64) -> Vec<u8> {
    varint(tag << 3 | wt)
}
fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}
fn len_field(tag: u64, bytes: &[u8]) -> Vec<u8> {
    let mut out = key(tag, 2);
    out.extend(varint(bytes.len() as u64));
    out.extend_from_slice(bytes);
    out
}
fn int_field(tag: u64, v: u64) -> Vec<u8> {
    let mut out = key(tag, 0);
    out.extend(varint(v));
    out
}
fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let type_meta = [
        len_field(1, api_version.as_bytes()),
        len_field(2, kind.as_bytes()),
    ]
    .concat();
    let mut out = MAGIC.to_vec();
    out.extend(len_field(1, &type_meta));
    out.extend(len_field(2, raw));
    out
}

#[test]
fn namespace_with_labels_and_empty_fields() {
    let meta = [
        len_field(1, b"foo"),
        len_field(2, b""),
        len_field(11, &[len_field(1, b"team"), len_field(2, b"a")].concat()),
        len_field(8, &[]),
    ]
    .concat();
    let raw = [len_field(1, &meta), len_field(2, &[]), len_field(3, &[])].concat();
    let obj = decode(&envelope("v1", "Namespace", &raw)).unwrap();
    assert_eq!(
        obj,
        json!({"apiVersion": "v1", "kind": "Namespace",
               "metadata": {"name": "foo", "labels": {"team": "a"}}, "spec": {}, "status": {}})
    );
}

#[test]
fn deployment_with_int_or_string_and_quantities() {
    let container = [
        len_field(1, b"nginx"),
        len_field(2, b"nginx:1.14"),
        // resources.limits{cpu: "1"}
        len_field(
            8,
            &len_field(
                1,
                &[len_field(1, b"cpu"), len_field(2, &len_field(1, b"1"))].concat(),
            ),
        ),
    ]
    .concat();
    let pod_spec = len_field(2, &container);
    let template = len_field(2, &pod_spec);
    let strategy = [
        len_field(1, b"RollingUpdate"),
        len_field(
            2,
            &len_field(1, &[int_field(1, 1), len_field(3, b"25%")].concat()),
        ),
    ]
    .concat();
    let spec = [
        int_field(1, 3),
        len_field(3, &template),
        len_field(4, &strategy),
    ]
    .concat();
    let raw = [len_field(1, &len_field(1, b"web")), len_field(2, &spec)].concat();
    let obj = decode(&envelope("apps/v1", "Deployment", &raw)).unwrap();
    assert_eq!(obj["spec"]["replicas"], 3);
    assert_eq!(
        obj["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.14"
    );
    assert_eq!(
        obj["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"],
        "1"
    );
    assert_eq!(
        obj["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"],
        "25%"
    );
}

#[test]
fn secret_bytes_are_base64_and_times_are_rfc3339() {
    let data = len_field(
        2,
        &[len_field(1, b"pass"), len_field(2, b"hunter2")].concat(),
    );
    let ts = [int_field(1, 1_700_000_000)].concat();
    let meta = [len_field(1, b"s"), len_field(8, &ts)].concat();
    let raw = [len_field(1, &meta), data].concat();
    let obj = decode(&envelope("v1", "Secret", &raw)).unwrap();
    assert_eq!(obj["data"]["pass"], "aHVudGVyMg==");
    assert_eq!(obj["metadata"]["creationTimestamp"], "2023-11-14T22:13:20Z");
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    assert!(decode(b"nope").is_err());
    assert!(decode(&[MAGIC, &[0x0a, 0xff, 0xff]].concat()).is_err());
    assert!(decode(&envelope("v1", "NoSuchKind", &[])).is_err());
    for n in 0..64u8 {
        let mut b = envelope("v1", "Namespace", &len_field(1, &len_field(1, b"x")));
        let i = 4 + (n as usize % (b.len() - 4));
        b[i] = b[i].wrapping_add(n);
        let _ = decode(&b);
    }
}
