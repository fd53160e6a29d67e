//! `shardkit._native`: the Python binding of shardkit, wrapped by the typed
//! `shardkit` package. It holds no logic of its own: arguments become Rust
//! values, core does the work (with the GIL released where it is more than a
//! few nanoseconds), and core's errors become one exception class per kind.

mod awaitable;
mod errors;
mod keys;
mod lease;
mod merge;
mod pipeline;
mod proxy;
mod scatter;
mod scope;
mod sharder;
mod wait;

use pyo3::prelude::*;
use pyo3::types::PyTuple;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    errors::register(m)?;
    m.add_class::<sharder::PySharder>()?;
    m.add_class::<sharder::Movement>()?;
    m.add_class::<sharder::Balance>()?;
    lease::register(m)?;
    scatter::register(m)?;
    merge::register(m)?;
    proxy::register(m)?;
    pipeline::register(m)?;
    m.add("__version__", shardkit::VERSION)?;
    m.add(
        "ALGORITHMS",
        PyTuple::new(py, shardkit::shard::ALGORITHM_NAMES)?,
    )?;
    m.add("HASHES", PyTuple::new(py, shardkit::hash::HASH_NAMES)?)?;
    m.add("DEFAULT_ALGORITHM", shardkit::shard::DEFAULT_ALGORITHM)?;
    m.add(
        "PARALLEL_BATCH_THRESHOLD",
        shardkit::shard::PARALLEL_BATCH_THRESHOLD,
    )?;
    Ok(())
}
