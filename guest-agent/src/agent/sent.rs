//! What the control plane already has from this agent, and so what the next pulse
//! must carry: lists by digest once sent in full, and the measurements by digest
//! alone when nothing changed.

use evidence::{Digest32, Inventory, InventoryItem, Measurements};

/// What a pulse says about the measurements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PulseBody {
    /// The measurements, each list the control plane already has reduced to its
    /// digest.
    Changed(Box<Measurements>),
    /// Nothing changed since the last accepted pulse: [`Measurements::digest`] alone.
    Unchanged(Digest32),
}

/// What the control plane has from this agent: the digest of the measurements last
/// accepted, and the policy file list, workloads and eBPF digests whose full lists it
/// has. A pulse carries a list only when its digest differs (or after a
/// (re)registration), and only the measurements' digest when nothing changed, so a
/// steady-state pulse does not grow with the number of watched files or containers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SentLists {
    /// [`Measurements::digest`] of the measurements last accepted.
    pub measurements: Option<Digest32>,
    /// Digest of the policy file list last sent in full.
    pub policy: Option<Digest32>,
    /// Digest of the workloads list last sent in full.
    pub workloads: Option<Digest32>,
    /// Digest of the eBPF program list last sent in full.
    pub ebpf: Option<Digest32>,
}

impl SentLists {
    /// `m` as it goes into a pulse: each list whose digest the control plane already
    /// has is reduced to its state, reason and digest.
    pub fn strip(&self, m: &Measurements) -> Measurements {
        fn strip<T: InventoryItem>(list: Option<&mut Inventory<T>>, sent: Option<Digest32>) {
            if let Some(l) = list {
                if l.digest.is_some() && l.digest == sent {
                    l.items = None;
                }
            }
        }
        let mut out = m.clone();
        if self.policy == Some(out.policy.digest) {
            out.policy.files.clear();
        }
        strip(out.workloads.as_mut(), self.workloads);
        strip(out.ebpf.as_mut(), self.ebpf);
        out
    }

    /// What goes into the next pulse for the measurements `m`.
    pub fn body(&self, m: &Measurements) -> PulseBody {
        match m.digest() {
            Ok(d) if self.measurements == Some(d) => PulseBody::Unchanged(d),
            _ => PulseBody::Changed(Box::new(self.strip(m))),
        }
    }

    /// What the control plane has after accepting `m`.
    pub fn after(m: &Measurements) -> SentLists {
        SentLists {
            measurements: m.digest().ok(),
            policy: Some(m.policy.digest),
            workloads: m.workloads.as_ref().and_then(|w| w.digest),
            ebpf: m.ebpf.as_ref().and_then(|e| e.digest),
        }
    }
}
