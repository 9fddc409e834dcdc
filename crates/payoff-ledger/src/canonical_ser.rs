//! Canonical JSON written straight from a `Serialize` value, without first
//! building a `serde_json::Value` tree.
//!
//! The bytes are those of [`crate::canonical_json`] applied to
//! `serde_json::to_value(value)` (a property test holds the two together),
//! but a statement naming a million outcomes is never copied into a tree
//! of a million strings: everything is written as it comes into one
//! buffer, and an object whose members came out of order is put in order
//! in place (its largest member moved once, the others through a small
//! scratch copy), so a statement costs one buffer, not a copy per level.

use serde::ser::{self, Serialize};

use crate::canonical::{sort_members, write_finite, write_string};

/// Why a value has no canonical JSON: a map key that is not a string or
/// an integer, or an integer beyond 64 bits (as `serde_json::to_value`
/// refuses them).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no canonical JSON: {0}")]
pub struct CanonicalError(String);

impl ser::Error for CanonicalError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        CanonicalError(msg.to_string())
    }
}

/// The canonical bytes of `value`, written without a JSON tree.
///
/// ```
/// #[derive(serde::Serialize)]
/// struct S { b: f64, a: Vec<Option<bool>> }
/// let bytes = payoff_ledger::canonical_json_of(&S { b: 1.5, a: vec![Some(true), None] }).unwrap();
/// assert_eq!(bytes, br#"{"a":[true,null],"b":1.5}"#);
/// ```
pub fn canonical_json_of<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CanonicalError> {
    canonical_json_omitting(value, None, 256)
}

/// [`canonical_json_of`] without the member `omit` of the outermost
/// object, as if it were removed from the tree first (what a signature
/// covers: the statement without its signature).
/// `capacity` is room made at once: a caller that knows roughly how long
/// the bytes will be (tens of megabytes for a large statement) spares
/// the buffer its doublings, each a fresh allocation and a copy.
pub fn canonical_json_omitting<T: Serialize + ?Sized>(
    value: &T,
    omit: Option<&str>,
    capacity: usize,
) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(capacity);
    value.serialize(Canon {
        out: &mut out,
        omit,
    })?;
    Ok(out)
}

/// Writes one value into `out`; `omit` names a member its object leaves
/// out (only ever the outermost one's).
struct Canon<'a> {
    out: &'a mut Vec<u8>,
    omit: Option<&'a str>,
}

impl<'a> Canon<'a> {
    fn into(out: &'a mut Vec<u8>) -> Canon<'a> {
        Canon { out, omit: None }
    }
}

/// An object being written: each member written as `"name":value` into
/// `out` as it comes, remembered by its place, and the members put in
/// order when all are known. `close` is what follows the object (the `}`
/// of an enum variant's wrapper, when there is one).
struct Object<'a> {
    out: &'a mut Vec<u8>,
    omit: Option<&'a str>,
    /// Where the first member starts (just after the `{`).
    body: usize,
    members: Vec<(String, std::ops::Range<usize>)>,
    key: Option<String>,
    close: &'static [u8],
}

/// An array being written straight into `out`.
struct Array<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
    close: &'static [u8],
}

