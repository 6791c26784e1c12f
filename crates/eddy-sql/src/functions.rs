//! Flink's built-in functions that DataFusion does not have under the same name and meaning.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field};
use datafusion_common::{Result, ScalarValue};
use datafusion_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature};

/// Flink's functions, registered over DataFusion's of the same name.
pub fn flink_functions() -> Vec<Arc<ScalarUDF>> {
    vec![Arc::new(ScalarUDF::new_from_impl(WithFlag {
        name: "regexp_replace",
        inner: datafusion_functions::regex::regexp_replace(),
        flag: "g",
    }))]
}

/// A DataFusion function called with one more, constant, flags argument: Flink's
/// `REGEXP_REPLACE` replaces every match, as DataFusion's does with the `g` flag.
#[derive(Debug, PartialEq, Eq, Hash)]
struct WithFlag {
    name: &'static str,
    inner: Arc<ScalarUDF>,
    flag: &'static str,
}

impl ScalarUDFImpl for WithFlag {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let mut types = arg_types.to_vec();
        types.push(DataType::Utf8);
        self.inner.return_type(&types)
    }

    fn invoke_with_args(&self, mut args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        args.args.push(ColumnarValue::Scalar(ScalarValue::Utf8(Some(
            self.flag.into(),
        ))));
        args.arg_fields
            .push(Arc::new(Field::new("flags", DataType::Utf8, false)));
        self.inner.invoke_with_args(args)
    }
}
