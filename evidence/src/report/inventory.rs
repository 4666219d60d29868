//! The lists a collector reports: one [`Inventory`] shape (`state`, `reason`, the
//! kind's own fields, `digest`, `items`) for every kind of item ([`Workload`],
//! [`BpfProgram`]).
//!
//! In a report the full list is always present; in a pulse only when `digest` changed
//! since the previous pulse (pulses stay small). The JSON of each kind is the one the
//! agents have always signed: the kind's own fields ([`InventoryItem::Extra`]) are
//! flattened between `reason` and `digest`.

use std::borrow::Cow;
use std::fmt::Debug;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{check_opt_text, check_text, too_many, Digest32, HexBytes};
use crate::error::EvidenceError;
use crate::limits::*;

/// Whether a collector could see what it measures. A collector that could not look
/// says so with a reason; it never reports an empty "all fine" list.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CollectorState {
    /// The list is complete.
    Ok,
    /// The source could not be asked (podman unreachable, ...): the list is unknown.
    Unknown,
    /// The agent lacks the privilege or kernel support to look (e.g. no CAP_BPF).
    Unavailable,
}

impl CollectorState {
    /// The state as it is spelled on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            CollectorState::Ok => "ok",
            CollectorState::Unknown => "unknown",
            CollectorState::Unavailable => "unavailable",
        }
    }
}

/// What an item kind brings to its [`Inventory`]: its name in the measurements, its
/// bounds, the fields its list digest names, and the list's own extra fields.
pub trait InventoryItem: Clone + Debug + PartialEq + Eq + Serialize + DeserializeOwned {
    /// The list's field in [`Measurements`](super::Measurements) (`workloads`,
    /// `ebpf`); messages about the list name it.
    const NAME: &'static str;
    /// The field a bad `reason` is refused under.
    const REASON_FIELD: &'static str;
    /// The field a list over [`Self::MAX_ITEMS`] is refused under.
    const ITEMS_FIELD: &'static str;
    /// Most items in one list.
    const MAX_ITEMS: usize;
    /// The list's fields besides the shared ones, flattened into its JSON object
    /// between `reason` and `digest`; `()` for none.
    type Extra: Clone + Debug + Default + PartialEq + Eq + Serialize + DeserializeOwned;
    /// The fields of the item's line in [`Inventory::digest_of`], in order.
    fn digest_fields(&self) -> Vec<Cow<'_, str>>;
    /// Field-level bounds (lengths, control characters), naming the field refused.
    fn validate(&self) -> Result<(), EvidenceError>;
}

/// One collector's list of `T`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "T: InventoryItem")]
pub struct Inventory<T: InventoryItem> {
    /// Whether the collector could see the whole list.
    pub state: CollectorState,
    /// Why the list is not `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The kind's own fields (for eBPF, [`EbpfExtra::lsm_active`]).
    #[serde(flatten)]
    pub extra: T::Extra,
    /// [`Inventory::digest_of`] the full list; `None` unless `state` is `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest32>,
    /// The full list; in a pulse `None` when `digest` is the one last sent in full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<T>>,
}

/// Every container in the guest.
pub type Workloads = Inventory<Workload>;
/// The loaded eBPF programs.
pub type Ebpf = Inventory<BpfProgram>;

impl<T: InventoryItem> Inventory<T> {
    /// A complete list, with its digest.
    pub fn full(items: Vec<T>, extra: T::Extra) -> Inventory<T> {
        Inventory {
            state: CollectorState::Ok,
            reason: None,
            extra,
            digest: Some(Self::digest_of(&items)),
            items: Some(items),
        }
    }

    /// SHA-256 over the items' [`InventoryItem::digest_fields`] lines, each field
    /// followed by NUL and each line by LF, sorted: order-independent, and it names
    /// every field.
    pub fn digest_of(items: &[T]) -> Digest32 {
        use sha2::{Digest, Sha256};
        let mut lines: Vec<Vec<Cow<'_, str>>> = items.iter().map(T::digest_fields).collect();
        lines.sort();
        let mut h = Sha256::new();
        for fields in lines {
            for f in fields {
                h.update(f.as_bytes());
                h.update([0]);
            }
            h.update(b"\n");
        }
        HexBytes(h.finalize().into())
    }

    /// The digest and items of a list the collector could see completely (`ok`, with
    /// both); `None` for any other list.
    pub fn complete(&self) -> Option<(Digest32, &[T])> {
        match (self.state, self.digest, self.items.as_deref()) {
            (CollectorState::Ok, Some(d), Some(i)) => Some((d, i)),
            _ => None,
        }
    }

    pub(super) fn validate(&self) -> Result<(), EvidenceError> {
        check_opt_text(T::REASON_FIELD, self.reason.as_deref())?;
        let items = self.items.as_deref().unwrap_or_default();
        if items.len() > T::MAX_ITEMS {
            return Err(too_many(T::ITEMS_FIELD, items.len(), T::MAX_ITEMS));
        }
        items.iter().try_for_each(T::validate)
    }
}

/// One container, as podman reports it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Workload {
    /// Container name (podman's first name, without a leading `/`).
    pub name: String,
    /// Full container id (64 hex digits).
    pub id: String,
    /// `running`, `exited`, `created`, `paused`, ...
    pub state: String,
    /// The image reference the container was created from, as given
    /// (`registry/repo:tag` or `registry/repo@sha256:..`).
    pub image: String,
    /// The local image id (`sha256:..` of the image config).
    pub image_id: String,
    /// The manifest digest the registry serves (`sha256:<64 hex>`), from the image's
    /// RepoDigests matching `image`'s repository. `None` for an image that never came
    /// from a registry (built locally): such an image cannot carry a signature.
    pub image_digest: Option<String>,
}

