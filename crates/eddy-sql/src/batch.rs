//! The record that flows between SQL operators: an Arrow record batch.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Rows of one schema, column by column. Between processes (network exchanges, state) a batch
/// travels in Arrow's IPC stream format.
#[derive(Clone, Debug)]
pub struct SqlBatch(pub RecordBatch);

impl SqlBatch {
    /// The batch's rows.
    pub fn batch(&self) -> &RecordBatch {
        &self.0
    }

    /// Number of rows.
    pub fn num_rows(&self) -> usize {
        self.0.num_rows()
    }

    /// `num_rows` rows without columns (the input of `SELECT 1`).
    pub fn empty_rows(schema: SchemaRef, num_rows: usize) -> arrow::error::Result<Self> {
        let options = RecordBatchOptions::new().with_row_count(Some(num_rows));
        RecordBatch::try_new_with_options(schema, Vec::new(), &options).map(SqlBatch)
    }
}

impl Serialize for SqlBatch {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut bytes = Vec::new();
        let mut writer =
            StreamWriter::try_new(&mut bytes, &self.0.schema()).map_err(S::Error::custom)?;
        writer.write(&self.0).map_err(S::Error::custom)?;
        writer.finish().map_err(S::Error::custom)?;
        drop(writer);
        // Columnless batches keep their row count, which the IPC format does not.
        (self.0.num_rows() as u64, serde_bytes::Bytes::new(&bytes)).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SqlBatch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (rows, bytes): (u64, serde_bytes::ByteBuf) = Deserialize::deserialize(deserializer)?;
        let mut reader = StreamReader::try_new(bytes.as_ref(), None).map_err(D::Error::custom)?;
        let schema = reader.schema();
        match reader.next() {
            Some(batch) => batch.map(SqlBatch).map_err(D::Error::custom),
            None => {
                SqlBatch::empty_rows(Arc::clone(&schema), rows as usize).map_err(D::Error::custom)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    #[test]
    fn batches_round_trip_through_serde() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("b", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3])),
                Arc::new(StringArray::from(vec![Some("x"), None, Some("z")])),
            ],
        )
        .unwrap();
        let bytes = postcard::to_allocvec(&SqlBatch(batch.clone())).unwrap();
        let back: SqlBatch = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back.0, batch);

        let empty = SqlBatch::empty_rows(Arc::new(Schema::empty()), 4).unwrap();
        let bytes = postcard::to_allocvec(&empty).unwrap();
        let back: SqlBatch = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back.num_rows(), 4);
    }
}
