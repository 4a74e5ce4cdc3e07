//! Connection caps: `max_connections` overall and `max_connections_per_ip`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Counts open control connections, overall and per client address.
#[derive(Debug)]
pub struct ConnectionTracker {
    max_total: usize,
    max_per_ip: usize,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitRefusal {
    #[error("too many connections to this server; try again later")]
    ServerFull,
    #[error("too many connections from your address; try again later")]
    AddressFull,
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct ConnectionSlot {
    tracker: Arc<ConnectionTracker>,
    ip: IpAddr,
}

impl ConnectionTracker {
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(ConnectionTracker {
            max_total,
            max_per_ip,
            counts: Mutex::new(Counts::default()),
        })
    }

    /// Admits a connection from `ip`, or says why not.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionSlot, LimitRefusal> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if counts.total >= self.max_total {
            return Err(LimitRefusal::ServerFull);
        }
        let for_ip = counts.per_ip.entry(ip).or_insert(0);
        if *for_ip >= self.max_per_ip {
            return Err(LimitRefusal::AddressFull);
        }
        *for_ip += 1;
        counts.total += 1;
        Ok(ConnectionSlot {
            tracker: self.clone(),
            ip,
        })
    }

    /// Open connections now.
    pub fn total(&self) -> usize {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).total
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut counts = self
            .tracker
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        counts.total -= 1;
        if let Some(n) = counts.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_address_and_overall() {
        let t = ConnectionTracker::new(3, 2);
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        let s1 = t.admit(a).expect("1");
        let _s2 = t.admit(a).expect("2");
        assert_eq!(t.admit(a).err(), Some(LimitRefusal::AddressFull));
        let _s3 = t.admit(b).expect("3");
        assert_eq!(t.admit(b).err(), Some(LimitRefusal::ServerFull));
        drop(s1);
        assert_eq!(t.total(), 2);
        let _s4 = t.admit(a).expect("freed place");
    }
}
