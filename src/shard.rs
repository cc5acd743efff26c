//! `--shard K/N`: splits the tenants between N processes by a stable hash of the tenant id, so
//! that several replicas (CronJobs, ECS tasks) each take a fixed part. Pure.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// Shard `index` of `count` (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This process's shard, `0..count`.
    pub index: u32,
    /// How many shards there are (at least 1).
    pub count: u32,
}

impl Shard {
    /// The shard a tenant id belongs to among `count`: the first 8 bytes of sha256(id), big
    /// endian, modulo `count`. Stable across runs, machines and versions.
    pub fn of(tenant_id: &str, count: u32) -> u32 {
        let digest = Sha256::digest(tenant_id.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        (u64::from_be_bytes(first) % u64::from(count.max(1))) as u32
    }

    /// Whether this shard works on `tenant_id`.
    pub fn contains(&self, tenant_id: &str) -> bool {
        Self::of(tenant_id, self.count) == self.index
    }
}

impl FromStr for Shard {
    type Err = String;

    /// Parses `K/N`, e.g. `0/2`. Errors: not two numbers, N = 0, K ≥ N.
    fn from_str(s: &str) -> Result<Shard, String> {
        let (k, n) = s.split_once('/').ok_or_else(|| format!("`{s}` is not K/N, e.g. 0/2"))?;
        let index: u32 = k.trim().parse().map_err(|_| format!("`{k}` is not a number"))?;
        let count: u32 = n.trim().parse().map_err(|_| format!("`{n}` is not a number"))?;
        if count == 0 || index >= count {
            return Err(format!("shard {index}/{count}: K must be below N and N at least 1"));
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tenant_is_in_exactly_one_shard() {
        for n in 1..=7 {
            for i in 0..200 {
                let id = format!("tenant-{i}");
                let owners = (0..n).filter(|k| Shard { index: *k, count: n }.contains(&id)).count();
                assert_eq!(owners, 1, "{id} in {n} shards");
            }
        }
    }

    #[test]
    fn assignment_is_stable_and_spread() {
        // Pinned values: changing the hash would move tenants between running replicas.
        assert_eq!(Shard::of("acme", 1000), 872);
        assert_eq!(Shard::of("globex", 1000), 599);
        assert_eq!(Shard::of("acme", 2), 0);
        let in_zero = (0..1000).filter(|i| Shard::of(&format!("t{i}"), 2) == 0).count();
        assert!((400..600).contains(&in_zero), "{in_zero} of 1000 in shard 0");
    }

    #[test]
    fn parses_k_of_n() {
        assert_eq!("1/3".parse::<Shard>(), Ok(Shard { index: 1, count: 3 }));
        assert!("3/3".parse::<Shard>().is_err());
        assert!("0/0".parse::<Shard>().is_err());
        assert!("x".parse::<Shard>().is_err());
    }
}