impl<'a> Canon<'a> {
    fn object(self, prefix: Option<&str>, close: &'static [u8], len: usize) -> Object<'a> {
        if let Some(variant) = prefix {
            self.out.push(b'{');
            write_string(variant, self.out);
            self.out.push(b':');
        }
        self.out.push(b'{');
        Object {
            body: self.out.len(),
            out: self.out,
            omit: self.omit,
            members: Vec::with_capacity(len),
            key: None,
            close,
        }
    }

    fn array(self, prefix: Option<&str>, close: &'static [u8]) -> Array<'a> {
        if let Some(variant) = prefix {
            self.out.push(b'{');
            write_string(variant, self.out);
            self.out.push(b':');
        }
        self.out.push(b'[');
        Array {
            out: self.out,
            first: true,
            close,
        }
    }

    fn integer(self, digits: String) -> Result<(), CanonicalError> {
        self.out.extend_from_slice(digits.as_bytes());
        Ok(())
    }
}

impl<'a> ser::Serializer for Canon<'a> {
    type Ok = ();
    type Error = CanonicalError;
    type SerializeSeq = Array<'a>;
    type SerializeTuple = Array<'a>;
    type SerializeTupleStruct = Array<'a>;
    type SerializeTupleVariant = Array<'a>;
    type SerializeMap = Object<'a>;
    type SerializeStruct = Object<'a>;
    type SerializeStructVariant = Object<'a>;

    fn serialize_bool(self, v: bool) -> Result<(), CanonicalError> {
        self.out
            .extend_from_slice(if v { b"true" as &[u8] } else { b"false" });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), CanonicalError> {
        self.integer(v.to_string())
    }
    fn serialize_i16(self, v: i16) -> Result<(), CanonicalError> {
        self.integer(v.to_string())
    }
    fn serialize_i32(self, v: i32) -> Result<(), CanonicalError> {
        self.integer(v.to_string())
    }
    fn serialize_i64(self, v: i64) -> Result<(), CanonicalError> {
        self.integer(v.to_string())
    }
    fn serialize_i128(self, v: i128) -> Result<(), CanonicalError> {
        if i64::try_from(v).is_ok() || u64::try_from(v).is_ok() {
            self.integer(v.to_string())
        } else {
            Err(CanonicalError(format!("{v} is beyond 64 bits")))
        }
    }
    fn serialize_u8(self, v: u8) -> Result<(), CanonicalError> {
        self.integer(v.to_string())
    }
    fn serialize_u16(self, v: u16) -> Result<(), CanonicalError> {
        self.integer(v.to_string())
    }
    fn serialize_u32(self, v: u32) -> Result<(), CanonicalError> {
        self.integer(v.to_string())
    }
    fn serialize_u64(self, v: u64) -> Result<(), CanonicalError> {
        self.integer(v.to_string())
    }
    fn serialize_u128(self, v: u128) -> Result<(), CanonicalError> {
        match u64::try_from(v) {
            Ok(v) => self.integer(v.to_string()),
            Err(_) => Err(CanonicalError(format!("{v} is beyond 64 bits"))),
        }
    }
    fn serialize_f32(self, v: f32) -> Result<(), CanonicalError> {
        self.serialize_f64(f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result<(), CanonicalError> {
        // As `serde_json::to_value`: a number that is not finite is null.
        if v.is_finite() {
            write_finite(v, self.out);
        } else {
            self.out.extend_from_slice(b"null");
        }
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), CanonicalError> {
        write_string(v.encode_utf8(&mut [0; 4]), self.out);
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), CanonicalError> {
        write_string(v, self.out);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), CanonicalError> {
        // As `serde_json::to_value`: an array of numbers.
        use ser::SerializeSeq;
        let mut a = self.serialize_seq(Some(v.len()))?;
        for b in v {
            a.serialize_element(b)?;
        }
        a.end()
    }
    fn serialize_none(self) -> Result<(), CanonicalError> {
        self.serialize_unit()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), CanonicalError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), CanonicalError> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), CanonicalError> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), CanonicalError> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), CanonicalError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), CanonicalError> {
        self.out.push(b'{');
        write_string(variant, self.out);
        self.out.push(b':');
        value.serialize(Canon::into(self.out))?;
        self.out.push(b'}');
        Ok(())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Array<'a>, CanonicalError> {
        Ok(self.array(None, b"]"))
    }
    fn serialize_tuple(self, _len: usize) -> Result<Array<'a>, CanonicalError> {
        Ok(self.array(None, b"]"))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Array<'a>, CanonicalError> {
        Ok(self.array(None, b"]"))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Array<'a>, CanonicalError> {
        Ok(self.array(Some(variant), b"]}"))
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Object<'a>, CanonicalError> {
        Ok(self.object(None, b"}", len.unwrap_or(0)))
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<Object<'a>, CanonicalError> {
        Ok(self.object(None, b"}", len))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Object<'a>, CanonicalError> {
        Ok(self.object(Some(variant), b"}}", len))
    }
}

