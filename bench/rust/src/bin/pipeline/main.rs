//! The pipeline bench (see `stage_bench`) with mimalloc as the process's
//! allocator: a stage frees every event it is done with on a thread other
//! than the one that made it, which glibc's malloc serialises on the
//! publishing thread's arena (a lock per free, and coalescing); mimalloc
//! frees across threads without either. What a Rust service running
//! pipelines would choose, and what the `shardkit` binary uses.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod stage_bench;

fn main() {
    stage_bench::main()
}
