//! Host names in `[[did]]` SIP URI destinations (transport 1), resolved per
//! RFC 3263 §4 exactly like `[[upstream]] uri`: the shell runs the lookups
//! (`src/dns.rs`) and hands each answer in; the planner reads the targets
//! it has. A name with no answer (yet, or any more) is skipped like an
//! unreachable destination.

use std::collections::HashMap;

use super::{Resolve, Target};
use crate::config::DidConfig;
use crate::sip::{Host, Uri};

/// DID transport 1: a SIP URI.
const DEST_URI: u8 = 1;

/// What to resolve for the SIP URI destination `uri`: None for an IP
/// literal or an unusable URI.
pub fn resolution(uri: &str) -> Option<Resolve> {
    let u = Uri::parse(uri.trim())?;
    let transport = u.transport().ok()?;
    match u.host {
        Host::Name(name) if !name.is_empty() => Some(Resolve {
            host: name.to_ascii_lowercase(),
            port: u.port,
            transport,
        }),
        _ => None,
    }
}

/// Every distinct name the DIDs' SIP URI destinations need, in first-use
/// order.
pub fn collect<'a>(dids: impl IntoIterator<Item = &'a DidConfig>) -> Vec<Resolve> {
    let mut out: Vec<Resolve> = Vec::new();
    for d in dids {
        for dest in d.destinations.iter().filter(|d| d.transport == DEST_URI) {
            if let Some(r) = resolution(&dest.destination) {
                if !out.contains(&r) {
                    out.push(r);
                }
            }
        }
    }
    out
}

/// The last answer for each DID destination name.
#[derive(Debug, Default)]
pub struct DidHosts {
    answers: HashMap<Resolve, (Vec<Target>, Option<String>)>,
}

impl DidHosts {
    /// The shell's answer for `name`: its targets from now on (empty, with
    /// the error, when it does not resolve).
    pub fn set(&mut self, name: Resolve, targets: Vec<Target>, error: Option<String>) {
        self.answers.insert(name, (targets, error));
    }

    /// Forgets names no DID uses any more (after a reload or API change).
    pub fn retain(&mut self, used: &[Resolve]) {
        self.answers.retain(|k, _| used.contains(k));
    }

    /// The targets of `name` in RFC 3263 order; Err says why there are none.
    pub fn targets(&self, name: &Resolve) -> Result<&[Target], String> {
        match self.answers.get(name) {
            Some((t, _)) if !t.is_empty() => Ok(t),
            Some((_, Some(e))) => Err(e.clone()),
            _ => Err("not resolved yet".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::Transport;

    #[test]
    fn names_only_with_port_and_transport() {
        assert_eq!(resolution("sip:1000@10.0.0.1:5070"), None);
        assert_eq!(
            resolution("sip:1000@PBX.test:5070;transport=tcp"),
            Some(Resolve {
                host: "pbx.test".into(),
                port: Some(5070),
                transport: Some(Transport::Tcp)
            })
        );
        let r = resolution("sip:pbx.test").unwrap();
        assert_eq!((r.port, r.transport), (None, None));
        let mut h = DidHosts::default();
        assert!(h.targets(&r).is_err());
        h.set(r.clone(), Vec::new(), Some("NXDOMAIN".into()));
        assert_eq!(h.targets(&r), Err("NXDOMAIN".to_owned()));
        h.retain(&[]);
        assert!(h.targets(&r).is_err());
    }
}
