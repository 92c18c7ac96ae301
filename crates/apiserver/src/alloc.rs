//! Service ClusterIP and NodePort allocation, as upstream's apiserver does it: requested
//! values are honoured if free and in range, otherwise a free one is picked; values are
//! released when the Service is deleted.
//!
//! The allocators are in memory, rebuilt from the stored Services at start. The apiserver is
//! the only writer of Services, so memory and store cannot disagree for long: an allocation
//! whose store write fails is released by the caller.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Mutex;

use serde_json::Value;

use crate::cache::WatchCache;

/// Why an allocation failed (the message is the field error detail upstream gives).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllocError {
    /// The value is taken.
    Taken(String),
    /// The value is outside the range.
    OutOfRange(String),
    /// The range is full.
    Full(String),
}

/// A range of numbers, some taken.
struct Range {
    first: u32,
    last: u32,
    used: Mutex<BTreeSet<u32>>,
}

impl Range {
    fn allocate(&self, wanted: Option<u32>) -> Result<u32, AllocError> {
        let mut used = self.used.lock().expect("allocator lock");
        if let Some(w) = wanted {
            if w < self.first || w > self.last {
                return Err(AllocError::OutOfRange(w.to_string()));
            }
            if !used.insert(w) {
                return Err(AllocError::Taken(w.to_string()));
            }
            return Ok(w);
        }
        let size = self.last - self.first + 1;
        let start = rand::random::<u32>() % size;
        for i in 0..size {
            let v = self.first + (start + i) % size;
            if used.insert(v) {
                return Ok(v);
            }
        }
        Err(AllocError::Full(String::new()))
    }

    fn release(&self, v: u32) {
        self.used.lock().expect("allocator lock").remove(&v);
    }

    fn mark(&self, v: u32) {
        if v >= self.first && v <= self.last {
            self.used.lock().expect("allocator lock").insert(v);
        }
    }
}

/// The ClusterIP and NodePort allocators.
pub struct ServiceAllocators {
    ips: Range,
    ports: Range,
    cidr: String,
}

impl ServiceAllocators {
    /// Allocators for `cidr` (IPv4) and the NodePort range.
    pub fn new(cidr: &str, ports: (u16, u16)) -> Result<Self, String> {
        let (net, bits) = parse_cidr(cidr)?;
        let size = 1u64 << (32 - bits);
        if size < 4 {
            return Err(format!("service CIDR {cidr} is too small"));
        }
        Ok(ServiceAllocators {
            // Neither the network address nor the broadcast address is handed out.
            ips: Range {
                first: net + 1,
                last: (net as u64 + size - 2) as u32,
                used: Mutex::default(),
            },
            ports: Range {
                first: ports.0 as u32,
                last: ports.1 as u32,
                used: Mutex::default(),
            },
            cidr: cidr.to_string(),
        })
    }

    /// The service CIDR.
    pub fn cidr(&self) -> &str {
        &self.cidr
    }

