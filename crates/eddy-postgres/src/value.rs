//! Values of a row, converted to whatever type the column has.

use bytes::BytesMut;
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};

/// One value of a row to write. It adapts to its column's type: an `Int` goes into `int2`,
/// `int4`, `int8` or `numeric`-free integer columns with a range check, a `Text` into `text`,
/// `varchar`, `char` or `json`, and so on.
#[derive(Clone, Debug, PartialEq)]
pub enum SqlValue {
    /// SQL `NULL`.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// Text.
    Text(String),
    /// Bytes (`bytea`).
    Bytes(Vec<u8>),
    /// A JSON document (`json`, `jsonb`).
    Json(serde_json::Value),
}

macro_rules! from {
    ($($t:ty => $v:ident $(as $c:ty)?),* $(,)?) => {$(
        impl From<$t> for SqlValue {
            fn from(v: $t) -> Self {
                SqlValue::$v((v $(as $c)?).into())
            }
        }
    )*};
}

from!(bool => Bool, i16 => Int as i64, i32 => Int as i64, i64 => Int, u32 => Int as i64,
      f32 => Float as f64, f64 => Float, String => Text, &str => Text, Vec<u8> => Bytes,
      serde_json::Value => Json);

impl<T: Into<SqlValue>> From<Option<T>> for SqlValue {
    fn from(v: Option<T>) -> Self {
        v.map_or(SqlValue::Null, Into::into)
    }
}

type BoxError = Box<dyn std::error::Error + Sync + Send>;

fn mismatch(value: &SqlValue, ty: &Type) -> BoxError {
    format!("cannot write {value:?} into a column of type {ty}").into()
}

impl ToSql for SqlValue {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match self {
            SqlValue::Null => Ok(IsNull::Yes),
            SqlValue::Bool(b) if *ty == Type::BOOL => b.to_sql(ty, out),
            SqlValue::Int(i) => match *ty {
                Type::INT2 => i16::try_from(*i)
                    .map_err(|_| mismatch(self, ty))?
                    .to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)
                    .map_err(|_| mismatch(self, ty))?
                    .to_sql(ty, out),
                Type::INT8 => i.to_sql(ty, out),
                Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                _ => Err(mismatch(self, ty)),
            },
            SqlValue::Float(f) => match *ty {
                Type::FLOAT4 => (*f as f32).to_sql(ty, out),
                Type::FLOAT8 => f.to_sql(ty, out),
                _ => Err(mismatch(self, ty)),
            },
            SqlValue::Text(s) => match *ty {
                Type::JSON | Type::JSONB => {
                    let v: serde_json::Value = serde_json::from_str(s)?;
                    v.to_sql(ty, out)
                }
                _ if <&str as ToSql>::accepts(ty) => s.as_str().to_sql(ty, out),
                _ => Err(mismatch(self, ty)),
            },
            SqlValue::Bytes(b) if *ty == Type::BYTEA => b.as_slice().to_sql(ty, out),
            SqlValue::Json(v) if matches!(*ty, Type::JSON | Type::JSONB) => v.to_sql(ty, out),
            _ => Err(mismatch(self, ty)),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}