impl Array<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CanonicalError> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        value.serialize(Canon::into(self.out))
    }

    fn finish(self) -> Result<(), CanonicalError> {
        self.out.extend_from_slice(self.close);
        Ok(())
    }
}

impl ser::SerializeSeq for Array<'_> {
    type Ok = ();
    type Error = CanonicalError;
    fn serialize_element<T: Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<(), CanonicalError> {
        self.element(value)
    }
    fn end(self) -> Result<(), CanonicalError> {
        self.finish()
    }
}

impl ser::SerializeTuple for Array<'_> {
    type Ok = ();
    type Error = CanonicalError;
    fn serialize_element<T: Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<(), CanonicalError> {
        self.element(value)
    }
    fn end(self) -> Result<(), CanonicalError> {
        self.finish()
    }
}

impl ser::SerializeTupleStruct for Array<'_> {
    type Ok = ();
    type Error = CanonicalError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CanonicalError> {
        self.element(value)
    }
    fn end(self) -> Result<(), CanonicalError> {
        self.finish()
    }
}

impl ser::SerializeTupleVariant for Array<'_> {
    type Ok = ();
    type Error = CanonicalError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CanonicalError> {
        self.element(value)
    }
    fn end(self) -> Result<(), CanonicalError> {
        self.finish()
    }
}

impl Object<'_> {
    fn member<T: Serialize + ?Sized>(
        &mut self,
        key: String,
        value: &T,
    ) -> Result<(), CanonicalError> {
        if self.omit == Some(key.as_str()) {
            return Ok(());
        }
        if !self.members.is_empty() {
            self.out.push(b',');
        }
        let start = self.out.len();
        write_string(&key, self.out);
        self.out.push(b':');
        value.serialize(Canon::into(self.out))?;
        self.members.push((key, start..self.out.len()));
        Ok(())
    }

    fn finish(self) -> Result<(), CanonicalError> {
        let Object {
            out,
            mut members,
            body,
            close,
            ..
        } = self;
        // Stable: of members with one name, the last given stays last, and
        // replaces the others, as in a `serde_json::Map`.
        sort_members(&mut members, |m| m.0.as_str());
        let mut kept: Vec<std::ops::Range<usize>> = Vec::with_capacity(members.len());
        let mut last: Option<&str> = None;
        for (name, range) in &members {
            match kept.last_mut() {
                Some(previous) if last == Some(name.as_str()) => *previous = range.clone(),
                _ => kept.push(range.clone()),
            }
            last = Some(name.as_str());
        }
        // Members are written in ascending places: they are already in
        // order when none was dropped and the sorted ones still ascend.
        let in_place =
            kept.len() == members.len() && kept.windows(2).all(|w| w[0].start < w[1].start);
        if !in_place {
            arrange(out, body, &kept);
        }
        out.extend_from_slice(close);
        Ok(())
    }
}

