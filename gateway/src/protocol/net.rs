//! Network addresses in configuration: a trusted proxy is one address or a CIDR range.
use serde::Deserialize;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An IP address or a CIDR range (`10.0.0.7`, `10.42.0.0/16`, `fd00::/8`). A bare address is
/// a range of one. An IPv4 peer seen as IPv4-mapped IPv6 (`::ffff:10.0.0.7`, dual-stack
/// sockets) matches IPv4 ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct IpRange {
    network: IpAddr,
    prefix: u8,
}

impl IpRange {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let network = IpAddr::from_str(addr).map_err(|_| format!("{s:?} is not an IP address or a CIDR range"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?,
        };
        let range = Self { network, prefix };
        // `10.0.0.7/8` is almost always a typo for `10.0.0.0/8` or `10.0.0.7`: say so.
        if range.masked(network) != Self::bits(network) {
            return Err(format!("{s:?} has bits set beyond its /{prefix} prefix"));
        }
        Ok(range)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.network.is_ipv4() && self.masked(ip) == Self::bits(self.network)
    }

    fn bits(ip: IpAddr) -> u128 {
        match ip {
            IpAddr::V4(v) => u32::from(v) as u128,
            IpAddr::V6(v) => u128::from(v),
        }
    }

    fn masked(&self, ip: IpAddr) -> u128 {
        let width = if ip.is_ipv4() { 32 } else { 128 };
        let host_bits = width - u32::from(self.prefix);
        let mask = if host_bits >= 128 {
            0
        } else {
            (u128::MAX >> host_bits) << host_bits
        };
        let mask = if width == 32 { mask & u32::MAX as u128 } else { mask };
        Self::bits(ip) & mask
    }
}

/// From configuration (`trusted_proxies`, both tables): the message names the setting, since
/// TOML values deserialised from the environment overlay carry no key path.
impl TryFrom<String> for IpRange {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s).map_err(|e| format!("trusted_proxies: {e}"))
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// Whether `peer` is within one of `ranges`.
pub fn in_ranges(ranges: &[IpRange], peer: IpAddr) -> bool {
    ranges.iter().any(|r| r.contains(peer))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_and_ranges() {
        let one = IpRange::parse("10.0.0.7").unwrap();
        assert!(one.contains(ip("10.0.0.7")));
        assert!(!one.contains(ip("10.0.0.8")));
        let pods = IpRange::parse("10.42.0.0/16").unwrap();
        assert!(pods.contains(ip("10.42.3.9")));
        assert!(!pods.contains(ip("10.43.0.1")));
        assert!(pods.contains(ip("::ffff:10.42.0.1")), "IPv4-mapped peers match IPv4 ranges");
        let v6 = IpRange::parse("fd00::/8").unwrap();
        assert!(v6.contains(ip("fd12::1")));
        assert!(!v6.contains(ip("fe80::1")));
        assert!(!v6.contains(ip("10.0.0.1")));
        assert!(IpRange::parse("0.0.0.0/0").unwrap().contains(ip("192.0.2.1")));
        assert!(IpRange::parse("::/0").unwrap().contains(ip("2001:db8::1")));
        assert!(IpRange::parse("192.0.2.1/32").unwrap().contains(ip("192.0.2.1")));
    }

    #[test]
    fn malformed_ranges_are_refused_with_a_reason() {
        for bad in ["", "10.0.0", "10.0.0.0/33", "fd00::/129", "10.0.0.0/x", "10.0.0.7/8", "proxy.local"] {
            assert!(IpRange::parse(bad).is_err(), "{bad}");
        }
        assert!(IpRange::parse("10.0.0.7/8").unwrap_err().contains("beyond"));
    }
}
