//! The pipeline bench (see `pipeline/stage_bench.rs`) with the system's
//! allocator (glibc malloc), beside the mimalloc build: what a stage does
//! for a program that keeps the default.

#[path = "pipeline/stage_bench.rs"]
mod stage_bench;

fn main() {
    stage_bench::main()
}