    /// The first usable address (the `kubernetes` Service's).
    pub fn first_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.ips.first)
    }

    /// Marks what the stored Services use.
    pub fn load(&self, cache: &WatchCache) {
        let (services, _) = cache.list("/registry/services/", None);
        for s in services {
            let svc = s.object();
            for ip in cluster_ips(&svc) {
                self.ips.mark(u32::from(ip));
            }
            for p in node_ports(&svc) {
                self.ports.mark(p as u32);
            }
        }
    }

    /// Allocates a ClusterIP (the wanted one, or any free one).
    pub fn allocate_ip(&self, wanted: Option<&str>) -> Result<Ipv4Addr, AllocError> {
        let wanted = match wanted {
            Some(s) => Some(u32::from(
                s.parse::<Ipv4Addr>()
                    .map_err(|_| AllocError::OutOfRange(s.to_string()))?,
            )),
            None => None,
        };
        self.ips
            .allocate(wanted)
            .map(Ipv4Addr::from)
            .map_err(|e| match e {
                AllocError::OutOfRange(_) => AllocError::OutOfRange(format!(
                    "provided IP is not in the valid range. The range of valid IPs is {}",
                    self.cidr
                )),
                AllocError::Taken(_) => {
                    AllocError::Taken("provided IP is already allocated".to_string())
                }
                AllocError::Full(_) => AllocError::Full("range is full".to_string()),
            })
    }

    /// Allocates a NodePort.
    pub fn allocate_port(&self, wanted: Option<u16>) -> Result<u16, AllocError> {
        let (first, last) = (self.ports.first, self.ports.last);
        self.ports
            .allocate(wanted.map(u32::from))
            .map(|p| p as u16)
            .map_err(|e| match e {
                AllocError::OutOfRange(_) => AllocError::OutOfRange(format!(
                    "provided port is not in the valid range. The range of valid ports is {first}-{last}"
                )),
                AllocError::Taken(_) => {
                    AllocError::Taken("provided port is already allocated".to_string())
                }
                AllocError::Full(_) => AllocError::Full("range is full".to_string()),
            })
    }

    /// Releases everything `svc` holds.
    pub fn release(&self, svc: &Value) {
        for ip in cluster_ips(svc) {
            self.ips.release(u32::from(ip));
        }
        for p in node_ports(svc) {
            self.ports.release(p as u32);
        }
    }

    /// Releases one ClusterIP.
    pub fn release_ip(&self, ip: Ipv4Addr) {
        self.ips.release(u32::from(ip));
    }

    /// Releases one NodePort.
    pub fn release_port(&self, port: u16) {
        self.ports.release(port as u32);
    }
}

/// The ClusterIPs of a Service (`None` and unparsable entries skipped).
pub fn cluster_ips(svc: &Value) -> Vec<Ipv4Addr> {
    let mut out: Vec<Ipv4Addr> = svc
        .pointer("/spec/clusterIPs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str()?.parse().ok())
        .collect();
    if let Some(ip) = svc
        .pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        && !out.contains(&ip)
    {
        out.push(ip);
    }
    out
}

/// The NodePorts of a Service.
pub fn node_ports(svc: &Value) -> Vec<u16> {
    svc.pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("nodePort")?.as_u64())
        .filter_map(|p| u16::try_from(p).ok())
        .collect()
}

fn parse_cidr(cidr: &str) -> Result<(u32, u32), String> {
    let (ip, bits) = cidr
        .split_once('/')
        .ok_or_else(|| format!("invalid CIDR {cidr:?}"))?;
    let ip: Ipv4Addr = ip.parse().map_err(|_| format!("invalid CIDR {cidr:?}"))?;
    let bits: u32 = bits.parse().map_err(|_| format!("invalid CIDR {cidr:?}"))?;
    if bits > 30 {
        return Err(format!("service CIDR {cidr} is too small"));
    }
    let mask = if bits == 0 {
        0
    } else {
        u32::MAX << (32 - bits)
    };
    Ok((u32::from(ip) & mask, bits))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ips_and_ports() {
        let a = ServiceAllocators::new("10.43.0.0/16", (30000, 32767)).unwrap();
        assert_eq!(a.first_ip().to_string(), "10.43.0.1");
        assert_eq!(
            a.allocate_ip(Some("10.43.0.1")).unwrap().to_string(),
            "10.43.0.1"
        );
        assert!(matches!(
            a.allocate_ip(Some("10.43.0.1")),
            Err(AllocError::Taken(_))
        ));
        assert!(matches!(
            a.allocate_ip(Some("10.44.0.1")),
            Err(AllocError::OutOfRange(_))
        ));
        let ip = a.allocate_ip(None).unwrap();
        assert!(ip.to_string().starts_with("10.43."));
        assert_eq!(a.allocate_port(Some(30080)).unwrap(), 30080);
        assert!(matches!(
            a.allocate_port(Some(30080)),
            Err(AllocError::Taken(_))
        ));
        assert!(matches!(
            a.allocate_port(Some(80)),
            Err(AllocError::OutOfRange(_))
        ));
        a.release_port(30080);
        assert_eq!(a.allocate_port(Some(30080)).unwrap(), 30080);
    }

    #[test]
    fn small_range_fills() {
        let a = ServiceAllocators::new("10.0.0.0/30", (30000, 30001)).unwrap();
        a.allocate_ip(None).unwrap();
        a.allocate_ip(None).unwrap();
        assert!(matches!(a.allocate_ip(None), Err(AllocError::Full(_))));
    }
}
