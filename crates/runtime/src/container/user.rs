//! Resolving a container's user and groups through its own `/etc/passwd` and `/etc/group`
//! (read after pivot_root, so the image's files are used, never the host's).

use rkube_cri::SecurityContext;

/// Who the container process runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub home: String,
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

fn passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 6 {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f[5].to_string(),
            })
        })
        .collect()
}

/// (name, gid, members) of each /etc/group line.
fn groups(text: &str) -> Vec<(String, u32, Vec<String>)> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 3 {
                return None;
            }
            let members = f.get(3).map(|m| {
                m.split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            });
            Some((
                f[0].to_string(),
                f[2].parse().ok()?,
                members.unwrap_or_default(),
            ))
        })
        .collect()
}

/// Resolves the image's `USER` (`uid`, `uid:gid`, `name`, `name:group`) with the security
/// context's overrides, using the given passwd and group file contents.
pub(crate) fn resolve_with(
    image_user: &str,
    sec: &SecurityContext,
    passwd_text: &str,
    group_text: &str,
) -> Result<ExecUser, String> {
    let users = passwd(passwd_text);
    let grps = groups(group_text);
    let (user_part, group_part) = match image_user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (image_user, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    // run_as_user replaces the image's user part (and with it the passwd lookup by name).
    let entry = match sec.run_as_user {
        Some(uid) => users.iter().find(|e| e.uid == uid),
        None => match user_part.parse::<u32>() {
            Ok(uid) => users.iter().find(|e| e.uid == uid),
            Err(_) => Some(users.iter().find(|e| e.name == user_part).ok_or_else(|| {
                format!("unable to find user {user_part}: no matching entries in passwd file")
            })?),
        },
    };
    let uid = sec.run_as_user.unwrap_or_else(|| {
        entry
            .map(|e| e.uid)
            .unwrap_or_else(|| user_part.parse().unwrap_or(0))
    });
    let mut gid = entry.map(|e| e.gid).unwrap_or(0);
    if let Some(g) = group_part.filter(|g| !g.is_empty()) {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => grps
                .iter()
                .find(|(n, _, _)| n == g)
                .map(|(_, id, _)| *id)
                .ok_or_else(|| {
                    format!("unable to find group {g}: no matching entries in group file")
                })?,
        };
    }
    if let Some(g) = sec.run_as_group {
        gid = g;
    }
    let mut extra: Vec<u32> = Vec::new();
    if let Some(e) = entry {
        for (_, id, members) in &grps {
            if members.contains(&e.name) && !extra.contains(id) {
                extra.push(*id);
            }
        }
    }
    for g in &sec.supplemental_groups {
        if !extra.contains(g) {
            extra.push(*g);
        }
    }
    Ok(ExecUser {
        uid,
        gid,
        groups: extra,
        home: entry
            .map(|e| e.home.clone())
            .unwrap_or_else(|| "/".to_string()),
    })
}

/// [`resolve_with`] over the current root's `/etc/passwd` and `/etc/group` (missing files
/// are empty, as runc treats them).
pub(crate) fn resolve(image_user: &str, sec: &SecurityContext) -> Result<ExecUser, String> {
    let p = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let g = std::fs::read_to_string("/etc/group").unwrap_or_default();
    resolve_with(image_user, sec, &p, &g)
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\nweb:x:33:33::/var/www:/bin/sh\n";
    const G: &str = "root:x:0:\nnogroup:x:65534:\nwww:x:33:\nextra:x:1000:web,other\n";

    #[test]
    fn users() {
        let d = SecurityContext::default();
        assert_eq!(resolve_with("", &d, P, G).unwrap().uid, 0);
        let u = resolve_with("web", &d, P, G).unwrap();
        assert_eq!(
            (u.uid, u.gid, u.groups.clone(), u.home.as_str()),
            (33, 33, vec![1000], "/var/www")
        );
        let u = resolve_with("1234:nogroup", &d, P, G).unwrap();
        assert_eq!((u.uid, u.gid), (1234, 65534));
        assert!(
            resolve_with("nope", &d, P, G)
                .unwrap_err()
                .contains("unable to find user nope")
        );
        let sec = SecurityContext {
            run_as_user: Some(65534),
            run_as_group: Some(7),
            ..Default::default()
        };
        let u = resolve_with("web", &sec, P, G).unwrap();
        assert_eq!((u.uid, u.gid), (65534, 7));
    }
}
