//! Criterion micro-benchmarks for chinwag live in `benches/benches/`; this library is empty.
//!
//! Run them with `cargo bench -p chinwag-bench` (or `cargo xtask bench --micro`), and record
//! figures in `docs/BENCHMARKS.md` with the machine and the command.
