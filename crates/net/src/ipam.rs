//! Host-local IPAM, as the CNI plugin of that name: one file per leased address under a
//! directory, created with `O_EXCL` so two sandboxes can never get the same IP, and holding
//! the sandbox id so leases survive agent restarts and can be released by id.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use rkube_cri::{Error, Result};

/// An IPv4 network in CIDR form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Cidr {
    /// Network address.
    pub network: Ipv4Addr,
    /// Prefix length.
    pub prefix: u8,
}

impl Ipv4Cidr {
    /// Parses `10.42.0.0/24`.
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        let (ip, len) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a CIDR"))?;
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("{s:?}: only IPv4 pod CIDRs are supported"))?;
        let prefix: u8 = len
            .parse()
            .ok()
            .filter(|p| (8..=30).contains(p))
            .ok_or_else(|| format!("{s:?}: prefix must be between /8 and /30"))?;
        let mask = u32::MAX << (32 - prefix);
        Ok(Ipv4Cidr {
            network: Ipv4Addr::from(u32::from(ip) & mask),
            prefix,
        })
    }

    /// Usable pod addresses: skips the network address, `.1` (the future bridge gateway) and
    /// the broadcast address.
    fn hosts(&self) -> impl Iterator<Item = Ipv4Addr> {
        let base = u32::from(self.network);
        let size = 1u32 << (32 - self.prefix);
        (2..size - 1).map(move |i| Ipv4Addr::from(base + i))
    }
}

/// Leases of one pod CIDR.
pub struct HostLocal {
    dir: PathBuf,
    cidr: Ipv4Cidr,
}

impl HostLocal {
    /// Leases kept in `dir`.
    pub fn new(dir: PathBuf, cidr: Ipv4Cidr) -> Self {
        HostLocal { dir, cidr }
    }

    /// The sandbox's address: its existing lease, or the first free one.
    pub fn allocate(&self, sandbox_id: &str) -> Result<Ipv4Addr> {
        std::fs::create_dir_all(&self.dir)?;
        if let Some(ip) = self.leased(sandbox_id)? {
            return Ok(ip);
        }
        for ip in self.cidr.hosts() {
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(self.dir.join(ip.to_string()))
            {
                Ok(mut f) => {
                    f.write_all(sandbox_id.as_bytes())?;
                    return Ok(ip);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Internal(format!(
            "no free pod IP left in {}/{}",
            self.cidr.network, self.cidr.prefix
        )))
    }

    /// Gives back the sandbox's lease; no lease is fine.
    pub fn release(&self, sandbox_id: &str) -> Result<()> {
        release_anywhere(&self.dir, sandbox_id)
    }

    fn leased(&self, sandbox_id: &str) -> Result<Option<Ipv4Addr>> {
        Ok(leases(&self.dir)?
            .into_iter()
            .find(|(_, id)| id == sandbox_id)
            .and_then(|(path, _)| path.file_name()?.to_str()?.parse().ok()))
    }
}

/// Removes a sandbox's lease whatever CIDR it came from.
pub fn release_anywhere(dir: &Path, sandbox_id: &str) -> Result<()> {
    for (path, id) in leases(dir)? {
        if id == sandbox_id {
            std::fs::remove_file(path)?;
        }
    }
    Ok(())
}

fn leases(dir: &Path) -> Result<Vec<(PathBuf, String)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        if let Ok(id) = std::fs::read_to_string(entry.path()) {
            out.push((entry.path(), id));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_are_unique_sticky_and_released() {
        let dir = tempfile::tempdir().unwrap();
        let cidr = Ipv4Cidr::parse("10.42.3.0/24").unwrap();
        let ipam = HostLocal::new(dir.path().to_path_buf(), cidr);
        let a = ipam.allocate("a").unwrap();
        let b = ipam.allocate("b").unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 42, 3, 2));
        assert_eq!(b, Ipv4Addr::new(10, 42, 3, 3));
        assert_eq!(ipam.allocate("a").unwrap(), a);
        ipam.release("a").unwrap();
        assert_eq!(ipam.allocate("c").unwrap(), a);
    }

    #[test]
    fn a_full_range_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = HostLocal::new(
            dir.path().to_path_buf(),
            Ipv4Cidr::parse("10.0.0.0/30").unwrap(),
        );
        ipam.allocate("a").unwrap();
        assert!(ipam.allocate("b").is_err());
    }
}
