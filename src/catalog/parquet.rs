//! Parquet through Arrow record batches: one row group per batch, units in
//! each field's metadata (`unit`), snappy compression.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, BooleanArray, Float32Array, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::{Column, Kind, Sink, Value};

pub struct ParquetSink {
    writer: ArrowWriter<File>,
    schema: Arc<Schema>,
    rows: u64,
}

fn other(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl ParquetSink {
    pub fn create(path: &Path, cols: &[Column]) -> std::io::Result<ParquetSink> {
        let fields: Vec<Field> = cols
            .iter()
            .map(|c| {
                let t = match c.kind {
                    Kind::Text => DataType::Utf8,
                    Kind::Int => DataType::Int64,
                    Kind::F64 => DataType::Float64,
                    Kind::F32 => DataType::Float32,
                    Kind::Bool => DataType::Boolean,
                };
                let f = Field::new(&c.name, t, true);
                if c.unit.is_empty() {
                    f
                } else {
                    f.with_metadata(HashMap::from([("unit".to_string(), c.unit.to_string())]))
                }
            })
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
        let writer = ArrowWriter::try_new(File::create(path)?, schema.clone(), Some(props)).map_err(other)?;
        Ok(ParquetSink { writer, schema, rows: 0 })
    }
}

impl Sink for ParquetSink {
    fn write_rows(&mut self, rows: &[Vec<Value>]) -> std::io::Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let arrays: Vec<ArrayRef> = self
            .schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| -> ArrayRef {
                let col = rows.iter().map(|r| &r[i]);
                match f.data_type() {
                    DataType::Utf8 => Arc::new(StringArray::from_iter(col.map(|v| match v {
                        Value::Text(s) if !s.is_empty() => Some(s.clone()),
                        _ => None,
                    }))),
                    DataType::Int64 => Arc::new(Int64Array::from_iter(col.map(|v| match v {
                        Value::Int(n) => *n,
                        _ => None,
                    }))),
                    DataType::Float64 => Arc::new(Float64Array::from_iter(col.map(|v| match v {
                        Value::F64(x) if x.is_finite() => Some(*x),
                        _ => None,
                    }))),
                    DataType::Float32 => Arc::new(Float32Array::from_iter(col.map(|v| match v {
                        Value::F32(x) if x.is_finite() => Some(*x),
                        _ => None,
                    }))),
                    _ => Arc::new(BooleanArray::from_iter(col.map(|v| match v {
                        Value::Bool(b) => *b,
                        _ => None,
                    }))),
                }
            })
            .collect();
        let batch = RecordBatch::try_new(self.schema.clone(), arrays).map_err(other)?;
        self.writer.write(&batch).map_err(other)?;
        self.writer.flush().map_err(other)?;
        self.rows += rows.len() as u64;
        Ok(())
    }

    fn finish(self: Box<Self>) -> std::io::Result<u64> {
        let rows = self.rows;
        let file = self.writer.into_inner().map_err(other)?;
        file.sync_all()?;
        Ok(rows)
    }
}
