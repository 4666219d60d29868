//! OpenAPI schemas (feature `openapi`) for the wire types whose JSON is written by
//! hand rather than derived: fixed-size hex ([`HexBytes`]), the DSSE [`Envelope`]
//! (base64 fields) and the collector lists ([`Inventory`], whose kind's own fields
//! are flattened in). The derived types carry `#[derive(utoipa::ToSchema)]` under
//! the same feature.

use std::borrow::Cow;

use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

use crate::report::{BpfProgram, CollectorState, Digest32, HexBytes, Inventory, Workload};
use crate::Envelope;

type Schemas = Vec<(String, RefOr<Schema>)>;

fn string(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
}

impl<const N: usize> PartialSchema for HexBytes<N> {
    fn schema() -> RefOr<Schema> {
        let digits = 2 * N;
        string(&format!("{N} bytes as {digits} lowercase hex digits"))
            .pattern(Some(format!("^[0-9a-f]{{{digits}}}$")))
            .min_length(Some(digits))
            .max_length(Some(digits))
            .into()
    }
}

impl<const N: usize> ToSchema for HexBytes<N> {
    fn name() -> Cow<'static, str> {
        Cow::Owned(format!("Hex{N}"))
    }
}

impl PartialSchema for Envelope {
    fn schema() -> RefOr<Schema> {
        let signature = ObjectBuilder::new()
            .property(
                "keyid",
                string("Names the signing key (a hint, unauthenticated)"),
            )
            .property("sig", string("The signature over the PAE, base64"))
            .required("sig");
        ObjectBuilder::new()
            .description(Some(
                "A DSSE envelope: the signed payload and its signatures over \
                 PAE(payloadType, payload)",
            ))
            .property("payload", string("The exact signed bytes, base64"))
            .property("payloadType", string("The media type of the payload"))
            .property(
                "signatures",
                ArrayBuilder::new().items(signature).min_items(Some(1)),
            )
            .required("payload")
            .required("payloadType")
            .required("signatures")
            .into()
    }
}

impl ToSchema for Envelope {}

/// The shared shape of a collector's list; `extra` adds the kind's own fields.
fn inventory<T: ToSchema>(what: &str, extra: Vec<(&str, RefOr<Schema>)>) -> RefOr<Schema> {
    let mut o = ObjectBuilder::new()
        .description(Some(format!(
            "{what}: the collector's state and, when `ok`, the digest of the full list; \
             the items themselves are absent in a pulse when the digest was sent before"
        )))
        .property("state", Ref::from_schema_name(CollectorState::name()))
        .required("state")
        .property("reason", string("Why the list is not `ok`"));
    for (name, s) in extra {
        o = o.property(name, s);
    }
    o.property("digest", Ref::from_schema_name(Digest32::name()))
        .property(
            "items",
            ArrayBuilder::new().items(Ref::from_schema_name(T::name())),
        )
        .into()
}

fn inventory_schemas<T: ToSchema>(schemas: &mut Schemas) {
    schemas.push((CollectorState::name().into(), CollectorState::schema()));
    schemas.push((Digest32::name().into(), Digest32::schema()));
    schemas.push((T::name().into(), T::schema()));
    T::schemas(schemas);
}

impl PartialSchema for Inventory<Workload> {
    fn schema() -> RefOr<Schema> {
        inventory::<Workload>("The containers in the guest (podman)", Vec::new())
    }
}

impl ToSchema for Inventory<Workload> {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Workloads")
    }
    fn schemas(schemas: &mut Schemas) {
        inventory_schemas::<Workload>(schemas);
    }
}

impl PartialSchema for Inventory<BpfProgram> {
    fn schema() -> RefOr<Schema> {
        let lsm = ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
                Type::Boolean,
                Type::Null,
            ]))
            .description(Some("Whether the BPF LSM is active, where the kernel says"));
        inventory::<BpfProgram>("The loaded eBPF programs", vec![("lsm_active", lsm.into())])
    }
}

impl ToSchema for Inventory<BpfProgram> {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Ebpf")
    }
    fn schemas(schemas: &mut Schemas) {
        inventory_schemas::<BpfProgram>(schemas);
    }
}
