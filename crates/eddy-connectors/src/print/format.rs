//! Formats any serializable record the way Flink's `print()` shows Java objects: strings and
//! numbers as they are, tuples as `(a,b)`, lists as `[a, b]`, maps as `{k=v}`, structs as
//! `Name{field=value}`, and `None` as `null`.

use std::fmt::{Display, Write};

use serde::ser::{self, Serialize};

/// Formats `value` into `out`.
pub fn flink_format<T: Serialize + ?Sized>(value: &T, out: &mut String) {
    // Writing into a String cannot fail; a failing Serialize impl leaves what it wrote.
    let _ = value.serialize(Formatter { out });
}

/// Formatting failed: only a custom `Serialize` impl can make it fail.
#[derive(Debug)]
pub struct FormatError(String);

impl Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FormatError {}

impl ser::Error for FormatError {
    fn custom<M: Display>(msg: M) -> Self {
        FormatError(msg.to_string())
    }
}

struct Formatter<'a> {
    out: &'a mut String,
}

type R = Result<(), FormatError>;

impl<'a> Formatter<'a> {
    fn display(self, v: impl Display) -> R {
        let _ = write!(self.out, "{v}");
        Ok(())
    }
}

/// Writes the items of a compound value with a separator and closing text.
struct Compound<'a> {
    out: &'a mut String,
    first: bool,
    separator: &'static str,
    close: &'static str,
}

impl<'a> Compound<'a> {
    fn open(out: &'a mut String, open: &str, separator: &'static str, close: &'static str) -> Self {
        out.push_str(open);
        Compound {
            out,
            first: true,
            separator,
            close,
        }
    }

    fn item<T: Serialize + ?Sized>(&mut self, value: &T) -> R {
        if !self.first {
            self.out.push_str(self.separator);
        }
        self.first = false;
        value.serialize(Formatter { out: self.out })
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> R {
        if !self.first {
            self.out.push_str(self.separator);
        }
        self.first = false;
        self.out.push_str(key);
        self.out.push('=');
        value.serialize(Formatter { out: self.out })
    }

    fn close(self) -> R {
        self.out.push_str(self.close);
        Ok(())
    }
}

impl<'a> ser::Serializer for Formatter<'a> {
    type Ok = ();
    type Error = FormatError;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = Compound<'a>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Compound<'a>;

    fn serialize_bool(self, v: bool) -> R {
        self.display(v)
    }
    fn serialize_i8(self, v: i8) -> R {
        self.display(v)
    }
    fn serialize_i16(self, v: i16) -> R {
        self.display(v)
    }
    fn serialize_i32(self, v: i32) -> R {
        self.display(v)
    }
    fn serialize_i64(self, v: i64) -> R {
        self.display(v)
    }
    fn serialize_i128(self, v: i128) -> R {
        self.display(v)
    }
    fn serialize_u8(self, v: u8) -> R {
        self.display(v)
    }
    fn serialize_u16(self, v: u16) -> R {
        self.display(v)
    }
    fn serialize_u32(self, v: u32) -> R {
        self.display(v)
    }
    fn serialize_u64(self, v: u64) -> R {
        self.display(v)
    }
    fn serialize_u128(self, v: u128) -> R {
        self.display(v)
    }
    fn serialize_f32(self, v: f32) -> R {
        let _ = write!(self.out, "{v:?}");
        Ok(())
    }
    fn serialize_f64(self, v: f64) -> R {
        let _ = write!(self.out, "{v:?}");
        Ok(())
    }
    fn serialize_char(self, v: char) -> R {
        self.out.push(v);
        Ok(())
    }
    fn serialize_str(self, v: &str) -> R {
        self.out.push_str(v);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> R {
        let mut c = Compound::open(self.out, "[", ", ", "]");
        for b in v {
            c.item(b)?;
        }
        c.close()
    }
    fn serialize_none(self) -> R {
        self.out.push_str("null");
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> R {
        value.serialize(self)
    }
    fn serialize_unit(self) -> R {
        self.out.push_str("()");
        Ok(())
    }
    fn serialize_unit_struct(self, name: &'static str) -> R {
        self.out.push_str(name);
        Ok(())
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> R {
        self.out.push_str(variant);
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, value: &T) -> R {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> R {
        let mut c = Compound::open(self.out, variant, ",", ")");
        c.out.push('(');
        c.item(value)?;
        c.close()
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Compound<'a>, FormatError> {
        Ok(Compound::open(self.out, "[", ", ", "]"))
    }
    fn serialize_tuple(self, _: usize) -> Result<Compound<'a>, FormatError> {
        Ok(Compound::open(self.out, "(", ",", ")"))
    }
    fn serialize_tuple_struct(
        self,
        name: &'static str,
        _: usize,
    ) -> Result<Compound<'a>, FormatError> {
        self.out.push_str(name);
        Ok(Compound::open(self.out, "(", ",", ")"))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Compound<'a>, FormatError> {
        self.out.push_str(variant);
        Ok(Compound::open(self.out, "(", ",", ")"))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Compound<'a>, FormatError> {
        Ok(Compound::open(self.out, "{", ", ", "}"))
    }
    fn serialize_struct(self, name: &'static str, _: usize) -> Result<Compound<'a>, FormatError> {
        self.out.push_str(name);
        Ok(Compound::open(self.out, "{", ", ", "}"))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Compound<'a>, FormatError> {
        self.out.push_str(variant);
        Ok(Compound::open(self.out, "{", ", ", "}"))
    }
}

macro_rules! compound_items {
    ($($trait:ident :: $method:ident),*) => {$(
        impl ser::$trait for Compound<'_> {
            type Ok = ();
            type Error = FormatError;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> R {
                self.item(value)
            }
            fn end(self) -> R {
                self.close()
            }
        }
    )*};
}
compound_items!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

macro_rules! compound_fields {
    ($($trait:ident),*) => {$(
        impl ser::$trait for Compound<'_> {
            type Ok = ();
            type Error = FormatError;
            fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> R {
                self.field(key, value)
            }
            fn end(self) -> R {
                self.close()
            }
        }
    )*};
}
compound_fields!(SerializeStruct, SerializeStructVariant);

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = FormatError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> R {
        self.item(key)?;
        self.out.push('=');
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> R {
        value.serialize(Formatter { out: self.out })
    }
    fn end(self) -> R {
        self.close()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn f<T: Serialize>(v: T) -> String {
        let mut s = String::new();
        flink_format(&v, &mut s);
        s
    }

    #[derive(serde::Serialize)]
    struct Car {
        id: u32,
        speed: f64,
    }

    #[derive(serde::Serialize)]
    enum Event {
        Start,
        Move(i32, i32),
    }

    #[test]
    fn formats_like_flink() {
        assert_eq!(f("hello"), "hello");
        assert_eq!(f(("hello".to_string(), 3i64)), "(hello,3)");
        assert_eq!(f((1, (2.5f64, 'c'))), "(1,(2.5,c))");
        assert_eq!(f(vec![1, 2, 3]), "[1, 2, 3]");
        assert_eq!(f(Some(1)), "1");
        assert_eq!(f(None::<i32>), "null");
        assert_eq!(f(BTreeMap::from([("a", 1), ("b", 2)])), "{a=1, b=2}");
        assert_eq!(f(Car { id: 7, speed: 1.0 }), "Car{id=7, speed=1.0}");
        assert_eq!(f(Event::Start), "Start");
        assert_eq!(f(Event::Move(1, -2)), "Move(1,-2)");
    }
}