impl InventoryItem for Workload {
    const NAME: &'static str = "workloads";
    const REASON_FIELD: &'static str = "measurements.workloads.reason";
    const ITEMS_FIELD: &'static str = "measurements.workloads.items";
    const MAX_ITEMS: usize = MAX_WORKLOADS;
    type Extra = ();

    /// `name id state image image_id image_digest` (`""` for no digest).
    fn digest_fields(&self) -> Vec<Cow<'_, str>> {
        [
            self.name.as_str(),
            self.id.as_str(),
            self.state.as_str(),
            self.image.as_str(),
            self.image_id.as_str(),
            self.image_digest.as_deref().unwrap_or(""),
        ]
        .into_iter()
        .map(Cow::Borrowed)
        .collect()
    }

    fn validate(&self) -> Result<(), EvidenceError> {
        check_text("measurements.workloads.name", &self.name, MAX_TEXT_LEN)?;
        check_text("measurements.workloads.id", &self.id, MAX_TEXT_LEN)?;
        check_text("measurements.workloads.state", &self.state, MAX_TEXT_LEN)?;
        check_text(
            "measurements.workloads.image",
            &self.image,
            MAX_IMAGE_REF_LEN,
        )?;
        check_text(
            "measurements.workloads.image_id",
            &self.image_id,
            MAX_TEXT_LEN,
        )?;
        check_opt_text(
            "measurements.workloads.image_digest",
            self.image_digest.as_deref(),
        )
    }
}

/// One loaded BPF program.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BpfProgram {
    /// The kernel's program id (changes on every load).
    pub id: u32,
    /// The program's name as the kernel keeps it.
    pub name: String,
    /// The kernel's program type name (`socket_filter`, `kprobe`, `lsm`, ...).
    pub prog_type: String,
    /// The kernel's 8-byte tag, hex.
    pub tag: String,
    /// SHA-256 of the translated instructions with map references normalised, so
    /// the hash names the program and survives a reload.
    pub sha256: Digest32,
    /// bpffs paths (under the configured directories) where this program is pinned.
    #[serde(default)]
    pub pinned: Vec<String>,
}

/// The eBPF list's own field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EbpfExtra {
    /// Whether `bpf` is among the active LSMs (`/sys/kernel/security/lsm`);
    /// `None` where that cannot be read.
    #[serde(default)]
    pub lsm_active: Option<bool>,
}

impl InventoryItem for BpfProgram {
    const NAME: &'static str = "ebpf";
    const REASON_FIELD: &'static str = "measurements.ebpf.reason";
    const ITEMS_FIELD: &'static str = "measurements.ebpf.items";
    const MAX_ITEMS: usize = MAX_BPF_PROGRAMS;
    type Extra = EbpfExtra;

    /// `name type sha256 pinned..`. Ids and tags are left out: ids change on every
    /// load, and the tag is derived from the instructions, which `sha256` already
    /// names.
    fn digest_fields(&self) -> Vec<Cow<'_, str>> {
        let mut v = vec![
            Cow::Borrowed(self.name.as_str()),
            Cow::Borrowed(self.prog_type.as_str()),
            Cow::Owned(self.sha256.to_hex()),
        ];
        v.extend(self.pinned.iter().map(|p| Cow::Borrowed(p.as_str())));
        v
    }

    fn validate(&self) -> Result<(), EvidenceError> {
        check_text("measurements.ebpf.name", &self.name, MAX_TEXT_LEN)?;
        check_text("measurements.ebpf.prog_type", &self.prog_type, MAX_TEXT_LEN)?;
        check_text("measurements.ebpf.tag", &self.tag, MAX_TEXT_LEN)?;
        if self.pinned.len() > MAX_BPF_PINS {
            return Err(too_many(
                "measurements.ebpf.pinned",
                self.pinned.len(),
                MAX_BPF_PINS,
            ));
        }
        for path in &self.pinned {
            check_text("measurements.ebpf.pinned", path, MAX_PATH_LEN)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The twin structs this type replaced were plain derives, which serde also let
    /// decode from a JSON array (`["ok",null,...]`). The flattened extra fields need
    /// an object: no agent ever sent the array form, and it is refused now.
    #[test]
    fn lists_decode_from_objects_only() {
        assert!(serde_json::from_str::<Ebpf>(r#"["ok",null,null,null,null]"#).is_err());
        assert!(serde_json::from_str::<Workloads>(r#"["ok",null,null,null]"#).is_err());
        let w: Workloads = serde_json::from_str(r#"{"state":"ok","items":[]}"#).unwrap();
        assert_eq!(w.complete(), None, "no digest: not complete");
    }

    #[test]
    fn full_lists_are_complete() {
        let e = Ebpf::full(vec![], EbpfExtra::default());
        assert_eq!(e.complete(), Some((Ebpf::digest_of(&[]), &[][..])));
        let mut w = Workloads::full(vec![], ());
        w.state = CollectorState::Unknown;
        assert_eq!(w.complete(), None);
        assert_eq!(CollectorState::Unavailable.as_str(), "unavailable");
    }
}
