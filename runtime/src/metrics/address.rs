//! Where berthd serves its metrics: `--metrics-address` / `[metrics] address` read and checked.
//! A missing host means loopback, and an address other hosts could reach is refused unless the
//! operator allows it in so many words: the endpoint has no authentication and names every
//! container with its usage.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The address to listen on for `text` (`:PORT`, `PORT`, `HOST:PORT` with an IP address or
/// `localhost`, `[V6]:PORT`). A non-loopback address is refused unless `allow_non_loopback`.
pub fn parse_metrics_address(text: &str, allow_non_loopback: bool) -> Result<SocketAddr, String> {
    let text = text.trim();
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') || (host.starts_with('[') && host.ends_with(']')) => (host, port),
        _ if text.parse::<u16>().is_ok() => ("", text),
        _ => {
            return Err(format!(
                "metrics address {text:?} is not HOST:PORT: give e.g. \":9323\" (loopback) or \"127.0.0.1:9323\""
            ))
        }
    };
    let port: u16 = port.parse().map_err(|_| {
        format!("metrics address {text:?} has no valid port: give a port from 1 to 65535, e.g. \":9323\"")
    })?;
    if port == 0 {
        return Err(format!(
            "metrics address {text:?} has port 0: give a fixed port so that Prometheus knows where to scrape"
        ));
    }
    let ip: IpAddr = match host {
        "" | "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        bracketed if bracketed.starts_with('[') => bracketed[1..bracketed.len() - 1]
            .parse()
            .map_err(|_| format!("metrics address {text:?} has no valid IPv6 address in brackets"))?,
        other => other.parse().map_err(|_| {
            format!("metrics address {text:?} names host {other:?}: give an IP address (or localhost), not a name")
        })?,
    };
    if !ip.is_loopback() && !allow_non_loopback {
        return Err(format!(
            "metrics address {text:?} is not a loopback address: the metrics endpoint has no authentication and names every container with its usage, so anyone who can reach {ip} could read them; use \"127.0.0.1:{port}\", or if a firewall keeps others out, allow it with --metrics-allow-non-loopback ([metrics] allow_non_loopback = true)"
        ));
    }
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_host_means_loopback_and_others_must_be_allowed() {
        let loopback = |port| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
        assert_eq!(parse_metrics_address(":9323", false), Ok(loopback(9323)));
        assert_eq!(parse_metrics_address("9323", false), Ok(loopback(9323)));
        assert_eq!(parse_metrics_address("localhost:80", false), Ok(loopback(80)));
        assert_eq!(parse_metrics_address("127.0.0.2:1", false), Ok("127.0.0.2:1".parse().unwrap()));
        assert_eq!(parse_metrics_address("[::1]:9323", false), Ok("[::1]:9323".parse().unwrap()));
        for open in ["0.0.0.0:9323", "[::]:9323", "10.1.2.3:9323"] {
            let error = parse_metrics_address(open, false).unwrap_err();
            assert!(error.contains("not a loopback") && error.contains("--metrics-allow-non-loopback"), "{error}");
            assert!(parse_metrics_address(open, true).is_ok(), "{open}");
        }
        for (bad, says) in [
            ("", "not HOST:PORT"),
            ("::1", "not HOST:PORT"),
            (":0", "port 0"),
            (":70000", "no valid port"),
            ("example.org:9323", "not a name"),
            ("[fe80::zz]:1", "IPv6"),
        ] {
            let error = parse_metrics_address(bad, false).unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }
}