/// Rewrites the members written from `body` to the end of `out` as `kept`
/// (their ranges in the order wanted, a subset of what is there), joined
/// by commas. The largest member (a statement's million ids) is moved
/// within the buffer, never copied out; the others go through a scratch
/// copy first, since their places may overlap where it lands.
fn arrange(out: &mut Vec<u8>, body: usize, kept: &[std::ops::Range<usize>]) {
    let Some(largest) = (0..kept.len()).max_by_key(|&i| kept[i].len()) else {
        out.truncate(body);
        return;
    };
    let mut scratch = Vec::new();
    let mut from: Vec<usize> = Vec::with_capacity(kept.len());
    for (i, r) in kept.iter().enumerate() {
        from.push(scratch.len());
        if i != largest {
            scratch.extend_from_slice(&out[r.clone()]);
        }
    }
    // Where each member lands: after the ones before it and their commas.
    let mut to: Vec<usize> = Vec::with_capacity(kept.len() + 1);
    to.push(body);
    for r in kept {
        to.push(to[to.len() - 1] + r.len() + 1);
    }
    let end = to[kept.len()] - 1;
    assert!(
        end <= out.len(),
        "the members kept fit where they were written"
    );
    out.copy_within(kept[largest].clone(), to[largest]);
    for (i, r) in kept.iter().enumerate() {
        let at = to[i];
        if i != largest {
            out[at..at + r.len()].copy_from_slice(&scratch[from[i]..from[i] + r.len()]);
        }
        if i + 1 < kept.len() {
            out[at + r.len()] = b',';
        }
    }
    out.truncate(end);
}

impl ser::SerializeMap for Object<'_> {
    type Ok = ();
    type Error = CanonicalError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), CanonicalError> {
        self.key = Some(key_name(key)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CanonicalError> {
        let key = self
            .key
            .take()
            .ok_or_else(|| CanonicalError("a map value without its key".into()))?;
        self.member(key, value)
    }
    fn end(self) -> Result<(), CanonicalError> {
        self.finish()
    }
}

impl ser::SerializeStruct for Object<'_> {
    type Ok = ();
    type Error = CanonicalError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), CanonicalError> {
        self.member(key.to_owned(), value)
    }
    fn end(self) -> Result<(), CanonicalError> {
        self.finish()
    }
}

impl ser::SerializeStructVariant for Object<'_> {
    type Ok = ();
    type Error = CanonicalError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), CanonicalError> {
        self.member(key.to_owned(), value)
    }
    fn end(self) -> Result<(), CanonicalError> {
        self.finish()
    }
}

/// A map key as `serde_json::to_value` names it: a string, or an integer
/// or boolean written as text. Keys are read through `serde_json` itself
/// (one small value each; statements have no maps, only structs), so the
/// rule is serde_json's, not a copy of it.
fn key_name<T: Serialize + ?Sized>(key: &T) -> Result<String, CanonicalError> {
    use serde_json::Value;
    match serde_json::to_value(key).map_err(|e| CanonicalError(e.to_string()))? {
        Value::String(s) => Ok(s),
        Value::Number(n) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(_) => Err(key_refused("a number that is not an integer")),
        Value::Null => Err(key_refused("null")),
        Value::Array(_) => Err(key_refused("an array")),
        Value::Object(_) => Err(key_refused("an object")),
    }
}

fn key_refused(what: &str) -> CanonicalError {
    CanonicalError(format!("an object key must be a string, not {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical_json;
    use proptest::prelude::*;
    use serde_json::Value;
    use std::collections::BTreeMap;

    /// Any JSON value: the direct writer and the tree agree byte for byte.
    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            "\\PC{0,12}".prop_map(Value::from),
            "[\\x00-\\x1f\"\\\\é€😀]{0,6}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map("\\PC{0,6}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Members given in any order, names repeated, values nested: what a
    /// struct or a map hands the writer, which must put them in order in
    /// place.
    struct Given(Vec<(String, Value)>);
    impl serde::Serialize for Given {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeMap;
            let mut m = s.serialize_map(None)?;
            for (k, v) in &self.0 {
                m.serialize_entry(k, v)?;
            }
            m.end()
        }
    }

    proptest! {
        #[test]
        fn written_directly_as_through_a_tree(v in json()) {
            prop_assert_eq!(canonical_json_of(&v).unwrap(), canonical_json(&v));
        }

        #[test]
        fn members_in_any_order_are_put_in_order_in_place(
            given in prop::collection::vec(("[a-dé]{0,2}", json()), 0..8),
            omit in prop::option::of("[a-d]{1}"),
        ) {
            let given = Given(given);
            let mut tree = serde_json::to_value(&given).unwrap();
            if let Some(name) = &omit {
                tree.as_object_mut().unwrap().remove(name);
            }
            prop_assert_eq!(
                String::from_utf8(canonical_json_omitting(&given, omit.as_deref(), 0).unwrap()).unwrap(),
                String::from_utf8(canonical_json(&tree)).unwrap()
            );
        }
    }

    #[derive(serde::Serialize)]
    #[serde(rename_all = "snake_case")]
    enum Shape {
        Unit,
        Newtype(u8),
        Tuple(u8, String),
        Struct { z: f32, a: Option<char> },
    }

    #[derive(serde::Serialize)]
    struct Everything {
        z_last: Vec<Shape>,
        bytes: serde_bytes_like::Bytes,
        keys: BTreeMap<u32, i128>,
        not_finite: [f64; 3],
        unit: (),
        nothing: Option<u8>,
        #[serde(rename = "\u{20ac}")]
        euro: bool,
        #[serde(rename = "\r")]
        cr: u128,
    }

    mod serde_bytes_like {
        pub struct Bytes(pub Vec<u8>);
        impl serde::Serialize for Bytes {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(&self.0)
            }
        }
    }

    /// Every kind of serde data, against `serde_json::to_value`.
    #[test]
    fn every_serde_shape_writes_as_its_tree() {
        let v = Everything {
            z_last: vec![
                Shape::Unit,
                Shape::Newtype(7),
                Shape::Tuple(1, "t\n".into()),
                Shape::Struct {
                    z: 0.1,
                    a: Some('é'),
                },
            ],
            bytes: serde_bytes_like::Bytes(vec![0, 255]),
            keys: BTreeMap::from([(10, -1), (2, i128::from(u64::MAX))]),
            not_finite: [f64::NAN, f64::INFINITY, -0.0],
            unit: (),
            nothing: None,
            euro: true,
            cr: 5,
        };
        let tree = serde_json::to_value(&v).unwrap();
        assert_eq!(
            String::from_utf8(canonical_json_of(&v).unwrap()).unwrap(),
            String::from_utf8(canonical_json(&tree)).unwrap()
        );
    }

    #[test]
    fn an_omitted_member_is_left_out_of_the_outermost_object_only() {
        let v = serde_json::json!({"signature": 1, "b": {"signature": 2}, "a": [{"signature": 3}]});
        let mut without = v.clone();
        without.as_object_mut().unwrap().remove("signature");
        assert_eq!(
            String::from_utf8(canonical_json_omitting(&v, Some("signature"), 0).unwrap()).unwrap(),
            String::from_utf8(canonical_json(&without)).unwrap()
        );
    }

    /// A name given twice keeps its last value, as `serde_json::to_value`
    /// keeps it.
    #[test]
    fn a_repeated_member_keeps_its_last_value() {
        struct Twice;
        impl serde::Serialize for Twice {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeMap;
                let mut m = s.serialize_map(None)?;
                for (k, v) in [("b", 1), ("a", 2), ("b", 3), ("a", 4), ("a", 5)] {
                    m.serialize_entry(k, &v)?;
                }
                m.end()
            }
        }
        let tree = serde_json::to_value(Twice).unwrap();
        assert_eq!(canonical_json_of(&Twice).unwrap(), canonical_json(&tree));
        assert_eq!(canonical_json_of(&Twice).unwrap(), br#"{"a":5,"b":3}"#);
    }

    #[test]
    fn keys_that_are_not_text_are_refused_by_name() {
        let m = BTreeMap::from([(vec![1u8], 1)]);
        assert_eq!(
            canonical_json_of(&m).unwrap_err().to_string(),
            "no canonical JSON: an object key must be a string, not an array"
        );
        assert!(serde_json::to_value(&m).is_err(), "as the tree refuses it");
    }
}
